-- moonbert.optim (mb.optim): AdamW, SGD, gradient clipping and learning-rate schedules.
--
--   local opt = mb.optim.adamw(model:parameters(), {lr=2e-5, betas={0.9, 0.999}, eps=1e-8, weight_decay=0.01,
--                                                   schedule=mb.optim.schedule.linear{warmup_ratio=0.1, total_steps=500}})
--   -- per step: forward/backward fill p.grad, then
--   local norm = mb.optim.clip_grad_norm(model:parameters(), 1.0)   -- returns the norm before clipping
--   opt:step()          -- lr = base lr * schedule(steps taken so far), PyTorch's update
--   opt:zero_grad()
--
-- params is a list of {name=, value=tensor, grad=tensor} (what model:parameters() returns; the
-- tensors may be views into the model's parameter block). Parameter groups follow Hugging Face's
-- Trainer: weight decay 0 for every "*bias" and every LayerNorm weight (names containing
-- "LayerNorm" or "layer_norm"); an entry's own weight_decay=true/false overrides that. Entries with
-- frozen=true or requires_grad=false are skipped and get no optimizer state. The optimizer's
-- state (moments / momentum) is one block in the order of the trainable parameters.
-- The C runtime (runtime/optim.h) steps the same lists from C without Lua.
local core = require("moonbert.core").optim
local check = require "moonbert.check"

local M = {}

-- Hugging Face's default grouping: no decay for biases and LayerNorm weights (runtime/optim.c's
-- mb_param_decays, the rule C callers use too).
function M.decays(name)
  if type(name) ~= "string" then return true end
  return core.decays(name)
end

local function entries(params, fn)
  if type(params) ~= "table" then
    check.arg(1, fn, "list of {name=, value=, grad=} expected, got " .. type(params), 2)
  end
  local list = {}
  for i, p in ipairs(params) do
    if type(p) ~= "table" then
      check.arg(1, fn, ("parameter %d: table expected, got %s"):format(i, type(p)), 2)
    end
    local wd = p.weight_decay
    if wd == nil then wd = M.decays(p.name) end
    list[i] = { name = p.name, value = p.value, grad = p.grad, weight_decay = wd,
                frozen = p.frozen or p.requires_grad == false }
  end
  return list
end

-- ---- schedules -------------------------------------------------------------------------------
-- A schedule is a callable object: sched(step) -> multiplier of the base lr for the 0-based step
-- (LambdaLR semantics, as transformers.get_*_schedule_with_warmup).
local Schedule = {}
Schedule.__index = Schedule
Schedule.__call = function(s, step) return core.schedule_factor(s.kind, s.warmup_steps, s.total_steps, step, s.num_cycles) end
Schedule.__name = "moonbert.Schedule"
function Schedule:lr(base_lr, step) return base_lr * self(step) end

local function make_schedule(kind, o)
  o = o or {}
  if type(o) ~= "table" then check.arg(1, kind, "options table expected, got " .. type(o), 2) end
  local total = o.total_steps or o.num_training_steps
  if kind ~= "constant" and (type(total) ~= "number" or total <= 0) then
    check.arg(1, kind, "total_steps must be a positive integer, got " .. tostring(total), 2)
  end
  local warmup = o.warmup_steps or o.num_warmup_steps
  if warmup == nil and o.warmup_ratio then
    if not total then check.arg(1, "constant", "warmup_ratio needs total_steps", 2) end
    warmup = core.warmup_from_ratio(total, o.warmup_ratio)
  end
  local s = setmetatable({ kind = kind, warmup_steps = math.tointeger(warmup or 0) or check.arg(1, kind,
    "warmup_steps must be an integer", 2),
    total_steps = math.tointeger(total or 0), num_cycles = o.num_cycles or 0.5 }, Schedule)
  s(0) -- validates
  return s
end

M.schedule = {
  linear = function(o) return make_schedule("linear", o) end,
  cosine = function(o) return make_schedule("cosine", o) end,
  constant = function(o) return make_schedule("constant", o) end,
}

-- ---- optimizers ------------------------------------------------------------------------------
local Optimizer = {}
Optimizer.__index = Optimizer
Optimizer.__name = "moonbert.OptimizerLua"

-- The learning rate the next step will use.
function Optimizer:get_lr()
  local f = self.schedule and self.schedule(self.core:steps()) or 1.0
  return self.lr * f
end

-- One update; lr (optional) overrides the scheduled rate for this step. Returns the lr used.
function Optimizer:step(lr)
  lr = lr or self:get_lr()
  self.core:step(lr)
  return lr
end

function Optimizer:zero_grad() self.core:zero_grad() end
function Optimizer:steps() return self.core:steps() end
function Optimizer:state_numel() return self.core:state_numel() end
function Optimizer:free() self.core:free() end

-- Checkpoints: the step count and the moments (copies), exactly as float32, so that a resumed run
-- continues bit for bit. opt:save(path) writes a safetensors file (m, v; metadata kind, step,
-- momentum_started); opt:load(path) restores it into an optimizer over the same parameters.
function Optimizer:state() return self.core:state() end
function Optimizer:set_state(s) self.core:set_state(s) end

function Optimizer:save(path)
  local s = self.core:state()
  local tensors = { m = s.m, v = s.v }
  require("moonbert.safetensors").save(path, tensors, {
    kind = s.kind, step = tostring(s.step), momentum_started = tostring(s.momentum_started),
    state_numel = tostring(self.core:state_numel()) })
end

function Optimizer:load(path)
  local t, meta = require("moonbert.safetensors").load(path)
  meta = meta or {}
  local want = tostring(self.core:state_numel())
  if meta.state_numel and meta.state_numel ~= want then
    check.arg(1, "load", ("%s holds optimizer state for %s trainable elements, this optimizer has %s: "
      .. "were different parameters frozen?"):format(path, meta.state_numel, want))
  end
  local ok, err = pcall(self.core.set_state, self.core, { kind = meta.kind, step = math.tointeger(tonumber(meta.step)),
    momentum_started = meta.momentum_started == "true", m = t.m, v = t.v })
  if not ok then check.arg(1, "load", path .. ": " .. check.reason(err)) end
end
Optimizer.__close = Optimizer.free

local function new(kind, params, o, fn)
  o = o or {}
  if type(o) ~= "table" then check.arg(2, fn, "options table expected, got " .. type(o), 2) end
  local list = entries(params, fn)
  local c = { lr = o.lr, weight_decay = o.weight_decay, eps = o.eps, momentum = o.momentum,
              dampening = o.dampening, nesterov = o.nesterov }
  if o.betas then c.beta1, c.beta2 = o.betas[1], o.betas[2] end
  local ok, h = pcall(core.new, kind, list, c)
  if not ok then check.arg(2, fn, check.reason(h), 2) end
  local self = setmetatable({ core = h, params = list, kind = kind, schedule = o.schedule }, Optimizer)
  self.lr = o.lr or (kind == "adamw" and 1e-3 or 1e-3)
  return self
end

function M.adamw(params, o) return new("adamw", params, o, "adamw") end
function M.sgd(params, o) return new("sgd", params, o, "sgd") end

-- torch.nn.utils.clip_grad_norm_: scales the gradients in place so that their global L2 norm is at
-- most max_norm; returns the norm before clipping. max_norm = math.huge only measures.
function M.clip_grad_norm(params, max_norm)
  if type(max_norm) ~= "number" then
    check.arg(2, "clip_grad_norm", "number expected, got " .. type(max_norm))
  end
  return core.clip_grad_norm(entries(params, "clip_grad_norm"), max_norm)
end

return M
