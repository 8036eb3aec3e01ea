-- scripts/bench_tpe.lua: moonbert's TPE sampler (moonbert.tpe) and random search on
-- synthetic 4-parameter objectives; the Lua side of scripts/bench-tpe, which runs Optuna
-- 3.1 on the same objectives and prints the comparison.
--
--   build/bin/moonbert run scripts/bench_tpe.lua [--objective branin4|hartmann4]
--       [--sampler tpe|random] [--budget 30] [--seeds 10] [--first-seed 0]
--   build/bin/moonbert run scripts/bench_tpe.lua --objective NAME --history FILE [--seeds 400]
--   build/bin/moonbert run scripts/bench_tpe.lua --objective NAME --inspect FILE
--
-- With --history (a JSON list of {params=, value=} finished trials, as scripts/bench-tpe
-- --check-draws writes it), prints instead the point TPE draws next from that history with
-- each seed, one JSON object per line: {seed=, params=}. With --inspect (a JSON object
-- {history=, points={name={...}}}), prints one JSON object: the good and bad trials' indices
-- (tpe.split) and, per parameter, both Parzen estimators (mus, sigmas, weights) with their log
-- densities at the points (scripts/bench-tpe --check-scores).
-- Prints one JSON object per line: {objective=, sampler=, budget=, seed=, best=, params=}
-- (best: the smallest value found in budget trials; params: where). The objectives are
-- written out again in scripts/bench-tpe (Python); that script checks that both sides
-- give the same value at the points reported here.
local args = require "moonbert.args"
local tpe = require "moonbert.tpe"
local json = require "dkjson"

-- ---- objectives (all minimised) ------------------------------------------------------------

local function branin(x1, x2)
  local a, b, c = 1, 5.1 / (4 * math.pi ^ 2), 5 / math.pi
  local r, s, t = 6, 10, 1 / (8 * math.pi)
  return a * (x2 - b * x1 ^ 2 + c * x1 - r) ^ 2 + s * (1 - t) * math.cos(x1) + s
end

-- Hartmann 4-D (Picheny, Wagner and Ginsbourger 2013): minimum -3.1345 near
-- (0.1873, 0.1906, 0.5566, 0.2647) in [0, 1]^4.
local H_ALPHA = { 1.0, 1.2, 3.0, 3.2 }
local H_A = { { 10, 3, 17, 3.5 }, { 0.05, 10, 17, 0.1 }, { 3, 3.5, 1.7, 10 }, { 17, 8, 0.05, 10 } }
local H_P = { { 0.1312, 0.1696, 0.5569, 0.0124 }, { 0.2329, 0.4135, 0.8307, 0.3736 },
              { 0.2348, 0.1451, 0.3522, 0.2883 }, { 0.4047, 0.8828, 0.8732, 0.5743 } }

local OBJECTIVES = {
  -- Branin in (x1, x2) plus a log-scale parameter and an integer, each with its own
  -- optimum: minimum 0.397887 at x3 = 0.1, x4 = 3 (the three Branin minima).
  branin4 = {
    space = { x1 = { uniform = { -5, 10 } }, x2 = { uniform = { 0, 15 } },
              x3 = { log_uniform = { 1e-3, 10 } }, x4 = { int_uniform = { 0, 10 } } },
    f = function(p)
      return branin(p.x1, p.x2) + 0.5 * (math.log(p.x3, 10) + 1) ^ 2 + 0.1 * (p.x4 - 3) ^ 2
    end,
  },
  hartmann4 = {
    space = { x1 = { uniform = { 0, 1 } }, x2 = { uniform = { 0, 1 } },
              x3 = { uniform = { 0, 1 } }, x4 = { uniform = { 0, 1 } } },
    f = function(p)
      local x = { p.x1, p.x2, p.x3, p.x4 }
      local outer = 0
      for i = 1, 4 do
        local inner = 0
        for j = 1, 4 do inner = inner + H_A[i][j] * (x[j] - H_P[i][j]) ^ 2 end
        outer = outer + H_ALPHA[i] * math.exp(-inner)
      end
      return (1.1 - outer) / 0.839
    end,
  },
}

local SPEC = {
  { "--objective", "NAME", "branin4 or hartmann4", default = "branin4" },
  { "--sampler", "NAME", "tpe (the default settings), tpe-univariate, tpe-multivariate or random",
    default = "tpe" },
  { "--budget", "N", "trials per search", type = "number", default = 30 },
  { "--seeds", "N", "searches, seeds first-seed.. first-seed+N-1", type = "number", default = 10 },
  { "--first-seed", "N", "first seed", type = "number", default = 0 },
  { "--history", "FILE", "print the next draw from these finished trials, once per seed" },
  { "--inspect", "FILE", "print the good/bad split of FILE's history and each parameter's two " ..
                         "Parzen estimators, with their log densities at FILE's points" },
}

local ok, err = pcall(function()
  local opts = args.parse(arg, SPEC)
  local obj = OBJECTIVES[opts.objective]
  if not obj then args.usage_error("--objective must be branin4 or hartmann4, got " .. opts.objective) end
  local multivariate = ({ tpe = "default", ["tpe-univariate"] = false, ["tpe-multivariate"] = true,
                          random = "default" })[opts.sampler]
  if multivariate == nil then
    args.usage_error("--sampler must be tpe, tpe-univariate, tpe-multivariate or random, got " .. opts.sampler)
  end
  if multivariate == "default" then multivariate = nil end
  local budget = args.integer(opts, "budget", 1)
  local seeds = args.integer(opts, "seeds", 1)
  local first = args.integer(opts, "first_seed", 0)
  if opts.inspect then
    local fh = io.open(opts.inspect) or args.fail("cannot read " .. opts.inspect)
    local d = json.decode(fh:read("a"))
    fh:close()
    local good, bad = tpe.split(d.history, "min")
    local out = { good = good, bad = bad, params = {} }
    for name, dist in pairs(obj.space) do
      local function fit(idx)
        local values = {}
        for _, i in ipairs(idx) do values[#values + 1] = d.history[i].params[name] end
        local e = tpe.parzen(dist, values)
        local lp = {}
        for j, x in ipairs(d.points[name]) do lp[j] = e:log_pdf(x) end
        return { mus = e.mus, sigmas = e.sigmas, weights = e.weights, log_pdf = lp }
      end
      out.params[name] = { l = fit(good), g = fit(bad) }
    end
    print(json.encode(out))
    return
  end
  if opts.history then
    local fh = io.open(opts.history) or args.fail("cannot read " .. opts.history)
    local history = json.decode(fh:read("a"))
    fh:close()
    for seed = first, first + seeds - 1 do
      local p = tpe.suggest(obj.space, history, { seed = seed, trial = #history + 1, mode = "min",
                                                  multivariate = multivariate })
      print(json.encode({ seed = seed, params = p }))
    end
    return
  end
  for seed = first, first + seeds - 1 do
    local history = {}
    local best, best_params
    local t0 = os.clock()
    for trial = 1, budget do
      local p = tpe.suggest(obj.space, history, {
        seed = seed, trial = trial, mode = "min",
        -- random search: the same sampler with every trial a startup trial
        n_startup_trials = opts.sampler == "random" and math.huge or nil,
        multivariate = multivariate,
      })
      local v = obj.f(p)
      history[#history + 1] = { params = p, value = v }
      if best == nil or v < best then best, best_params = v, p end
    end
    print(json.encode({ objective = opts.objective, sampler = "moonbert-" .. opts.sampler, budget = budget,
                        seed = seed, best = best, params = best_params, cpu_s = os.clock() - t0 }))
  end
end)
if not ok then
  io.stderr:write("bench_tpe: ", args.message(err), "\n")
  os.exit(type(err) == "table" and err.usage_error and 2 or 1)
end
