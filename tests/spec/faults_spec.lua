-- faults_spec.lua: a resumed run is the run. Step checkpoints (mb.trainer.fit save_steps) and
-- their manifest (moonbert.checkpoint); a training process killed with SIGKILL at 20 random
-- moments and resumed from its newest checkpoint ends with the uninterrupted run's parameters,
-- bit for bit; a damaged newest checkpoint (truncated, one byte flipped, manifest cut) is
-- skipped with a warning naming it; SIGTERM checkpoints, exits 143 and resumes to the same end;
-- a second signal ends the process at once.
--
-- Everything runs on a made-up vocabulary and data set and a random one-layer DistilBERT
-- (dim 16, dropout on), so nothing here needs ../shared. The processes are `moonbert run
-- tests/spec/faults/child.lua`, all with MOONBERT_THREADS=1 (same threads, same numbers).
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local ckpt = require "moonbert.checkpoint"
local signal = require("moonbert.core").signal
local q = support.q

local BIN = os.getenv("MOONBERT_BIN")
local have_bin = BIN and io.open(BIN, "r") ~= nil
local CHILD = "tests/spec/faults/child.lua"
local STEPS = 24 -- 96 texts, batch 8, 2 epochs

local make_data = require("tests.spec.faults.data").make_data

-- `moonbert run child.lua` in the background: returns the pipe and the process id.
local function spawn(work, ck, out, opts)
  local args = {}
  for k, v in pairs(opts or {}) do args[#args + 1] = k .. "=" .. tostring(v) end
  table.sort(args)
  local cmd = string.format("MOONBERT_THREADS=1 exec %s run %s %s %s %s %s 2>&1", q(BIN), q(CHILD), q(work), q(ck),
    q(out), table.concat(args, " "))
  local p = assert(io.popen("echo pid $$; " .. cmd)) -- popen's shell execs the child: $$ is its pid
  local pid = tonumber(p:read("l"):match("^pid (%d+)$"))
  return p, pid
end

-- Read a child's lines until fn(line, step) returns true (or the output ends); returns the
-- lines read so far.
local function read_until(p, fn)
  local seen = {}
  for line in p:lines() do
    seen[#seen + 1] = line
    local s = tonumber(line:match("step (%d+)/%d+"))
    if fn(line, s) then break end
  end
  return seen
end

local function finish(p)
  local rest = p:read("a")
  local _, how, code = p:close()
  return rest, how, code
end

-- A temporary folder on tmpfs where there is one: fsync costs nothing there, and a SIGKILL
-- tests the same thing on any file system (the page cache outlives the process).
local function fast_tmpdir()
  if lfs.attributes("/dev/shm", "mode") == "directory" then
    local out, _, code = support.sh("mktemp -d -p /dev/shm moonbert_faults_XXXXXX")
    if code == 0 then return (out:gsub("%s+$", "")) end
  end
  return support.tmpdir()
end

local function sha(path) return (mb.store.sha256(support.read(path))) end

-- The checkpoint folder of run id in store, as the child (moonbert.experiment) chose it.
local function ex_checkpoint_dir(store, id)
  local run = { artifact_dir = function() return store:artifact_root() .. "/runs/" .. id end }
  return require("moonbert.experiment").checkpoint_options(run, {}).checkpoint_dir
end

describe("checkpoints", function()
  local work
  setup(function()
    work = support.tmpdir()
    make_data(work)
  end)
  teardown(function() ckpt.rmtree(work) end)

  it("a manifest lists every file; verify names a truncated, flipped or missing file", function()
    local root = work .. "/unit"
    local dir = ckpt.save(root, 5, function(tmp)
      support.write(tmp .. "/a.bin", string.rep("x", 1000))
      lfs.mkdir(tmp .. "/sub")
      support.write(tmp .. "/sub/b.json", "{}")
    end)
    assert.are.equal(root .. "/checkpoint-5", dir)
    local m = require("moonbert.core").checkpoint.parse_manifest(support.read(dir .. "/manifest.sha256"))
    assert.are.same({ "a.bin", "sub/b.json" }, { m[1].path, m[2].path })
    assert.are.equal(sha(dir .. "/a.bin"), m[1].sha256)
    assert.is_true(ckpt.verify(dir))
    -- no temporary folder is left behind
    for name in lfs.dir(root) do assert.is_falsy(name:match("^%.tmp"), name) end

    local a = support.read(dir .. "/a.bin")
    support.write(dir .. "/a.bin", a:sub(1, 500) .. "y" .. a:sub(502))
    local ok, err = ckpt.verify(dir)
    assert.is_nil(ok)
    assert.is_truthy(err:find("a.bin", 1, true), err)
    support.write(dir .. "/a.bin", a:sub(1, 999))
    ok, err = ckpt.verify(dir)
    assert.is_truthy(not ok and err:find("a.bin", 1, true), err)
    os.remove(dir .. "/sub/b.json")
    support.write(dir .. "/a.bin", a)
    ok, err = ckpt.verify(dir)
    assert.is_truthy(not ok and err:find("sub/b.json", 1, true) and err:find("missing", 1, true), err)
  end)

  it("save_total_limit keeps the newest K; a failing writer leaves the earlier checkpoints as they were", function()
    local root = work .. "/keep"
    for s = 1, 5 do ckpt.save(root, s * 10, function(tmp) support.write(tmp .. "/x", tostring(s)) end, { keep = 2 }) end
    local names = {}
    for _, c in ipairs(ckpt.list(root)) do names[#names + 1] = c.name end
    assert.are.same({ "checkpoint-50", "checkpoint-40" }, names)
    local ok, err = pcall(ckpt.save, root, 60, function(tmp)
      support.write(tmp .. "/x", "half")
      error("disk full (simulated)")
    end, { keep = 2 })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("checkpoint-60", 1, true), err)
    assert.are.equal("checkpoint-50", ckpt.list(root)[1].name)
    assert.are.equal(root .. "/checkpoint-50", (ckpt.newest(root)))
    for name in lfs.dir(root) do assert.is_falsy(name:match("^%.tmp"), name) end
  end)
end)

describe("fit in this process", function()
  local work, tok, split, config
  setup(function() work, tok, split, config = require("tests.spec.faults.data").workspace() end)
  teardown(function() ckpt.rmtree(work) end)

  local function fit(model, o)
    local t = { model = model, tokenizer = tok, train = split, eval = false, epochs = 2, batch_size = 8, lr = 1e-3,
                seed = 11, progress = false }
    for k, v in pairs(o) do t[k] = v end
    return mb.trainer.fit(t)
  end
  local function new_model() return mb.distilbert.new(config, { seed = 7, id2label = mb.data.EMOTION_LABELS }) end
  local function same(a, b)
    local x, y = a:parameter_block().params:totable(), b:parameter_block().params:totable()
    for i = 1, #x do if x[i] ~= y[i] then return false end end
    return #x == #y
  end

  it("exit_on_signal = false: a SIGTERM mid-epoch returns interrupted; the resume ends bit-identical", function()
    local ref = new_model()
    fit(ref, {})
    local model = new_model()
    local events = {}
    local res = fit(model, { checkpoint_dir = work .. "/ip", exit_on_signal = false, log_every = 1,
      run = function(event, t)
        events[#events + 1] = event
        if event == "log" and t.step == 9 then signal.kill(signal.pid(), "SIGTERM") end
      end })
    assert.are.equal("SIGTERM", res.interrupted)
    assert.are.equal(143, res.exit_code)
    assert.are.equal(9, res.steps)
    assert.are.equal("interrupted", events[#events - 1])
    assert.are.equal(9, ckpt.list(work .. "/ip")[1].step)
    signal.clear()
    local again = new_model()
    local res2 = fit(again, { checkpoint_dir = work .. "/ip", resume = true })
    assert.are.equal(24, res2.steps)
    assert.is_true(same(ref, again))
  end)

  it("SIGINT (Ctrl-C) is handled the same way, with exit code 130", function()
    local res = fit(new_model(), { checkpoint_dir = work .. "/int", exit_on_signal = false, log_every = 1,
      run = function(event, t)
        if event == "log" and t.step == 15 then signal.kill(signal.pid(), "SIGINT") end
      end })
    signal.clear()
    assert.are.same({ "SIGINT", 130, 15 }, { res.interrupted, res.exit_code, res.steps })
    assert.is_true(ckpt.verify(work .. "/int/checkpoint-15"))
  end)

  it("two trainings in one store run (experiment prefixes): resuming one leaves the other's rows whole", function()
    local ex = require "moonbert.experiment"
    local store = mb.store.open(work .. "/two.db")
    local run = store:start_run { experiment = "two", git = false }
    -- "a" runs 24 steps; "b" is stopped at step 9 (checkpoint) after logging, then resumed
    fit(new_model(), { run = ex.prefixed_run(run, "a"), log_every = 1 })
    local n_a = #store:metrics(run.id, "a/train/loss")
    assert.are.equal(24, n_a)
    local res = fit(new_model(), { run = ex.prefixed_run(run, "b"), log_every = 1, checkpoint_dir = work .. "/two-b",
      save_steps = 5, stop_after_epoch = 1 }) -- checkpoint-12 at the epoch end, rows up to 12
    assert.is_true(res.stopped)
    for step = 13, 14 do run:log_metric("b/train/loss", 0, { step = step }) end -- as a killed run left them
    fit(new_model(), { run = ex.prefixed_run(run, "b"), log_every = 1, checkpoint_dir = work .. "/two-b",
      save_steps = 5, resume = true })
    local steps = {}
    for _, m in ipairs(store:metrics(run.id, "b/train/loss")) do steps[#steps + 1] = m.step end
    local want = {}
    for i = 1, 24 do want[i] = i end
    assert.are.same(want, steps) -- 13 and 14 once, from the resumed training
    assert.are.equal(n_a, #store:metrics(run.id, "a/train/loss"))
    run:finish()
    store:close()
  end)

  it("resuming from a checkpoint that does not verify is refused, naming it", function()
    local dir = ckpt.list(work .. "/ip")[1].dir
    support.write(dir .. "/trainer_state.json", "{}")
    local ok, err = pcall(fit, new_model(), { resume = dir })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find(dir .. " does not verify", 1, true), tostring(err))
    assert.is_truthy(tostring(err):find("trainer_state.json", 1, true), tostring(err))
  end)
end)

local describe_proc = have_bin and describe or function(name) pending(name .. " (MOONBERT_BIN not built)") end

describe_proc("a resumed run is the run", function()
  local work, ref_sha
  setup(function()
    work = fast_tmpdir()
    make_data(work)
    -- the uninterrupted run
    local p = spawn(work, work .. "/ref-ckpt", work .. "/ref", { save_steps = 5 })
    local rest, how, code = finish(p)
    assert.are.equal("exit", how, rest)
    assert.are.equal(0, code, rest)
    ref_sha = sha(work .. "/ref/model.safetensors")
  end)
  teardown(function() ckpt.rmtree(work) end)

  it("mid-epoch checkpoints: every save_steps steps, with a manifest that verifies", function()
    local names = {}
    for _, c in ipairs(ckpt.list(work .. "/ref-ckpt")) do
      names[#names + 1] = c.step
      assert.is_true(ckpt.verify(c.dir))
    end
    table.sort(names)
    -- steps 5, 10, 15, 20 mid-epoch; 12 and 24 at the epoch ends
    assert.are.same({ 5, 10, 12, 15, 20, 24 }, names)
  end)

  it("SIGKILL at 20 random moments: each resume ends bit-identical to the uninterrupted run", function()
    local differ = {}
    for i = 1, 20 do
      math.randomseed(1000 + i)
      local kill_at = math.random(1, STEPS - 1)
      local ck, out = string.format("%s/k%d-ckpt", work, i), string.format("%s/k%d", work, i)
      local p, pid = spawn(work, ck, out, { save_steps = 1 + i % 4, sleep = 0.01 })
      read_until(p, function(_, s) return s and s >= kill_at end)
      assert.is_true(signal.kill(pid, "SIGKILL"))
      local _, how, code = finish(p)
      assert.are.same({ "signal", 9 }, { how, code }, "run " .. i .. " ended before the kill")
      local p2 = spawn(work, ck, out, { save_steps = 1 + i % 4, resume = 1 })
      local rest, how2, code2 = finish(p2)
      assert.are.equal(0, code2, rest)
      assert.are.equal("exit", how2)
      assert.is_truthy(rest:find("resumed from", 1, true) or rest:find("starting from scratch", 1, true), rest)
      if sha(out .. "/model.safetensors") ~= ref_sha then differ[#differ + 1] = i .. " (killed at step " .. kill_at .. ")" end
    end
    assert.are.same({}, differ)
  end)

  it("a damaged newest checkpoint is skipped with a warning; the resume falls back and still ends the same", function()
    local damage = {
      truncate = function(dir)
        local s = support.read(dir .. "/model.safetensors")
        support.write(dir .. "/model.safetensors", s:sub(1, #s - 7))
      end,
      flip = function(dir)
        local s = support.read(dir .. "/optimizer.safetensors")
        local i = #s // 2
        support.write(dir .. "/optimizer.safetensors", s:sub(1, i - 1) .. string.char(s:byte(i) ~ 1) .. s:sub(i + 1))
      end,
      manifest = function(dir)
        local s = support.read(dir .. "/manifest.sha256")
        support.write(dir .. "/manifest.sha256", s:sub(1, #s - 20))
      end,
      partial = function(dir) os.remove(dir .. "/trainer_state.json") end,
    }
    for _, how in ipairs { "truncate", "flip", "manifest", "partial" } do
      local ck, out = work .. "/d-" .. how .. "-ckpt", work .. "/d-" .. how
      local p, pid = spawn(work, ck, out, { save_steps = 4, sleep = 0.01 })
      read_until(p, function(_, s) return s and s >= 18 end)
      signal.kill(pid, "SIGKILL")
      finish(p)
      local list = ckpt.list(ck)
      local newest, previous = list[1], list[2]
      assert.is_true(ckpt.verify(newest.dir) and previous ~= nil)
      damage[how](newest.dir)
      local p2 = spawn(work, ck, out, { save_steps = 4, resume = 1 })
      local rest, _, code = finish(p2)
      assert.are.equal(0, code, rest)
      assert.is_truthy(rest:find("warning: checkpoint " .. newest.dir .. " is damaged", 1, true), how .. ": " .. rest)
      assert.is_truthy(rest:find("resumed from " .. previous.dir, 1, true), how .. ": " .. rest)
      assert.are.equal(ref_sha, sha(out .. "/model.safetensors"), how)
    end
  end)

  it("SIGTERM: finishes the step, checkpoints, exits 143; the resume ends the same", function()
    local ck, out = work .. "/term-ckpt", work .. "/term"
    local p, pid = spawn(work, ck, out, { sleep = 0.05 }) -- no save_steps: only the signal's checkpoint mid-epoch
    local at
    read_until(p, function(_, s) at = s return s and s >= 7 end)
    signal.kill(pid, "SIGTERM")
    local rest, how, code = finish(p)
    assert.are.same({ "exit", 143 }, { how, code }, rest)
    local step = tonumber(rest:match("interrupted by SIGTERM at step (%d+) of 24"))
    assert.is_truthy(step and step >= at and step < 12, rest)
    assert.are.equal(step, ckpt.list(ck)[1].step)
    assert.is_true(ckpt.verify(ckpt.list(ck)[1].dir))
    local p2 = spawn(work, ck, out, { resume = 1 })
    local rest2, _, code2 = finish(p2)
    assert.are.equal(0, code2, rest2)
    assert.is_truthy(rest2:find("resumed from " .. ck .. "/checkpoint-" .. step, 1, true), rest2)
    assert.are.equal(ref_sha, sha(out .. "/model.safetensors"))
  end)

  it("SIGTERM with a results store: one run, interrupted, resumed under its id to the same end", function()
    local db = work .. "/runs.db"
    local p, pid = spawn(work, "-", work .. "/st1", { sleep = 0.05, store = db })
    local id = tonumber(p:read("l"):match("^run (%d+)$"))
    read_until(p, function(_, s) return s and s >= 5 end)
    signal.kill(pid, "SIGTERM")
    local rest, how, code = finish(p)
    assert.are.same({ "exit", 143 }, { how, code }, rest)
    local store = mb.store.open(db)
    local r = store:get_run(id)
    assert.are.equal("interrupted", r.status)
    assert.is_truthy(tostring(r.error):find("interrupted by SIGTERM at step", 1, true), tostring(r.error))
    store:close()
    local p2 = spawn(work, "-", work .. "/st2", { store = db, resume = 1 })
    local first = table.concat(read_until(p2, function(line) return line:match("^run %d+$") end), "\n")
    local rest2, _, code2 = finish(p2)
    rest2 = first .. "\n" .. rest2
    assert.are.equal(0, code2, rest2)
    assert.is_truthy(rest2:find("\nrun " .. id .. "\n", 1, true), rest2)
    assert.is_truthy(rest2:find("--resume: continuing run " .. id .. " (interrupted)", 1, true), rest2)
    assert.is_truthy(rest2:find("resumed from ", 1, true), rest2)
    assert.are.equal(ref_sha, sha(work .. "/st2/model.safetensors"))
    store = mb.store.open(db)
    local runs = store:runs { experiment = "faults_child" }
    assert.are.equal(1, #runs)
    assert.are.equal("completed", runs[1].status)
    local events = store:run_events(id)
    assert.are.same({ "interrupted", "resumed" }, { events[1].kind, events[2].kind })
    assert.is_true(events[2].time >= events[1].time)
    -- the train/loss series reaches the last step; rows between the checkpoint and the signal
    -- are not logged twice (the signal's checkpoint is at the step it stopped at)
    local steps = {}
    for _, m in ipairs(store:metrics(id, "train/loss")) do steps[#steps + 1] = m.step end
    assert.are.equal(STEPS, #steps)
    assert.are.equal(STEPS, steps[#steps])
    store:close()
  end)

  -- every metric row of a run but its time: key, step, epoch, split and the value's exact bits
  local function rows(db, id)
    local store = mb.store.open(db, { reap = false })
    local out = {}
    for _, m in ipairs(store:metrics(id)) do
      out[#out + 1] = string.format("%s %s %s %s %s", m.key, tostring(m.step), ckpt.encode_float(m.epoch),
        tostring(m.split), ckpt.encode_float(m.value))
    end
    store:close()
    table.sort(out)
    return out
  end

  it("SIGKILL with a results store: the resumed run's metric rows are the uninterrupted run's, none twice", function()
    -- each store in its own folder: a run's checkpoints go to runs/<id>/ beside its store
    lfs.mkdir(work .. "/rows-ref")
    local ref_db = work .. "/rows-ref/runs.db"
    local p = spawn(work, "-", work .. "/rows-ref/out", { save_steps = 5, store = ref_db })
    local ref_id = tonumber(p:read("l"):match("^run (%d+)$"))
    local rest, _, code = finish(p)
    assert.are.equal(0, code, rest)
    local ref = rows(ref_db, ref_id)
    -- train/loss, train/lr, train/grad_norm at every step; data/train_examples before fit and
    -- train/accuracy after it (no step)
    assert.are.equal(3 * STEPS + 2, #ref)
    for i, kill_at in ipairs { 8, 14, 23 } do -- after checkpoints 5, 12 (epoch end) and 20
      local db = string.format("%s/rows-%d/runs.db", work, i)
      lfs.mkdir(work .. "/rows-" .. i)
      local p1, pid = spawn(work, "-", work .. "/rows-" .. i .. "/k", { save_steps = 5, store = db, sleep = 0.02 })
      local id = tonumber(p1:read("l"):match("^run (%d+)$"))
      read_until(p1, function(_, s) return s and s >= kill_at end)
      assert.is_true(signal.kill(pid, "SIGKILL"))
      finish(p1)
      -- the killed run did log rows after its newest checkpoint: without the truncation they would come twice
      local store = mb.store.open(db, { reap = false })
      local ck = ckpt.list(ex_checkpoint_dir(store, id))[1]
      local after = 0
      for _, m in ipairs(store:metrics(id, "train/loss")) do if m.step > ck.step then after = after + 1 end end
      store:close()
      assert.is_true(after > 0, "kill " .. i .. ": no row after checkpoint-" .. ck.step)
      local p2 = spawn(work, "-", work .. "/rows-" .. i .. "/r", { save_steps = 5, store = db, resume = 1 })
      local rest2, _, code2 = finish(p2)
      assert.are.equal(0, code2, rest2)
      assert.is_truthy(rest2:find("--resume: continuing run " .. id .. " (killed)", 1, true), rest2)
      assert.is_truthy(rest2:find("resumed from " .. ck.dir, 1, true), rest2)
      assert.are.same(ref, rows(db, id), "kill at step " .. kill_at)
    end
  end)

  it("killed after its last checkpoint, among its closing rows: the resume ends with each row once", function()
    -- metric rows (as rows above), confusion matrices and artifacts, as comparable values
    local function state(db, id)
      local out = { metrics = rows(db, id), confusion = {}, artifacts = {} }
      local store = mb.store.open(db, { reap = false })
      for _, c in ipairs(store:confusion(id)) do
        out.confusion[#out.confusion + 1] = { c.split, c.epoch, c.labels, c.matrix }
      end
      for _, a in ipairs(store:artifacts(id)) do out.artifacts[#out.artifacts + 1] = { a.kind, a.hash } end
      store:close()
      return out
    end
    local dir = work .. "/closing"
    lfs.mkdir(dir)
    lfs.mkdir(dir .. "-ref")
    local p = spawn(work, "-", dir .. "-ref/out", { store = dir .. "-ref/runs.db" })
    local ref_id = tonumber(p:read("l"):match("^run (%d+)$"))
    local rest, _, code = finish(p)
    assert.are.equal(0, code, rest)
    local ref = state(dir .. "-ref/runs.db", ref_id)
    assert.are.equal(1, #ref.confusion)
    assert.are.equal(1, #ref.artifacts)

    local db = dir .. "/runs.db"
    local p1 = spawn(work, "-", dir .. "/out", { store = db, die_after_fit = 1 })
    local id = tonumber(p1:read("l"):match("^run (%d+)$"))
    local rest1, how1, code1 = finish(p1)
    assert.are.same({ "signal", 9 }, { how1, code1 }, rest1)
    local killed = state(db, id)
    assert.are.same(ref.metrics, killed.metrics) -- every closing row was written before the kill
    assert.are.equal(1, #killed.confusion)
    assert.are.equal(1, #killed.artifacts)

    local p2 = spawn(work, "-", dir .. "/out", { store = db, resume = 1 })
    local rest2, _, code2 = finish(p2)
    assert.are.equal(0, code2, rest2)
    assert.is_truthy(rest2:find("--resume: continuing run " .. id .. " (killed)", 1, true), rest2)
    local store = mb.store.open(db, { reap = false })
    assert.are.equal("completed", store:get_run(id).status)
    store:close()
    -- the pre-fit row, the closing metric, the confusion matrix and the artifact come once
    assert.are.same(ref, state(db, id))
  end)

  it("a sweep trial stopped by SIGTERM continues its run when the sweep is rerun", function()
    local db = work .. "/sweep.db"
    local spec_path = work .. "/faults_sweep.lua"
    support.write(spec_path, string.format([[return { script = %q, args = { "--work", %q, "--out", %q, "--sleep", "0.05" },
      grid = { lr = { 0.001 } }, metric = "train/loss", mode = "min", experiment = "faults_trial" }]],
      "tests/spec/faults/trial.lua", work, work .. "/sw"))
    local sweep = assert(io.popen("MOONBERT_THREADS=1 " .. q(BIN) .. " sweep " .. q(spec_path) .. " --store " .. q(db)
      .. " 2>&1"))
    -- the trial's process is the pid its run records; stop it (as SLURM would) after a few steps
    local store, run
    for _ = 1, 600 do
      io.popen("sleep 0.05"):close()
      if lfs.attributes(db) then
        store = store or mb.store.open(db, { reap = false })
        run = store:runs { experiment = "faults_trial" }[1]
        if run and #store:metrics(run.id, "train/loss") >= 3 then break end
      end
    end
    assert.is_truthy(run, "the trial never logged a step")
    assert.is_true(signal.kill(run.pid, "SIGTERM"))
    local out1 = sweep:read("a")
    sweep:close()
    assert.are.equal("interrupted", store:get_run(run.id).status, out1)
    local out2, err2, code2 = support.sh("MOONBERT_THREADS=1 " .. q(BIN) .. " sweep " .. q(spec_path) .. " --store " .. q(db))
    assert.are.equal(0, code2, out2 .. err2)
    local runs = store:runs { experiment = "faults_trial" }
    assert.are.equal(1, #runs, out2)
    assert.are.equal("completed", runs[1].status)
    local events = store:run_events(run.id)
    assert.are.same({ "interrupted", "resumed" }, { events[1].kind, events[2].kind })
    assert.are.equal(ref_sha, sha(work .. "/sw/model.safetensors"))
    store:close()
  end)

  it("a second signal ends the process at once, without a checkpoint", function()
    local ck, out = work .. "/twice-ckpt", work .. "/twice"
    local p, pid = spawn(work, ck, out, { sleep = 0.3 })
    read_until(p, function(_, s) return s and s >= 3 end)
    signal.kill(pid, "SIGTERM")
    io.popen("sleep 0.05"):close() -- two signals sent at once may be delivered as one
    signal.kill(pid, "SIGTERM")
    local rest, how, code = finish(p)
    assert.are.same({ "signal", 15 }, { how, code }, rest)
    assert.is_falsy(rest:find("interrupted by", 1, true), rest)
    assert.are.same({}, ckpt.list(ck))
  end)
end)

-- A sweep spec is data, run sandboxed (moonbert.sweep): the memory budget is checked between
-- instructions, so a C function that builds a big string in one call must be capped itself.
-- Each input below would build 100-200 MiB in one call (2 TB with other numbers); without the
-- caps the budget check only sees it afterwards ("uses more than 64 MiB").
describe("the sweep spec sandbox", function()
  local sweep = require "moonbert.sweep"
  local function load_text(text) return pcall(sweep.load_spec_text, text, "s.lua") end

  it("refuses the one-call string bombs by name: string.gsub, table.concat, string.pack", function()
    local cases = {
      { [[local s = ("x"):rep(100000):gsub(".", ("%0"):rep(1000)) return {}]], "string.gsub: result could exceed 1 MiB" },
      { [[local s = string.gsub(("x"):rep(100000), "(.)", "%1%1%1%1%1%1%1%1%1%1%1%1%1%1%1%1") return {}]],
        "string.gsub: result could exceed 1 MiB" },
      { [[local t = {} for i = 1, 200 do t[i] = "" end return { x = table.concat(t, ("y"):rep(1000000)) }]],
        "table.concat: result over 1 MiB" },
      { [[return { x = string.pack("c200000000", "") }]], "attempt to call a nil value (field 'pack')" },
    }
    for _, c in ipairs(cases) do
      local before = collectgarbage("count")
      local ok, err = load_text(c[1])
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find(c[2], 1, true), tostring(err))
      assert.is_true(collectgarbage("count") - before < 8 * 1024, "nothing big was built")
    end
  end)

  it("keeps gsub and concat for what specs do with them", function()
    local spec = sweep.load_spec_text([[
      local names = {}
      for i, lr in ipairs { 1e-5, 3e-5 } do names[i] = ("lr_" .. lr):gsub("[%-%.]", "_") end
      return { script = "trial.lua", grid = { lr = { 1e-5, 3e-5 } }, metric = "val/accuracy",
               name = table.concat(names, "+"):gsub("e", "E", 1) }
    ]], "s.lua")
    assert.are.equal("lr_1E_05+lr_3e_05", spec.name)
  end)
end)

-- A store that cannot be opened stops an experiment before any training: one line naming the
-- store and the cause, exit 1, no traceback. The folder is one nobody can create (/proc/...).
describe_proc("an experiment with an unusable store", function()
  local work
  setup(function()
    work = support.tmpdir()
    make_data(work)
    for _, split in ipairs { "validation", "test" } do support.write(work .. "/" .. split .. ".txt", support.read(work .. "/train.txt")) end
    local tok = mb.tokenizer.load(work)
    local model = mb.distilbert.new({ dim = 16, n_layers = 1, n_heads = 2, hidden_dim = 32, vocab_size = tok.vocab_size,
                                      max_position_embeddings = 32 }, { seed = 7, id2label = mb.data.EMOTION_LABELS })
    model:save(work .. "/model")
    support.write(work .. "/model/vocab.txt", support.read(work .. "/vocab.txt"))
  end)
  teardown(function() ckpt.rmtree(work) end)

  it("is refused before training with one line and exit 1", function()
    local store = "/proc/moonbert-no-such-folder/s.db"
    local out, err, code = support.sh(string.format("MOONBERT_THREADS=1 %s run experiments/frozen_vs_unfrozen.lua --data %s "
      .. "--model %s --no-ood --epochs 1 --store %s", q(BIN), q(work), q(work .. "/model"), q(store)))
    assert.are.equal(1, code, out .. err)
    assert.is_falsy(err:find("traceback", 1, true), err)
    local last = err:gsub("%s+$", ""):match("([^\n]*)$")
    assert.are.equal("moonbert: " .. store .. ": cannot open the results store: cannot create folder "
      .. "/proc/moonbert-no-such-folder: No such file or directory", last)
    assert.is_falsy((out .. err):find("epoch", 1, true), out .. err) -- nothing trained
  end)
end)
