-- tpe_spec.lua: moonbert.tpe, the TPE sampler.
--
-- References: Optuna 3.1's own _ParzenEstimator and numpy's argsort (run through
-- /usr/bin/python3; python3-optuna is in `make deps`; skipped where absent) for the mixture
-- weights, means, sigmas, log densities and the order of equal observations; known values of
-- the normal distribution; hand-ranked histories for the good/bad split; and properties
-- (determinism, bounds, concentration near an optimum).
local tpe = require "moonbert.tpe"
local support = require "tests.spec.support"

local function close(a, b, tol, what)
  if math.abs(a - b) > tol * math.max(1, math.abs(b)) then
    error(string.format("%s: %.12g differs from %.12g by more than %g", what or "value", a, b, tol), 2)
  end
end

local function has_optuna()
  local _, _, code = support.sh("/usr/bin/python3 -c 'import optuna' 2>/dev/null")
  return code == 0
end

describe("mb.tpe Parzen estimators", function()
  -- Optuna 3.1's truncnorm.logpdf leaves out the -log(sigma) of a scaled density (optuna
  -- issue #5109, fixed after 3.1); moonbert does the same by default and compares with
  -- Optuna's values as they are; with normalize_kernels the reference adds -log(sigma) back
  -- for continuous parameters (the normalised mixture of Bergstra et al.). Integer and
  -- choice parameters (probability masses) do not depend on it.
  it("match Optuna 3.1's weights, means, sigmas and log densities", function()
    if not has_optuna() then
      pending("skipped: /usr/bin/python3 has no optuna (Debian package python3-optuna)")
      return
    end
    local py = [[
import json, numpy as np
from optuna import distributions as D
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_weights
from optuna.samplers._tpe import _truncnorm
P = _ParzenEstimatorParameters(True, 1.0, True, False, default_weights, False)
cases = [
  ("float", D.FloatDistribution(-5, 10), [0.3, -2.0, 7.5, 7.6, 9.9], [0.0, 7.55, -4.9, 9.99]),
  ("float", D.FloatDistribution(0, 1), [((i * 37) % 101) / 101.0 for i in range(30)], [0.01, 0.5, 0.97]),
  ("log", D.FloatDistribution(1e-3, 10, log=True), [1e-3, 0.12, 0.2, 5.0], [1e-3, 0.15, 3.0]),
  ("int", D.IntDistribution(0, 10), [0, 3, 3, 10, 7], [0, 3, 5, 10]),
  ("int", D.IntDistribution(0, 10), [(i * i * 7 + 3) % 11 for i in range(60)], list(range(11))),
  ("choice", D.CategoricalDistribution(["a", "b", "c"]), [0, 2, 2], [0, 1, 2]),
]
out = []
for kind, dist, obs, xs in cases:
    pe = _ParzenEstimator({"x": np.array(obs, dtype=float)}, {"x": dist}, P)
    lp = pe.log_pdf({"x": np.array(xs, dtype=float if kind != "choice" else int)})
    rec = {"weights": pe._weights.tolist(), "log_pdf": lp.tolist(), "log_pdf_normalised": lp.tolist()}
    if kind != "choice":
        rec["mus"] = pe._mus["x"].tolist(); rec["sigmas"] = pe._sigmas["x"].tolist()
    if kind in ("float", "log"):
        t = np.log(np.array(xs)) if kind == "log" else np.array(xs)
        mus, sig, w = pe._mus["x"], pe._sigmas["x"], pe._weights
        lo, hi = pe._low["x"], pe._high["x"]
        comp = (-0.5 * ((t[:, None] - mus) / sig) ** 2 - 0.5 * np.log(2 * np.pi) - np.log(sig)
                - _truncnorm._log_gauss_mass((lo - mus) / sig, (hi - mus) / sig) + np.log(w))
        m = comp.max(axis=1)
        rec["log_pdf_normalised"] = (m + np.log(np.exp(comp - m[:, None]).sum(axis=1))).tolist()
    out.append(rec)
print(json.dumps(out))
]]
    local path = os.tmpname()
    support.write(path, py)
    local text, err, code = support.sh("/usr/bin/python3 " .. support.q(path))
    os.remove(path)
    assert.are.equal(0, code, err)
    local ref = require("dkjson").decode(text)
    local obs30, int60 = {}, {}
    for i = 0, 29 do obs30[#obs30 + 1] = ((i * 37) % 101) / 101 end
    for i = 0, 59 do int60[#int60 + 1] = (i * i * 7 + 3) % 11 end
    local cases = {
      { { uniform = { -5, 10 } }, { 0.3, -2.0, 7.5, 7.6, 9.9 }, { 0.0, 7.55, -4.9, 9.99 } },
      { { uniform = { 0, 1 } }, obs30, { 0.01, 0.5, 0.97 } },
      -- not 0.1: log(0.1) is the prior's mean, (log(1e-3) + log(10)) / 2, and whether the two
      -- tie or differ in the last bit depends on which log (numpy's AVX-512 one or the C library's)
      { { log_uniform = { 1e-3, 10 } }, { 1e-3, 0.12, 0.2, 5.0 }, { 1e-3, 0.15, 3.0 } },
      { { int_uniform = { 0, 10 } }, { 0, 3, 3, 10, 7 }, { 0, 3, 5, 10 } },
      -- 60 observations of 11 values: runs of equal values, and weights that differ (a ramp
      -- over the 35 oldest), so which of a run gets the gaps to its neighbours shows
      { { int_uniform = { 0, 10 } }, int60, { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 } },
      { { choice = { "a", "b", "c" } }, { "a", "c", "c" }, { "a", "b", "c" } },
    }
    for c, case in ipairs(cases) do
      local e = tpe.parzen(case[1], case[2])
      local r = ref[c]
      assert.are.equal(#r.weights, #e.weights)
      for i = 1, #r.weights do close(e.weights[i], r.weights[i], 1e-12, "case " .. c .. " weight " .. i) end
      if r.mus then
        for i = 1, #r.mus do
          close(e.mus[i], r.mus[i], 1e-12, "case " .. c .. " mu " .. i)
          close(e.sigmas[i], r.sigmas[i], 1e-12, "case " .. c .. " sigma " .. i)
        end
      end
      local en = tpe.parzen(case[1], case[2], { normalize_kernels = true })
      for i, x in ipairs(case[3]) do
        close(e:log_pdf(x), r.log_pdf[i], 1e-10, "case " .. c .. " log_pdf " .. i)
        close(en:log_pdf(x), r.log_pdf_normalised[i], 1e-10, "case " .. c .. " normalised log_pdf " .. i)
      end
    end
  end)

  -- The multivariate estimator against Optuna 3.1's _ParzenEstimator(multivariate=True), numbers
  -- from a one-off run of /usr/bin/python3 (python3-optuna 3.1.0) on 2026-12-07:
  --   P = _ParzenEstimatorParameters(True, 1.0, True, False, default_weights, True)
  --   space = {"a": FloatDistribution(-5, 10), "b": FloatDistribution(1e-3, 10, log=True),
  --            "c": IntDistribution(0, 10)}
  --   pe = _ParzenEstimator({"a": [0.3, -2.0, 7.5, 7.6, 9.9], "b": [1e-3, 0.1, 0.2, 5.0, 1.0],
  --                          "c": [0, 3, 3, 10, 7]}, space, P)
  --   pe._sigmas0, pe._sigmas[k], pe.log_pdf({"a": [0.0, 7.55], "b": [0.15, 3.0], "c": [3, 9]})
  it("fit the multivariate estimator as Optuna 3.1 (Scott's rule widths, the joint density)", function()
    local OPTUNA = {
      sigma0 = 0.15891948094037045,
      sigmas = { a = { 2.383792214105557, 15.0 }, b = { 1.4637025111985935, 9.210340371976184 },
                 c = { 1.748114290344075, 11.0 } }, -- every observation's, then the prior's
      log_pdf = { -3.8497111387488077, -3.478992192554343 },
    }
    local space = { a = { uniform = { -5, 10 } }, b = { log_uniform = { 1e-3, 10 } }, c = { int_uniform = { 0, 10 } } }
    local a, b, c = { 0.3, -2.0, 7.5, 7.6, 9.9 }, { 1e-3, 0.1, 0.2, 5.0, 1.0 }, { 0, 3, 3, 10, 7 }
    local points = {}
    for i = 1, 5 do points[i] = { a = a[i], b = b[i], c = c[i] } end
    local e = tpe.joint_parzen(space, points)
    close(e.sigma0, OPTUNA.sigma0, 1e-14, "sigma0")
    close(tpe.scott_sigma0(5, 3), OPTUNA.sigma0, 1e-14, "scott_sigma0")
    for name, want in pairs(OPTUNA.sigmas) do
      for i = 1, 5 do close(e.sigmas[name][i], want[1], 1e-12, name .. " sigma " .. i) end
      close(e.sigmas[name][6], want[2], 1e-12, name .. " prior sigma")
    end
    close(e:log_pdf { a = 0.0, b = 0.15, c = 3 }, OPTUNA.log_pdf[1], 1e-10, "log_pdf 1")
    close(e:log_pdf { a = 7.55, b = 3.0, c = 9 }, OPTUNA.log_pdf[2], 1e-10, "log_pdf 2")
  end)

  -- Equal observations get the gaps to their neighbours in the order numpy.argsort puts them
  -- (an introsort, not stable), as in Optuna. Properties always; the order itself against
  -- numpy where /usr/bin/python3 has it.
  it("sort equal values in numpy.argsort's order", function()
    local arrays = {}
    local rng = tpe.rng(7)
    for n = 0, 120, 3 do
      local a = {}
      for i = 1, n do a[i] = rng:integer(0, 1 + n % 9) end
      arrays[#arrays + 1] = a
    end
    -- inputs that drive the quicksort past 2 * floor(log2(n)) partitions, into its heapsort
    -- (built with McIlroy's adversary, "A killer adversary for quicksort", 1999)
    arrays[#arrays + 1] = { 0, 20, 2, 23, 4, 39, 6, 37, 8, 38, 10, 36, 12, 35, 14, 34, 16, 33, 18, 1, 3, 5,
                            7, 9, 11, 13, 15, 17, 19, 21, 31, 30, 29, 28, 27, 26, 25, 24, 32, 22 }
    local k = {}
    for i, v in ipairs(arrays[#arrays]) do k[i] = v // 3 end -- the same with ties
    arrays[#arrays + 1] = k
    local got = {}
    for a, v in ipairs(arrays) do
      local idx = tpe.argsort(v)
      local seen = {}
      assert.are.equal(#v, #idx)
      for i, j in ipairs(idx) do
        assert.is_nil(seen[j], "array " .. a .. ": index " .. j .. " twice")
        seen[j] = true
        if i > 1 then assert.is_true(v[idx[i - 1]] <= v[j], "array " .. a .. " is not sorted") end
      end
      got[a] = idx
    end
    local _, _, code = support.sh("/usr/bin/python3 -c 'import numpy' 2>/dev/null")
    if code ~= 0 then
      pending("numpy's order not compared: /usr/bin/python3 has no numpy (Debian package python3-numpy)")
      return
    end
    local json = require "dkjson"
    local path = os.tmpname()
    support.write(path, json.encode(arrays))
    local text, err, rc = support.sh("/usr/bin/python3 -c " .. support.q(
      "import json, sys, numpy as np\n" ..
      "print(json.dumps([(np.argsort(np.array(a, dtype=float)) + 1).tolist() for a in json.load(open(sys.argv[1]))]))") ..
      " " .. support.q(path))
    os.remove(path)
    assert.are.equal(0, rc, err)
    local want = json.decode(text)
    local stable_differs = 0
    for a = 1, #arrays do
      assert.are.same(want[a], got[a], "array " .. a)
      for i = 2, #want[a] do
        if arrays[a][want[a][i]] == arrays[a][want[a][i - 1]] and want[a][i] < want[a][i - 1] then
          stable_differs = stable_differs + 1
          break
        end
      end
    end
    assert.is_true(stable_differs > 10, "the arrays do not tell numpy's order from a stable sort")
  end)

  it("weigh observations as Optuna's default_weights and split with gamma = ceil(n/10) <= 25", function()
    assert.are.same({ 1, 1, 1 }, tpe.weights(3))
    local w = tpe.weights(30) -- a ramp of 5 from 1/30 to 1, then 25 ones
    close(w[1], 1 / 30, 1e-15); close(w[5], 1, 1e-15); close(w[3], (1 / 30 + 1) / 2, 1e-15)
    assert.are.equal(1, w[30])
    assert.are.same({ 1, 1, 2, 10, 25, 25 }, { tpe.gamma(1), tpe.gamma(10), tpe.gamma(11), tpe.gamma(100),
                                              tpe.gamma(250), tpe.gamma(1000) })
  end)

  it("compute Gaussian masses in the tails and the middle", function()
    close(math.exp(tpe.log_gauss_mass(-1, 1)), 0.682689492137086, 1e-14)
    close(math.exp(tpe.log_gauss_mass(0, 1e9)), 0.5, 1e-15)
    -- upper tail: Q(10) - Q(11) = 7.61985302416053e-24 - 1.91065957449868e-28
    close(tpe.log_gauss_mass(10, 11), math.log(7.61985302416053e-24 - 1.91065957449868e-28), 1e-13)
    close(tpe.log_gauss_mass(-11, -10), tpe.log_gauss_mass(10, 11), 1e-12)
    -- a narrow interval: density times width
    close(tpe.log_gauss_mass(1, 1.001), math.log(0.001 * math.exp(-0.5 * 1.0005 ^ 2) / math.sqrt(2 * math.pi)), 1e-6)
  end)
end)

describe("mb.tpe.suggest", function()
  local space = { lr = { log_uniform = { 1e-5, 1e-3 } }, warmup = { int_uniform = { 0, 100 } },
                  wd = { uniform = { 0, 0.1 } }, opt = { choice = { "adamw", "sgd", "lion" } },
                  fixed = { uniform = { 0.5, 0.5 } } }
  local function f(p) -- a made-up objective to fill histories (lower is better)
    return (math.log(p.lr, 10) + 4) ^ 2 + ((p.warmup - 30) / 50) ^ 2 + (p.wd - 0.02) ^ 2 * 100 +
           (p.opt == "sgd" and 0 or 0.5)
  end
  local function history(n, seed)
    local h = {}
    for t = 1, n do
      local p = tpe.suggest(space, h, { seed = seed, trial = t })
      h[#h + 1] = { params = p, value = f(p) }
    end
    return h
  end

  local function in_space(p)
    assert.is_true(p.lr >= 1e-5 and p.lr <= 1e-3, "lr " .. p.lr)
    assert.are.equal("integer", math.type(p.warmup))
    assert.is_true(p.warmup >= 0 and p.warmup <= 100)
    assert.is_true(p.wd >= 0 and p.wd <= 0.1)
    assert.is_truthy(({ adamw = true, sgd = true, lion = true })[p.opt])
    assert.are.equal(0.5, p.fixed)
  end

  it("draw the same point from the same seed, trial and history, another from another seed", function()
    local h = history(25, 3)
    for _, e in ipairs(h) do in_space(e.params) end
    local a = tpe.suggest(space, h, { seed = 3, trial = 26 })
    -- the same history rebuilt in another table order (as read back from a store) changes nothing
    local h2 = {}
    for i, e in ipairs(h) do
      local p = {}
      for _, k in ipairs({ "wd", "opt", "fixed", "warmup", "lr" }) do p[k] = e.params[k] end
      h2[i] = { params = p, value = e.value, state = "completed" }
    end
    assert.are.same(a, tpe.suggest(space, h2, { seed = 3, trial = 26 }))
    assert.are.same(h, history(25, 3))
    in_space(a)
    assert.are_not.same(a, tpe.suggest(space, h, { seed = 4, trial = 26 }))
    assert.are_not.same(a, tpe.suggest(space, h, { seed = 3, trial = 26, attempt = 1 }))
    -- failed trials and missing values are not observations
    local h3 = {}
    for i, e in ipairs(h) do h3[i] = e end
    table.insert(h3, 5, { params = h[1].params, state = "failed" })
    assert.are.same(a, tpe.suggest(space, h3, { seed = 3, trial = 26 }))
  end)

  it("leave math.random's stream alone", function()
    math.randomseed(77)
    local x = math.random()
    math.randomseed(77)
    tpe.suggest(space, history(12, 1), { seed = 1, trial = 13 })
    assert.are.equal(x, math.random())
  end)

  it("rank completed trials before pruned ones, deeper pruned ones first", function()
    local h = {
      { value = 5 }, { value = 1, state = "pruned", step = 3 }, { value = 2 },
      { value = 0.5, state = "pruned", step = 1 }, { value = 0.9, state = "pruned", step = 3 },
      { value = 4 }, { value = 3 }, { value = 7 }, { value = 6 }, { value = 9 }, { value = 8 },
    }
    -- n = 11: two good ones. Completed by value: 2 (#3), 3 (#7), ...; then pruned at step 3.
    local good, bad = tpe.split(h, "min")
    assert.are.same({ 3, 7 }, good)
    assert.are.same({ 1, 2, 4, 5, 6, 8, 9, 10, 11 }, bad)
    -- maximising: completed 9 (#10) and 8 (#11)
    good = tpe.split(h, "max")
    assert.are.same({ 10, 11 }, good)
  end)

  it("count a pruned trial that logged no value as an observation in a sweep (Optuna's score (1, 0))", function()
    local search = require "moonbert.search"
    local spec = { random = { x = { uniform = { 0, 1 } } }, seed = 3, mode = "min", tpe = { n_startup_trials = 3 } }
    local recorded = {
      { key = "x=0.2", options = { x = 0.2 }, state = "completed", value = 0.04 },
      { key = "x=0.9", options = { x = 0.9 }, state = "completed", value = 0.81 },
      { key = "x=0.5", options = { x = 0.5 }, state = "pruned", step = 0 }, -- pruned before logging the metric
    }
    local taken = { ["x=0.2"] = true, ["x=0.9"] = true, ["x=0.5"] = true }
    local options = search.draw_tpe(spec, recorded, 4, taken)
    -- three finished trials: the startup is over, so this is the TPE draw from all three
    local want = tpe.suggest(spec.random, { { params = { x = 0.2 }, value = 0.04 }, { params = { x = 0.9 }, value = 0.81 },
                                            { params = { x = 0.5 }, state = "pruned", step = 0 } },
                             { seed = 3, trial = 4, mode = "min", n_startup_trials = 3 })
    assert.are.equal(tonumber(string.format("%.3g", want.x)), options.x)
    local startup = tpe.suggest(spec.random, {}, { seed = 3, trial = 4, n_startup_trials = 3 })
    assert.are_not.equal(tonumber(string.format("%.3g", startup.x)), options.x)
  end)

  it("search: draws concentrate around the optimum once the startup trials are done", function()
    local near_tpe, near_random = 0, 0
    for seed = 1, 5 do
      local h = history(60, seed)
      for t = 31, 60 do
        if math.abs(math.log(h[t].params.lr, 10) + 4) < 0.3 then near_tpe = near_tpe + 1 end
      end
      local rh = {}
      for t = 1, 60 do
        rh[t] = tpe.suggest(space, {}, { seed = seed, trial = t })
        if t > 30 and math.abs(math.log(rh[t].lr, 10) + 4) < 0.3 then near_random = near_random + 1 end
      end
    end
    -- random: 0.6 of 2 decades -> 30% of 150 draws; TPE should be well above
    assert.is_true(near_tpe > 1.8 * near_random, string.format("tpe %d, random %d", near_tpe, near_random))
  end)
end)

describe("moonbert sweep with sampler = \"tpe\"", function()
  local lfs = require "lfs"
  local mb = require "moonbert"
  local BIN = os.getenv("MOONBERT_BIN") or (lfs.currentdir() .. "/build/bin/moonbert")
  local TRIAL = [[
local args = require "moonbert.args"
local o = args.parse(arg, { { "--x", "X", "", type = "number" }, { "--n", "N", "", type = "number" },
                            { "--c", "C", "" }, { "--store", "PATH", "" } })
local run = mb.store.open(o.store):start_run { experiment = "tpe_trial", params = { x = o.x, n = o.n, c = o.c } }
run:log_metric("loss", (o.x - 0.3) ^ 2 + (o.n - 2) ^ 2 / 10 + (o.c == "b" and 0 or 1))
run:finish()
]]
  local function spec_text(db, extra)
    return [[
return {
  name = "tpe_resume", script = "trial.lua", sampler = "tpe", trials = 10, seed = 11,
  random = { x = { uniform = { 0, 1 } }, n = { int_uniform = { 0, 5 } }, c = { choice = { "a", "b" } } },
  tpe = { n_startup_trials = 3 }, metric = "loss", mode = "min", store = "]] .. db .. [[", ]] .. extra .. [[
}]]
  end
  local function keys_in_order(db)
    local store = mb.store.open(db)
    local keys = {}
    for _, r in ipairs(store:runs { experiment = "tpe_resume" }) do
      if r.status == "completed" then keys[#keys + 1] = store:tags(r.id).trial end
    end
    store:close()
    return keys
  end

  it("resumes a half-finished sweep with the same points as an uninterrupted one", function()
    local dir = support.tmpdir()
    support.write(dir .. "/trial.lua", TRIAL)
    support.write(dir .. "/whole.lua", spec_text(dir .. "/a.db", ""))
    support.write(dir .. "/half.lua", spec_text(dir .. "/b.db", "max_trials = 5"))
    support.write(dir .. "/rest.lua", spec_text(dir .. "/b.db", ""))
    local function sweep(file)
      local out, code = support.run("cd " .. support.q(dir) .. " && " .. support.q(BIN) .. " sweep " .. file)
      assert.are.equal(0, code, out)
      return out
    end
    local out = sweep("whole.lua")
    assert.truthy(out:find("sampler tpe (seed 11, 3 random trials first)", 1, true), out)
    assert.truthy(out:find("10 trials: 10 completed now, 0 skipped", 1, true), out)
    assert.are.equal(10, support.count(out, "completed\n"), out) -- the ranking lists every trial
    assert.truthy(out:find("best: c=b,", 1, true), out)
    out = sweep("half.lua")
    assert.truthy(out:find("budget spent (max_trials: 5 trials started)", 1, true), out)
    assert.truthy(out:find("10 trials: 5 completed now, 0 skipped", 1, true), out)
    out = sweep("rest.lua")
    assert.truthy(out:find("10 trials: 5 completed now, 5 skipped", 1, true), out)
    local whole, resumed = keys_in_order(dir .. "/a.db"), keys_in_order(dir .. "/b.db")
    assert.are.equal(10, #whole)
    assert.are.same(whole, resumed)
    -- the trials are the sampler's: trial k is tpe.suggest from the first k - 1, rounded
    local hist = {}
    for k, key in ipairs(whole) do
      local p = {}
      for name, v in key:gmatch("(%w+)=([^,]+)") do p[name] = tonumber(v) or v end
      p.n = math.tointeger(p.n)
      local want = tpe.suggest({ x = { uniform = { 0, 1 } }, n = { int_uniform = { 0, 5 } }, c = { choice = { "a", "b" } } },
                               hist, { seed = 11, trial = k, n_startup_trials = 3 })
      assert.are.equal(tonumber(string.format("%.3g", want.x)), p.x)
      assert.are.equal(want.n, p.n); assert.are.equal(want.c, p.c)
      hist[k] = { params = p, value = (p.x - 0.3) ^ 2 + (p.n - 2) ^ 2 / 10 + (p.c == "b" and 0 or 1) }
    end
    -- and a finished sweep runs nothing more
    out = sweep("rest.lua")
    assert.truthy(out:find("10 trials: 0 completed now, 10 skipped", 1, true), out)
    os.execute("rm -rf " .. support.q(dir))
  end)
end)

describe("moonbert sweep --trial N with sampler = \"tpe\" (what a SLURM array task runs)", function()
  local lfs = require "lfs"
  local mb = require "moonbert"
  local BIN = os.getenv("MOONBERT_BIN") or (lfs.currentdir() .. "/build/bin/moonbert")

  it("draws its point, skips a key another task has reserved, and leaves only the trial's run", function()
    local dir = support.tmpdir()
    support.write(dir .. "/trial.lua", [[
local args = require "moonbert.args"
local o = args.parse(arg, { { "--x", "X", "" }, { "--store", "PATH", "" } })
local run <close> = mb.store.open(o.store):start_run { experiment = "t", params = { x = o.x } }
run:log_metric("loss", o.x == "a" and 1 or 2)
run:finish()
]])
    support.write(dir .. "/two.lua", [[
return { name = "two", script = "trial.lua", sampler = "tpe", trials = 3, seed = 1,
         random = { x = { choice = { "a", "b" } } }, metric = "loss", mode = "min", store = "]] .. dir .. [[/s.db" }]])
    local spec = mb.sweep.load_spec(dir .. "/two.lua")
    local search = require "moonbert.search"
    -- the key trial 2 draws from an empty store; another task (trial 1) holds it, running
    local _, first = search.draw_tpe(spec, {}, 2, {})
    local other = first == "x=a" and "x=b" or "x=a"
    local store = mb.store.open(dir .. "/s.db")
    local held = store:start_run { experiment = "two", git = false, script = "-",
                                   tags = { sweep = "two", trial = first, trial_number = "1", sweep_reservation = "1" } }
    local out, code = support.run("cd " .. support.q(dir) .. " && " .. support.q(BIN) .. " sweep two.lua --trial 2")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("trial 2: " .. other, 1, true), out)
    local runs = {}
    for _, r in ipairs(store:runs { experiment = "two" }) do
      local tags = store:tags(r.id)
      runs[#runs + 1] = { status = r.status, trial = tags.trial, number = tags.trial_number, reservation = tags.sweep_reservation }
    end
    -- the held reservation, and trial 2's own run; trial 2's reservation is gone
    assert.are.same({ { status = "running", trial = first, number = "1", reservation = "1" },
                      { status = "completed", trial = other, number = "2" } }, runs)
    held:finish()
    out, code = support.run("cd " .. support.q(dir) .. " && " .. support.q(BIN) .. " sweep two.lua --trial 2")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("trial 2 is done already", 1, true), out)
    store:close()
    os.execute("rm -rf " .. support.q(dir))
  end)
end)

describe("moonbert sweep budgets", function()
  local lfs = require "lfs"
  local mb = require "moonbert"
  local BIN = os.getenv("MOONBERT_BIN") or (lfs.currentdir() .. "/build/bin/moonbert")

  it("max_minutes stops the running trials and starts no more", function()
    local dir = support.tmpdir()
    support.write(dir .. "/slow.lua", [[
local args = require "moonbert.args"
local o = args.parse(arg, { { "--x", "X", "", type = "number" }, { "--store", "PATH", "" } })
local run <close> = mb.store.open(o.store):start_run { experiment = "slow", params = { x = o.x } }
os.execute("sleep 20")
run:log_metric("m", o.x)
run:finish()
]])
    support.write(dir .. "/budget.lua", [[
return { script = "slow.lua", random = { x = { uniform = { 0, 1 } } }, trials = 4, jobs = 2,
         metric = "m", max_minutes = 0.03, store = "]] .. dir .. [[/s.db" }]])
    local t0 = mb.store.now()
    local out, code = support.run("cd " .. support.q(dir) .. " && " .. support.q(BIN) .. " sweep budget.lua")
    local took = mb.store.now() - t0
    assert.are.equal(0, code, out)
    assert.is_true(took < 15, "took " .. took .. " s")
    assert.truthy(out:find("budget spent (max_minutes: 0.03 minutes passed; trials still running are stopped)", 1, true), out)
    assert.truthy(out:find("4 trials: 0 completed now, 0 skipped (already completed), 0 failed, 2 stopped by the budget", 1, true), out)
    assert.are.equal(2, support.count(out, "%] start "))
    local store = mb.store.open(dir .. "/s.db")
    for _, r in ipairs(store:runs { experiment = "budget" }) do assert.are_not.equal("completed", r.status) end
    store:close()
    os.execute("rm -rf " .. support.q(dir))
  end)
end)
