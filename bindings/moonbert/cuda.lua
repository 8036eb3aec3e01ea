-- moonbert.cuda (mb.cuda): the CUDA backend from Lua (docs/cuda.md).
--
--   mb.cuda.available()            -- true when built with CUDA and a GPU can be used
--   mb.cuda.device_name()          -- "NVIDIA H100 80GB HBM3", or nil, reason
--   mb.cuda.memory()               -- {free=, total=, allocated=, peak=} bytes, or nil, reason
--   mb.cuda.device("auto")         -- "cuda" or "cpu" (what --device cuda|cpu|auto means)
--   local x = t:to("cuda"); local y = x:cpu()       -- tensors across devices
--
-- Models move themselves: model:to("cuda", {precision="bf16"}) puts the parameter and
-- gradient blocks on the GPU, and every model method, mb.optim.adamw over
-- model:parameters(), mb.optim.clip_grad_norm and mb.trainer.fit then run there
-- (bindings/distilbert.c, bindings/optim.c). Without a GPU every call that needs one
-- raises an error naming why (no driver, no device, or a build without CUDA);
-- available() is then false and device("auto") is "cpu".
local core = require("moonbert.core").cuda

local M = {}

M.PRECISIONS, M.DEFAULT_PRECISION = core.precisions()

function M.available() return core.available() end
M.is_available = M.available -- as torch.cuda.is_available
function M.built() return core.built() end
function M.unavailable_reason() return core.unavailable_reason() end
function M.device_name() return core.device_name() end
function M.memory() return core.memory() end
function M.reset_peak() core.reset_peak() end

--- The device an experiment runs on for a --device value: "cpu", "cuda" (an
-- error when no GPU can be used) or "auto" (cuda when available). The second
-- result says why auto chose the CPU.
function M.device(name)
  name = name or "auto"
  if name == "cpu" then return "cpu" end
  if name == "cuda" then
    if not core.available() then
      error("--device cuda: CUDA is not available: " .. core.unavailable_reason() ..
            " (use --device cpu or auto)", 2)
    end
    return "cuda"
  end
  if name == "auto" then
    if core.available() then return "cuda" end
    return "cpu", core.unavailable_reason()
  end
  error(string.format("bad device '%s' (cpu, cuda or auto expected)", tostring(name)), 2)
end

return M
