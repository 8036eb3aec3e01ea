-- moonbert.asha (mb.asha): asynchronous successive halving (ASHA, Li et al. 2018), the
-- pruner of a sweep, with the rule of Optuna's SuccessiveHalvingPruner.
--
--   -- in a sweep spec (moonbert.sweep, moonbert.search)
--   pruner = { asha = { min_resource = 1, reduction_factor = 3, resource = "epoch",
--                       min_early_stopping_rate = 0, metric = nil, mode = nil } },
--   -- in a trial script (mb.trainer.fit does this after every evaluation by itself)
--   if run:should_prune(epoch, accuracy) then ... stop, the run is marked pruned ... end
--
-- Rungs: rung k (0, 1, ...) sits at resource r_k = min_resource * eta^(k + s), with eta the
-- reduction_factor and s the min_early_stopping_rate; resource is "epoch" (fractional
-- epochs, as the trainer's evaluations report them) or "step" (optimizer steps). When a
-- trial reports (resource, value) and has passed rungs it has not recorded yet, it records
-- its value at the lowest such rung (the store metric asha/rung, step = k) and compares it
-- with the values that every trial of the sweep recorded at that rung (its own included):
-- it goes on only if it is among the best floor(n / eta) of those n values, or the best
-- one while n < eta (so the first trials of a sweep always go on). Otherwise it is pruned
-- at rung k: its run ends with status "pruned" and pruned_rung = k, its process stops, and
-- the sweep starts the next trial in its slot. Asynchronous: a trial is compared with
-- whatever the trials before it recorded, so nothing waits for a full rung. A value that is
-- NaN is pruned at once. A trial's last evaluation (training done) is never pruned.
--
-- The metric is the sweep's (spec.metric and spec.mode) unless the pruner names its own;
-- for mb.trainer.fit the last part of its name picks the evaluation's figure: "accuracy",
-- "loss" or "f1_weighted" (so eval/accuracy and val/accuracy both mean accuracy).
-- A trial learns the pruner from the environment variable MOONBERT_PRUNER (JSON, set by
-- moonbert sweep); without it, run:should_prune always answers false.
local json = require "dkjson"

local M = {}

M.defaults = { min_resource = 1, reduction_factor = 3, resource = "epoch", min_early_stopping_rate = 0 }
M.RUNG_METRIC = "asha/rung"

--- asha.check_pruner(p, fail) -> normalised pruner ({asha = {...}} with defaults filled);
-- fail(message) is called on a mistake.
function M.check_pruner(p, fail)
  if type(p) ~= "table" or type(p.asha) ~= "table" or next(p, next(p)) ~= nil then
    fail("field 'pruner' must be { asha = { min_resource = 1, reduction_factor = 3, resource = \"epoch\" } }")
  end
  local a = {}
  for k, v in pairs(M.defaults) do a[k] = v end
  for k, v in pairs(p.asha) do
    if M.defaults[k] == nil and k ~= "metric" and k ~= "mode" then fail("pruner.asha." .. tostring(k) .. ": unknown setting") end
    a[k] = v
  end
  if type(a.min_resource) ~= "number" or not (a.min_resource > 0) then fail("pruner.asha.min_resource must be a number > 0") end
  if math.type(a.reduction_factor) ~= "integer" or a.reduction_factor < 2 then
    fail("pruner.asha.reduction_factor must be an integer >= 2")
  end
  if a.resource ~= "epoch" and a.resource ~= "step" then fail("pruner.asha.resource must be \"epoch\" or \"step\"") end
  if math.type(a.min_early_stopping_rate) ~= "integer" or a.min_early_stopping_rate < 0 then
    fail("pruner.asha.min_early_stopping_rate must be an integer >= 0")
  end
  if a.metric ~= nil and (type(a.metric) ~= "string" or a.metric == "") then fail("pruner.asha.metric must be a metric name") end
  if a.mode ~= nil and a.mode ~= "max" and a.mode ~= "min" then fail("pruner.asha.mode must be \"max\" or \"min\"") end
  return { asha = a }
end

function M.describe(p)
  local a = p.asha
  return string.format("asha (min_resource %g %s%s, reduction_factor %d%s)", a.min_resource, a.resource,
    a.min_resource == 1 and "" or "s", a.reduction_factor,
    a.min_early_stopping_rate > 0 and string.format(", min_early_stopping_rate %d", a.min_early_stopping_rate) or "")
end

--- asha.config_of(spec) -> the flat pruner settings a trial uses
function M.config_of(spec)
  local c = {}
  for k, v in pairs(spec.pruner.asha) do c[k] = v end
  c.metric = c.metric or spec.metric
  c.mode = c.mode or spec.mode
  c.sweep, c.experiment = spec.name, spec.experiment
  return c
end

--- asha.encode_env(spec) -> the MOONBERT_PRUNER text for a trial of this sweep
function M.encode_env(spec) return json.encode(M.config_of(spec)) end

--- asha.configure(cfg | nil): set this process's pruner (nil: back to MOONBERT_PRUNER), for
-- a script that runs its own trials outside `moonbert sweep`: {min_resource=, reduction_factor=, resource=,
-- min_early_stopping_rate=, metric=, mode=, sweep= (the tag sweep of the competing runs),
-- experiment=}.
function M.configure(cfg)
  if cfg ~= nil then
    local checked = M.check_pruner({ asha = {
      min_resource = cfg.min_resource, reduction_factor = cfg.reduction_factor, resource = cfg.resource,
      min_early_stopping_rate = cfg.min_early_stopping_rate, metric = cfg.metric, mode = cfg.mode,
    } }, function(msg) error("bad argument #1 to 'configure' (" .. msg .. ")", 3) end).asha
    checked.metric, checked.mode = checked.metric or "eval/accuracy", checked.mode or "max"
    checked.sweep, checked.experiment = cfg.sweep, cfg.experiment
    cfg = checked
  end
  M._configured = cfg
end

--- asha.config() -> asha.configure's settings, else MOONBERT_PRUNER's, else nil
function M.config()
  if M._configured ~= nil then return M._configured end
  local text = os.getenv("MOONBERT_PRUNER")
  if not text or text == "" then return nil end
  if M._env_text ~= text then
    local c = json.decode(text)
    if type(c) ~= "table" then error("MOONBERT_PRUNER is not a JSON object: " .. text, 0) end
    M._env_text, M._env = text, c
  end
  return M._env
end

--- asha.rung_resource(cfg, k) -> the resource at which rung k (0-based) sits
function M.rung_resource(cfg, k)
  return cfg.min_resource * cfg.reduction_factor ^ (k + (cfg.min_early_stopping_rate or 0))
end

--- asha.promotable(value, competing, eta, mode) -> true when value is among the best
-- floor(n / eta) of the n competing values (the best one while n < eta). competing holds
-- value itself.
function M.promotable(value, competing, eta, mode)
  local sorted = {}
  for i, v in ipairs(competing) do sorted[i] = v end
  table.sort(sorted, mode == "max" and function(a, b) return a > b end or nil)
  local k = math.max(1, #sorted // eta)
  if mode == "max" then return value >= sorted[k] end
  return value <= sorted[k]
end

-- ---- the store side ---------------------------------------------------------------------------

local LIVE = { completed = true, pruned = true, running = true }

-- Values recorded at rung k by the sweep's trials (runs that ended badly left out), and
-- the rungs this run has recorded.
local function rung_values(run, cfg, k)
  local store = run.store
  local values, own = {}, {}
  local experiment = cfg.experiment or store:get_run(run.id).experiment
  for _, r in ipairs(store:runs { experiment = experiment }) do
    if LIVE[r.status] then
      local tags = store:tags(r.id)
      if cfg.sweep == nil or tags.sweep == cfg.sweep then
        for _, m in ipairs(store:metrics(r.id, M.RUNG_METRIC)) do
          if r.id == run.id then own[m.step] = m.value end
          if m.step == k then values[#values + 1] = m.value end
        end
      end
    end
  end
  return values, own
end

--- asha.should_prune(run, resource, value [, cfg]) -> pruned, rung
-- Records the rungs the run has passed and decides (see the header). The run is not ended
-- here: asha.mark_pruned(run, rung) (or the trainer) does that. cfg: asha.config() unless
-- given; without one, false.
function M.should_prune(run, resource, value, cfg)
  cfg = cfg or M.config()
  if not cfg then return false end
  if type(resource) ~= "number" then
    error("bad argument #1 to 'should_prune' (number expected, got " .. type(resource) .. ")", 2)
  end
  if type(value) ~= "number" then error("bad argument #2 to 'should_prune' (number expected, got " .. type(value) .. ")", 2) end
  local _, own = rung_values(run, cfg, -1)
  local rung = 0
  while own[rung] ~= nil do rung = rung + 1 end
  while resource >= M.rung_resource(cfg, rung) - 1e-9 do
    if value ~= value then return true, rung end
    run:log_metric(M.RUNG_METRIC, value, { step = rung })
    local competing = rung_values(run, cfg, rung) -- holds the value just recorded
    if not M.promotable(value, competing, cfg.reduction_factor, cfg.mode) then return true, rung end
    rung = rung + 1
  end
  return false
end

--- asha.mark_pruned(run, rung): ends the run with status "pruned" at that rung
function M.mark_pruned(run, rung)
  return run:prune(rung)
end

--- asha.check_fit(run, {step=, epoch=, eval=metrics, last=}) -> rung | nil
-- mb.trainer.fit's question after an evaluation: when the sweep's pruner stops this trial,
-- the run is marked pruned and the rung returned.
function M.check_fit(run, at)
  local cfg = M.config()
  if not cfg or at.last then return nil end
  local field = cfg.metric:match("([^/]+)$")
  local value = at.eval[field]
  if type(value) ~= "number" then
    error(string.format("pruner metric %s: the trainer evaluates accuracy, loss and f1_weighted", cfg.metric), 0)
  end
  local pruned, rung = M.should_prune(run, cfg.resource == "epoch" and at.epoch or at.step, value, cfg)
  if not pruned then return nil end
  M.mark_pruned(run, rung)
  return rung
end

return M
