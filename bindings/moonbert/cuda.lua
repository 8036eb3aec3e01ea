-- moonbert.cuda (mb.cuda): the CUDA backend from Lua (docs/cuda.md).
--
--   mb.cuda.available()            -- true when built with CUDA and a GPU can be used
--   mb.cuda.device_name()          -- "NVIDIA H100 80GB HBM3", or nil, reason
--   mb.cuda.memory()               -- {free=, total=, allocated=, peak=} bytes, or nil, reason
--   mb.cuda.device("auto")         -- "cuda" or "cpu" (what --device cuda|cpu|auto means)
--   local x = t:to("cuda"); local y = x:cpu()       -- tensors across devices
--   model:to("cuda", {precision="bf16", seed=1})   -- parameter, gradient and AdamW blocks on the GPU
--   local loss, gnorm = model:train_step(batch, labels, {lr=5e-5, weight_decay=0.01, max_grad_norm=1})
--   model:to("cpu")                                 -- trained parameters back into the host model
--
-- Loading this module adds to(), device(), cuda_model() and train_step() to
-- mb.distilbert models. Without a GPU every call that needs one raises an
-- error naming why (no driver, no device, or a build without CUDA);
-- available() is then false and device("auto") is "cpu".
local core = require("moonbert.core").cuda

local M = {}

M.PRECISIONS = { "fp32", "tf32", "bf16" }
M.DEFAULT_PRECISION = "tf32"

function M.available() return core.available() end
M.is_available = M.available -- the name moonbert.experiment.check_device looks for (as torch.cuda.is_available)
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

--- The model's blocks on the GPU (a moonbert.CudaModel): opts.precision
-- ("fp32", "tf32" (default) or "bf16"), opts.seed (dropout masks).
function M.model(model, opts)
  opts = opts or {}
  return core.model(model, opts.precision or M.DEFAULT_PRECISION, opts.seed or 42)
end

-- ---- model:to("cuda") on mb.distilbert models --------------------------------------

local ok, dcore = pcall(function() return require("moonbert.core").distilbert end)
if ok and dcore and dcore.methods then
  local methods = dcore.methods
  local on_device = setmetatable({}, { __mode = "k" }) -- host model -> CudaModel

  --- model:to("cuda" | "cpu", {precision=, seed=}) -> model
  function methods:to(device, opts)
    if device == "cuda" then
      if not on_device[self] then
        if not core.available() then
          error("model:to(\"cuda\"): CUDA is not available: " .. core.unavailable_reason(), 2)
        end
        on_device[self] = M.model(self, opts)
      end
    elseif device == "cpu" then
      local cm = on_device[self]
      if cm then
        cm:download()
        cm:free()
        on_device[self] = nil
      end
      if opts and opts.precision then -- the CPU's matrix products: "fp32" or "bf16"
        require("moonbert.distilbert").set_cpu_precision(self, opts.precision, opts.quiet, "to")
      end
    else
      error(string.format("bad argument #1 to 'to' (device 'cpu' or 'cuda' expected, got %s)", tostring(device)), 2)
    end
    return self
  end

  function methods:device() return on_device[self] and "cuda" or "cpu" end

  --- The moonbert.CudaModel behind a model on the GPU (forward, loss, backward, step, ...).
  function methods:cuda_model()
    local cm = on_device[self]
    if not cm then error("model is on the CPU: call model:to(\"cuda\") first", 2) end
    return cm
  end

  --- One whole training step on the GPU: loss, gradient norm (before clipping).
  function methods:train_step(batch, labels, opt)
    local cm = on_device[self]
    if not cm then error("model:train_step needs the model on the GPU (model:to(\"cuda\"))", 2) end
    return cm:train_step(batch, labels, opt)
  end
end

return M
