-- full_disk_spec.lua: a full or read-only disk, made real with a small tmpfs that the spec mounts
-- (root only: it is pending with the reason otherwise). For a checkpoint, a model save and a store
-- write that hit ENOSPC: the error names the file and the cause, and what was written before is
-- intact (the previous checkpoint verifies, the old model file is byte for byte the same, the
-- store's earlier rows are there and it passes integrity_check). A failed checkpoint or model save
-- fails the store run with its message, also when the store is on the full disk itself: the
-- store's reserve (<store>-reserve, released on SQLITE_FULL) gives the last status write its room,
-- and nothing is freed by the spec. A read-only store folder or checkpoint folder is refused before
-- any training step.
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local ckpt = require "moonbert.checkpoint"

local function mount_tmpfs(size)
  local dir = support.tmpdir()
  local out, code = support.run("mount -t tmpfs -o size=" .. size .. " moonbert-test " .. support.q(dir))
  if code ~= 0 then
    lfs.rmdir(dir)
    return nil, out
  end
  return dir
end

local function umount(dir)
  support.run("umount -l " .. support.q(dir)) -- lazy: a file still open (a store) must not keep it mounted
  lfs.rmdir(dir)
end

-- Fill the file system holding dir to the last byte.
local function fill(dir)
  local f = assert(io.open(dir .. "/filler", "wb"))
  local chunk = string.rep("\0", 4096)
  while f:write(chunk) and f:flush() do end
  f:close()
  local g = io.open(dir .. "/filler2", "wb") -- the last partial block
  if g then
    while g:write("x") and g:flush() do end
    g:close()
  end
end

local function sha(path) return (mb.store.sha256(support.read(path))) end

local probe, why = mount_tmpfs("64k")
if probe then umount(probe) end
local describe_root = probe and describe or function(name)
  pending(name .. " (needs to mount a tmpfs as root: " .. tostring(why):gsub("%s+$", "") .. ")")
end

describe_root("a full disk", function()
  local work, tok, split, config
  setup(function() work, tok, split, config = require("tests.spec.faults.data").workspace() end)
  teardown(function() ckpt.rmtree(work) end)

  local function new_model() return mb.distilbert.new(config, { seed = 7, id2label = mb.data.EMOTION_LABELS }) end

  -- A store run trains with step checkpoints in disk/ck; the disk fills up after step 6
  -- (checkpoint-5 is written by then). -> ok, err, run_id of store.with_run.
  local function fit_until_full(store, run_opts, disk)
    local run_id
    local ok, err = pcall(store.with_run, store, run_opts, function(run)
      run_id = run.id
      local proxy = setmetatable({ log_metrics = function(_, t, o)
        run:log_metrics(t, o)
        if o.step == 6 then fill(disk) end
      end }, { __index = function(_, k) return function(_, ...) return run[k](run, ...) end end })
      mb.trainer.fit { model = new_model(), tokenizer = tok, train = split, eval = false, epochs = 1, batch_size = 8,
                       lr = 1e-3, log_every = 1, progress = false, run = proxy, checkpoint_dir = disk .. "/ck",
                       save_steps = 5 }
    end)
    return ok, err, run_id
  end

  it("checkpoint: ENOSPC names the file and the cause, the previous checkpoint stays whole, the run fails with it", function()
    local disk = assert(mount_tmpfs("2m"))
    local ok, err = pcall(function()
      local store = mb.store.open(work .. "/ck.db")
      local ok2, err2, run_id = fit_until_full(store, { experiment = "full_disk" }, disk)
      assert.is_false(ok2)
      err2 = tostring(err2)
      if os.getenv("FAULTS_DEBUG") then io.stderr:write("checkpoint error: ", err2, "\n") end
      assert.is_truthy(err2:find("No space left on device", 1, true), err2)
      assert.is_truthy(err2:find(disk .. "/ck/checkpoint-10", 1, true), err2)
      assert.is_truthy(err2:find("config.json", 1, true) or err2:find("safetensors", 1, true)
        or err2:find("manifest", 1, true), "names the file: " .. err2)
      -- the earlier checkpoint is whole; no half-written folder is visible
      local list = ckpt.list(disk .. "/ck")
      assert.are.equal(1, #list)
      assert.are.equal(5, list[1].step)
      assert.is_true(ckpt.verify(list[1].dir))
      for name in lfs.dir(disk .. "/ck") do assert.is_falsy(name:match("^%.tmp"), name) end
      local rec = store:get_run(run_id)
      assert.are.equal("failed", rec.status)
      assert.is_truthy(tostring(rec.error):find("No space left on device", 1, true), tostring(rec.error))
      store:close()
    end)
    umount(disk)
    assert(ok, err)
  end)

  it("model save: ENOSPC names the file and the cause, the saved model stays byte for byte", function()
    local disk = assert(mount_tmpfs("1m"))
    local ok, err = pcall(function()
      local model = new_model()
      model:save(disk .. "/model")
      local before = { sha(disk .. "/model/config.json"), sha(disk .. "/model/model.safetensors") }
      fill(disk)
      model:parameters()[1].value:fill(0.5)
      local store = mb.store.open(work .. "/save.db")
      local run_id
      local ok2, err2 = pcall(store.with_run, store, { experiment = "full_disk", git = false }, function(run)
        run_id = run.id
        model:save(disk .. "/model")
      end)
      assert.is_false(ok2)
      local rec = store:get_run(run_id)
      assert.are.equal("failed", rec.status)
      assert.is_truthy(tostring(rec.error):find("No space left on device", 1, true), tostring(rec.error))
      store:close()
      err2 = tostring(err2)
      if os.getenv("FAULTS_DEBUG") then io.stderr:write("model save error: ", err2, "\n") end
      assert.is_truthy(err2:find("No space left on device", 1, true), err2)
      assert.is_truthy(err2:find(disk .. "/model/config.json", 1, true) or
        err2:find(disk .. "/model/model.safetensors", 1, true), err2)
      assert.are.same(before, { sha(disk .. "/model/config.json"), sha(disk .. "/model/model.safetensors") })
      local leftovers = {}
      for name in lfs.dir(disk .. "/model") do if name:match("tmp") then leftovers[#leftovers + 1] = name end end
      assert.are.same({}, leftovers)
    end)
    umount(disk)
    assert(ok, err)
  end)

  it("store write: the error names the store and the cause; the run is marked failed on the full disk itself, "
    .. "earlier rows stay and the file checks out", function()
    local disk = assert(mount_tmpfs("1m"))
    local ok, err = pcall(function()
      local store = mb.store.open(disk .. "/s.db")
      local run_id
      local ok2, err2 = pcall(store.with_run, store, { experiment = "full_disk", git = false }, function(run)
        run_id = run.id
        -- a writer keeps its reserve beside the store
        assert.are.equal(256 * 1024, lfs.attributes(disk .. "/s.db-reserve", "size"))
        for i = 1, 50 do run:log_metric("train/loss", 1 / i, { step = i }) end
        fill(disk)
        for i = 51, 100000 do run:log_metric("train/loss", 1 / i, { step = i }) end
      end)
      assert.is_false(ok2)
      err2 = tostring(err2)
      if os.getenv("FAULTS_DEBUG") then io.stderr:write("store error: ", err2, "\n") end
      assert.is_truthy(err2:find(disk .. "/s.db", 1, true), err2)
      assert.is_truthy(err2:find("database or disk is full (No space left on device)", 1, true), err2)
      -- nothing freed: with_run's fail used the reserve's room, and the reserve is gone
      assert.is_nil(lfs.attributes(disk .. "/s.db-reserve"))
      local again = mb.store.open(disk .. "/s.db", { reap = false })
      local rec = again:get_run(run_id)
      assert.are.equal("failed", rec.status)
      assert.is_truthy(tostring(rec.error):find("No space left on device", 1, true), tostring(rec.error))
      assert.is_true((again:integrity_check()))
      -- every row committed before the disk filled is there, each once, in order
      local series = again:metrics(run_id, "train/loss")
      assert.is_true(#series >= 50, #series)
      for i, m in ipairs(series) do
        assert.are.equal(i, m.step)
        assert.are.equal(1 / i, m.value)
      end
      again:close()
      store:close()
      -- once there is room again, the next run makes a new reserve
      os.remove(disk .. "/filler")
      os.remove(disk .. "/filler2")
      local store2 = mb.store.open(disk .. "/s.db")
      store2:with_run({ experiment = "full_disk", git = false }, function() end)
      assert.are.equal(256 * 1024, lfs.attributes(disk .. "/s.db-reserve", "size"))
      store2:close()
    end)
    umount(disk)
    assert(ok, err)
  end)

  it("a preempted run on a full store disk still shows as interrupted, and can resume once there is room", function()
    local disk = assert(mount_tmpfs("1m"))
    local ok, err = pcall(function()
      local store = mb.store.open(disk .. "/s.db")
      local run = store:start_run { experiment = "full_disk", git = false }
      for i = 1, 20 do run:log_metric("train/loss", 1 / i, { step = i }) end
      fill(disk)
      -- the disk is full: a plain write fails, the status change takes the reserve's room
      assert.is_false((pcall(function() for i = 21, 100000 do run:log_metric("train/loss", 1 / i, { step = i }) end end)))
      run:interrupt("preempted (SIGTERM)")
      assert.is_nil(lfs.attributes(disk .. "/s.db-reserve"))
      local again = mb.store.open(disk .. "/s.db", { reap = false })
      assert.are.equal("interrupted", again:get_run(run.id).status)
      assert.are.equal("interrupted", again:run_events(run.id)[1].kind)
      again:close()
      os.remove(disk .. "/filler")
      os.remove(disk .. "/filler2")
      local resumed = store:resume_run(run.id)
      assert.are.equal(256 * 1024, lfs.attributes(disk .. "/s.db-reserve", "size")) -- made again on resume
      resumed:finish()
      assert.are.equal("completed", store:get_run(run.id).status)
      store:close()
    end)
    umount(disk)
    assert(ok, err)
  end)

  it("checkpoint and store on one full disk: the run still ends failed with the message, its rows stay", function()
    local disk = assert(mount_tmpfs("2m"))
    local ok, err = pcall(function()
      local store = mb.store.open(disk .. "/s.db")
      local ok2, err2, run_id = fit_until_full(store, { experiment = "full_disk", git = false }, disk)
      assert.is_false(ok2)
      err2 = tostring(err2)
      if os.getenv("FAULTS_DEBUG") then io.stderr:write("checkpoint+store error: ", err2, "\n") end
      -- whichever write met the full disk first (a metric row or the checkpoint), it says so
      assert.is_truthy(err2:find("No space left on device", 1, true), err2)
      assert.is_nil(lfs.attributes(disk .. "/s.db-reserve"))
      local again = mb.store.open(disk .. "/s.db", { reap = false })
      local rec = again:get_run(run_id)
      assert.are.equal("failed", rec.status)
      assert.is_truthy(tostring(rec.error):find("No space left on device", 1, true), tostring(rec.error))
      assert.is_true((again:integrity_check()))
      local series = again:metrics(run_id, "train/loss")
      assert.is_true(#series >= 6, #series)
      for i, m in ipairs(series) do assert.are.equal(i, m.step) end
      again:close()
      store:close()
      local list = ckpt.list(disk .. "/ck")
      assert.are.equal(5, list[1].step)
      assert.is_true(ckpt.verify(list[1].dir))
    end)
    umount(disk)
    assert(ok, err)
  end)

  it("a read-only store folder or checkpoint folder is refused before any training step", function()
    local disk = assert(mount_tmpfs("1m"))
    local ok, err = pcall(function()
      lfs.mkdir(disk .. "/ck")
      assert.are.equal(0, select(2, support.run("mount -o remount,ro " .. support.q(disk))))
      local ok2, err2 = pcall(mb.store.open, disk .. "/s.db")
      assert.is_false(ok2)
      assert.is_truthy(tostring(err2):find("not writable (Read-only file system)", 1, true), tostring(err2))
      ok2, err2 = pcall(mb.store.open, disk .. "/missing/s.db")
      assert.is_false(ok2)
      assert.is_truthy(tostring(err2):find("Read-only file system", 1, true), tostring(err2))
      local steps = 0
      ok2, err2 = pcall(mb.trainer.fit, { model = new_model(), tokenizer = tok, train = split, eval = false, epochs = 1,
        batch_size = 8, progress = false, checkpoint_dir = disk .. "/ck",
        run = function(event) if event == "log" then steps = steps + 1 end end })
      assert.is_false(ok2)
      assert.is_truthy(tostring(err2):find("checkpoint folder " .. disk .. "/ck is not writable", 1, true), tostring(err2))
      assert.is_truthy(tostring(err2):find("Read-only file system", 1, true), tostring(err2))
      assert.are.equal(0, steps)
    end)
    umount(disk)
    assert(ok, err)
  end)
end)
