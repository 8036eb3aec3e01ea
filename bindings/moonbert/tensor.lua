-- moonbert.tensor (mb.tensor): n-dimensional float32/int32 arrays.
--
--   local T = mb.tensor
--   local a = T.zeros{2, 3}                      -- or T.zeros(2, 3); {dtype="int32"} as last argument
--   local b = T.from({{1, 2}, {3, 4}}, {dtype="int32"})
--   local r = T.randn({2, 3}, {seed=1})          -- also rand (uniform [low, high)), full, ones, arange
--   a[1][2], a:get(1, 2), a:set(1, 2, 5)         -- positions are 1-based, as everywhere in Lua
--   a:sum(2), a:argmax(2), a:softmax(-1)         -- dims are 1-based; negative dims count from the end
--   a:matmul(b:float()), a + 1, 2 * a, -a        -- '*' is element-wise; matmul is a method
--   local big <close> = T.zeros{4096, 4096}      -- freed at the end of the scope (or big:free())
--
-- Conventions:
--   * argmax/argmin return 1-based positions (tensor with a dim, a number without); label and token
--     ids are 0-based values elsewhere in moonbert, so subtract 1 to get an id from a position.
--   * reductions without a dim return a Lua number; with a dim, a tensor without that dim.
--   * int32 op int32 stays int32 (division truncates, by zero is an error); anything with
--     float32, or a non-integral number, gives float32; unary functions (exp, ...) give float32.
--   * views (t[i], select, narrow, transpose, reshape of a contiguous tensor) share storage.
--   * random functions without {seed=} draw from the module generator, seeded with 0 at load
--     (reproducible runs by default); T.manual_seed(n) reseeds it.
--   * misuse raises errors in the lauxlib style: "bad argument #1 to 'matmul' (shape [4,5] does
--     not match [2,3] ...)". As everywhere in Lua, a method call t:f(x) counts arguments after
--     self (x is #1) and a bad self reads "calling 'f' on bad self (tensor is freed)".
--
-- Methods: shape size dtype dim numel nbytes is_contiguous get set item totable free is_freed
--   reshape/view narrow select transpose contiguous clone float int to fill copy
--   add sub mul div pow maximum minimum neg exp log tanh relu gelu sqrt abs sigmoid
--   matmul(u, {trans_a=, trans_b=}) sum mean max min argmax argmin softmax log_softmax
-- Metamethods: + - * / ^ unary -, # (size of dim 1), t[i], t[i] = v, tostring, <close>, __gc.
-- T.live() returns the number of storages alive and their bytes (leak checks).
-- The implementation is C (bindings/tensor.c over runtime/tensor.c); this file re-exports it.
local core = require("moonbert.core").tensor

local M = {}

for _, name in ipairs { "zeros", "ones", "empty", "full", "arange", "from", "rand", "randn",
                        "manual_seed", "is_tensor", "live", "bench_sgemm" } do
  M[name] = core[name]
end

-- The methods shared by every tensor; adding a function here adds a method.
M.methods = core.methods

-- mb.tensor(x) is mb.tensor.from(x).
return setmetatable(M, { __call = function(_, ...) return core.from(...) end })
