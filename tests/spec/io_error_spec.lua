-- io_error_spec.lua: an I/O error (EIO) from the kernel, made real with tests/tools/eiofs, a FUSE
-- file system over a temporary folder whose writes fail with EIO when the spec says so (pending,
-- with the reason, where eiofs is not built or FUSE cannot mount). As full_disk_spec does for
-- ENOSPC: for a checkpoint, a model save and a store write that meet EIO, the error names the
-- file and the cause, what was written before stays whole (the previous checkpoint verifies and
-- a resume continues from it once the disk answers again; the old model file is byte for byte
-- the same; the store's earlier rows are there and it passes integrity_check), and the run is
-- marked failed with the message.
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local ckpt = require "moonbert.checkpoint"

local BIN = os.getenv("MOONBERT_BIN")
local EIOFS = BIN and BIN:gsub("/bin/moonbert$", "/tests/eiofs")
local EIO = "Input/output error"

local function mounted(dir)
  local f = io.open("/proc/self/mounts")
  if not f then return false end
  local text = f:read("a")
  f:close()
  return text:find(" " .. dir .. " fuse", 1, true) ~= nil
end

-- Mount eiofs over a fresh folder -> {dir=, backing=, set=function(order)} or nil, why.
-- set("eio") fails every write until set("ok"); set("eio N") fails the next N writes.
local function mount_eiofs()
  if not EIOFS or not io.open(EIOFS, "r") then return nil, "tests/tools/eiofs is not built (libfuse3-dev)" end
  local root = support.tmpdir()
  local m = { dir = root .. "/mnt", backing = root .. "/backing", control = root .. "/control", root = root }
  lfs.mkdir(m.dir)
  lfs.mkdir(m.backing)
  support.write(m.control, "ok")
  -- env -u LD_PRELOAD: under `make sanitize` the ASan runtime is preloaded into this process
  local out, code = support.run(string.format("env -u LD_PRELOAD %s %s %s %s >%s 2>&1 &", support.q(EIOFS),
    support.q(m.backing), support.q(m.control), support.q(m.dir), support.q(root .. "/eiofs.log")))
  for _ = 1, 100 do
    if mounted(m.dir) then break end
    support.run("sleep 0.05")
  end
  if code ~= 0 or not mounted(m.dir) then
    local log = support.read(root .. "/eiofs.log") or out or ""
    ckpt.rmtree(root)
    return nil, "eiofs did not mount: " .. log:gsub("%s+$", "")
  end
  function m.set(order) support.write(m.control, order) end
  return m
end

local function unmount(m)
  support.run("fusermount3 -u " .. support.q(m.dir) .. " || umount -l " .. support.q(m.dir))
  ckpt.rmtree(m.root)
end

local function sha(path) return (mb.store.sha256(support.read(path))) end

local probe, why = mount_eiofs()
if probe then unmount(probe) end
local describe_fuse = probe and describe or function(name)
  pending(name .. " (" .. tostring(why) .. ")")
end

describe_fuse("an I/O error (EIO) from the disk", function()
  local work, tok, split, config
  setup(function() work, tok, split, config = require("tests.spec.faults.data").workspace() end)
  teardown(function() ckpt.rmtree(work) end)

  local function new_model() return mb.distilbert.new(config, { seed = 7, id2label = mb.data.EMOTION_LABELS }) end

  it("checkpoint: the error names the file and the cause, the previous checkpoint stays whole, the run fails "
    .. "with it, and a resume continues from it once the disk answers", function()
    local disk = assert(mount_eiofs())
    local ok, err = pcall(function()
      local store = mb.store.open(work .. "/ck.db")
      local run_id
      local function fit(run, resume)
        return mb.trainer.fit { model = new_model(), tokenizer = tok, train = split, eval = false, epochs = 1,
                                batch_size = 8, lr = 1e-3, log_every = 1, progress = false, run = run,
                                checkpoint_dir = disk.dir .. "/ck", save_steps = 5, resume = resume }
      end
      local ok2, err2 = pcall(store.with_run, store, { experiment = "io_error", git = false }, function(run)
        run_id = run.id
        local proxy = setmetatable({ log_metrics = function(_, t, o)
          run:log_metrics(t, o)
          if o.step == 6 then disk.set("eio") end -- checkpoint-5 is written; checkpoint-10 meets the error
        end }, { __index = function(_, k) return function(_, ...) return run[k](run, ...) end end })
        fit(proxy)
      end)
      assert.is_false(ok2)
      err2 = tostring(err2)
      if os.getenv("FAULTS_DEBUG") then io.stderr:write("checkpoint error: ", err2, "\n") end
      assert.is_truthy(err2:find(EIO, 1, true), err2)
      assert.is_truthy(err2:find(disk.dir .. "/ck/", 1, true), "names the file: " .. err2)
      local rec = store:get_run(run_id)
      assert.are.equal("failed", rec.status)
      assert.is_truthy(tostring(rec.error):find(EIO, 1, true), tostring(rec.error))
      -- reads still work: the earlier checkpoint is listed and verifies; the failed one is not listed
      local list = ckpt.list(disk.dir .. "/ck")
      assert.are.equal(1, #list)
      assert.are.equal(5, list[1].step)
      assert.is_true(ckpt.verify(list[1].dir))
      -- the disk answers again: a resume takes checkpoint-5 and ends the epoch
      disk.set("ok")
      local res = fit(nil, true)
      assert.are.equal(12, res.steps)
      store:close()
    end)
    unmount(disk)
    assert(ok, err)
  end)

  it("model save: the error names the file and the cause, the saved model stays byte for byte", function()
    local disk = assert(mount_eiofs())
    local ok, err = pcall(function()
      local model = new_model()
      model:save(disk.dir .. "/model")
      local before = { sha(disk.dir .. "/model/config.json"), sha(disk.dir .. "/model/model.safetensors") }
      model:parameters()[1].value:fill(0.5)
      local store = mb.store.open(work .. "/save.db")
      local run_id
      local ok2, err2 = pcall(store.with_run, store, { experiment = "io_error", git = false }, function(run)
        run_id = run.id
        disk.set("eio")
        model:save(disk.dir .. "/model")
      end)
      assert.is_false(ok2)
      err2 = tostring(err2)
      if os.getenv("FAULTS_DEBUG") then io.stderr:write("model save error: ", err2, "\n") end
      assert.is_truthy(err2:find(EIO, 1, true), err2)
      assert.is_truthy(err2:find(disk.dir .. "/model/", 1, true), "names the file: " .. err2)
      local rec = store:get_run(run_id)
      assert.are.equal("failed", rec.status)
      assert.is_truthy(tostring(rec.error):find(EIO, 1, true), tostring(rec.error))
      store:close()
      assert.are.same(before, { sha(disk.dir .. "/model/config.json"), sha(disk.dir .. "/model/model.safetensors") })
    end)
    unmount(disk)
    assert(ok, err)
  end)

  it("store write: the error names the store and the cause; after a passing fault the run is marked failed, "
    .. "its earlier rows stay and the file checks out", function()
    local disk = assert(mount_eiofs())
    local ok, err = pcall(function()
      local db = disk.dir .. "/s.db"
      local store = mb.store.open(db)
      local run_id
      local ok2, err2 = pcall(store.with_run, store, { experiment = "io_error", git = false }, function(run)
        run_id = run.id
        for i = 1, 50 do run:log_metric("train/loss", 1 / i, { step = i }) end
        disk.set("eio 1") -- the next write fails; the disk then answers again
        for i = 51, 100 do run:log_metric("train/loss", 1 / i, { step = i }) end
      end)
      assert.is_false(ok2)
      err2 = tostring(err2)
      if os.getenv("FAULTS_DEBUG") then io.stderr:write("store error: ", err2, "\n") end
      assert.is_truthy(err2:find(db, 1, true), err2)
      assert.is_truthy(err2:find(EIO, 1, true), err2)
      store:close()
      local again = mb.store.open(db, { reap = false })
      local rec = again:get_run(run_id)
      assert.are.equal("failed", rec.status)
      assert.is_truthy(tostring(rec.error):find(EIO, 1, true), tostring(rec.error))
      assert.is_true((again:integrity_check()))
      -- every row committed before the error is there, each once, in order
      local series = again:metrics(run_id, "train/loss")
      assert.are.equal(50, #series)
      for i, m in ipairs(series) do
        assert.are.equal(i, m.step)
        assert.are.equal(1 / i, m.value)
      end
      again:close()
    end)
    unmount(disk)
    assert(ok, err)
  end)
end)
