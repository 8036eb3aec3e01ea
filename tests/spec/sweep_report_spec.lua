-- sweep_report_spec.lua: `moonbert report --sweep` for a search: each trial's metric against
-- the resource (pruned trials faded) and the parameter-importance bars.
--
-- References: a hand-computed variance decomposition (eta squared per parameter on a table
-- small enough to do on paper), a property (a metric that depends on one parameter only gives
-- that parameter nearly all the importance), and the chart's structure read back from the
-- page (one series per trial, the pruned ones with the faded style, one bar per parameter).
local mb = require "moonbert"
local support = require "tests.spec.support"
local json = require "dkjson"

local report = mb.report

describe("mb.report.param_importance", function()
  it("is each parameter's eta squared over its groups, normalised to sum to 1", function()
    -- n = 4 -> 2 bins. a: two choices, groups {1, 4} and {2, 5}; b: 4 distinct numbers,
    -- binned by rank into {1, 2} and {4, 5}. Mean 3, total sum of squares 4 + 1 + 1 + 4 = 10.
    -- a: between = 2 * 0.5^2 + 2 * 0.5^2 = 1 -> eta2 0.1; b: 2 * 1.5^2 * 2 = 9 -> eta2 0.9.
    local trials = {
      { values = { a = "x", b = "1" }, value = 1 }, { values = { a = "y", b = "2" }, value = 2 },
      { values = { a = "x", b = "3" }, value = 4 }, { values = { a = "y", b = "4" }, value = 5 },
      { values = { a = "y", b = "5" } }, -- unfinished: not counted
    }
    local imp = assert(report.param_importance(trials, { "a", "b" }))
    assert.are.equal("b", imp[1].name)
    assert.is_true(math.abs(imp[1].eta2 - 0.9) < 1e-12 and math.abs(imp[2].eta2 - 0.1) < 1e-12)
    assert.is_true(math.abs(imp[1].share - 0.9) < 1e-12 and math.abs(imp[2].share - 0.1) < 1e-12)
    assert.is_nil(report.param_importance({ trials[1], trials[2] }, { "a", "b" }))
    local same = { { values = { a = "x" }, value = 1 }, { values = { a = "y" }, value = 1 }, { values = { a = "x" }, value = 1 } }
    local none, why = report.param_importance(same, { "a" })
    assert.is_nil(none)
    assert.truthy(why:find("same value", 1, true))
  end)

  it("gives nearly all the importance to the one parameter the metric depends on", function()
    local rng = mb.tpe.rng(7)
    local trials = {}
    for i = 1, 40 do
      local lr, wd, opt = 10 ^ (-5 + 2 * rng:uniform()), 0.1 * rng:uniform(), rng:uniform() < 0.5 and "adamw" or "sgd"
      trials[i] = { values = { lr = tostring(lr), wd = tostring(wd), opt = opt },
                    value = -(math.log(lr, 10) + 4) ^ 2 + 0.01 * rng:uniform() }
    end
    local imp = assert(report.param_importance(trials, { "lr", "opt", "wd" }))
    local sum = 0
    for _, e in ipairs(imp) do sum = sum + e.share end
    assert.is_true(math.abs(sum - 1) < 1e-12)
    assert.are.equal("lr", imp[1].name)
    assert.is_true(imp[1].share > 0.8, "lr share " .. imp[1].share)
  end)
end)

describe("moonbert report --sweep with a pruner", function()
  it("draws one line per trial, the pruned ones faded, and importance bars summing to 1", function()
    local dir = support.tmpdir()
    local path = dir .. "/s.db"
    local store = mb.store.open(path)
    -- 5 trials of sweep "srch": accuracy evaluated every 10 steps; two pruned at rung 0 (step 10)
    local spec = { lr = { "1e-05", "3e-05", "0.0001", "0.0003", "0.001" }, wd = { "0", "0.05", "0", "0.05", "0" } }
    local finals = { 0.40, 0.55, 0.80, 0.85, 0.60 }
    local pruned = { [1] = true, [2] = true }
    for i = 1, 5 do
      local key = "lr=" .. spec.lr[i] .. ",wd=" .. spec.wd[i]
      local run = store:start_run { experiment = "srch", tags = { sweep = "srch", trial = key }, git = false }
      local steps = pruned[i] and 1 or 3
      for s = 1, steps do
        run:log_metric("eval/accuracy", finals[i] * s / 3, { step = 10 * s, epoch = s / 3 })
      end
      if pruned[i] then run:prune(0) else run:finish() end
    end
    store:close()
    local sdir = dir .. "/sweeps/srch"
    assert(require("moonbert.fs").mkdir_p(sdir))
    support.write(sdir .. "/sweep.json", json.encode { name = "srch", metric = "eval/accuracy", mode = "max",
      parameters = { "lr", "wd" },
      pruner = { asha = { min_resource = 10, reduction_factor = 3, resource = "step" } } })

    local out, err, code = support.sh(support.q(os.getenv("MOONBERT_BIN")) .. " report --sweep srch --store " .. support.q(path))
    assert.are.equal(0, code, out .. err)
    local html = support.read((out:gsub("%s+$", "")))
    local curves = assert(html:match('<section id="curves">(.-)</section>'), "a curves section")
    assert.truthy(curves:find("eval/accuracy of each trial against step", 1, true))
    assert.are.equal(5, support.count(curves, '<g class="series trial'))
    assert.are.equal(2, support.count(curves, '<g class="series trial pruned" opacity="0.30"'))
    assert.are.equal(3, support.count(curves, '<g class="series trial">'))
    -- a pruned trial's line is one point (a dot), at step 10; a finished one reaches step 30
    for g in curves:gmatch('<g class="series trial pruned".-</g>') do
      assert.truthy(g:find("pruned at rung 0", 1, true))
      assert.is_nil(g:find("<polyline", 1, true))
    end
    assert.are.equal(3, support.count(curves, "<polyline"))
    local ranking = assert(html:match('<section id="ranking">(.-)</section>'))
    assert.are.equal(2, support.count(ranking, "pruned at rung 0"))
    -- importance: one bar per parameter; the shares (from the same function) sum to 1
    local imp_html = assert(html:match('<section id="importance">(.-)</section>'), "an importance section")
    assert.are.equal(2, support.count(imp_html, '<rect class="bar"'))
    store = mb.store.open(path)
    local _, info = report.build_sweep(store, "srch")
    store:close()
    local sum = 0
    for _, e in ipairs(info.importance) do sum = sum + e.share end
    assert.is_true(math.abs(sum - 1) < 1e-12, "shares sum to " .. sum)
    assert.are.same({ metric = "eval/accuracy", resource = "step", series = 5, pruned = 2 }, info.curves)
  end)
end)
