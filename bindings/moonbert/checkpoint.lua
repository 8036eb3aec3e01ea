-- moonbert.checkpoint (mb.checkpoint): the one checkpoint module. Folders that survive a
-- crash at any instant, a manifest that proves them whole, and the choice of the newest
-- good one on resume.
--
--   local ckpt = require "moonbert.checkpoint"
--   local dir = ckpt.save(root, step, function(tmp) model:save(tmp); ... end, {keep = 3})
--   local dir, step = ckpt.newest(root, {warn = function(msg) io.stderr:write(msg, "\n") end})
--   ckpt.verify(dir)               -> true | nil, message (names the missing or changed file)
--   ckpt.list(root)                -> {{dir=, step=, name=}...}, newest first (unverified)
--   ckpt.write_json(path, table)   durable JSON (temp file, fsync, rename); raises with the cause
--   ckpt.encode_float(x) / ckpt.decode_float(s)   exact floats in JSON ("%a" hex text)
--   ckpt.to_hex(bytes) / ckpt.from_hex(text)      RNG states and other bytes in JSON
--   ckpt.save_training(root, {model=, optimizer=, state=, keep=}) -> dir     mb.trainer.fit's checkpoint
--   ckpt.load_training(dir, {model=, optimizer=, expect=, keys=}) -> state  and its resume
--
-- A checkpoint is root/checkpoint-<step>/ (Hugging Face's name). save writes into
-- root/.tmp-checkpoint-<step>-<pid>/ through the caller's function, fsyncs every file,
-- writes manifest.sha256 (the sha256 of every file, runtime/manifest.c) last and durably,
-- fsyncs the folder, renames it into place and fsyncs root. A crash before the rename leaves
-- a .tmp folder that nobody reads (the next save removes it); after it, a whole checkpoint.
-- keep = K (save_total_limit) removes all but the newest K after a successful save.
-- newest() walks the checkpoints from the newest and returns the first whose manifest
-- verifies; each one skipped (truncated, a flipped byte, a file missing, no manifest) is
-- reported through opts.warn with its folder and the reason.
--
-- Errors of the file system (ENOSPC, EIO, read-only) are raised as
-- "checkpoint <dir>: <file>: <cause>"; the checkpoints written before stay as they were.
local lfs = require "lfs"
local check = require "moonbert.check"
local json = require "dkjson"
local core = require("moonbert.core").checkpoint

local M = {}

M.MANIFEST = core.MANIFEST

local function is_dir(p) return lfs.attributes(p, "mode") == "directory" end

local function rmtree(path)
  local mode = lfs.symlinkattributes(path, "mode")
  if mode == nil then return end
  if mode == "directory" then
    for name in lfs.dir(path) do
      if name ~= "." and name ~= ".." then rmtree(path .. "/" .. name) end
    end
    lfs.rmdir(path)
  else
    os.remove(path)
  end
end
M.rmtree = rmtree

-- Files below dir as relative paths, sorted.
local function files_below(dir, prefix, out)
  out = out or {}
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." then
      local rel = prefix and (prefix .. "/" .. name) or name
      local mode = lfs.symlinkattributes(dir .. "/" .. name, "mode")
      if mode == "directory" then files_below(dir .. "/" .. name, rel, out)
      elseif mode == "file" and rel ~= M.MANIFEST then out[#out + 1] = rel end
    end
  end
  table.sort(out)
  return out
end

--- Exact float text for JSON: dkjson keeps 14 digits, a resume needs every bit.
function M.encode_float(x)
  if math.type(x) ~= "float" then return x end
  return string.format("%a", x)
end

function M.decode_float(s)
  if type(s) ~= "string" then return s end
  return tonumber(s)
end

--- Bytes (an RNG state) as hex text for JSON, and back.
function M.to_hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
function M.from_hex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

--- Write a table as JSON durably (raises "<path>: cannot write: <cause>").
function M.write_json(path, t)
  local ok, err = core.write_file(path, json.encode(t, { indent = true }))
  if not ok then error(err, 0) end
end

function M.read_json(path)
  local text, err = require("moonbert.fs").read_file(path)
  if not text then return nil, err end
  local t, _, jerr = json.decode(text)
  if type(t) ~= "table" then return nil, path .. ": not valid JSON" .. (jerr and (" (" .. jerr .. ")") or "") end
  return t
end

--- Checkpoints under root, newest first, without verifying them.
function M.list(root)
  local out = {}
  if not root or not is_dir(root) then return out end
  for name in lfs.dir(root) do
    local step = math.tointeger(tonumber(name:match("^checkpoint%-(%d+)$")))
    if step and is_dir(root .. "/" .. name) then
      out[#out + 1] = { dir = root .. "/" .. name, step = step, name = name }
    end
  end
  table.sort(out, function(a, b) return a.step > b.step end)
  return out
end

function M.verify(dir) return core.verify(dir) end

--- The newest checkpoint whose manifest verifies: dir, step (nil when none).
function M.newest(root, opts)
  local warn = opts and opts.warn or function() end
  for _, c in ipairs(M.list(root)) do
    local ok, err = core.verify(c.dir)
    if ok then return c.dir, c.step end
    warn(string.format("checkpoint %s is damaged or incomplete (%s); skipping it", c.dir, err))
  end
  return nil
end

--- Remove all but the newest keep checkpoints.
function M.prune(root, keep)
  if not keep or keep <= 0 then return end
  for i, c in ipairs(M.list(root)) do
    if i > keep then rmtree(c.dir) end
  end
end

--- Raise unless root exists (or can be made) and takes files: for a check before training.
function M.check_writable(root)
  local fs = require "moonbert.fs"
  local ok, err = fs.mkdir_p(root)
  if not ok then error("checkpoint folder " .. root .. ": " .. err, 0) end
  local probe = string.format("%s/.tmp-write-test-%d", root, require("moonbert.core").signal.pid())
  ok, err = core.write_file(probe, "")
  os.remove(probe)
  if not ok then error("checkpoint folder " .. root .. " is not writable: " .. err, 0) end
end

--- save(root, step, write(tmpdir), {keep=}) -> the checkpoint's folder.
function M.save(root, step, write, opts)
  if math.type(step) ~= "integer" or step < 0 then check.arg(2, "save", "step: integer >= 0 expected") end
  local fs = require "moonbert.fs"
  local ok, err = fs.mkdir_p(root)
  if not ok then error("checkpoint " .. root .. ": " .. err, 0) end
  local name = "checkpoint-" .. step
  local final = root .. "/" .. name
  -- leftovers of saves that died before their rename
  for entry in lfs.dir(root) do
    if entry:match("^%.tmp%-checkpoint%-") or entry:match("^%.old%-checkpoint%-") then rmtree(root .. "/" .. entry) end
  end
  local tmp = string.format("%s/.tmp-%s-%d", root, name, require("moonbert.core").signal.pid())
  ok, err = lfs.mkdir(tmp)
  if not ok then error(string.format("checkpoint %s: cannot create %s: %s", final, tmp, tostring(err)), 0) end
  local wok, werr = pcall(write, tmp)
  if not wok then
    rmtree(tmp)
    -- the writer's error without the "file.lua:N: " of the line that raised it
    error(string.format("checkpoint %s: %s", final, (tostring(werr):gsub("^[^%s:]+%.lua:%d+: ", ""))), 0)
  end
  local files = files_below(tmp)
  local function fail(msg)
    rmtree(tmp)
    error(string.format("checkpoint %s: %s", final, msg), 0)
  end
  if #files == 0 then fail("the writer wrote no files") end
  local subdirs = {}
  for _, f in ipairs(files) do
    local sok, serr = core.fsync(tmp .. "/" .. f)
    if not sok then fail(serr) end
    local parent = f:match("^(.*)/[^/]*$")
    if parent then subdirs[parent] = true end
  end
  for d in pairs(subdirs) do -- their entries too (tmp itself is synced below, after the manifest)
    local sok, serr = core.fsync(tmp .. "/" .. d)
    if not sok then fail(serr) end
  end
  local mok, merr = core.write_manifest(tmp, files)
  if not mok then fail(merr) end
  local dok, derr = core.fsync(tmp)
  if not dok then fail(derr) end
  local old
  if lfs.symlinkattributes(final, "mode") then
    -- a checkpoint of this step exists (a damaged one a resume skipped): moved aside, then removed
    old = string.format("%s/.old-%s-%d", root, name, require("moonbert.core").signal.pid())
    local rok, rerr = os.rename(final, old)
    if not rok then fail("cannot move the old " .. name .. " aside: " .. tostring(rerr)) end
  end
  local rok, rerr = os.rename(tmp, final)
  if not rok then fail("cannot rename " .. tmp .. " into place: " .. tostring(rerr)) end
  local fok, ferr = core.fsync(root)
  if not fok then error(string.format("checkpoint %s: %s", final, ferr), 0) end
  if old then rmtree(old) end
  if opts and opts.keep then M.prune(root, opts.keep) end
  return final
end

-- ---- training checkpoints (mb.trainer.fit) -----------------------------------------------------
-- checkpoint-<step>/ holds config.json + model.safetensors (model:save), optimizer.safetensors
-- (the moments and the step count), trainer_state.json (what the loop needs: see trainer.lua) and
-- the manifest. A resume copies the parameters into the caller's model (its device, its frozen
-- flags) rather than loading a new one, then the moments and the model's RNG state.
M.TRAINER_STATE = "trainer_state.json"

function M.save_training(root, o)
  return M.save(root, o.state.step, function(dir)
    o.model:save(dir)
    o.optimizer:save(dir .. "/optimizer.safetensors")
    M.write_json(dir .. "/" .. M.TRAINER_STATE, o.state)
  end, { keep = o.keep })
end

-- expect: the values this run has for the settings a resume must share, checked in the order of
-- keys (a mismatch names the setting).
function M.load_training(dir, o)
  local ok, verr = M.verify(dir)
  if not ok then error("mb.trainer.fit: resume: " .. dir .. " does not verify: " .. tostring(verr), 0) end
  local state, jerr = M.read_json(dir .. "/" .. M.TRAINER_STATE)
  if not state then error("mb.trainer.fit: resume: " .. tostring(jerr), 0) end
  for _, k in ipairs(o.keys) do
    if state[k] ~= o.expect[k] then
      error(string.format("mb.trainer.fit: resume: checkpoint %s was made with %s = %s, this run has %s; "
        .. "resume with the same settings (or start without resume)", dir, k, tostring(state[k]),
        tostring(o.expect[k])), 0)
    end
  end
  local st = require("moonbert.safetensors").load(dir .. "/model.safetensors")
  for _, p in ipairs(o.model:parameters()) do
    local t = st[p.name]
    if not t then error("mb.trainer.fit: resume: " .. dir .. "/model.safetensors has no tensor " .. p.name, 0) end
    p.value:copy(t)
  end
  o.optimizer:load(dir .. "/optimizer.safetensors")
  o.model:set_rng_state(M.from_hex(state.model_rng))
  return state
end

return M
