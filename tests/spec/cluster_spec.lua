-- cluster_spec.lua: the results store on a real PostgreSQL server and sweeps on a real
-- SLURM cluster, both started here on loopback (tests/spec/services.lua).
--
-- References: psql's own counts of the rows (COUNT and COUNT DISTINCT), the writers'
-- own tallies of what they were told was written, squeue, the SQLite store of the
-- same runs. Each test skips with the reason only when its server cannot start.
-- Figures (row counts of the fault tests, timings) go to stderr as "cluster: ..." lines.
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local services = require "tests.spec.services"
local shq, write, read = support.q, support.write, support.read

local BIN = os.getenv("MOONBERT_BIN") or (lfs.currentdir() .. "/build/bin/moonbert")

local function note(fmt, ...)
  io.stderr:write("cluster: " .. string.format(fmt, ...) .. "\n")
end

local function sleep(s) os.execute("sleep " .. s) end

local function load1()
  local f = io.open("/proc/loadavg")
  local s = f and f:read("l") or "?"
  if f then f:close() end
  return s:match("^(%S+)") or "?"
end

-- Wait for pred() for at most secs; an error naming what when it never holds.
local function wait_for(secs, what, pred)
  local t0 = mb.store.now()
  while mb.store.now() - t0 < secs do
    if pred() then return end
    sleep(0.1)
  end
  error("timed out after " .. secs .. " s waiting for " .. what)
end

-- A writer process: opens the store, logs n metrics (step 1..n) one transaction each,
-- appending each acknowledged step to its tally file; exits 0 after finishing the run.
local WRITER = [[
local url, n, tally, pause, retry = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4] or "0"), tonumber(arg[5] or "60")
local store = mb.store.open(url, { retry_timeout = retry })
local run = store:start_run { experiment = "writers", name = tally:match("[^/]*$") }
local f = io.open(tally, "w")
f:setvbuf("no")
for i = 1, n do
  run:log_metric("train/loss", 1 / i, { step = i })
  f:write(i, "\n")
  if pause > 0 then os.execute("sleep " .. pause) end
end
run:finish()
f:write("reconnects ", store:reconnects(), "\n")
f:close()
store:close()
]]

-- Start count writers in the background; returns their pids.
local function start_writers(dir, url, count, n, pause, retry)
  write(dir .. "/writer.lua", WRITER)
  local pids = {}
  for k = 1, count do
    local tally = dir .. "/tally" .. k
    os.remove(tally)
    local cmd = string.format("%s run %s %s %d %s %s %s > %s 2>&1 & echo $!", shq(BIN), shq(dir .. "/writer.lua"),
      shq(url), n, shq(tally), tostring(pause or 0), tostring(retry or 60), shq(tally .. ".log"))
    pids[k] = support.sh(cmd):match("%d+")
  end
  return pids
end

local function alive(pid) return os.execute("kill -0 " .. pid .. " 2>/dev/null") end

local function acknowledged(dir, k)
  local f = io.open(dir .. "/tally" .. k)
  if not f then return 0, nil end
  local n, reconnects = 0, nil
  for line in f:lines() do
    if line:match("^%d+$") then n = math.max(n, tonumber(line)) end
    reconnects = tonumber(line:match("^reconnects (%d+)")) or reconnects
  end
  f:close()
  return n, reconnects
end

-- psql counts of the metrics table of a schema: rows, distinct (run, step).
local function pg_counts(pg, schema)
  local out = pg.sql("SELECT count(*), count(DISTINCT (run_id, step)) FROM " .. schema .. ".metrics")
  local rows, distinct = out:match("(%d+)|(%d+)")
  return tonumber(rows), tonumber(distinct)
end

local B = { describe = describe, it = it, before_each = before_each, after_each = after_each, assert = assert,
            pending = pending }

describe("on a real PostgreSQL server", function()
  local pg, why
  setup(function() pg, why = services.postgres() end)
  teardown(function() if pg then pg.remove() end end)

  require("tests.spec.store_api")("PostgreSQL", {
    location = function() return pg.new_schema() end,
    unavailable = function() return not pg and (why or "PostgreSQL did not start") end,
  }, B)

  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. shq(dir)) end)

  local function need()
    if not pg then pending(why or "PostgreSQL did not start") return false end
    if not lfs.attributes(BIN, "mode") then pending("no moonbert binary at " .. BIN) return false end
    return true
  end

  it("moonbert results lists, shows, ranks and exports runs of a PostgreSQL store, --store or MOONBERT_STORE", function()
    if not need() then return end
    local url = pg.new_schema()
    local store = mb.store.open(url)
    for i, v in ipairs { 0.7, 0.9, 0.8 } do
      local r = store:start_run { experiment = "pgcli", name = "r" .. i, params = { lr = i * 1e-5 } }
      r:log_metric("val/accuracy", v, { epoch = 1 })
      r:finish()
    end
    store:close()
    local out, err, code = support.sh(shq(BIN) .. " results list --store " .. shq(url))
    assert.are.equal(0, code, err)
    assert.are.equal(3, support.count(out, "pgcli%s+r%d%s+completed"))
    out, err, code = support.sh("MOONBERT_STORE=" .. shq(url) .. " " .. shq(BIN) ..
      " results best --experiment pgcli --metric val/accuracy")
    assert.are.equal(0, code, err)
    assert.matches("run %d+ %(r2%): val/accuracy = 0.9", out)
    assert.matches("lr%s+2e%-05", out)
    out, err, code = support.sh("MOONBERT_STORE=" .. shq(url) .. " " .. shq(BIN) .. " results export --format csv")
    assert.are.equal(0, code, err)
    assert.are.equal(4, support.count(out, "\n"))
  end)

  it("a wrong URL, a wrong password or a server that is down: one line, exit 1, no password anywhere", function()
    if not need() then return end
    local base = "postgresql://moonbert_pw@127.0.0.1:" .. pg.port .. "/moonbert"
    local cases = {
      { env = "PGPASSWORD=wrong-secret ", url = base, says = "password authentication failed" },
      { env = "", url = base, says = "no password supplied" },
      { env = "", url = "postgresql://postgres@127.0.0.1:" .. pg.port .. "/no_such_db", says = "does not exist" },
      { env = "", url = "postgresql://postgres@127.0.0.1:1/moonbert", says = "Connection refused" },
      { env = "", url = "postgresql://moonbert_pw:right-secret@127.0.0.1:" .. pg.port .. "/moonbert",
        says = "holds a password: give it in PGPASSWORD or ~/.pgpass" },
    }
    for _, c in ipairs(cases) do
      local out, err, code = support.sh(c.env .. shq(BIN) .. " results list --store " .. shq(c.url))
      assert.are.equal(1, code, out .. err)
      assert.are.equal("", out)
      assert.are.equal(1, support.count(err, "\n"), err)       -- one line
      assert.matches("^moonbert results: ", err)
      assert.matches(c.says, err, 1, true)
      assert.not_matches("traceback", err)
      assert.not_matches("secret", err)
    end
    local out, err, code = support.sh("PGPASSWORD=right " .. shq(BIN) .. " results list --store " .. shq(base))
    assert.are.equal(0, code, err)
    assert.matches("no runs", out)
  end)

  it("8 writer processes x 1,000 metrics give 8,000 rows (and the same on SQLite, timed)", function()
    if not need() then return end
    local url, schema = pg.new_schema()
    local function run_writers(location)
      local t0 = mb.store.now()
      local pids = start_writers(dir, location, 8, 1000)
      wait_for(240, "8 writers", function()
        for _, p in ipairs(pids) do if alive(p) then return false end end
        return true
      end)
      local secs = mb.store.now() - t0
      local acked = 0
      for k = 1, 8 do acked = acked + acknowledged(dir, k) end
      return secs, acked
    end
    local pg_secs, pg_acked = run_writers(url)
    local rows, distinct = pg_counts(pg, schema)
    note("8 writers x 1000 metrics on PostgreSQL: %.1f s; written %d, found %d, lost %d, duplicated %d (load %s)",
         pg_secs, pg_acked, rows, pg_acked - distinct, rows - distinct, load1())
    assert.are.equal(8000, pg_acked)
    assert.are.equal(8000, rows)
    assert.are.equal(8000, distinct)
    assert.are.equal("8", pg.sql("SELECT count(*) FROM " .. schema .. ".runs WHERE status = 'completed'"))
    local db = dir .. "/writers.db"
    local lite_secs, lite_acked = run_writers(db)
    local s = mb.store.open(db)
    local n = 0
    for _, r in ipairs(s:runs()) do n = n + #s:metrics(r.id) end
    s:close()
    note("8 writers x 1000 metrics on SQLite: %.1f s; written %d, found %d (load %s)", lite_secs, lite_acked, n, load1())
    assert.are.equal(8000, n)
  end)

  it("a writer killed with SIGKILL shows as killed and its rows stay", function()
    if not need() then return end
    local url, schema = pg.new_schema()
    local pids = start_writers(dir, url, 1, 100000)
    wait_for(30, "the writer to log 200 points", function() return acknowledged(dir, 1) >= 200 end)
    os.execute("kill -9 " .. pids[1])
    wait_for(10, "the writer to die", function() return not alive(pids[1]) end)
    local acked = acknowledged(dir, 1)
    local s = mb.store.open(url) -- opening reaps: the pid is gone on this host
    local r = s:runs { experiment = "writers" }[1]
    s:close()
    local rows, distinct = pg_counts(pg, schema)
    note("SIGKILL of a PostgreSQL writer: written %d, found %d, lost %d, duplicated %d; run %s",
         acked, rows, math.max(0, acked - distinct), rows - distinct, r.status)
    assert.are.equal("killed", r.status)
    assert.matches("process " .. pids[1] .. " on .* is gone", r.error)
    assert.are.equal(r.heartbeat, r.end_time)
    assert.is_true(distinct >= acked and distinct <= acked + 1, acked .. " acknowledged, " .. distinct .. " found")
    assert.are.equal(rows, distinct)
  end)

  it("a server restart mid-run: writers reconnect, no row lost or duplicated; a server that stays down fails clearly", function()
    if not need() then return end
    local url, schema = pg.new_schema()
    local pids = start_writers(dir, url, 2, 400, 0.005)
    wait_for(60, "the writers to get going", function() return acknowledged(dir, 1) >= 50 and acknowledged(dir, 2) >= 50 end)
    local _, err, code = pg.restart()
    assert.are.equal(0, code, err)
    wait_for(120, "the writers to finish", function() return not alive(pids[1]) and not alive(pids[2]) end)
    local a1, re1 = acknowledged(dir, 1)
    local a2, re2 = acknowledged(dir, 2)
    local rows, distinct = pg_counts(pg, schema)
    note("server restart mid-run (2 writers x 400): written %d, found %d, lost %d, duplicated %d; reconnects %s + %s",
         a1 + a2, rows, a1 + a2 - distinct, rows - distinct, tostring(re1), tostring(re2))
    assert.are.equal(800, a1 + a2, read(dir .. "/tally1.log") .. read(dir .. "/tally2.log"))
    assert.are.equal(800, rows)
    assert.are.equal(800, distinct)
    assert.is_true((re1 or 0) >= 1 and (re2 or 0) >= 1, "no writer saw the restart")
    assert.are.equal("2", pg.sql("SELECT count(*) FROM " .. schema .. ".runs WHERE status = 'completed'"))

    -- Now the server goes away for good: a writer retries for its retry_timeout (3 s), then fails clearly.
    pids = start_writers(dir, url, 1, 100000, 0, 3)
    wait_for(30, "the writer to get going", function() return acknowledged(dir, 1) >= 20 end)
    local t0 = mb.store.now()
    pg.stop()
    wait_for(30, "the writer to give up", function() return not alive(pids[1]) end)
    local waited = mb.store.now() - t0
    local log = read(dir .. "/tally1.log")
    pg.start()
    note("server down: the writer gave up after %.1f s: %s", waited, (log:match("[^\n]*did not come back[^\n]*") or log))
    assert.matches("lost the connection to the server and it did not come back within 3 s", log, 1, true)
    assert.is_true(waited >= 3 and waited < 20, waited)
  end)

  it("results push copies a node's runs once: pushing again adds nothing, a running run follows when it ends", function()
    if not need() then return end
    local url, schema = pg.new_schema()
    local node = dir .. "/node.db"
    local s = mb.store.open(node)
    local a = s:start_run { experiment = "node", params = { lr = 1e-4, layers = 2, note = "a" }, tags = { rack = "r1" } }
    for i = 1, 50 do a:log_metric("loss", 1 / i, { step = i, epoch = i / 10, split = "train" }) end
    a:log_confusion("validation", { { 3, 1 }, { 0, 4 } }, { "neg", "pos" }, { epoch = 1 })
    a:log_predictions("validation", { { label = 1, predicted = 1, loss = 0.1, probs = { 0.1, 0.9 } },
                                      { label = 0, predicted = 1, loss = 2.3, probs = { 0.4, 0.6 } } })
    a:log_artifact("model", "/models/a", { hash = "feed" })
    a:finish()
    local b = s:start_run { experiment = "node" }
    b:log_metric("loss", 9)
    b:fail("diverged")
    local c = s:start_run { experiment = "node" } -- still running in this process
    c:log_metric("loss", 1)
    local function push()
      local out, err, code = support.sh(shq(BIN) .. " results push --from " .. shq(node) .. " --to " .. shq(url))
      assert.are.equal(0, code, err)
      return out
    end
    assert.matches("pushed 2 runs .* %(0 already there, 1 still running", push())
    assert.matches("pushed 0 runs .* %(2 already there, 1 still running", push())
    c:finish()
    assert.matches("pushed 1 run .* %(2 already there, 0 still running", push())
    assert.matches("pushed 0 runs .* %(3 already there, 0 still running", push())
    local central = mb.store.open(url)
    local runs = central:runs { experiment = "node" }
    assert.are.equal(3, #runs)
    for i, r in ipairs(s:runs { experiment = "node" }) do
      local other = central:get_run(r.uuid)
      assert.are.equal(r.status, other.status)
      assert.are.equal(r.start_time, other.start_time)
      assert.are.equal(r.end_time, other.end_time)
      assert.are.same(s:params(r.id), central:params(other.id))
      assert.are.same(s:tags(r.id), central:tags(other.id))
      assert.are.same(s:metrics(r.id), central:metrics(other.id))
      assert.are.same(s:confusion(r.id), central:confusion(other.id))
      assert.are.same(s:predictions(r.id), central:predictions(other.id))
      assert.are.same(s:artifacts(r.id), central:artifacts(other.id))
    end
    local rows = pg.sql("SELECT count(*) FROM " .. schema .. ".metrics")
    note("push twice (3 runs, 52 metric rows): found %s rows in PostgreSQL, duplicated %d", rows, tonumber(rows) - 52)
    assert.are.equal("52", rows)
    central:close()
    s:close()
  end)

  -- ---- SLURM -------------------------------------------------------------------------

  describe("and a real SLURM cluster", function()
    local slurm, swhy
    setup(function() if pg then slurm, swhy = services.slurm() end end)
    teardown(function() if slurm then slurm.remove() end end)

    local TRIAL = [[
local args = require "moonbert.args"
local opts = args.parse(arg, {
  { "--lr", "X", "learning rate", type = "number" },
  { "--batch-size", "N", "batch size", type = "number" },
  { "--store", "PATH", "store" },
})
local store = mb.store.open(opts.store)
local run = store:start_run { experiment = "trial", params = { lr = opts.lr, batch_size = opts.batch_size } }
local here = arg[0]:match("^(.*)/[^/]*$") or "."
-- While slow.flag exists the trial waits (at most 30 s): the tests hold trials running with it.
for _ = 1, 300 do
  local f = io.open(here .. "/slow.flag")
  if not f then break end
  f:close()
  os.execute("sleep 0.1")
end
os.execute("sleep 0.5")
run:log_metric("val/accuracy", 1 - opts.lr + opts.batch_size / 1000)
run:finish()
]]

    local function need_slurm()
      if not need() then return false end
      if not slurm then pending(swhy or "SLURM did not start") return false end
      return true
    end

    local function setup_sweep(url, experiment)
      write(dir .. "/trial.lua", TRIAL)
      write(dir .. "/four.lua", 'return { script = "trial.lua", grid = { lr = { 0.1, 0.2 }, batch_size = { 32, 64 } }, ' ..
        'metric = "val/accuracy", experiment = "' .. experiment .. '" }')
    end

    local function sweep(args)
      return support.sh("cd " .. shq(dir) .. " && " .. slurm.env .. "MOONBERT_BIN=" .. shq(BIN) .. " " .. shq(BIN) ..
        " sweep four.lua " .. args)
    end

    it("runs a 4-trial sweep as one job array whose results rank with results best (and times it against local)", function()
      if not need_slurm() then return end
      local url = pg.new_schema()
      setup_sweep(url, "slurm4")
      local t0 = mb.store.now()
      local out, err, code = sweep("--backend slurm --jobs 2 --time 10 --cpus-per-task 1 --mem 100M " ..
                                   "--sbatch-arg=--comment=moonbert-spec --store " .. shq(url))
      local slurm_secs = mb.store.now() - t0
      assert.are.equal(0, code, out .. err)
      assert.matches("submitted job array %d+ %(4 tasks, %-%-array=0,1,2,3%%2%)", out)
      -- The options reached sbatch (SLURM keeps finished jobs for MinJobAge = 300 s).
      local job = out:match("submitted job array (%d+)")
      local shown = support.sh(slurm.env .. "scontrol show job " .. job)
      assert.matches("TimeLimit=00:10:00", shown)
      assert.matches("Comment=moonbert%-spec", shown)
      assert.matches("MinMemoryNode=100M", shown)
      assert.matches("4 trials: 4 completed now", out)
      out, err, code = support.sh(shq(BIN) .. " results best --experiment slurm4 --metric val/accuracy --store " .. shq(url))
      assert.are.equal(0, code, err)
      assert.matches("%(batch_size=64,lr=0.1%): val/accuracy = 0.964", out)
      out, err, code = sweep("--status --store " .. shq(url))
      assert.are.equal(0, code, err)
      assert.are.equal(4, support.count(out, "%-%s+completed"))
      -- The same sweep on the local backend, 2 processes at a time, for the timing.
      local local_url = pg.new_schema()
      t0 = mb.store.now()
      out, err, code = sweep("--jobs 2 --store " .. shq(local_url))
      local local_secs = mb.store.now() - t0
      assert.are.equal(0, code, out .. err)
      note("4-trial sweep, 2 at a time: SLURM %.1f s, local %.1f s (load %s)", slurm_secs, local_secs, load1())
      -- A SQLite store is refused with --backend slurm.
      out, err, code = sweep("--backend slurm --store " .. shq(dir .. "/x.db"))
      assert.are.equal(1, code)
      assert.matches("is a SQLite file: trials on several nodes cannot share it", err)
    end)

    it("resumes after scancel of half the array: a rerun submits only the trials not completed", function()
      if not need_slurm() then return end
      local url = pg.new_schema()
      setup_sweep(url, "resume4")
      write(dir .. "/slow.flag", "")
      local out, err, code = sweep("--backend slurm --jobs 2 --no-wait --store " .. shq(url))
      assert.are.equal(0, code, out .. err)
      local job = out:match("submitted job array (%d+)")
      assert.truthy(job, out)
      local store = mb.store.open(url)
      wait_for(30, "two trials to start their runs", function() return #store:runs { status = "running" } == 2 end)
      store:close()
      -- Cancel half of the array: task 1 (running) and task 3 (pending); then let 0 and 2 finish.
      os.execute(slurm.env .. "scancel " .. job .. "_1 " .. job .. "_3")
      os.remove(dir .. "/slow.flag")
      wait_for(60, "SLURM to finish the rest of the array", function()
        local q = support.sh(slurm.env .. "squeue -h -r -n moonbert-sweep-four -o %K")
        return not q:match("%d")
      end)
      out, err, code = sweep("--backend slurm --store " .. shq(url))
      assert.are.equal(0, code, out .. err)
      local done_before, submitted = out:match("%((%d+) already completed, 0 queued or running, (%d+) to submit%)")
      assert.are.same({ "2", "2" }, { done_before, submitted }, out)
      assert.matches("submitted job array %d+ %(2 tasks, %-%-array=1,3%)", out)
      assert.matches("4 trials: 2 completed now, 2 skipped", out)
      store = mb.store.open(url)
      assert.are.equal(4, #store:runs { experiment = "resume4", status = "completed" })
      local killed = store:runs { experiment = "resume4", status = "killed" }
      note("resume after scancel: %s trials completed before, %s resubmitted; %d runs killed by scancel",
           done_before, submitted, #killed)
      assert.are.equal(1, #killed) -- task 1, cancelled while it ran
      store:close()
    end)

    it("prunes with ASHA on the SLURM backend: the worse trial is marked pruned with its rung", function()
      if not need_slurm() then return end
      local url = pg.new_schema()
      -- 3 "epochs" of score = a * epoch / 3; the pruner is asked after each one
      write(dir .. "/asha_trial.lua", [[
local args = require "moonbert.args"
local o = args.parse(arg, { { "--a", "X", "", type = "number" }, { "--store", "PATH", "" } })
local run <close> = mb.store.open(o.store):start_run { experiment = "t", params = { a = o.a,
  threads = os.getenv("MOONBERT_THREADS") or "unset" } }
for epoch = 1, 3 do
  run:log_metric("score", o.a * epoch / 3, { epoch = epoch })
  local stop, rung = run:should_prune(epoch, o.a * epoch / 3)
  if stop then run:prune(rung) return end
end
run:finish()
]])
      -- one task at a time (%1), in index order: a = 0.9 first; a = 0.5 is then, at rung 0
      -- (epoch 1), one of 2 values and not the best, so it stops there (Optuna's rule)
      write(dir .. "/asha.lua", 'return { script = "asha_trial.lua", grid = { a = { 0.9, 0.5 } }, metric = "score", ' ..
        'mode = "max", experiment = "slurm_asha", pruner = { asha = { min_resource = 1, reduction_factor = 3 } } }')
      local out, err, code = support.sh("cd " .. shq(dir) .. " && " .. slurm.env .. shq(BIN) ..
        " sweep asha.lua --backend slurm --jobs 1 --cpus-per-task 1 --store " .. shq(url))
      assert.are.equal(0, code, out .. err)
      assert.matches("%[2/2%] pruned a=0.5 at rung 0", out)
      assert.matches("2 trials: 1 completed now, 0 skipped %(already completed%), 0 failed, 1 pruned", out)
      local store = mb.store.open(url)
      local by_a = {}
      for _, r in ipairs(store:runs { experiment = "slurm_asha" }) do by_a[tonumber(store:params(r.id).a)] = r end
      assert.are.equal("completed", by_a[0.9].status)
      assert.are.equal("pruned", by_a[0.5].status)
      assert.are.equal(0, by_a[0.5].pruned_rung)
      -- the task's MOONBERT_THREADS came from SLURM_CPUS_PER_TASK
      assert.are.equal("1", tostring(store:params(by_a[0.5].id).threads))
      store:close()
      out, err, code = support.sh("cd " .. shq(dir) .. " && " .. slurm.env .. shq(BIN) .. " sweep asha.lua --status --store " .. shq(url))
      assert.are.equal(0, code, err)
      assert.matches("pruned %(rung 0%)", out)
      -- the SLURM path writes sweep.json like the local one, so report --sweep finds the pruner
      local sj = require("dkjson").decode(read(dir .. "/results/sweeps/asha/sweep.json"))
      assert.are.equal("score", sj.metric)
      assert.are.equal(1, sj.pruner.asha.min_resource)
      -- max_trials on SLURM: the array gets at most that many tasks; a rerun submits the rest
      write(dir .. "/asha1.lua", 'return { script = "asha_trial.lua", grid = { a = { 0.9, 0.5 } }, metric = "score", ' ..
        'mode = "max", experiment = "slurm_asha1", max_trials = 1 }')
      local url1 = pg.new_schema()
      out, err, code = support.sh("cd " .. shq(dir) .. " && " .. slurm.env .. shq(BIN) .. " sweep asha1.lua --backend slurm --store " .. shq(url1))
      assert.are.equal(0, code, out .. err)
      assert.matches("budget: max_trials 1: 1 trials left for a later run of the sweep", out)
      assert.matches("submitted job array %d+ %(1 tasks, %-%-array=0%)", out)
      out, err, code = support.sh("cd " .. shq(dir) .. " && " .. slurm.env .. shq(BIN) .. " sweep asha1.lua --backend slurm --store " .. shq(url1))
      assert.are.equal(0, code, out .. err)
      assert.matches("%(1 tasks, %-%-array=1%)", out)
    end)

    -- TPE on SLURM (moonbert.sweep_slurm): x = 0.3, n = 2, c = "b" is the optimum; while slow.flag
    -- exists a trial sleeps (at most 20 s), so that a budget can run out under it.
    local TPE_TRIAL = [[
local args = require "moonbert.args"
local o = args.parse(arg, { { "--x", "X", "", type = "number" }, { "--n", "N", "", type = "number" },
                            { "--c", "C", "" }, { "--store", "PATH", "" } })
local run <close> = mb.store.open(o.store):start_run { experiment = "t", params = { x = o.x, n = o.n, c = o.c } }
local here = arg[0]:match("^(.*)/[^/]*$") or "."
for _ = 1, 200 do
  local f = io.open(here .. "/slow.flag")
  if not f then break end
  f:close()
  os.execute("sleep 0.1")
end
run:log_metric("loss", (o.x - 0.3) ^ 2 + (o.n - 2) ^ 2 / 10 + (o.c == "b" and 0 or 1))
run:finish()
]]
    local function tpe_spec(file, name, extra)
      write(dir .. "/" .. file, 'return { name = "' .. name .. '", script = "tpe_trial.lua", sampler = "tpe", seed = 5, ' ..
        'random = { x = { uniform = { 0, 1 } }, n = { int_uniform = { 0, 5 } }, c = { choice = { "a", "b" } } }, ' ..
        'tpe = { n_startup_trials = 3 }, metric = "loss", mode = "min", ' .. extra .. ' }')
      return mb.sweep.load_spec(dir .. "/" .. file)
    end
    local function in_dir(cmd) return support.sh("cd " .. shq(dir) .. " && " .. slurm.env .. cmd) end

    it("runs a TPE sweep: each array task draws its point from the finished trials in the store", function()
      if not need_slurm() then return end
      local url = pg.new_schema()
      write(dir .. "/tpe_trial.lua", TPE_TRIAL)
      local spec = tpe_spec("tpe6.lua", "tpe6", 'trials = 6, experiment = "slurm_tpe"')
      local t0 = mb.store.now()
      -- one task at a time: task k starts when trials 1 .. k - 1 have finished
      local out, err, code = in_dir(shq(BIN) .. " sweep tpe6.lua --backend slurm --jobs 1 --cpus-per-task 1 --store " .. shq(url))
      local secs = mb.store.now() - t0
      assert.are.equal(0, code, out .. err)
      assert.matches("sampler tpe %(seed 5, 3 random trials first%)", out)
      assert.matches("submitted job array %d+ %(6 tasks, %-%-array=0,1,2,3,4,5%%1%)", out)
      assert.matches("6 trials: 6 completed now, 0 skipped", out)
      -- The reference: search.draw_tpe, given the trials that had finished before each draw (numbers 1 .. k - 1)
      -- and trial number k; the task's own reservation runs are gone, each trial left one completed run.
      local search = require "moonbert.search"
      local store = mb.store.open(url)
      local list = search.trials_in_store(store, spec)
      assert.are.equal(6, #list)
      assert.are.equal(6, #store:runs { experiment = "slurm_tpe" })
      local depends = 0
      for k, t in ipairs(list) do
        assert.are.equal(k, t.number)
        assert.are.equal("completed", t.state)
        local before, taken = {}, {}
        for j = 1, k - 1 do before[j] = list[j]; taken[list[j].key] = true end
        local _, want = search.draw_tpe(spec, before, k, taken)
        assert.are.equal(want, t.key, "trial " .. k)
        -- after the 3 startup trials the point depends on the finished trials (a TPE draw, not the random one)
        local _, blind = search.draw_tpe(spec, {}, k, {})
        if k > 3 and blind ~= t.key then depends = depends + 1 end
      end
      assert.are.equal(3, depends)
      store:close()
      -- a local sweep of the same spec with one job draws the same points in the same order
      local local_url = pg.new_schema()
      out, err, code = in_dir(shq(BIN) .. " sweep tpe6.lua --jobs 1 --store " .. shq(local_url))
      assert.are.equal(0, code, out .. err)
      local s2 = mb.store.open(local_url)
      local there = search.trials_in_store(s2, spec)
      s2:close()
      for k = 1, 6 do assert.are.equal(list[k].key, there[k].key) end
      out, err, code = in_dir(shq(BIN) .. " sweep tpe6.lua --status --store " .. shq(url))
      assert.are.equal(0, code, err)
      assert.matches("\n6%s+" .. list[6].key:gsub("%p", "%%%0") .. "%s+%-%s+completed", out)
      -- a rerun submits nothing
      out, err, code = in_dir(shq(BIN) .. " sweep tpe6.lua --backend slurm --store " .. shq(url))
      assert.are.equal(0, code, out .. err)
      assert.matches("%(6 already completed, 0 queued or running, 0 to submit%)", out)
      note("TPE sweep on SLURM, 6 trials one at a time: %.1f s (load %s)", secs, load1())
      -- --status while the array waits: the running task's key, the queued ones not drawn yet
      local url2 = pg.new_schema()
      write(dir .. "/slow.flag", "")
      tpe_spec("tpe3.lua", "tpe3", 'trials = 3, experiment = "slurm_tpe3"')
      out, err, code = in_dir(shq(BIN) .. " sweep tpe3.lua --backend slurm --jobs 1 --no-wait --store " .. shq(url2))
      assert.are.equal(0, code, out .. err)
      local job = out:match("submitted job array (%d+)")
      store = mb.store.open(url2)
      wait_for(30, "trial 1 to start its run", function() return #store:runs { experiment = "slurm_tpe3", status = "running" } == 2 end)
      store:close()
      out, err, code = in_dir(shq(BIN) .. " sweep tpe3.lua --status --store " .. shq(url2))
      os.remove(dir .. "/slow.flag")
      os.execute(slurm.env .. "scancel " .. job)
      assert.are.equal(0, code, err)
      assert.matches("\n1%s+%S+=%S+%s+RUNNING %(job %d+%)%s+running", out) -- a running task is a job of its own
      assert.matches("\n2%s+%(drawn by its task%)%s+PENDING", out)
      assert.matches("\n3%s+%(drawn by its task%)%s+PENDING", out)
    end)

    it("stops a SLURM sweep at max_minutes: the array is cancelled, a late task does not run, a rerun goes on", function()
      if not need_slurm() then return end
      local url = pg.new_schema()
      write(dir .. "/tpe_trial.lua", TPE_TRIAL)
      write(dir .. "/slow.flag", "")
      tpe_spec("budget.lua", "budget", 'trials = 3, experiment = "slurm_budget", max_minutes = 0.05')
      local t0 = mb.store.now()
      local out, err, code = in_dir(shq(BIN) .. " sweep budget.lua --backend slurm --jobs 1 --store " .. shq(url))
      local secs = mb.store.now() - t0
      assert.are.equal(0, code, out .. err)
      assert.matches("budget spent %(max_minutes: 0.05 minutes passed%): cancelled the job array, 3 trials", out)
      assert.matches("3 trials: 0 completed now, 0 skipped %(already completed%), 0 failed, 3 stopped by the budget", out)
      assert.is_true(secs < 15, "took " .. secs .. " s")
      wait_for(30, "SLURM to drop the array", function()
        return not support.sh(slurm.env .. "squeue -h -r -n moonbert-sweep-budget -o %K"):match("%d")
      end)
      local store = mb.store.open(url) -- opening reaps the runs of the cancelled task
      local first
      for _, r in ipairs(store:runs { experiment = "slurm_budget" }) do
        assert.are_not.equal("completed", r.status)
        assert.are_not.equal("running", r.status)
        first = first or store:tags(r.id).trial
      end
      store:close()
      assert.truthy(first, "trial 1 had started")
      -- A task that starts after the deadline exits 0 without running its trial.
      os.remove(dir .. "/slow.flag")
      local before = support.count(support.sh(shq(BIN) .. " results list --experiment slurm_budget --store " .. shq(url)), "\n")
      out, err, code = in_dir("MOONBERT_SWEEP_DEADLINE=" .. string.format("%.0f", mb.store.now() - 1) .. " " .. shq(BIN) ..
                              " sweep budget.lua --trial 2 --store " .. shq(url))
      assert.are.equal(0, code, out .. err)
      assert.matches("trial 2 not started: the sweep's max_minutes budget was spent", err)
      assert.are.equal(before, support.count(support.sh(shq(BIN) .. " results list --experiment slurm_budget --store " .. shq(url)), "\n"))
      -- Without the budget a rerun runs all three; trial 1 is the point it had drawn, and the
      -- cancelled task's reservation is gone.
      tpe_spec("budget_rest.lua", "budget", 'trials = 3, experiment = "slurm_budget"')
      out, err, code = in_dir(shq(BIN) .. " sweep budget_rest.lua --backend slurm --jobs 1 --store " .. shq(url))
      assert.are.equal(0, code, out .. err)
      assert.matches("3 trials: 3 completed now", out)
      assert.matches("%[1/3%] done   " .. first:gsub("%p", "%%%0"), out)
      store = mb.store.open(url)
      for _, r in ipairs(store:runs { experiment = "slurm_budget" }) do assert.is_nil(store:tags(r.id).sweep_reservation) end
      store:close()
      note("max_minutes 0.05 on SLURM: the sweep returned after %.1f s (load %s)", secs, load1())
    end)

    it("Ctrl-C on a sweep waiting for its array cancels the array", function()
      if not need_slurm() then return end
      local url = pg.new_schema()
      setup_sweep(url, "ctrlc4")
      write(dir .. "/slow.flag", "")
      local log = dir .. "/sweep.out"
      local p = assert(io.popen("cd " .. shq(dir) .. " && setsid sh -c " ..
        shq(slurm.env .. shq(BIN) .. " sweep four.lua --backend slurm --store " .. shq(url) .. " > " .. shq(log) ..
            " 2>&1; echo rc=$? >> " .. shq(log)) .. " < /dev/null > /dev/null 2>&1 & echo $!"))
      local pgid = assert(tonumber(p:read("a"):match("%d+")))
      p:close()
      local function text() return io.open(log) and read(log) or "" end
      wait_for(30, "the array to be submitted", function() return text():match("submitted job array") end)
      sleep(0.5)
      os.execute("kill -INT -" .. pgid)
      wait_for(30, "the sweep to stop", function() return text():match("rc=%d+") end)
      assert.matches("interrupted: cancelled the job array", text())
      assert.matches("rc=130", text())
      wait_for(30, "SLURM to drop the array", function()
        return not support.sh(slurm.env .. "squeue -h -r -n moonbert-sweep-four -o %K"):match("%d")
      end)
    end)
  end)
end)
