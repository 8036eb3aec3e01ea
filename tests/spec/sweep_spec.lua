-- sweep_spec.lua: `moonbert sweep` and mb.sweep.
--
-- A tiny trial script written here parses --lr/--batch-size with moonbert.args,
-- starts a run, sleeps 0.4 s (so that parallel trials overlap in time), logs
-- val/accuracy = 1 - lr + batch_size / 1000 and finishes; at lr = 0.5 it fails
-- while a flag file exists. The checks use the store as the reference: run
-- start/end times for parallelism, statuses and tags for failures and resume,
-- and the metric formula for the ranking.
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local shq, run_cmd, write, tmpdir, count = support.q, support.run, support.write, support.tmpdir, support.count
local sweep = require "moonbert.sweep"

local BIN = os.getenv("MOONBERT_BIN") or (lfs.currentdir() .. "/build/bin/moonbert")

local TRIAL = [[
local args = require "moonbert.args"
local opts = args.parse(arg, {
  { "--lr", "X", "learning rate", type = "number" },
  { "--batch-size", "N", "batch size", type = "number" },
  { "--store", "PATH", "store" },
  { "--quick", nil, "small" },
})
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local store = mb.store.open(opts.store)
local run = store:start_run { experiment = "trial", params = { lr = opts.lr, batch_size = opts.batch_size, quick = opts.quick } }
os.execute(io.open(here .. "/slow.flag") and "sleep 30" or "sleep 0.4")
if opts.lr == 0.5 and io.open(here .. "/fail.flag") then error("deliberate failure at lr 0.5") end
run:log_metric("val/accuracy", 1 - opts.lr + opts.batch_size / 1000)
run:finish()
]]

describe("mb.sweep trials", function()
  it("expand a grid in canonical order with canonical keys", function()
    local spec = sweep.check_spec({ script = "s.lua", grid = { lr = { 1e-5, 2e-5 }, batch_size = { 32, 64 }, quick = { true } },
                                    metric = "m" }, "x/grid.lua")
    local keys = {}
    for i, t in ipairs(sweep.trials(spec)) do keys[i] = t.key end
    assert.are.same({ "batch_size=32,lr=1e-05,quick=true", "batch_size=32,lr=2e-05,quick=true",
                      "batch_size=64,lr=1e-05,quick=true", "batch_size=64,lr=2e-05,quick=true" }, keys)
    assert.are.same({ "--batch-size", "32", "--lr", "1e-05", "--quick" }, sweep.option_args(sweep.trials(spec)[1].options))
    assert.are.equal("grid", spec.name)
    assert.are.equal("grid", spec.experiment)
    assert.are.equal("max", spec.mode)
    spec.trials = 3
    assert.are.equal(3, #sweep.trials(spec))
  end)

  it("draw random points reproducibly, inside their ranges, without repeats", function()
    local spec = sweep.check_spec({ script = "s.lua", metric = "m", trials = 12, seed = 5,
      random = { lr = { log_uniform = { 1e-5, 1e-3 } }, batch_size = { choice = { 16, 32, 64 } },
                 warmup = { uniform = { 0, 0.2 } }, layers = { int_uniform = { 1, 6 } } } }, "r.lua")
    local a, b = sweep.trials(spec), sweep.trials(spec)
    assert.are.equal(12, #a)
    local seen = {}
    for i, t in ipairs(a) do
      assert.are.equal(t.key, b[i].key)
      assert.is_nil(seen[t.key]); seen[t.key] = true
      local o = t.options
      assert.truthy(o.lr >= 1e-5 * 0.995 and o.lr <= 1e-3 * 1.005, o.lr)
      assert.are.equal(o.lr, tonumber(string.format("%.3g", o.lr)))   -- 3 significant digits
      assert.truthy(o.batch_size == 16 or o.batch_size == 32 or o.batch_size == 64)
      assert.truthy(o.warmup >= 0 and o.warmup <= 0.2)
      assert.are.equal("integer", math.type(o.layers))
      assert.truthy(o.layers >= 1 and o.layers <= 6)
    end
    spec.seed = 6
    assert.are_not.equal(a[1].key .. a[2].key, sweep.trials(spec)[1].key .. sweep.trials(spec)[2].key)
    -- A space smaller than the trials asked for gives each point once.
    local small = sweep.check_spec({ script = "s.lua", metric = "m", trials = 10, random = { bs = { 1, 2 } } }, "s.lua")
    assert.are.equal(2, #sweep.trials(small))
  end)

  it("put a sweep's folder beside a store file, under results/ for a PostgreSQL store (report reads the same)", function()
    assert.are.equal("/data/x/sweeps/lr_sweep", sweep.log_dir("lr sweep", "/data/x/moonbert.db"))
    assert.are.equal("results/sweeps/lr_sweep", sweep.log_dir("lr sweep", "postgresql://127.0.0.1:5432/mb"))
    local report = require "moonbert.report"
    local fake = { path = function() return "postgresql://127.0.0.1:5432/mb" end }
    assert.are.equal("results/sweeps/s1", report.sweep_dir(fake, "s1"))
  end)

  it("reject bad specs with the field to fix", function()
    local function err_of(spec)
      local ok, e = pcall(sweep.check_spec, spec, "bad.lua")
      assert.is_false(ok)
      return e
    end
    assert.truthy(err_of({ script = "s", grid = { lr = { 1 } } }):find("field 'metric'", 1, true))
    assert.truthy(err_of({ script = "s", metric = "m" }):find("exactly one of 'grid' and 'random'", 1, true))
    assert.truthy(err_of({ script = "s", metric = "m", random = { lr = { log_uniform = { 1, 2 } } } }):find("needs 'trials'", 1, true))
    assert.truthy(err_of({ script = "s", metric = "m", trials = 2, random = { lr = { normal = { 1, 2 } } } }):find("unknown distribution 'normal'", 1, true))
    assert.truthy(err_of({ script = "s", metric = "m", grid = { lr = { 1 } }, mode = "best" }):find("'mode'", 1, true))
    assert.truthy(err_of({ script = "s", metric = "m", grid = { lr = { 1 } }, grdi = 1 }):find("unknown field 'grdi'", 1, true))
    assert.truthy(err_of({ script = "s", metric = "m", grid = { ["l r"] = { 1 } } }):find("identifier", 1, true))
  end)
end)

describe("moonbert sweep", function()
  local dir, db, spec_path
  setup(function()
    dir = tmpdir()
    db = dir .. "/store/moonbert.db"
    write(dir .. "/trial.lua", TRIAL)
    write(dir .. "/fail.flag", "")
    spec_path = dir .. "/lr_bs.lua"
    write(spec_path, [[
return {
  script = "trial.lua", args = { "--quick" },
  grid = { lr = { 0.1, 0.2, 0.5 }, batch_size = { 32, 64 } },
  metric = "val/accuracy", mode = "max", experiment = "sweep_test",
  store = "]] .. db .. [[",
}]])
  end)
  teardown(function() os.execute("rm -rf " .. shq(dir)) end)

  local function sweep_cmd(args)
    return run_cmd("cd " .. shq(dir) .. " && " .. shq(BIN) .. " sweep " .. args)
  end

  local first_out
  it("runs trials as parallel processes into one store and reports the failures", function()
    local out, code = sweep_cmd("lr_bs.lua --jobs 3")
    first_out = out
    assert.are.equal(1, code, out)   -- two trials failed
    assert.are.equal(6, count(out, "%] start "))
    assert.are.equal(2, count(out, "FAILED batch_size=%d+,lr=0.5 %(exit 1"), out)
    assert.truthy(out:find("deliberate failure at lr 0.5", 1, true), out)
    assert.truthy(out:find("4 completed now, 0 skipped (already completed), 2 failed", 1, true), out)
    local store = mb.store.open(db)
    local runs = store:runs { experiment = "sweep_test" }
    assert.are.equal(6, #runs)
    local completed, failed, intervals = 0, 0, {}
    for _, r in ipairs(runs) do
      local tags = store:tags(r.id)
      assert.are.equal("lr_bs", tags.sweep)
      assert.are.equal(r.name, tags.trial)
      local p = store:params(r.id)
      assert.are.equal(sweep.key { lr = p.lr, batch_size = p.batch_size }, tags.trial)
      assert.are.equal("true", tostring(p.quick))          -- the spec's args reach the script
      if r.status == "completed" then
        completed = completed + 1
        local v = store:final_metrics(r.id)["val/accuracy"].value
        assert.is_true(math.abs(v - (1 - p.lr + p.batch_size / 1000)) < 1e-12)
      else
        failed = failed + 1
        assert.are.equal("failed", r.status)
        assert.are.equal(0.5, p.lr)
        assert.truthy(r.error:find("deliberate failure", 1, true))
      end
      intervals[#intervals + 1] = { r.start_time, r.end_time }
    end
    assert.are.equal(4, completed)
    assert.are.equal(2, failed)
    -- Parallel: some instant lies inside two or more runs (3 jobs of 0.4 s; 2 is
    -- the bound that a loaded machine cannot break by starting processes late).
    local most = 0
    for _, a in ipairs(intervals) do
      local inside = 0
      local t = a[1] + 0.01
      for _, b in ipairs(intervals) do if b[1] <= t and t < b[2] then inside = inside + 1 end end
      most = math.max(most, inside)
    end
    assert.is_true(most >= 2, "at most " .. most .. " runs overlapped")
    store:close()
    -- Each trial has a log beside the store.
    local logs = 0
    for f in lfs.dir(dir .. "/store/sweeps/lr_bs") do if f:match("%.log$") then logs = logs + 1 end end
    assert.are.equal(6, logs)
  end)

  it("ranks the trials by the metric, best first", function()
    assert.truthy(first_out, "needs the first sweep")
    local ranked = {}
    for key, value in first_out:gmatch("\n%d+%s+(batch_size=%S+)%s+%d+%s+(%S+)%s+completed") do ranked[#ranked + 1] = { key, tonumber(value) } end
    -- val/accuracy = 1 - lr + bs / 1000: 0.964, 0.932, 0.864, 0.832
    assert.are.same({ { "batch_size=64,lr=0.1", 0.964 }, { "batch_size=32,lr=0.1", 0.932 },
                      { "batch_size=64,lr=0.2", 0.864 }, { "batch_size=32,lr=0.2", 0.832 } }, ranked)
    assert.truthy(first_out:find("best: batch_size=64,lr=0.1 %(run %d+%) with val/accuracy = 0.964 %(max%)"), first_out)
    -- The results CLI sees the same winner.
    local out, code = run_cmd(shq(BIN) .. " results best --experiment sweep_test --metric val/accuracy --store " .. shq(db))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("(batch_size=64,lr=0.1): val/accuracy = 0.964", 1, true), out)
    local store = mb.store.open(db)
    local ids = {}
    for _, r in ipairs(store:runs { experiment = "sweep_test", status = "completed" }) do ids[#ids + 1] = tostring(r.id) end
    store:close()
    out, code = run_cmd(shq(BIN) .. " results compare " .. table.concat(ids, " ") .. " --store " .. shq(db))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("* param lr", 1, true), out)
    assert.truthy(out:find("* metric val/accuracy", 1, true), out)
  end)

  it("resumes: a rerun runs only the trials not completed", function()
    local out, code = sweep_cmd("lr_bs.lua --jobs 2")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("6 trials (4 already completed, 2 to run, 2 at a time)", 1, true), out)
    assert.are.equal(2, count(out, "%] start +batch_size=%d+,lr=0.5 "), out)
    assert.are.equal(2, count(out, "%] start "))
    -- Fixed: the failing point now succeeds; a third run starts nothing.
    os.remove(dir .. "/fail.flag")
    out, code = sweep_cmd("lr_bs.lua")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("2 completed now, 4 skipped (already completed), 0 failed", 1, true), out)
    out, code = sweep_cmd("lr_bs.lua --dry-run")
    assert.are.equal(0, code, out)
    assert.are.equal(6, count(out, "\n  done "))
    out, code = sweep_cmd("lr_bs.lua")
    assert.are.equal(0, code, out)
    assert.are.equal(0, count(out, "%] start "))
    assert.truthy(out:find("0 completed now, 6 skipped", 1, true), out)
    -- --rank prints the standings without running anything.
    out, code = sweep_cmd("lr_bs.lua --rank")
    assert.are.equal(0, code, out)
    local keys = {}
    for key in out:gmatch("\n%d+%s+(batch_size=%S+)") do keys[#keys + 1] = key end
    assert.are.same({ "batch_size=64,lr=0.1", "batch_size=32,lr=0.1", "batch_size=64,lr=0.2", "batch_size=32,lr=0.2",
                      "batch_size=64,lr=0.5", "batch_size=32,lr=0.5" }, keys)   -- 0.564 > 0.532 at lr 0.5
    local store = mb.store.open(db)
    assert.are.equal(6, #store:runs { experiment = "sweep_test", status = "completed" })
    assert.are.equal(4, #store:runs { experiment = "sweep_test", status = "failed" })
    store:close()
  end)

  it("stops its running trials on Ctrl-C, and a rerun finishes the sweep", function()
    write(dir .. "/slow.flag", "")
    write(dir .. "/slow_spec.lua", 'return { script = "trial.lua", grid = { lr = { 0.3, 0.4, 0.6 }, batch_size = { 32 } }, metric = "val/accuracy", ' ..
                                   'experiment = "sweep_slow", store = "' .. db .. '" }')
    -- A session of its own, so that SIGINT to its process group is a terminal's Ctrl-C.
    local log = dir .. "/slow.out"
    local p = assert(io.popen("cd " .. shq(dir) .. " && setsid sh -c " ..
      shq(shq(BIN) .. " sweep slow_spec.lua --jobs 2 --store " .. shq(db) .. " > " .. shq(log) .. " 2>&1; echo rc=$? >> " .. shq(log)) ..
      " < /dev/null > /dev/null 2>&1 & echo $!"))
    local pgid = assert(tonumber(p:read("a"):match("%d+")))
    p:close()
    local function text() local f = io.open(log); if not f then return "" end local s = f:read("a"); f:close(); return s end
    local function wait_for(pred, what)
      for _ = 1, 100 do
        if pred() then return end
        os.execute("sleep 0.1")
      end
      error("timed out waiting for " .. what .. ":\n" .. text())
    end
    wait_for(function() return count(text(), "%] start ") == 2 end, "two trials to start")
    os.execute("sleep 0.3")                              -- let them start their runs
    os.execute("kill -INT -" .. pgid)
    wait_for(function() return text():find("interrupted: stopped 2 running trials", 1, true) end, "the sweep to stop")
    -- The trials' processes are gone; the store calls their runs killed.
    local groups = {}
    for pid in text():gmatch("%(pid (%d+)%)") do groups[#groups + 1] = pid end
    assert.are.equal(2, #groups)
    wait_for(function()
      for _, g in ipairs(groups) do
        if os.execute("kill -0 -" .. g .. " 2>/dev/null") then return false end -- the group still has a process
      end
      return true
    end, "trial processes to end")
    local store = mb.store.open(db)
    local runs = store:runs { experiment = "sweep_slow" }
    assert.are.equal(2, #runs)
    for _, r in ipairs(runs) do assert.truthy(r.status == "killed" or r.status == "failed", r.status) end
    store:close()
    os.remove(dir .. "/slow.flag")
    local out, code = sweep_cmd("slow_spec.lua --jobs 3")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("3 trials (0 already completed, 3 to run", 1, true), out)
    assert.truthy(out:find("3 completed now", 1, true), out)
  end)

  it("stops in order on a SIGTERM to the sweep alone: trials stopped and reaped, no run left running, exit 143", function()
    -- Before, only the sleep between polls noticed a signal; a SIGTERM to the sweep process
    -- itself (a batch system ending it) killed it at once, and a Ctrl-C landing outside the
    -- wait loop's pcall ended it with "interrupted!" and no bookkeeping.
    write(dir .. "/slow.flag", "")
    finally(function() os.remove(dir .. "/slow.flag") end)
    write(dir .. "/term_spec.lua", 'return { script = "trial.lua", grid = { lr = { 0.31, 0.41, 0.61 }, batch_size = { 32 } }, ' ..
                                   'metric = "val/accuracy", experiment = "sweep_term", store = "' .. db .. '" }')
    local log, pidfile = dir .. "/term.out", dir .. "/term.pid"
    -- the inner sh writes its pid and execs moonbert: that pid is the sweep's own process
    local inner = "echo $$ > " .. shq(pidfile) .. "; exec " .. shq(BIN) .. " sweep term_spec.lua --jobs 2 --store " .. shq(db)
    local p = assert(io.popen("cd " .. shq(dir) .. " && (sh -c " .. shq(inner) .. " > " .. shq(log) .. " 2>&1; echo rc=$? >> " ..
      shq(log) .. ") < /dev/null > /dev/null 2>&1 &"))
    p:close()
    local function text() local f = io.open(log); if not f then return "" end local s = f:read("a"); f:close(); return s end
    local function wait_for(pred, what)
      for _ = 1, 150 do
        if pred() then return end
        os.execute("sleep 0.1")
      end
      error("timed out waiting for " .. what .. ":\n" .. text())
    end
    wait_for(function() return count(text(), "%] start ") == 2 end, "two trials to start")
    os.execute("sleep 0.3")
    local pid = assert(tonumber(support.read(pidfile):match("%d+")), "the sweep's pid")
    os.execute("kill -TERM " .. pid)
    wait_for(function() return text():find("rc=", 1, true) end, "the sweep to exit")
    local t = text()
    assert.truthy(t:find("interrupted: stopping 2 running trials", 1, true), t)
    assert.truthy(t:find("interrupted: stopped 2 running trials; rerun the sweep to go on", 1, true), t)
    assert.truthy(t:find("rc=143", 1, true), t)
    assert.is_nil(t:find("interrupted!", 1, true), t)
    -- reaped before the sweep exited: no trial process is left, no run stays running
    for g in t:gmatch("%(pid (%d+)%)") do
      assert.is_false(os.execute("kill -0 -" .. g .. " 2>/dev/null") == true, "trial group " .. g .. " still alive")
    end
    local store = mb.store.open(db)
    local runs = store:runs { experiment = "sweep_term" }
    assert.are.equal(2, #runs)
    for _, r in ipairs(runs) do assert.truthy(r.status == "killed" or r.status == "failed", r.status) end
    store:close()
    os.remove(dir .. "/slow.flag")
  end)

  it("takes its trials with it when it is killed with SIGKILL: their runs show as killed", function()
    write(dir .. "/slow.flag", "")
    write(dir .. "/kill_spec.lua", 'return { script = "trial.lua", grid = { lr = { 0.7, 0.8 }, batch_size = { 32 } }, ' ..
                                   'metric = "val/accuracy", experiment = "sweep_kill", store = "' .. db .. '" }')
    local log = dir .. "/kill.out"
    local p = assert(io.popen("cd " .. shq(dir) .. " && " .. shq(BIN) .. " sweep kill_spec.lua --jobs 2 --store " ..
                              shq(db) .. " > " .. shq(log) .. " 2>&1 & echo $!"))
    local sweep_pid = assert(tonumber(p:read("a"):match("%d+")))
    p:close()
    local function text() local f = io.open(log); if not f then return "" end local s = f:read("a"); f:close(); return s end
    for _ = 1, 100 do
      if count(text(), "%] start ") == 2 then break end
      os.execute("sleep 0.1")
    end
    local trial_pids = {}
    for pid in text():gmatch("%(pid (%d+)%)") do trial_pids[#trial_pids + 1] = pid end
    assert.are.equal(2, #trial_pids, text())
    local store = mb.store.open(db)
    for _ = 1, 100 do
      if #store:runs { experiment = "sweep_kill", status = "running" } == 2 then break end
      os.execute("sleep 0.1")
    end
    os.execute("kill -9 " .. sweep_pid)
    local gone = false
    for _ = 1, 100 do
      gone = not os.execute("kill -0 " .. trial_pids[1] .. " 2>/dev/null") and
             not os.execute("kill -0 " .. trial_pids[2] .. " 2>/dev/null")
      if gone then break end
      os.execute("sleep 0.1")
    end
    assert.is_true(gone, "the trials outlived their sweep")
    -- each trial's `sleep 30` (a grandchild, in the trial's process group) outlives it: end it
    for _, pid in ipairs(trial_pids) do os.execute("kill -9 -" .. pid .. " 2>/dev/null") end
    store:reap()
    local runs = store:runs { experiment = "sweep_kill" }
    assert.are.equal(2, #runs)
    for _, r in ipairs(runs) do
      assert.are.equal("killed", r.status)
      assert.matches("is gone", r.error)
    end
    store:close()
    os.remove(dir .. "/slow.flag")
  end)

  it("counts a trial that exits 0 without a completed run as failed", function()
    write(dir .. "/norun.lua", "-- forgets to start a run\n")
    write(dir .. "/norun_spec.lua", 'return { script = "norun.lua", grid = { lr = { 1 } }, metric = "m", store = "' .. db .. '" }')
    local out, code = sweep_cmd("norun_spec.lua")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("recorded no completed run", 1, true), out)
    assert.truthy(out:find("0 completed now, 0 skipped (already completed), 1 failed", 1, true), out)
  end)

  it("reports usage and spec errors with exit codes 2 and 1", function()
    local out, code = sweep_cmd("")
    assert.are.equal(2, code, out)
    out, code = sweep_cmd("lr_bs.lua --jobs 0")
    assert.are.equal(2, code, out)
    write(dir .. "/broken.lua", "return { script = 'trial.lua', grid = { lr = { 1 } } }")
    out, code = sweep_cmd("broken.lua")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("broken.lua: field 'metric'", 1, true), out)
    out, code = sweep_cmd("absent.lua")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("cannot read sweep spec", 1, true), out)
  end)
end)

describe("experiments/sweep_lr.lua", function()
  it("is a valid spec over lr and batch size for baseline_vs_finetune", function()
    local root = os.getenv("MOONBERT_BIN") and os.getenv("MOONBERT_BIN"):match("^(.*)/build/bin/moonbert$") or "."
    local spec = sweep.load_spec(root .. "/experiments/sweep_lr.lua")
    assert.are.equal("experiments/baseline_vs_finetune.lua", spec.script)
    local trials = sweep.trials(spec)
    assert.are.equal(6, #trials)
    for _, t in ipairs(trials) do
      assert.truthy(t.options.lr and t.options.batch_size)
    end
  end)
end)
