-- tensor_spec.lua: the Lua surface of mb.tensor (bindings/tensor.c, bindings/moonbert/tensor.lua).
--
-- Values are checked against references computed here in plain Lua (naive
-- matmul, loops for reductions and softmax, math.exp); every misuse must raise
-- a Lua error that names the function, the argument and what was expected,
-- never crash the process.
local mb = require "moonbert"
local T = mb.tensor

-- pcall fn and check that the error message contains every given substring (plain text).
local function expect_error(fn, ...)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  err = tostring(err)
  for _, want in ipairs { ... } do
    assert(err:find(want, 1, true), string.format("error %q does not contain %q", err, want))
  end
  return err
end

local function near(a, b, tol)
  assert(math.abs(a - b) <= (tol or 1e-5), string.format("%.9g vs %.9g", a, b))
end

local function rss_kb()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

describe("mb.tensor creation", function()
  it("makes zeros, ones, full, empty with shapes as tables or sizes", function()
    local z = T.zeros { 2, 3 }
    assert.same({ 2, 3 }, z:shape())
    assert.equal("float32", z:dtype())
    assert.equal(2, z:dim())
    assert.equal(6, z:numel())
    assert.same({ { 0, 0, 0 }, { 0, 0, 0 } }, z:totable())
    assert.same({ 4, 1 }, T.ones(4, 1):shape())
    assert.same({ { 1, 1 } }, T.ones(1, 2):totable())
    local f = T.full({ 2 }, 7, { dtype = "int32" })
    assert.equal("int32", f:dtype())
    assert.same({ 7, 7 }, f:totable())
    assert.equal("int32", T.zeros({ 3 }, { dtype = "int32" }):dtype())
    assert.same({ 0 }, T.empty { 0 }:shape())
  end)

  it("makes tensors from nested tables, with a dtype", function()
    local t = T.from { { 1, 2 }, { 3, 4 } }
    assert.same({ 2, 2 }, t:shape())
    assert.same({ { 1, 2 }, { 3, 4 } }, t:totable())
    local i = T.from({ { 1, 2 }, { 3, 4 } }, { dtype = "int32" })
    assert.equal("int32", i:dtype())
    assert.equal(math.type(i[1][1]), "integer")
    local c = T { 1.5, 2.5 } -- mb.tensor(x) is mb.tensor.from(x)
    assert.same({ 1.5, 2.5 }, c:totable())
    local copy = T.from(t)
    copy[1][1] = 100
    assert.equal(1, t[1][1], "from(tensor) copies")
    assert.same({ 0 }, T.from({}):shape())
    local four = T.from { { { { 1 } } } }
    assert.same({ 1, 1, 1, 1 }, four:shape())
  end)

  it("makes ranges; integer bounds give int32 as in PyTorch", function()
    assert.same({ 0, 1, 2, 3 }, T.arange(4):totable())
    assert.equal("int32", T.arange(4):dtype())
    assert.same({ 5, 3, 1 }, T.arange(5, 0, -2):totable())
    local f = T.arange(0, 1, 0.25)
    assert.equal("float32", f:dtype())
    assert.same({ 0, 0.25, 0.5, 0.75 }, f:totable())
    assert.equal("float32", T.arange(3, { dtype = "float32" }):dtype())
  end)

  it("draws reproducible random tensors for a seed", function()
    local a = T.randn({ 2, 3 }, { seed = 1 })
    local b = T.randn({ 2, 3 }, { seed = 1 })
    local c = T.randn({ 2, 3 }, { seed = 2 })
    assert.same(a:totable(), b:totable())
    assert.are_not.same(a:totable(), c:totable())
    T.manual_seed(7)
    local x = T.rand { 5 }
    T.manual_seed(7)
    assert.same(x:totable(), T.rand { 5 }:totable())
    local u = T.rand({ 1000 }, { seed = 3, low = -2, high = -1 })
    assert(u:min() >= -2 and u:max() < -1)
    local n = T.randn({ 20000 }, { seed = 4, mean = 3, std = 0.5 })
    near(n:mean(), 3, 0.02)
    near(((n - 3) * (n - 3)):mean() ^ 0.5, 0.5, 0.02)
  end)

  it("tells tensors apart", function()
    assert.is_true(T.is_tensor(T.zeros { 1 }))
    assert.is_false(T.is_tensor({}))
    assert.is_false(T.is_tensor(nil))
  end)
end)

describe("mb.tensor indexing and views", function()
  it("indexes 1-based: t[i] is a row view for ndim > 1 and a number for 1-D", function()
    local t = T.from { { 1, 2, 3 }, { 4, 5, 6 } }
    assert.equal(2, #t)
    assert.equal(6, t[2][3])
    assert.equal(4, t:get(2, 1))
    assert.same({ 4, 5, 6 }, t[2]:totable())
    t:set(1, 2, 20)
    assert.equal(20, t[1][2])
    t[2][1] = 40
    assert.equal(40, t:get(2, 1))
    t[1] = 0 -- fills row 1
    assert.same({ 0, 0, 0 }, t[1]:totable())
    t[1] = T.from { 7, 8, 9 } -- copies into row 1
    assert.same({ 7, 8, 9 }, t[1]:totable())
    assert.equal(5, T.full({}, 5):item())
  end)

  it("shares storage between views", function()
    local t = T.arange(0, 12, 1, { dtype = "float32" }):reshape { 3, 4 }
    local row, col = t[2], t:select(2, 3)
    local block, tr = t:narrow(2, 2, 2), t:transpose()
    assert.same({ 3, 2 }, block:shape())
    assert.same({ 4, 3 }, tr:shape())
    assert.same({ 2, 6, 10 }, col:totable())
    assert.same({ { 1, 2 }, { 5, 6 }, { 9, 10 } }, block:totable())
    row[3] = 100
    assert.equal(100, t[2][3])
    assert.equal(100, col[2])
    assert.equal(100, tr[3][2])
    assert.equal(100, block[2][2])
    assert.is_false(tr:is_contiguous())
    local c = tr:contiguous()
    assert.is_true(c:is_contiguous())
    assert.same(tr:totable(), c:totable())
    local cl = t:clone()
    cl[1][1] = -1
    assert.equal(0, t[1][1], "clone does not share")
    assert.same({ 12 }, tr:reshape { -1 }:shape())
    assert.same({ 0, 4, 8, 1 }, { table.unpack(tr:reshape(-1):totable(), 1, 4) })
  end)

  it("converts dtypes", function()
    local f = T.from { 1.7, -1.7, 3 }
    local i = f:int()
    assert.equal("int32", i:dtype())
    assert.same({ 1, -1, 3 }, i:totable())
    assert.equal("float32", i:float():dtype())
    assert.equal("int32", f:to("int32"):dtype())
  end)
end)

describe("mb.tensor arithmetic", function()
  it("does element-wise ops with numbers on either side and broadcasting", function()
    local a = T.from { { 1, 2 }, { 3, 4 } }
    assert.same({ { 2, 3 }, { 4, 5 } }, (a + 1):totable())
    assert.same({ { 9, 8 }, { 7, 6 } }, (10 - a):totable())
    assert.same({ { 1, 4 }, { 9, 16 } }, (a * a):totable())
    assert.same({ { 0.5, 1 }, { 1.5, 2 } }, (a / 2):totable())
    assert.same({ { 1, 4 }, { 9, 16 } }, (a ^ 2):totable())
    assert.same({ { -1, -2 }, { -3, -4 } }, (-a):totable())
    assert.same({ { 11, 22 }, { 13, 24 } }, (a + T.from { 10, 20 }):totable())
    assert.same({ { 11, 12 }, { 23, 24 } }, (a + T.from { { 10 }, { 20 } }):totable())
    assert.same({ { 2, 2 }, { 3, 4 } }, a:maximum(2):totable())
    local i = T.from({ 7, -7 }, { dtype = "int32" })
    assert.equal("int32", (i / 2):dtype())
    assert.same({ 3, -3 }, (i / 2):totable(), "int32 division truncates")
    assert.equal("int32", (-i):dtype())
    assert.equal("float32", (i * 0.5):dtype())
  end)

  it("applies unary functions like math", function()
    local x = T.from { -2, -0.5, 0, 0.5, 2 }
    local e, th, r, g, s = x:exp(), x:tanh(), x:relu(), x:gelu(), x:sigmoid()
    local erf_ref = { -0.9544997361, -0.3829249225, 0, 0.3829249225, 0.9544997361 } -- erf(x/sqrt 2)
    for k = 1, 5 do
      local v = x[k]
      near(e[k], math.exp(v))
      near(th[k], (math.exp(2 * v) - 1) / (math.exp(2 * v) + 1))
      near(r[k], math.max(v, 0))
      near(g[k], 0.5 * v * (1 + erf_ref[k]))
      near(s[k], 1 / (1 + math.exp(-v)))
    end
    near(T.from { 4 }:sqrt()[1], 2)
    near(T.from { math.exp(1) }:log()[1], 1)
    assert.same({ 2, 0.5, 0, 0.5, 2 }, x:abs():totable())
  end)

  it("multiplies matrices like a naive triple loop", function()
    local function naive(a, b)
      local out = {}
      for i = 1, #a do
        out[i] = {}
        for j = 1, #b[1] do
          local s = 0
          for k = 1, #b do s = s + a[i][k] * b[k][j] end
          out[i][j] = s
        end
      end
      return out
    end
    for _, shp in ipairs { { 1, 1, 1 }, { 3, 4, 5 }, { 7, 2, 6 }, { 1, 8, 1 } } do
      local m, k, n = table.unpack(shp)
      local a = T.randn({ m, k }, { seed = m * 100 + k })
      local b = T.randn({ k, n }, { seed = n })
      local got, want = a:matmul(b):totable(), naive(a:totable(), b:totable())
      for i = 1, m do for j = 1, n do near(got[i][j], want[i][j], 1e-4) end end
      -- transposed operands give the same product
      local got2 = b:transpose():matmul(a:transpose()):transpose():totable()
      for i = 1, m do for j = 1, n do near(got2[i][j], want[i][j], 1e-4) end end
      local got3 = a:matmul(b:transpose():contiguous(), { trans_b = true }):totable()
      for i = 1, m do for j = 1, n do near(got3[i][j], want[i][j], 1e-4) end end
    end
    local v = T.from { 1, 2 }
    assert.same({ 7, 10 }, v:matmul(T.from { { 1, 2 }, { 3, 4 } }):totable())
    assert.equal(5, v:matmul(v):item())
    local batch = T.randn({ 2, 3, 4 }, { seed = 9 })
    local w = T.randn({ 4, 5 }, { seed = 10 })
    local bw = batch:matmul(w)
    assert.same({ 2, 3, 5 }, bw:shape())
    local want = naive(batch[2]:totable(), w:totable())
    for i = 1, 3 do for j = 1, 5 do near(bw[2][i][j], want[i][j], 1e-4) end end
  end)
end)

describe("mb.tensor reductions", function()
  local x = T.from { { 3, 1, 2 }, { -1, 5, 5 } }

  it("reduces along 1-based dims, or everything to a number", function()
    assert.equal(15, x:sum())
    near(x:mean(), 2.5)
    assert.same({ 2, 6, 7 }, x:sum(1):totable())
    assert.same({ 6, 9 }, x:sum(2):totable())
    assert.same({ 6, 9 }, x:sum(-1):totable())
    assert.same({ 2, 3 }, x:mean(2):totable())
    assert.same({ 3, 5 }, x:max(2):totable())
    assert.same({ -1, 1, 2 }, x:min(1):totable())
    assert.equal(5, x:max())
    assert.equal(-1, x:min())
  end)

  it("returns 1-based positions from argmax/argmin (first on ties)", function()
    assert.same({ 1, 2 }, x:argmax(2):totable())
    assert.same({ 1, 2, 2 }, x:argmax(1):totable())
    assert.same({ 2, 1 }, x:argmin(2):totable())
    assert.equal("int32", x:argmax(2):dtype())
    assert.equal(5, x:argmax(), "flat 1-based position of the first 5")
    assert.equal(4, x:argmin())
  end)

  it("gives softmax rows that sum to 1 and a matching log_softmax", function()
    local z = T.randn({ 4, 6 }, { seed = 5 }) * 30
    local p, lp = z:softmax(), z:log_softmax(2)
    for i = 1, 4 do
      near(p[i]:sum(), 1, 1e-5)
      local row, mx = z[i]:totable(), z[i]:max()
      local denom = 0
      for _, v in ipairs(row) do denom = denom + math.exp(v - mx) end
      for j = 1, 6 do
        near(p[i][j], math.exp(row[j] - mx) / denom, 1e-6)
        near(lp[i][j], row[j] - mx - math.log(denom), 1e-4)
      end
    end
    local cols = z:softmax(1)
    for j = 1, 6 do near(cols:select(2, j):sum(), 1, 1e-5) end
  end)
end)

describe("tostring", function()
  it("prints like PyTorch", function()
    assert.equal("tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], shape=[2,2], dtype=float32)",
      tostring(T.from { { 1, 2 }, { 3, 4 } }))
    assert.equal("tensor([ 1, -2, 30], shape=[3], dtype=int32)", tostring(T.from({ 1, -2, 30 }, { dtype = "int32" })))
    assert.equal("tensor(2.5000, shape=[], dtype=float32)", tostring(T.full({}, 2.5)))
    assert.equal("tensor([], shape=[0], dtype=float32)", tostring(T.zeros { 0 }))
    assert.equal("tensor([1.0000e-06, 1.0000e+00], shape=[2], dtype=float32)", tostring(T.from { 1e-6, 1 }))
    assert.equal("tensor([[[0, 0]],\n\n        [[0, 0]]], shape=[2,1,2], dtype=int32)",
      tostring(T.zeros({ 2, 1, 2 }, { dtype = "int32" })))
  end)

  it("wraps long rows at 80 columns", function()
    assert.equal("tensor([ 0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15, 16, 17,\n" ..
                 "        18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,\n" ..
                 "        36, 37, 38, 39], shape=[40], dtype=int32)", tostring(T.arange(40)))
    for line in tostring(T.randn({ 3, 50 }, { seed = 1 })):gmatch("[^\n]+") do
      assert(#line <= 80 or line:find("shape=", 1, true), line)
    end
  end)

  it("truncates big tensors with ...", function()
    local s = tostring(T.arange(10000))
    assert.equal("tensor([   0,    1,    2, ..., 9997, 9998, 9999], shape=[10000], dtype=int32)", s)
    local m = tostring(T.zeros({ 100, 100 }, { dtype = "int32" }))
    local lines = select(2, m:gsub("\n", "\n")) + 1
    assert.equal(7, lines, "3 rows, ..., 3 rows")
    assert.truthy(m:find("[0, 0, 0, ..., 0, 0, 0]", 1, true))
    assert.truthy(m:find("\n        ...,\n", 1, true))
  end)

  it("says when a tensor is freed", function()
    local t = T.zeros { 2 }
    t:free()
    assert.equal("tensor(<freed>)", tostring(t))
  end)
end)

describe("mb.tensor memory", function()
  it("frees with :free() (idempotent) and <close>", function()
    local t = T.zeros { 10 }
    t:free()
    t:free()
    assert.is_true(t:is_freed())
    local keep
    do
      local c <close> = T.zeros { 1000 }
      keep = c
      assert.is_false(c:is_freed())
    end
    assert.is_true(keep:is_freed())
  end)

  it("keeps views alive after their base is freed, and releases the storage with the last view", function()
    local core = require("moonbert.core").tensor
    -- Collect first: creating a tensor steps the collector, which would otherwise free
    -- unreachable tensors of earlier specs in the middle of this count.
    collectgarbage("collect"); collectgarbage("collect")
    local before = core.live()
    local t = T.from { { 1, 2 }, { 3, 4 } }
    local row, tr = t[2], t:transpose()
    assert.equal(before + 1, core.live(), "views share one storage")
    t:free()
    tr:free()
    assert.same({ 3, 4 }, row:totable())
    assert.equal(before + 1, core.live())
    row:free()
    assert.equal(before, core.live())
  end)

  it("runs a loop of 2000 x 1 MB tensors without :free() in bounded memory", function()
    collectgarbage()
    local before = rss_kb()
    local peak = before
    for i = 1, 2000 do
      local t = T.ones { 512, 512 } -- 1 MiB of float32, every page touched by the fill
      if i % 50 == 0 then peak = math.max(peak, rss_kb()) end
    end
    local growth_mb = (peak - before) / 1024
    assert(growth_mb < 300, string.format("RSS grew %.0f MB for 2000 MB allocated", growth_mb))
  end)
end)

describe("mb.tensor misuse raises errors naming function, argument and expectation", function()
  local t = T.from { { 1, 2, 3 }, { 4, 5, 6 } }

  it("rejects wrong types", function()
    expect_error(function() return t.sum(nil) end, "bad argument #1 to 'sum' (moonbert.Tensor expected, got nil)")
    expect_error(function() return t.sum({}) end, "moonbert.Tensor expected, got table")
    expect_error(function() return t:matmul(nil) end, "bad argument #1 to 'matmul' (moonbert.Tensor expected, got nil)")
    expect_error(function() return t:matmul("x") end, "moonbert.Tensor expected, got string")
    expect_error(function() return t + "x" end, "moonbert.Tensor or number expected, got string")
    expect_error(function() return {} * t end, "bad argument #1", "moonbert.Tensor or number expected, got table")
    expect_error(function() return T.zeros(nil) end, "bad argument #1 to 'zeros'", "shape (table of sizes) expected, got nil")
    expect_error(function() return T.zeros { 2, -1 } end, "non-negative integers")
    expect_error(function() return T.zeros { "a" } end, "shape entries must be non-negative integers")
    expect_error(function() return T.zeros { 1.5 } end, "non-negative integers")
    expect_error(function() return T.zeros { 1, 1, 1, 1, 1 } end, "at most 4")
    expect_error(function() return T.full({ 2 }, "x") end, "bad argument #2 to 'full' (number expected, got string)")
    expect_error(function() return T.from("str") end, "bad argument #1 to 'from' (table or moonbert.Tensor expected, got string)")
    expect_error(function() return T.from { { 1, 2 }, { 3 } } end, "ragged nested table: [2] has 1 elements, expected 2")
    expect_error(function() return T.from { { 1, "a" } } end, "expected a number at [1][2], got string")
    expect_error(function() return T.from { 1, { 2 } } end, "expected a number at [2], got table")
    expect_error(function() return T.from { { { { { 1 } } } } } end, "deeper than 4")
    expect_error(function() return T.arange("a") end, "bad argument #1 to 'arange' (number expected, got string)")
    expect_error(function() return T.arange(0, 1, 0) end, "step must not be zero")
    expect_error(function() return T.randn({ 2 }, 5) end, "bad argument #2 to 'randn' (table expected, got number)")
    expect_error(function() return T.randn({ 2 }, { std = -1 }) end, "std >= 0")
    expect_error(function() return T.randn({ 2 }, { seed = "x" }) end, "field 'seed' must be an integer")
    expect_error(function() return t:get("a", 1) end, "bad argument #1 to 'get' (integer expected, got string)")
    expect_error(function() return t:set(1, 1, "v") end, "number expected, got string")
    expect_error(function() t[1][1] = "x" end, "number expected, got string")
    expect_error(function() t[1] = {} end, "number or moonbert.Tensor expected, got table")
    expect_error(function() t.foo = 1 end, "no assignable field 'foo'")
    expect_error(function() return t:reshape("x") end, "bad argument #1 to 'reshape' (number expected, got string)")
    expect_error(function() return t:sum("x") end, "bad argument #1 to 'sum' (number expected, got string)")
    expect_error(function() return t:matmul(t, 5) end, "table expected, got number")
  end)

  it("rejects shape mismatches", function()
    expect_error(function() return t:matmul(T.zeros { 2, 3 }) end,
      "bad argument #1 to 'matmul' (shape [2,3] does not match [2,3] (inner dimensions 2 and 3 differ))")
    expect_error(function() return t.matmul(t, T.zeros { 4, 5 }) end, "bad argument #2 to 'matmul' (shape [4,5] does not match [2,3]")
    expect_error(function() return t:matmul(T.zeros { 2, 2, 3 }) end, "does not match")
    expect_error(function() return t + T.zeros { 4 } end, "shape [4] does not match [2,3]")
    expect_error(function() return t * T.zeros { 3, 3 } end, "shape [3,3] does not match [2,3]")
    expect_error(function() return t:add(T.zeros { 2 }) end, "bad argument #1 to 'add' (shape [2] does not match [2,3]")
    expect_error(function() return t:reshape { 4, 2 } end, "bad argument #1 to 'reshape' (shape [4,2] does not match [2,3] (6 elements))")
    expect_error(function() return t:reshape { -1, -1 } end, "only one dimension")
    expect_error(function() return t:copy(T.zeros { 3, 2 }) end, "shape [3,2] does not match [2,3]")
    expect_error(function() t[1] = T.zeros { 2 } end, "shape [2] does not match [3]")
    expect_error(function() return T.from { 1, 2 }:transpose() end, "transpose needs at least 2 dimensions, got 1")
    expect_error(function() return T.full({}, 1):softmax() end, "softmax needs at least 1 dimension")
    expect_error(function() return t:item() end, "item needs a tensor of one element, got shape [2,3]")
    expect_error(function() return #T.full({}, 1) end, "0-d tensor has no length")
    expect_error(function() return T.zeros { 2, 0 }:max(2) end, "empty dimension")
  end)

  it("rejects positions and dims out of range", function()
    expect_error(function() return t[3] end, "index 3 is out of range for dimension 1 of size 2")
    expect_error(function() return t[0] end, "index 0 is out of range")
    expect_error(function() return t[1][4] end, "index 4 is out of range for dimension 1 of size 3")
    expect_error(function() return t[1.5] end, "index must be an integer, got 1.5")
    expect_error(function() return t:get(1, 9) end, "bad argument #2 to 'get' (index 9 is out of range for dimension 2 of size 3)")
    expect_error(function() return t:get(1) end, "2 indices expected for a 2-D tensor, got 1")
    expect_error(function() return t:get(1, 1, 1) end, "2 indices expected for a 2-D tensor, got 3")
    expect_error(function() return t:set(3, 1, 0) end, "index 3 is out of range for dimension 1 of size 2")
    expect_error(function() return t:set(1, 0) end, "set expects 2 indices and a value")
    expect_error(function() return t:sum(3) end, "bad argument #1 to 'sum' (dimension 3 is out of range (1..2, or -2..-1 from the end))")
    expect_error(function() return t:sum(0) end, "dimension 0 is out of range")
    expect_error(function() return t:softmax(-3) end, "dimension -3 is out of range")
    expect_error(function() return t:narrow(2, 3, 2) end, "bad argument #3 to 'narrow' (length 2 from 3 runs past dimension 2 of size 3)")
    expect_error(function() return t:narrow(2, 0, 1) end, "start 0 is out of range")
    expect_error(function() return t:select(1, 3) end, "bad argument #2 to 'select' (index 3 is out of range for dimension 1 of size 2)")
    expect_error(function() return t:size(5) end, "dimension 5 is out of range")
    expect_error(function() return T.full({}, 1)[1] end, "0-d tensor cannot be indexed")
  end)

  it("rejects freed tensors", function()
    local f = T.zeros { 2, 2 }
    f:free()
    expect_error(function() return f:sum() end, "calling 'sum' on bad self (tensor is freed)")
    expect_error(function() return f[1] end, "tensor is freed")
    expect_error(function() return #f end, "tensor is freed")
    expect_error(function() return f + 1 end, "tensor is freed")
    expect_error(function() return 1 + f end, "tensor is freed")
    expect_error(function() return t:matmul(f) end, "bad argument #1 to 'matmul' (tensor is freed)")
    expect_error(function() return T.from(f) end, "tensor is freed")
    expect_error(function() return f:shape() end, "tensor is freed")
    expect_error(function() t:copy(f) end, "tensor is freed")
  end)

  it("rejects wrong dtypes", function()
    local i = T.from({ { 1, 2 }, { 3, 4 } }, { dtype = "int32" })
    expect_error(function() return i:matmul(i) end, "matmul needs float32 tensors, got int32 and int32")
    expect_error(function() return T.zeros({ 2 }, { dtype = "float64" }) end, 'dtype must be "float32" or "int32", got "float64"')
    expect_error(function() return T.zeros({ 2 }, { dtype = 5 }) end, "field 'dtype' must be a string")
    expect_error(function() return t:to("bool") end, 'dtype must be "float32" or "int32"')
    expect_error(function() return T.full({ 2 }, 1.5, { dtype = "int32" }) end, "value 1.5 is not an int32")
    expect_error(function() return T.from({ 1.5 }, { dtype = "int32" }) end, "int32 tensor cannot hold 1.5")
    expect_error(function() i:set(1, 1, 0.5) end, "int32 tensor cannot hold 0.5")
    expect_error(function() i[1][1] = 2 ^ 40 end, "int32 tensor cannot hold")
    expect_error(function() i:fill(0.5) end, "int32 tensor cannot hold 0.5")
    expect_error(function() return i / T.from({ 0, 1 }, { dtype = "int32" }) end, "integer division by zero")
    expect_error(function() return i ^ -1 end, "negative powers")
  end)
end)
