-- asha_spec.lua: moonbert.asha, the ASHA pruner, and pruning in mb.trainer.fit.
--
-- References: a synthetic metric table whose schedule is computed by hand below (and,
-- when /usr/bin/python3 has optuna, checked against Optuna 3.1's SuccessiveHalvingPruner
-- on the same table); the store itself (statuses, pruned_rung, recorded rung values); and
-- the trainer's step counts for a pruned fit.
local mb = require "moonbert"
local asha = require "moonbert.asha"
local support = require "tests.spec.support"

local function temp_store()
  local dir = support.tmpdir()
  return mb.store.open(dir .. "/s.db"), dir
end

-- The table: trial i (in this order) reports base_i + 0.01 * r at resources r = 1..9,
-- maximised; eta = 3, min_resource = 1: rungs at resources 1, 3 and 9.
local BASES = { 0.5, 0.6, 0.4, 0.7, 0.3, 0.55, 0.8, 0.45, 0.65 }
-- By hand, rung 0 (values base + 0.01), k = max(1, floor(n / 3)) best of the n values so far:
--   T1 alone, T2 best of 2: go on.  T3 (0.41) not the best of 3: pruned at rung 0.
--   T4 best of 4: on.  T5 (0.31): pruned.  T6 (0.56), n = 6, needs the 2nd best (0.61): pruned.
--   T7 best: on.  T8 (0.46), n = 8, 2nd best is 0.71: pruned.  T9 (0.66), n = 9, 3rd best is
--   0.66 itself: on.
-- Rung 1 (base + 0.03): T1, T2, T4, T7 were each the best so far (n < 6, k = 1); T9 (0.68)
--   is not the best of 5 (0.83): pruned at rung 1.  Rung 2 (base + 0.09): T1, T2, T4, T7 best so far.
local EXPECTED = { false, false, 0, false, 0, 0, false, 0, 1 } -- pruned rung, or false: completed

local CFG = { min_resource = 1, reduction_factor = 3, min_early_stopping_rate = 0, resource = "epoch",
              metric = "m", mode = "max", sweep = "table", experiment = "asha_table" }

local function play_table(store, bases, cfg, sign)
  local outcome = {}
  for i, base in ipairs(bases) do
    local run = store:start_run { experiment = cfg.experiment, tags = { sweep = cfg.sweep, trial = "t" .. i }, git = false }
    outcome[i] = false
    for r = 1, 9 do
      local value = sign * (base + 0.01 * r)
      run:log_metric("m", value, { step = r })
      local prune, rung = asha.should_prune(run, r, value, cfg)
      if prune then
        asha.mark_pruned(run, rung)
        outcome[i] = rung
        break
      end
    end
    if not outcome[i] then run:finish() end
  end
  return outcome
end

describe("mb.asha", function()
  it("promotes the best floor(n / eta) values, the best one while n < eta", function()
    assert.is_true(asha.promotable(0.5, { 0.5 }, 3, "max"))
    assert.is_false(asha.promotable(0.5, { 0.5, 0.6 }, 3, "max"))
    assert.is_true(asha.promotable(0.6, { 0.5, 0.6, 0.4, 0.3, 0.2, 0.1 }, 3, "max"))
    assert.is_true(asha.promotable(0.5, { 0.5, 0.6, 0.4, 0.3, 0.2, 0.1 }, 3, "max"))
    assert.is_false(asha.promotable(0.4, { 0.5, 0.6, 0.4, 0.3, 0.2, 0.1 }, 3, "max"))
    assert.is_true(asha.promotable(0.2, { 0.5, 0.6, 0.4, 0.3, 0.2, 0.1 }, 3, "min"))
    assert.is_false(asha.promotable(0.3, { 0.5, 0.6, 0.4, 0.3, 0.2, 0.1 }, 3, "min"))
    assert.are.same({ 1, 3, 9 }, { asha.rung_resource(CFG, 0), asha.rung_resource(CFG, 1), asha.rung_resource(CFG, 2) })
    assert.are.equal(30, asha.rung_resource({ min_resource = 10, reduction_factor = 3, min_early_stopping_rate = 1 }, 0))
  end)

  it("prunes the synthetic table as the hand-computed schedule says, and the store records it", function()
    local store = temp_store()
    assert.are.same(EXPECTED, play_table(store, BASES, CFG, 1))
    local by_trial = {}
    for _, r in ipairs(store:runs { experiment = "asha_table" }) do by_trial[store:tags(r.id).trial] = r end
    for i, want in ipairs(EXPECTED) do
      local r = by_trial["t" .. i]
      assert.are.equal(want and "pruned" or "completed", r.status, "trial " .. i)
      assert.are.equal(want or nil, r.pruned_rung, "trial " .. i)
    end
    -- T9 recorded its value at rungs 0 and 1, where it stopped
    local rungs = store:metrics(by_trial.t9.id, asha.RUNG_METRIC)
    assert.are.equal(2, #rungs)
    assert.are.equal(0, rungs[1].step); assert.is_near(0.66, rungs[1].value, 1e-12)
    assert.are.equal(1, rungs[2].step); assert.is_near(0.68, rungs[2].value, 1e-12)
    -- minimising the negated table prunes the same trials at the same rungs
    local cfg = {}
    for k, v in pairs(CFG) do cfg[k] = v end
    cfg.mode, cfg.sweep = "min", "negated"
    assert.are.same(EXPECTED, play_table(store, BASES, cfg, -1))
    store:close()
  end)

  it("agrees with Optuna 3.1's SuccessiveHalvingPruner on the table", function()
    local _, _, code = support.sh("/usr/bin/python3 -c 'import optuna' 2>/dev/null")
    if code ~= 0 then
      pending("skipped: /usr/bin/python3 has no optuna (Debian package python3-optuna)")
      return
    end
    local py = [[
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
bases = [0.5, 0.6, 0.4, 0.7, 0.3, 0.55, 0.8, 0.45, 0.65]
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
    pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, min_early_stopping_rate=0))
out = []
for b in bases:
    t = study.ask()
    res = "-"
    for r in range(1, 10):
        t.report(b + 0.01 * r, r)
        if t.should_prune():
            res = str(sum(1 for k in t.system_attrs if k.startswith("completed_rung_")) - 1)
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
            break
    else:
        study.tell(t, b + 0.09)
    out.append(res)
print(" ".join(out))
]]
    local path = os.tmpname()
    support.write(path, py)
    local out, err, rc = support.sh("/usr/bin/python3 " .. support.q(path))
    os.remove(path)
    assert.are.equal(0, rc, err)
    local mine = {}
    for i, v in ipairs(EXPECTED) do mine[i] = v and tostring(v) or "-" end
    assert.are.equal(table.concat(mine, " "), out:gsub("%s+$", ""))
  end)

  it("reads its settings from the sweep's MOONBERT_PRUNER or asha.configure, and checks them", function()
    local msgs = {}
    local function fail(m) msgs[#msgs + 1] = m; error(m, 0) end
    assert.has_error(function() asha.check_pruner({ hyperband = {} }, fail) end)
    assert.has_error(function() asha.check_pruner({ asha = { reduction_factor = 1 } }, fail) end)
    assert.has_error(function() asha.check_pruner({ asha = { resource = "minute" } }, fail) end)
    assert.matches("reduction_factor must be an integer >= 2", msgs[2], 1, true)
    local p = asha.check_pruner({ asha = { min_resource = 20, resource = "step" } }, fail)
    assert.are.same({ min_resource = 20, reduction_factor = 3, resource = "step", min_early_stopping_rate = 0 }, p.asha)
    local spec = { pruner = p, metric = "eval/accuracy", mode = "max", name = "sw", experiment = "ex" }
    local decoded = require("dkjson").decode(asha.encode_env(spec))
    assert.are.same({ min_resource = 20, reduction_factor = 3, resource = "step", min_early_stopping_rate = 0,
                      metric = "eval/accuracy", mode = "max", sweep = "sw", experiment = "ex" }, decoded)
    asha.configure { min_resource = 2, reduction_factor = 2 }
    assert.are.equal(2, asha.config().reduction_factor)
    assert.are.equal("eval/accuracy", asha.config().metric)
    asha.configure(nil)
    if not os.getenv("MOONBERT_PRUNER") then assert.is_nil(asha.config()) end
  end)
end)

describe("mb.trainer.fit with a pruner", function()
  local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
  local TINY = SHARED .. "/fixtures/distilbert-tiny"
  local EMOTION = SHARED .. "/data/emotion"
  if io.open(TINY .. "/vocab.txt") == nil or io.open(EMOTION .. "/train.txt") == nil then
    pending("needs " .. TINY .. " and " .. EMOTION .. " (../shared is absent)")
    return
  end

  it("evaluates every eval_every steps and stops at the first rung where the trial is not in the top 1/eta", function()
    local tok = mb.tokenizer.load(TINY)
    local data = mb.data.load_emotion(EMOTION)
    local train, val = data.train:head(64), data.validation:head(32)
    local store = temp_store()
    -- three earlier trials of the sweep recorded accuracy 1.0 at rungs 0 and 1 (steps 2 and 4)
    for i = 1, 3 do
      local r = store:start_run { experiment = "e", tags = { sweep = "s", trial = "p" .. i }, git = false }
      r:log_metric(asha.RUNG_METRIC, 1.0, { step = 0 })
      r:log_metric(asha.RUNG_METRIC, 1.0, { step = 1 })
      r:finish()
    end
    asha.configure { min_resource = 2, reduction_factor = 2, resource = "step", metric = "eval/accuracy",
                     mode = "max", sweep = "s", experiment = "e" }
    local run = store:start_run { experiment = "e", tags = { sweep = "s", trial = "me" }, git = false }
    local model = mb.distilbert.new({ dim = 16, n_layers = 1, n_heads = 2, hidden_dim = 32, vocab_size = 30522,
                                      max_position_embeddings = 64 }, { seed = 3, id2label = mb.data.EMOTION_LABELS })
    local ok, res = pcall(mb.trainer.fit, { model = model, tokenizer = tok, train = train, eval = val, run = run,
                                            epochs = 2, batch_size = 16, eval_every = 2, progress = false,
                                            max_length = 32 })
    asha.configure(nil)
    assert.is_true(ok, tostring(res))
    -- 4 steps an epoch; the evaluation at step 2 (rung 0: below 1.0, with n = 4 and eta = 2 it
    -- must be among the best 2) prunes it
    assert.are.same({ rung = 0, step = 2, epoch = 0.5 }, res.pruned)
    assert.are.equal(2, res.steps)
    local rec = store:get_run(run.id)
    assert.are.equal("pruned", rec.status)
    assert.are.equal(0, rec.pruned_rung)
    local evals = store:metrics(run.id, "eval/accuracy")
    assert.are.equal(1, #evals)
    assert.are.equal(2, evals[1].step)
    store:close()
  end)

  it("lets a trial that stays in the top 1/eta run to the end", function()
    local tok = mb.tokenizer.load(TINY)
    local data = mb.data.load_emotion(EMOTION)
    local store = temp_store()
    asha.configure { min_resource = 2, reduction_factor = 2, resource = "step", sweep = "s", experiment = "e" }
    local run = store:start_run { experiment = "e", tags = { sweep = "s", trial = "first" }, git = false }
    local model = mb.distilbert.new({ dim = 16, n_layers = 1, n_heads = 2, hidden_dim = 32, vocab_size = 30522,
                                      max_position_embeddings = 64 }, { seed = 3, id2label = mb.data.EMOTION_LABELS })
    local ok, res = pcall(mb.trainer.fit, { model = model, tokenizer = tok, train = data.train:head(64),
                                            eval = data.validation:head(32), run = run, epochs = 2, batch_size = 16,
                                            eval_every = 2, progress = false, max_length = 32 })
    asha.configure(nil)
    assert.is_true(ok, tostring(res))
    assert.is_nil(res.pruned)
    assert.are.equal(8, res.steps)
    -- the first trial of a sweep is the best at every rung it reaches: rungs at steps 2 and 4
    -- (step 8 is the last evaluation: training is done, nothing to decide)
    local rungs = store:metrics(run.id, asha.RUNG_METRIC)
    assert.are.equal(2, #rungs)
    run:finish()
    assert.are.equal("completed", store:get_run(run.id).status)
    store:close()
  end)
end)

describe("moonbert sweep with pruner = { asha = ... }", function()
  local lfs = require "lfs"
  local BIN = os.getenv("MOONBERT_BIN") or (lfs.currentdir() .. "/build/bin/moonbert")
  -- a trial that "trains" for 9 epochs: score = a * epoch / 9, asks the pruner each epoch
  local TRIAL = [[
local args = require "moonbert.args"
local o = args.parse(arg, { { "--a", "X", "", type = "number" }, { "--store", "PATH", "" } })
local run <close> = mb.store.open(o.store):start_run { experiment = "asha_trial", params = { a = o.a } }
for epoch = 1, 9 do
  local score = o.a * epoch / 9
  run:log_metric("score", score, { epoch = epoch })
  local stop, rung = run:should_prune(epoch, score)
  if stop then run:prune(rung) return end
end
run:finish()
]]

  it("prunes trials, records their rungs and shows them in the ranking and in results", function()
    local dir = support.tmpdir()
    local db = dir .. "/s.db"
    support.write(dir .. "/trial.lua", TRIAL)
    support.write(dir .. "/halving.lua", [[
return {
  script = "trial.lua", random = { a = { uniform = { 0, 1 } } }, trials = 8, seed = 2,
  pruner = { asha = { min_resource = 1, reduction_factor = 3 } },
  metric = "score", mode = "max", store = "]] .. db .. [[",
}]])
    local out, code = support.run("cd " .. support.q(dir) .. " && " .. support.q(BIN) .. " sweep halving.lua")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("pruner asha (min_resource 1 epoch, reduction_factor 3)", 1, true), out)
    local store = mb.store.open(db)
    local runs = store:runs { experiment = "halving" }
    assert.are.equal(8, #runs)
    -- the same decisions replayed from the runs' own scores, in the order they ran
    -- (one job: one after the other), by the rule checked above
    local at_rung = { [0] = {}, {}, {} }
    local pruned = 0
    for _, r in ipairs(runs) do
      local a = tonumber(store:params(r.id).a)
      local want
      for k = 0, 2 do
        local v = a * 3 ^ k / 9
        table.insert(at_rung[k], v)
        if not asha.promotable(v, at_rung[k], 3, "max") then want = k break end
      end
      assert.are.equal(want and "pruned" or "completed", r.status)
      assert.are.equal(want, r.pruned_rung)
      if want then pruned = pruned + 1 end
    end
    assert.is_true(pruned >= 2, "pruned " .. pruned)
    assert.truthy(out:find(string.format("8 trials: %d completed now, 0 skipped (already completed), 0 failed, %d pruned",
                                         8 - pruned, pruned), 1, true), out)
    assert.truthy(out:find("pruned (rung 0)", 1, true), out)
    local rank = support.run("cd " .. support.q(dir) .. " && " .. support.q(BIN) .. " sweep halving.lua --rank")
    assert.are.equal(pruned, support.count(rank, "pruned %(rung %d%)"), rank)
    local listing = support.run(support.q(BIN) .. " results list --store " .. support.q(db))
    assert.are.equal(pruned, support.count(listing, "pruned at rung %d"), listing)
    store:close()
    os.execute("rm -rf " .. support.q(dir))
  end)
end)
