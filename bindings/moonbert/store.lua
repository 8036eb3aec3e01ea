-- moonbert.store (mb.store): the results store, one SQLite file of runs, or a
-- PostgreSQL database shared by many hosts (same schema, API and CLI).
--
--   local store = mb.store.open()                          -- $MOONBERT_STORE, else results/moonbert.db
--   local store = mb.store.open("postgresql://me@db.lab:5432/moonbert")  -- password: PGPASSWORD or ~/.pgpass
--   local run <close> = store:start_run{experiment = "baseline", params = {lr = 2e-5}, seed = 42}
--   run:log_metric("val/accuracy", 0.92, {epoch = 2, split = "validation"})
--   run:log_confusion("validation", cm, data.label_names, {epoch = 2})
--   run:finish()        -- or leave the <close> scope: normal exit completes, an error fails
--
-- start_run records what makes a run reproducible: seed, host and pid, git commit
-- and dirty flag, script path and sha256, dataset/model hash and device when
-- given. A run that is not ended never stays "running": an error leaving a
-- `<close>` scope or store:with_run marks it failed with the error text, the
-- garbage collector fails a forgotten run, and store:reap() (run by open and by
-- `moonbert results`) marks killed the runs whose process died.
--
-- Queries return plain tables: store:runs{experiment=, status=}, store:get_run(id),
-- store:params(id), store:metrics(id, key) (the whole series), store:final_metrics(id),
-- store:best{experiment=, metric=, mode="max"}, store:confusion(id, split),
-- store:predictions(id, split, {by_loss=true, limit=20}), store:artifacts(id), store:tags(id).
-- run:artifact_dir() is results/runs/<id> (beside the store file), created on first use.
-- Every run has a UUID too (run:uuid(), record.uuid; store:get_run(uuid) finds it).
-- Ending a run: run:finish() (completed), run:fail(err), run:prune(rung) or
-- run:finish("pruned", {rung = r}) for a trial stopped early by a pruner;
-- run:interrupt(message) for a run stopped to be resumed later (status
-- interrupted: reaping leaves it alone), store:resume_run(id) -> run running
-- again in this process; store:run_events(id) lists the interruptions and resumptions.
-- store:copy_run(id, other_store) -> id there, copied: the run and all it logged, in one
-- transaction, skipped when other_store already has its UUID (`moonbert results push`).
-- A PostgreSQL store reconnects after losing its server (store:reconnects() counts it).
-- Params are written once (booleans are kept as "true"/"false", tables as JSON text).
-- Under `moonbert sweep`, MOONBERT_SWEEP and MOONBERT_TRIAL (and MOONBERT_TRIAL_NUMBER)
-- become the tags sweep and trial (and trial_number) of every run started (the trial is also the name of a run given none),
-- and MOONBERT_EXPERIMENT replaces the experiment.
local core = require("moonbert.core").store
local check = require "moonbert.check"

local env_store = os.getenv("MOONBERT_STORE")

local M = {
  -- What every command's --store defaults to: $MOONBERT_STORE when set.
  default_path = (env_store and env_store ~= "") and env_store or "results/moonbert.db",
  schema_version = core.schema_version,
  now = core.now,             -- Unix time in seconds, sub-second precision
  sha256 = core.sha256,       -- sha256(string) -> hex
  hash_file = core.sha256_file, -- hash_file(path) -> hex | nil, message
}

local Store = core.store_methods
local Run = core.run_methods

--- mb.store.is_url(path) -> true for a PostgreSQL URL (postgresql:// or postgres://)
function M.is_url(path)
  return type(path) == "string" and (path:match("^postgresql://") or path:match("^postgres://")) ~= nil
end

-- mkdir -p for the folder that will hold the store file.
local function ensure_parent(path)
  local dir = path:match("^(.*)/[^/]*$")
  if not dir or dir == "" then return end
  require("moonbert.fs").mkdir_p(dir)
end

-- A store to write to must have a folder that exists (or can be made) and takes files: checked
-- when opening, so that a read-only or missing folder stops a script before it trains anything.
local function check_writable_folder(path)
  if path:match("^%a[%w+.-]*://") or path == ":memory:" then return end
  local dir = path:match("^(.*)/[^/]*$") or "."
  if dir == "" then dir = "/" end
  local ok, err = require("moonbert.fs").mkdir_p(dir)
  if not ok then error(path .. ": cannot open the results store: " .. err, 3) end
  local probe = string.format("%s/.moonbert-write-test-%d", dir, require("moonbert.core").signal.pid())
  local f, ferr = io.open(probe, "wb")
  if f then
    f:close()
    os.remove(probe)
    return
  end
  error(string.format("%s: cannot open the results store: its folder %s is not writable (%s)", path, dir,
    tostring(ferr):gsub("^[^:]*: ", "")), 3)
end

--- mb.store.open([path [, opts]]) -> store
-- opts: create (true), reap (true: mark dead runs killed), stale_after (60 s, runs of
-- other hosts without a heartbeat for that long are reaped), busy_timeout (30 s),
-- heartbeat_interval (5 s), retry_timeout (60 s: PostgreSQL, how long writers
-- reconnect after losing the server). Raises when the store cannot be opened.
function M.open(path, opts)
  if path ~= nil and type(path) ~= "string" then
    check.arg(1, "open", "string expected, got " .. type(path))
  end
  if opts ~= nil and type(opts) ~= "table" then
    check.arg(2, "open", "table expected, got " .. type(opts))
  end
  path = path or M.default_path
  opts = opts or {}
  if opts.create ~= false and not M.is_url(path) then check_writable_folder(path) end
  local store, msg = core.open(path, opts)
  if not store then error(msg, 2) end
  if opts.reap ~= false then
    -- A store another process is busy migrating or writing is no reason to fail
    -- opening; reaping is retried by the next open or `moonbert results`.
    pcall(store.reap, store, { stale_after = opts.stale_after or 60 })
  end
  return store
end

--- mb.store.hash_path(path) -> hex | nil, message
-- A file: sha256 of its bytes. A folder (a model or data directory): sha256 over
-- "relative/path\0<sha256>\n" for every file below it in sorted order.
function M.hash_path(path)
  local lfs = require "lfs"
  local mode = lfs.attributes(path, "mode")
  if mode == "file" then return core.sha256_file(path) end
  if mode ~= "directory" then return nil, path .. ": no such file or directory" end
  local files = {}
  local function walk(dir, rel)
    for name in lfs.dir(dir) do
      if name ~= "." and name ~= ".." then
        local full, r = dir .. "/" .. name, rel == "" and name or rel .. "/" .. name
        local m = lfs.attributes(full, "mode")
        if m == "directory" then walk(full, r) elseif m == "file" then files[#files + 1] = r end
      end
    end
  end
  walk(path, "")
  table.sort(files)
  local lines = {}
  for i, r in ipairs(files) do
    local h, err = core.sha256_file(path .. "/" .. r)
    if not h then return nil, err end
    lines[i] = r .. "\0" .. h .. "\n"
  end
  return core.sha256(table.concat(lines))
end

-- Output of a shell command, or nil when it fails (git absent, not a repository).
local function capture(cmd)
  local f = io.popen(cmd .. " 2>/dev/null")
  if not f then return nil end
  local out = f:read("a")
  local ok = f:close()
  if not ok then return nil end
  return out
end

local shell_quote = require("moonbert.fs").shell_quote

-- git commit and dirty flag of the folder holding the script (or the current folder).
local function git_state(dir)
  local c = "git -C " .. shell_quote(dir or ".")
  local head = capture(c .. " rev-parse HEAD")
  if not head then return nil, nil end
  head = head:match("^%s*(%x+)")
  local status = capture(c .. " status --porcelain --untracked-files=no")
  local dirty
  if status then dirty = status:match("%S") ~= nil end
  return head, dirty
end

local RUN_FIELDS = { "seed", "dataset_hash", "model_hash", "device", "git_commit", "git_dirty",
                     "script_path", "script_hash", "name", "experiment" }
local KNOWN = { params = true, tags = true, script = true, git = true }
for _, k in ipairs(RUN_FIELDS) do KNOWN[k] = true end

--- store:start_run{experiment=, name=, params=, tags=, seed=, dataset_hash=, model_hash=,
---                 device=, script=arg[0], git=true} -> run
-- Fills host, pid, git commit/dirty (git=false skips it), script path and sha256.
function Store:start_run(opts)
  if type(opts) ~= "table" then
    check.arg(1, "start_run", "table expected, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not KNOWN[k] then
      check.arg(1, "start_run", "unknown field '" .. tostring(k) .. "'")
    end
  end
  if type(opts.experiment) ~= "string" or opts.experiment == "" then
    check.arg(1, "start_run", "field 'experiment' (a non-empty string) is required")
  end
  local fields = {}
  for _, k in ipairs(RUN_FIELDS) do fields[k] = opts[k] end
  -- A trial of `moonbert sweep` (moonbert.sweep) is told its sweep, trial key
  -- and experiment through the environment; its runs carry them as tags.
  local sweep_tags
  local sweep, trial = os.getenv("MOONBERT_SWEEP"), os.getenv("MOONBERT_TRIAL")
  if sweep and sweep ~= "" then
    sweep_tags = { sweep = sweep, trial = trial }
    local number = os.getenv("MOONBERT_TRIAL_NUMBER") -- a TPE trial's number (moonbert.search)
    if number and number:match("^%d+$") then sweep_tags.trial_number = number end
    local exp = os.getenv("MOONBERT_EXPERIMENT")
    if exp and exp ~= "" then fields.experiment = exp end
    if fields.name == nil and trial and trial ~= "" then fields.name = trial end
  end
  local script = opts.script
  if script == nil and not opts.script_path then script = rawget(_G, "arg") and arg[0] end
  if type(script) == "string" and script ~= "-" then
    fields.script_path = fields.script_path or script
    fields.script_hash = fields.script_hash or core.sha256_file(script) -- nil if unreadable
  end
  if opts.git ~= false and fields.git_commit == nil then
    local dir = fields.script_path and fields.script_path:match("^(.*)/[^/]*$") or "."
    fields.git_commit, fields.git_dirty = git_state(dir)
  end
  if fields.seed ~= nil and math.type(fields.seed) ~= "integer" then
    local s = tonumber(fields.seed)
    if s and s == math.floor(s) then fields.seed = math.tointeger(s) end
  end
  local run = self:_start_run(fields)
  -- Params and tags are written after the run row exists; a bad one fails the run.
  local ok, err = pcall(function()
    if opts.params ~= nil then
      assert(type(opts.params) == "table", "field 'params' must be a table")
      local keys = {}
      for k in pairs(opts.params) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local v = opts.params[k]
        if v == nil then v = opts.params[tonumber(k)] end
        run:log_param(k, v)
      end
    end
    if opts.tags ~= nil then
      assert(type(opts.tags) == "table", "field 'tags' must be a table")
      for k, v in pairs(opts.tags) do run:set_tag(tostring(k), v) end
    end
    if sweep_tags then for k, v in pairs(sweep_tags) do run:set_tag(k, v) end end
  end)
  if not ok then
    run:fail(err)
    error(err, 2)
  end
  return run
end

--- store:with_run(opts, fn) -> fn's results
-- Starts a run, calls fn(run) under xpcall, finishes the run when fn returns
-- (unless fn ended it) and marks it failed with the error text (then re-raises)
-- when fn raises.
function Store:with_run(opts, fn)
  if type(fn) ~= "function" then
    check.arg(2, "with_run", "function expected, got " .. type(fn))
  end
  local run = self:start_run(opts)
  local res = table.pack(xpcall(fn, function(e)
    -- Keep the error object for the caller; the store gets the text and a traceback.
    return { err = e, text = debug.traceback(tostring(e), 2) }
  end, run))
  if not res[1] then
    run:fail(res[2].text)
    error(res[2].err, 0)
  end
  if run:status() == "running" then run:finish() end
  return table.unpack(res, 2, res.n)
end
Store.run_protected = Store.with_run

--- store:artifact_root() -> the folder under which runs/<id> folders go: the
-- store file's folder, or "results" (of the current folder) for a PostgreSQL store.
function Store:artifact_root()
  local path = self:path()
  if M.is_url(path) then return "results" end
  return path:match("^(.*)/[^/]*$") or "."
end

--- run:artifact_dir() -> path
-- The run's folder for saved models, caches and reports: runs/<id> beside the
-- store file (results/runs/<id> for the default store, and for a PostgreSQL
-- store), created when missing.
function Run:artifact_dir()
  local dir = self.store:artifact_root() .. "/runs/" .. self.id
  ensure_parent(dir .. "/x")
  return dir
end

--- run:should_prune(step, value) -> pruned, rung
-- The sweep's pruner (moonbert.asha) on this run at `step` (in the pruner's resource:
-- epochs or steps) with the metric's `value`: true when the trial should stop. Always
-- false outside a sweep with a pruner. The caller then stops and calls run:prune(rung).
function Run:should_prune(step, value) return require("moonbert.asha").should_prune(self, step, value) end

--- run:log_params{key = value, ...}
function Run:log_params(t)
  if type(t) ~= "table" then
    check.arg(1, "log_params", "table expected, got " .. type(t))
  end
  for k, v in pairs(t) do self:log_param(tostring(k), v) end
end

return M
