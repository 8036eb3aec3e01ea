-- store_api.lua: the specs of mb.store's API, run on each backend (not a spec file itself).
--
--   require("tests.spec.store_api")("SQLite", { location = function(dir) return dir .. "/x.db" end, file = true },
--                                   { describe = describe, it = it, before_each = before_each,
--                                     after_each = after_each, assert = assert, pending = pending })
--
-- backend.location(dir) gives a fresh, empty store for each test (dir is a new
-- temporary folder); backend.file says that the store is a file beside dir
-- (artifact folders are checked then). tests/spec/store_spec.lua runs these on
-- SQLite, tests/spec/cluster_spec.lua on a PostgreSQL server it starts.
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local shq, write = support.q, support.write

local ROOT = lfs.currentdir()

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>/dev/null"))
  local out = f:read("a")
  f:close()
  return (out:gsub("%s+$", ""))
end

local function tmpdir()
  return sh("mktemp -d /tmp/moonbert-store-spec-XXXXXX")
end

-- busted: the spec file's describe, it, before_each, after_each, assert and pending
-- (busted gives them to spec files only, not to the modules they require).
return function(name, backend, busted)
local describe, before_each, after_each = busted.describe, busted.before_each, busted.after_each
local assert, pending = busted.assert, busted.pending
-- backend.unavailable() -> a reason when the backend's server did not start: each test is pending then.
local function it(title, fn)
  busted.it(title, function()
    local why = backend.unavailable and backend.unavailable()
    if why then pending(why) return end
    fn()
  end)
end
describe("mb.store on " .. name, function()
  local dir, store, location
  before_each(function()
    dir = tmpdir()
    if backend.unavailable and backend.unavailable() then return end
    location = backend.location(dir)
    store = mb.store.open(location)
  end)
  after_each(function()
    if store then store:close() end
    os.execute("rm -rf " .. shq(dir))
  end)



  it("records provenance: host, pid, seed, script and its sha256, git, hashes, device", function()
    local script = dir .. "/exp.lua"
    write(script, "print('hello')\n")
    local run = store:start_run { experiment = "prov", name = "r1", seed = 42, script = script,
                                  dataset_hash = "d1", model_hash = "m1", device = "cpu" }
    run:finish()
    local r = store:get_run(run.id)
    assert.equal("prov", r.experiment)
    assert.equal("r1", r.name)
    assert.equal("completed", r.status)
    assert.equal(42, r.seed)
    assert.equal(sh("hostname"), r.host)
    assert.is_true(r.pid > 0)
    assert.equal(script, r.script_path)
    local want = sh("sha256sum " .. shq(script)):match("^(%x+)")
    if want then assert.equal(want, r.script_hash) end
    assert.equal("d1", r.dataset_hash)
    assert.equal("m1", r.model_hash)
    assert.equal("cpu", r.device)
    assert.is_nil(r.git_commit) -- /tmp is not a git repository: tolerated, not an error
    assert.is_true(r.end_time >= r.start_time)
  end)

  it("records the git commit and dirty flag of the script's repository", function()
    local head = sh("git -C " .. shq(ROOT) .. " rev-parse HEAD")
    if not head:match("^%x+$") then
      pending("the test folder is not a git checkout")
      return
    end
    local dirty = sh("git -C " .. shq(ROOT) .. " status --porcelain --untracked-files=no") ~= ""
    local run = store:start_run { experiment = "git", script = ROOT .. "/tests/spec/store_spec.lua" }
    run:finish()
    local r = store:get_run(run.id)
    assert.equal(head, r.git_commit)
    assert.equal(dirty, r.git_dirty)
    local r2 = store:start_run { experiment = "git", git = false, script = ROOT .. "/tests/spec/store_spec.lua" }
    r2:finish()
    assert.is_nil(store:get_run(r2.id).git_commit)
  end)

  it("keeps param types, writes params once and names the conflict", function()
    local run = store:start_run { experiment = "p", params = { lr = 2e-5, epochs = 2, model = "distilbert",
                                                                freeze = true, layers = { 4, 5 }, opt = { b = 2, a = 1 } } }
    local p = store:params(run.id)
    assert.equal(2e-5, p.lr)
    assert.equal(2, p.epochs)
    assert.equal("integer", math.type(p.epochs))
    assert.equal("distilbert", p.model)
    assert.equal("true", p.freeze)
    assert.equal("[4,5]", p.layers)
    assert.equal('{"a":1,"b":2}', p.opt)
    run:log_param("lr", 2e-5) -- the same value again is fine
    local ok, err = pcall(function() run:log_param("lr", 1e-3) end)
    assert.is_false(ok)
    assert.matches("param 'lr' of run %d+ is already 2e%-05", err)
    assert.matches("0.001", err)
    ok, err = pcall(function() run:log_param("f", print) end)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'log_param'", err)
    run:finish()
  end)

  it("keeps every point of a metric series with step, epoch and split", function()
    local run = store:start_run { experiment = "series" }
    for epoch = 1, 3 do
      run:log_metric("val/accuracy", 0.5 + epoch / 10, { epoch = epoch, step = epoch * 100, split = "validation" })
    end
    run:log_metrics({ ["train/loss"] = 0.25, ["train/lr"] = 1e-5 }, { step = 300 })
    run:log_metric("val/loss", 0 / 0)
    local s = store:metrics(run.id, "val/accuracy")
    assert.equal(3, #s)
    for i, m in ipairs(s) do
      assert.near(0.5 + i / 10, m.value, 1e-15)
      assert.equal(i, m.epoch)
      assert.equal(i * 100, m.step)
      assert.equal("validation", m.split)
      assert.is_true(m.time > 0)
    end
    assert.equal(6, #store:metrics(run.id)) -- every key: 3 + 2 + 1
    local final = store:final_metrics(run.id)
    assert.near(0.8, final["val/accuracy"].value, 1e-15)
    assert.equal(300, final["train/loss"].step)
    assert.is_true(final["val/loss"].value ~= final["val/loss"].value) -- NaN comes back as NaN
    local ok, err = pcall(function() run:log_metric("x", "high") end)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'log_metric' %(number expected, got string%)", err)
    ok, err = pcall(function() run:log_metric("x", 1, { step = 1.5 }) end)
    assert.is_false(ok)
    assert.matches("step", err)
    run:finish()
  end)

  it("finds the best run by final value, max or min, completed only by default", function()
    local vals = { 0.7, 0.9, 0.8 }
    local ids = {}
    for i, v in ipairs(vals) do
      local run = store:start_run { experiment = "sweep", params = { i = i } }
      run:log_metric("val/accuracy", 0.99, { epoch = 1 }) -- an early peak: not the final value
      run:log_metric("val/accuracy", v, { epoch = 2 })
      run:finish()
      ids[i] = run.id
    end
    local failed = store:start_run { experiment = "sweep" }
    failed:log_metric("val/accuracy", 1.0)
    failed:fail("diverged")
    local best = store:best { experiment = "sweep", metric = "val/accuracy" }
    assert.equal(ids[2], best.id)
    assert.equal(0.9, best.value)
    assert.equal("val/accuracy", best.metric)
    assert.equal(ids[1], store:best { experiment = "sweep", metric = "val/accuracy", mode = "min" }.id)
    assert.equal(failed.id, store:best { experiment = "sweep", metric = "val/accuracy", status = "failed" }.id)
    local none, msg = store:best { experiment = "sweep", metric = "val/f1" }
    assert.is_nil(none)
    assert.matches("no completed run of experiment 'sweep' has metric 'val/f1'", msg)
    assert.has_error(function() store:best { experiment = "sweep", metric = "x", mode = "biggest" } end)
  end)

  it("filters runs by experiment and status", function()
    local a = store:start_run { experiment = "a" }; a:finish()
    local b = store:start_run { experiment = "b" }; b:fail("no")
    local c = store:start_run { experiment = "a" }
    assert.equal(3, #store:runs())
    assert.equal(2, #store:runs { experiment = "a" })
    local failed = store:runs { status = "failed" }
    assert.equal(1, #failed)
    assert.equal(b.id, failed[1].id)
    assert.equal("no", failed[1].error)
    assert.equal(c.id, store:runs { experiment = "a", status = "running" }[1].id)
    assert.has_error(function() store:runs { status = "done" } end)
    c:finish()
  end)

  it("stores confusion matrices with label names, from tables or tensors", function()
    local run = store:start_run { experiment = "cm" }
    local labels = { "sadness", "joy", "love" }
    run:log_confusion("validation", { { 5, 1, 0 }, { 0, 7, 2 }, { 1, 0, 4 } }, labels, { epoch = 1 })
    local cms = store:confusion(run.id, "validation")
    assert.equal(1, #cms)
    assert.same({ { 5, 1, 0 }, { 0, 7, 2 }, { 1, 0, 4 } }, cms[1].matrix)
    assert.same(labels, cms[1].labels)
    assert.equal(1, cms[1].epoch)
    local ok, err = pcall(function() run:log_confusion("validation", { { 1, 2 }, { 3 } }, nil) end)
    assert.is_false(ok)
    assert.matches("row 2", err)
    ok, err = pcall(function() run:log_confusion("validation", { { 1, 2 }, { 3, 4 } }, labels) end)
    assert.is_false(ok)
    assert.matches("3 label names", err)
    if mb.tensor and mb.tensor.from then
      local t = mb.tensor.from({ { 0.5, 0.5 }, { 0.25, 0.75 } })
      run:log_confusion("test", t, { "a", "b" })
      assert.same({ { 0.5, 0.5 }, { 0.25, 0.75 } }, store:confusion(run.id, "test")[1].matrix)
    end
    run:finish()
  end)

  it("stores predictions as rows or columns and sorts them by loss", function()
    local run = store:start_run { experiment = "preds" }
    run:log_predictions("validation", {
      { label = 1, predicted = 0, loss = 2.5, probs = { 0.9, 0.1 } },
      { label = 1, predicted = 1, loss = 0.1, probs = { 0.2, 0.8 } },
      { index = 10, label = 0, predicted = 0, loss = 0.7 },
    })
    local n = 5000
    local cols = { label = {}, predicted = {}, loss = {}, probs = {} }
    for i = 1, n do
      cols.label[i], cols.predicted[i], cols.loss[i] = i % 6, (i * 5) % 6, (i * 37 % 101) / 10
      cols.probs[i] = { i / n, 1 - i / n }
    end
    local t0 = mb.store.now()
    run:log_predictions("test", cols)
    local dt = mb.store.now() - t0
    assert.is_true(dt < 5, "5000 rows took " .. dt .. " s")
    local v = store:predictions(run.id, "validation")
    assert.equal(3, #v)
    assert.same({ 1, 2, 10 }, { v[1].index, v[2].index, v[3].index })
    assert.same({ 0.9, 0.1 }, v[1].probs)
    local worst = store:predictions(run.id, "test", { by_loss = true, limit = 10 })
    assert.equal(10, #worst)
    for i = 2, 10 do assert.is_true(worst[i - 1].loss >= worst[i].loss) end
    assert.equal(n, #store:predictions(run.id, "test"))
    local ok, err = pcall(function() run:log_predictions("x", { { label = 1 } }) end)
    assert.is_false(ok)
    assert.matches("row 1 has no 'predicted'", err)
    if mb.tensor and mb.tensor.from then
      run:log_predictions("tensors", { predicted = mb.tensor.from({ 2, 0 }, { dtype = "int32" }),
                                       probs = mb.tensor.from({ { 0.25, 0.75 }, { 0.5, 0.5 } }) })
      local t = store:predictions(run.id, "tensors")
      assert.equal(2, t[1].predicted)
      assert.same({ 0.25, 0.75 }, t[1].probs)
    end
    run:finish()
  end)

  it("hashes artifacts, files and folders", function()
    local f = dir .. "/weights.bin"
    write(f, string.rep("x", 1000))
    lfs.mkdir(dir .. "/sub") -- there already beside a SQLite store
    write(dir .. "/sub/notes.txt", "n")
    local run = store:start_run { experiment = "art" }
    local h = run:log_artifact("model", f)
    run:log_artifact("folder", dir .. "/sub")
    if backend.file then
      local adir = run:artifact_dir()
      assert.equal(dir .. "/sub/dir/runs/" .. run.id, adir)
      assert.equal("directory", lfs.attributes(adir, "mode"))
    end
    local arts = store:artifacts(run.id)
    assert.equal(2, #arts)
    assert.equal(h, arts[1].hash)
    assert.equal(mb.store.sha256(string.rep("x", 1000)), h)
    assert.is_nil(arts[2].hash)
    assert.equal(64, #mb.store.hash_path(dir .. "/sub"))
    local before = mb.store.hash_path(dir)
    write(dir .. "/other.txt", "y")
    assert.are_not.equal(before, mb.store.hash_path(dir))
    run:finish()
  end)

  it("with_run finishes on return and fails with the error text on error", function()
    local a, b = store:with_run({ experiment = "wr" }, function(run)
      run:log_metric("x", 1)
      return 1, 2
    end)
    assert.same({ 1, 2 }, { a, b })
    local ok, err = pcall(store.with_run, store, { experiment = "wr" }, function(run)
      run:log_metric("x", 2)
      local t = nil
      return t.field -- a runtime error, not error()
    end)
    assert.is_false(ok)
    assert.matches("attempt to index", err)
    local obj = { code = 7 }
    local ok2, err2 = pcall(store.with_run, store, { experiment = "wr" }, function() error(obj) end)
    assert.is_false(ok2)
    assert.equal(obj, err2) -- the caller gets the same error object back
    local runs = store:runs { experiment = "wr" }
    assert.equal("completed", runs[1].status)
    assert.equal("failed", runs[2].status)
    assert.matches("attempt to index a nil value", runs[2].error)
    assert.equal("failed", runs[3].status)
  end)

  it("a <close> run completes on scope exit and fails with the error that left the scope", function()
    local id1, id2
    do
      local run <close> = store:start_run { experiment = "close" }
      id1 = run.id
    end
    local ok = pcall(function()
      local run <close> = store:start_run { experiment = "close" }
      id2 = run.id
      error("out of patience")
    end)
    assert.is_false(ok)
    assert.equal("completed", store:get_run(id1).status)
    local r = store:get_run(id2)
    assert.equal("failed", r.status)
    assert.matches("out of patience", r.error)
  end)

  it("a forgotten run is marked failed when collected", function()
    local id = store:start_run { experiment = "gc" }.id
    collectgarbage()
    collectgarbage()
    local r = store:get_run(id)
    assert.equal("failed", r.status)
    assert.matches("never ended", r.error)
  end)

  it("closing the store fails its unended runs (with the error leaving a <close> scope)", function()
    local path = location
    local r1 = store:start_run { experiment = "close-store" }
    local done = store:start_run { experiment = "close-store" }
    done:finish()
    store:close()
    local id2
    local ok = pcall(function()
      local s2 <close> = mb.store.open(path)
      local run = s2:start_run { experiment = "close-store" } -- no <close>: the store's close ends it
      id2 = run.id
      error("disk full")
    end)
    assert.is_false(ok)
    store = mb.store.open(path)
    local a = store:get_run(r1.id)
    assert.equal("failed", a.status)
    assert.matches("closed before the run was ended", a.error)
    assert.equal("completed", store:get_run(done.id).status)
    local b = store:get_run(id2)
    assert.equal("failed", b.status)
    assert.matches("disk full", b.error)
  end)

  it("finish twice is an error, fail after finish is a no-op", function()
    local run = store:start_run { experiment = "twice" }
    run:finish()
    local ok, err = pcall(run.finish, run)
    assert.is_false(ok)
    assert.matches("already completed", err)
    assert.is_false(run:fail("late"))
    assert.equal("completed", run:status())
  end)

  it("gives every run a UUID, found again by get_run", function()
    local a = store:start_run { experiment = "uuid" }
    local b = store:start_run { experiment = "uuid" }
    local ua, ub = a:uuid(), b:uuid()
    assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", ua)
    assert.are_not.equal(ua, ub)
    assert.equal(ua, store:get_run(a.id).uuid)
    assert.equal(b.id, store:get_run(ub).id)
    local none, msg = store:get_run("00000000-0000-4000-8000-000000000000")
    assert.is_nil(none)
    assert.matches("no run with UUID", msg)
    a:finish(); b:finish()
  end)

  it("prunes a run at a rung: run:prune(r) or run:finish('pruned', {rung = r})", function()
    local a = store:start_run { experiment = "asha" }
    local b = store:start_run { experiment = "asha" }
    local c = store:start_run { experiment = "asha" }
    a:prune(1)
    b:finish("pruned", { rung = 0 })
    c:finish()
    local ra, rb = store:get_run(a.id), store:get_run(b.id)
    assert.same({ "pruned", 1 }, { ra.status, ra.pruned_rung })
    assert.same({ "pruned", 0 }, { rb.status, rb.pruned_rung })
    assert.is_nil(store:get_run(c.id).pruned_rung)
    assert.equal(2, #store:runs { experiment = "asha", status = "pruned" })
    local ok, err = pcall(a.finish, a)
    assert.is_false(ok)
    assert.matches("already pruned", err)
    assert.has_error(function() store:start_run { experiment = "asha" }:finish("pruned") end)
    assert.has_error(function() store:start_run { experiment = "asha" }:finish("sleeping") end)
  end)

  it("interrupts a run (not alive, not killed) and resumes it", function()
    local run = store:start_run { experiment = "preempt" }
    run:log_metric("loss", 1.0, { step = 1 })
    run:interrupt("preempted by SLURM")
    assert.equal("interrupted", run:status())
    -- The collector and closing the store leave an interrupted run as it is.
    collectgarbage(); collectgarbage()
    store:reap { stale_after = 0.001 }
    assert.equal("interrupted", store:get_run(run.id).status)
    local again = store:resume_run(run.id)
    assert.equal(run.id, again.id)
    assert.equal("running", again:status())
    again:log_metric("loss", 0.5, { step = 2 })
    again:finish()
    local events = store:run_events(run.id)
    assert.equal(2, #events)
    assert.same({ "interrupted", "resumed" }, { events[1].kind, events[2].kind })
    assert.equal("preempted by SLURM", events[1].message)
    assert.is_true(events[2].time >= events[1].time)
    assert.equal(2, #store:metrics(run.id, "loss"))
    local ok, err = pcall(store.resume_run, store, run.id)
    assert.is_false(ok)
    assert.matches("only an interrupted or killed run can be resumed", err)
  end)

  it("a resumed run that logs its rows outside the steps again ends with one of each", function()
    local run = store:start_run { experiment = "resume" }
    run:log_metric("data/n", 96, { split = "train" })
    run:log_metric("train/loss", 1.5, { step = 1 })
    run:log_metric("test/accuracy", 0.5, { split = "test" })
    run:log_metric("val/accuracy", 0.4, { split = "validation", epoch = 1 })
    run:log_confusion("test", { { 1, 0 }, { 0, 1 } }, { "a", "b" }, { epoch = 2 })
    run:log_artifact("model", "/models/m", { hash = "h1" })
    run:log_artifact("log", "/logs/a", { hash = "h2" })
    run:interrupt("preempted")
    local again = store:resume_run(run.id)
    again:log_metric("data/n", 96, { split = "train" })         -- logged again: replaces
    again:log_metric("test/accuracy", 0.75, { split = "test" }) -- logged again, another value: replaces
    again:log_metric("val/accuracy", 0.6, { split = "validation", epoch = 2 }) -- another epoch: a new row
    again:log_metric("data/n", 96, { split = "validation" })    -- another split: a new row
    again:log_confusion("test", { { 2, 0 }, { 0, 2 } }, { "a", "b" }, { epoch = 2 })
    again:log_artifact("model", "/models/m", { hash = "h3" })
    assert.equal(2, #store:metrics(run.id, "test/accuracy")) -- both until the run ends
    again:finish()
    local function values(key)
      local out = {}
      for _, m in ipairs(store:metrics(run.id, key)) do out[#out + 1] = string.format("%s=%g", m.split or "", m.value) end
      table.sort(out)
      return out
    end
    assert.same({ "train=96", "validation=96" }, values("data/n"))
    assert.same({ "test=0.75" }, values("test/accuracy"))
    assert.same({ "validation=0.4", "validation=0.6" }, values("val/accuracy"))
    assert.same({ "=1.5" }, values("train/loss"))
    local cms = store:confusion(run.id)
    assert.equal(1, #cms)
    assert.equal(2, cms[1].matrix[1][1])
    local arts = {}
    for _, a in ipairs(store:artifacts(run.id)) do arts[#arts + 1] = a.kind .. " " .. a.hash end
    table.sort(arts)
    assert.same({ "log h2", "model h3" }, arts)
  end)

  it("a run that was never resumed keeps every row it logged", function()
    local run = store:start_run { experiment = "resume" }
    run:log_metric("test/accuracy", 0.5, { split = "test" })
    run:log_metric("test/accuracy", 0.6, { split = "test" })
    run:finish()
    assert.equal(2, #store:metrics(run.id, "test/accuracy"))
  end)

  it("truncate_after removes what a resume logs again: metric rows after the step, matrices after the epoch", function()
    local run = store:start_run { experiment = "resume" }
    local other = store:start_run { experiment = "resume" }
    for step = 1, 10 do
      run:log_metrics({ ["train/loss"] = 1 / step, ["train/lr"] = step * 1e-3 }, { step = step, epoch = step / 5 })
      other:log_metric("train/loss", step, { step = step })
    end
    run:log_metric("test/accuracy", 0.5) -- no step: stays
    run:log_confusion("validation", { { 1, 0 }, { 0, 1 } }, { "a", "b" }, { epoch = 1 })
    run:log_confusion("validation", { { 2, 0 }, { 0, 2 } }, { "a", "b" }, { epoch = 2 })
    -- the checkpoint was at step 6 (epoch 1.2): steps 7..10 of both keys and epoch 2's matrix go
    assert.equal(9, run:truncate_after(6, 1.2))
    local loss = store:metrics(run.id, "train/loss")
    assert.equal(6, #loss)
    for i, m in ipairs(loss) do assert.equal(i, m.step); assert.equal(1 / i, m.value) end
    assert.equal(6, #store:metrics(run.id, "train/lr"))
    assert.equal(1, #store:metrics(run.id, "test/accuracy"))
    local cms = store:confusion(run.id, "validation")
    assert.equal(1, #cms)
    assert.equal(1, cms[1].epoch)
    assert.equal(10, #store:metrics(other.id, "train/loss")) -- another run's rows are not touched
    assert.equal(0, run:truncate_after(6)) -- nothing left after 6; without an epoch, matrices stay
    assert.equal(1, #store:confusion(run.id, "validation"))
    -- one run holding two trainings under prefixes: a prefix scopes the removal
    for step = 7, 9 do
      run:log_metric("a/train/loss", step, { step = step })
      run:log_metric("b/train/loss", step, { step = step })
    end
    run:log_confusion("a/validation", { { 1 } }, { "x" }, { epoch = 3 })
    run:log_confusion("b/validation", { { 1 } }, { "x" }, { epoch = 3 })
    assert.equal(4, run:truncate_after(6, 2, "a/")) -- 3 metric rows and 1 matrix
    assert.equal(0, #store:metrics(run.id, "a/train/loss"))
    assert.equal(3, #store:metrics(run.id, "b/train/loss"))
    assert.equal(0, #store:confusion(run.id, "a/validation"))
    assert.equal(1, #store:confusion(run.id, "b/validation"))
    local ok, err = pcall(function() return run:truncate_after(-1) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'truncate_after' %(step must be >= 0%)", err)
    run:finish(); other:finish()
  end)

  it("gives clear errors for bad arguments and closed stores", function()
    assert.has_error(function() store:start_run {} end,
      "bad argument #1 to 'start_run' (field 'experiment' (a non-empty string) is required)")
    assert.has_error(function() store:start_run { experiment = "x", lr = 1 } end,
      "bad argument #1 to 'start_run' (unknown field 'lr')")
    local none, msg = store:get_run(999)
    assert.is_nil(none)
    assert.matches("no run 999", msg)
    local run = store:start_run { experiment = "closed" }
    run:finish()
    store:close()
    local ok, err = pcall(run.log_metric, run, "x", 1)
    assert.is_false(ok)
    assert.matches("closed", err)
    ok, err = pcall(store.runs, store)
    assert.is_false(ok)
    assert.matches("results store is closed", err)
    store = nil
  end)
end)
end
