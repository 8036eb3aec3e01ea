-- moonbert.sweep (mb.sweep): hyperparameter sweeps, one process per trial.
--
--   -- experiments/sweep_lr.lua (a spec is a Lua file returning a table)
--   return {
--     script = "experiments/baseline_vs_finetune.lua", args = { "--quick" },
--     grid = { lr = { 1e-5, 2e-5, 5e-5 }, batch_size = { 32, 64 } },
--     -- or random = { lr = { log_uniform = { 1e-5, 1e-4 } }, batch_size = { choice = { 32, 64 } } },
--     trials = 6, seed = 1,                 -- trials: required by random, caps a grid
--     metric = "val/accuracy", mode = "max",
--     experiment = "sweep_lr",              -- default: the sweep's name (the spec's file name)
--     store = "results/moonbert.db", jobs = 2, timeout = 3600,
--     -- sampler = "tpe", pruner = { asha = {...} }, max_trials =, max_minutes =: moonbert.search
--   }
--   moonbert sweep experiments/sweep_lr.lua [--jobs N] [--store PATH] [--dry-run]
--
-- Each trial is `moonbert run SCRIPT ARGS... --lr 2e-05 --batch-size 64 --store PATH`
-- in its own process (option names: '_' becomes '-'; true is a bare flag, false
-- leaves it out), at most `jobs` at a time, all writing to the same store. The
-- environment tells the trial's runs who they are (mb.store.start_run reads it):
-- MOONBERT_SWEEP=<name> and MOONBERT_TRIAL=<key> become tags, and
-- MOONBERT_EXPERIMENT=<experiment> replaces the script's experiment, so that
-- `moonbert results best --experiment <experiment> --metric M` ranks the trials.
-- A trial's key is its options in canonical form, "batch_size=64,lr=2e-05".
--
-- Resume: a trial with a completed run tagged with the sweep and its key is
-- skipped, so rerunning a sweep after a crash or Ctrl-C runs only what is left
-- (random search draws the same points from the same seed); a trial whose run
-- was interrupted or killed gets --resume when its script takes it, and
-- continues that run from its newest checkpoint. A trial whose
-- process fails is reported with its log and counted as failed; its run, if it
-- started one, is marked failed by the store. Random draws of floats are rounded
-- to 3 significant digits, so keys stay readable and repeatable.
-- Interrupting the sweep (Ctrl-C) stops its running trials (each is a process
-- group of its own, sent SIGTERM; their runs end up killed or failed) and a
-- rerun starts them again. A sweep killed with SIGKILL takes its trials with it:
-- each trial process is the sweep's own child with PR_SET_PDEATHSIG (setpriv
-- --pdeathsig KILL), so it dies with the sweep and its run shows as killed.
-- Limits: processes are started through /bin/sh, setpriv and setsid and polled
-- every 0.1 s.
--
-- On a SLURM cluster (`moonbert sweep SPEC --backend slurm`) the trials go out as one
-- job array: moonbert.sweep_slurm.
local M = {}

local fs = require "moonbert.fs"
local signal = require("moonbert.core").signal
local shq = fs.shell_quote

local function spec_error(path, msg) error("sweep spec " .. path .. ": " .. msg, 0) end

-- ---- option values and keys -----------------------------------------------------

--- sweep.format_value(v) -> the text of an option value, as in keys and on command lines.
function M.format_value(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
    local s = string.format("%.15g", v)
    if tonumber(s) ~= v then s = string.format("%.17g", v) end
    return s
  end
  return tostring(v)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- sweep.key(options) -> "a=1,b=2e-05" (sorted by name)
function M.key(options)
  local parts = {}
  for _, k in ipairs(sorted_keys(options)) do parts[#parts + 1] = k .. "=" .. M.format_value(options[k]) end
  return table.concat(parts, ",")
end

--- sweep.option_args(options) -> {"--batch-size", "64", "--lr", "2e-05", ...}
function M.option_args(options)
  local out = {}
  for _, k in ipairs(sorted_keys(options)) do
    local v, flag = options[k], "--" .. k:gsub("_", "-")
    if v == true then out[#out + 1] = flag
    elseif v ~= false then out[#out + 1] = flag; out[#out + 1] = M.format_value(v) end
  end
  return out
end

-- ---- the spec ---------------------------------------------------------------------

local KNOWN = { script = true, args = true, grid = true, random = true, trials = true, seed = true, metric = true,
                mode = true, experiment = true, name = true, store = true, jobs = true, timeout = true,
                -- moonbert.search: samplers, pruning, budgets
                sampler = true, tpe = true, pruner = true, max_trials = true, max_minutes = true }

-- A trial is done when a run of it completed (or a pruner stopped it: pruned).
local DONE = { completed = true, pruned = true }

local function check_name(path, k)
  if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
    spec_error(path, "option name " .. tostring(k) .. " must be an identifier (letters, digits, '_')")
  end
end

local function check_distribution(path, k, d)
  if type(d) ~= "table" then spec_error(path, "random." .. k .. " must be a table") end
  if #d > 0 then return { choice = d } end -- a plain list is a choice
  local kind = next(d)
  if next(d, kind) ~= nil then spec_error(path, "random." .. k .. " must hold one distribution") end
  local a = d[kind]
  if kind == "choice" then
    if type(a) ~= "table" or #a == 0 then spec_error(path, "random." .. k .. ".choice must be a non-empty list") end
  elseif kind == "uniform" or kind == "log_uniform" or kind == "int_uniform" then
    if type(a) ~= "table" or type(a[1]) ~= "number" or type(a[2]) ~= "number" or a[1] > a[2] then
      spec_error(path, "random." .. k .. "." .. kind .. " must be {low, high} with low <= high")
    end
    if kind == "log_uniform" and a[1] <= 0 then spec_error(path, "random." .. k .. ".log_uniform needs low > 0") end
  else
    spec_error(path, "random." .. k .. ": unknown distribution '" .. tostring(kind) ..
               "' (choice, uniform, log_uniform, int_uniform)")
  end
  return d
end

--- sweep.check_spec(spec, path) -> spec with defaults filled (raises on a bad spec)
function M.check_spec(spec, path)
  path = path or "(table)"
  if type(spec) ~= "table" then spec_error(path, "must return a table, got " .. type(spec)) end
  for k in pairs(spec) do
    if not KNOWN[k] then spec_error(path, "unknown field '" .. tostring(k) .. "'") end
  end
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  if type(s.script) ~= "string" or s.script == "" then spec_error(path, "field 'script' (path of a Lua script) is required") end
  if s.args ~= nil and type(s.args) ~= "table" then spec_error(path, "field 'args' must be a list of strings") end
  s.args = s.args or {}
  for i, a in ipairs(s.args) do s.args[i] = tostring(a) end
  if (s.grid == nil) == (s.random == nil) then spec_error(path, "give exactly one of 'grid' and 'random'") end
  if s.grid ~= nil then
    if type(s.grid) ~= "table" or next(s.grid) == nil then spec_error(path, "field 'grid' must be a table of option = {values}") end
    for k, vs in pairs(s.grid) do
      check_name(path, k)
      if type(vs) ~= "table" or #vs == 0 then spec_error(path, "grid." .. k .. " must be a non-empty list of values") end
    end
  else
    if type(s.random) ~= "table" or next(s.random) == nil then spec_error(path, "field 'random' must be a table of option = distribution") end
    local r = {}
    for k, d in pairs(s.random) do check_name(path, k); r[k] = check_distribution(path, k, d) end
    s.random = r
    if s.trials == nil then spec_error(path, "random search needs 'trials' (how many points to draw)") end
  end
  if s.trials ~= nil and (math.type(s.trials) ~= "integer" or s.trials < 1) then
    spec_error(path, "field 'trials' must be a positive integer")
  end
  s.seed = s.seed or 0
  if math.type(s.seed) ~= "integer" then spec_error(path, "field 'seed' must be an integer") end
  if type(s.metric) ~= "string" or s.metric == "" then spec_error(path, "field 'metric' (e.g. \"val/accuracy\") is required") end
  s.mode = s.mode or "max"
  if s.mode ~= "max" and s.mode ~= "min" then spec_error(path, "field 'mode' must be \"max\" or \"min\"") end
  if s.name == nil then
    s.name = path:match("([^/]+)%.lua$") or path:match("([^/]+)$") or "sweep"
  end
  if type(s.name) ~= "string" or s.name == "" then spec_error(path, "field 'name' must be a non-empty string") end
  s.experiment = s.experiment or s.name
  if type(s.experiment) ~= "string" or s.experiment == "" then spec_error(path, "field 'experiment' must be a non-empty string") end
  if s.store ~= nil and type(s.store) ~= "string" then spec_error(path, "field 'store' must be a path or a postgresql:// URL") end
  if s.jobs ~= nil and (math.type(s.jobs) ~= "integer" or s.jobs < 1) then spec_error(path, "field 'jobs' must be a positive integer") end
  if s.timeout ~= nil and (type(s.timeout) ~= "number" or s.timeout <= 0) then spec_error(path, "field 'timeout' must be a number of seconds") end
  require("moonbert.search").check(s, path)
  s.path = path
  return s
end

-- The spec's sandbox: a spec is data, so its chunk sees only pure functions (no os, io, load,
-- require, debug, getmetatable, pcall), runs at most SPEC_STEPS VM instructions and may grow
-- the Lua heap by about SPEC_HEAP_KB (checked after every instruction: one instruction can at
-- most double it); strings' methods are the same safe copy while it runs.
local SPEC_STEPS, SPEC_HEAP_KB = 1000000, 65536

local function copy_lib(lib, drop)
  local t = {}
  for k, v in pairs(lib) do if not drop[k] then t[k] = v end end
  return t
end

local function spec_env()
  -- the C functions that can build a big string in one call (between two instruction hooks)
  -- are capped at 1 MiB: rep, gsub with a string replacement (its worst case), table.concat;
  -- string.pack is left out ("c2000000000" pads to 2 GB)
  local str = copy_lib(string, { dump = true, pack = true })
  local rep, gsub, concat = string.rep, string.gsub, table.concat
  str.rep = function(s, n, sep)
    if type(n) == "number" and n * (#tostring(s) + #tostring(sep or "")) > 1048576 then
      error("string.rep: result over 1 MiB", 2)
    end
    return rep(s, n, sep)
  end
  str.gsub = function(s, pat, repl, n)
    if type(repl) == "string" or type(repl) == "number" then
      local len, r = #tostring(s), tostring(repl)
      local per_match = #r + select(2, gsub(r, "%%%d", "")) * len -- a capture is at most the subject
      local matches = len + 1
      if math.type(n) == "integer" and n >= 0 and n < matches then matches = n end
      if len + matches * per_match > 1048576 then error("string.gsub: result could exceed 1 MiB", 2) end
    end
    return gsub(s, pat, repl, n)
  end
  local tbl = copy_lib(table, {})
  tbl.concat = function(t, sep, i, j)
    if type(t) == "table" then
      local size, sep_len = 0, #tostring(sep or "")
      for k = i or 1, j or #t do
        local v = t[k]
        if type(v) ~= "string" and type(v) ~= "number" then break end -- concat raises the error
        size = size + #tostring(v) + sep_len
        if size > 1048576 then error("table.concat: result over 1 MiB", 2) end
      end
    end
    return concat(t, sep, i, j)
  end
  return {
    math = copy_lib(math, { randomseed = true }), string = str, table = tbl,
    utf8 = copy_lib(utf8, {}), pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tonumber = tonumber, tostring = tostring, error = error, assert = assert, rawequal = rawequal,
    rawlen = rawlen, rawget = rawget,
  }, str
end

--- sweep.load_spec_text(text, path) -> spec: load_spec on text (path names it in messages).
function M.load_spec_text(text, path)
  path = path or "(text)"
  local env, str = spec_env()
  local chunk, cerr = load(text, "@" .. path, "t", env)
  if not chunk then error("sweep spec " .. cerr, 0) end
  local co = coroutine.create(chunk)
  local heap0, steps = collectgarbage("count"), 0
  debug.sethook(co, function()
    steps = steps + 1
    if collectgarbage("count") - heap0 > SPEC_HEAP_KB then error("uses more than 64 MiB of memory", 0) end
    if steps > SPEC_STEPS then
      error("runs more than " .. SPEC_STEPS .. " instructions (a spec is data, not a program)", 0)
    end
  end, "", 1)
  local smt = getmetatable("")
  local string_index = smt.__index
  smt.__index = str
  local ok, spec = coroutine.resume(co)
  smt.__index = string_index
  if ok and coroutine.status(co) ~= "dead" then ok, spec = false, "yielded" end
  if not ok then error("sweep spec " .. path .. ": " .. tostring(spec), 0) end
  return M.check_spec(spec, path)
end

--- sweep.load_spec(path) -> spec. The file runs sandboxed (see spec_env): it is data.
function M.load_spec(path)
  local f, err = io.open(path, "rb")
  if not f then error("cannot read sweep spec " .. tostring(err), 0) end
  local text = f:read("a")
  f:close()
  return M.load_spec_text(text, path)
end

-- ---- the trials -----------------------------------------------------------------

local function round3(x)
  if x == 0 then return 0 end
  return tonumber(string.format("%.3g", x))
end

local function draw(d)
  local kind, a = next(d)
  if kind == "choice" then return a[math.random(1, #a)] end
  if kind == "int_uniform" then return math.random(math.ceil(a[1]), math.floor(a[2])) end
  if kind == "uniform" then return round3(a[1] + (a[2] - a[1]) * math.random()) end
  return round3(math.exp(math.log(a[1]) + (math.log(a[2]) - math.log(a[1])) * math.random()))
end

--- sweep.trials(spec [, store]) -> array of {index=, key=, options=}
-- Grid: the cartesian product in sorted option order (the last option varies
-- fastest), cut to spec.trials. Random: spec.trials distinct points drawn with
-- spec.seed (fewer when the space is smaller). TPE: the trials the store holds
-- (none without a store); new ones are drawn as the sweep runs (moonbert.search).
function M.trials(spec, store)
  local out, seen = {}, {}
  if spec.sampler == "tpe" then
    if not store then return out end
    for i, t in ipairs(require("moonbert.search").trials_in_store(store, spec)) do
      out[i] = { index = t.number or i, key = t.key, options = t.options, number = t.number }
    end
    return out
  end
  local function add(options)
    local key = M.key(options)
    if seen[key] then return end
    seen[key] = true
    out[#out + 1] = { index = #out + 1, key = key, options = options }
  end
  if spec.grid then
    local names = sorted_keys(spec.grid)
    local function walk(i, acc)
      if spec.trials and #out >= spec.trials then return end
      if i > #names then
        local o = {}
        for k, v in pairs(acc) do o[k] = v end
        add(o)
        return
      end
      for _, v in ipairs(spec.grid[names[i]]) do
        acc[names[i]] = v
        walk(i + 1, acc)
      end
      acc[names[i]] = nil
    end
    walk(1, {})
  else
    -- Lua 5.4's math.random is xoshiro256**: the same seed draws the same points.
    local saved = math.random(0)
    math.randomseed(spec.seed)
    local names = sorted_keys(spec.random)
    local attempts = 0
    while #out < spec.trials and attempts < spec.trials * 50 do
      attempts = attempts + 1
      local o = {}
      for _, k in ipairs(names) do o[k] = draw(spec.random[k]) end
      add(o)
    end
    math.randomseed(saved)
  end
  return out
end

-- ---- finding the binary and the script ---------------------------------------------

--- sweep.binary() -> path of the moonbert executable to run trials with
function M.binary()
  local env = os.getenv("MOONBERT_BIN")
  if env and env ~= "" then return env end
  local ok, lfs = pcall(require, "lfs")
  if ok then
    local a = lfs.symlinkattributes("/proc/self/exe")
    if a and a.target and a.target:match("/moonbert$") then return a.target end
    local root = rawget(_G, "MOONBERT_ROOT")
    if root and lfs.attributes(root .. "/build/bin/moonbert", "mode") == "file" then return root .. "/build/bin/moonbert" end
  end
  return "moonbert"
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

-- The script as named (relative to the current folder), else beside the spec.
local function resolve_script(spec)
  if exists(spec.script) or spec.script:sub(1, 1) == "/" then return spec.script end
  local dir = spec.path:match("^(.*)/[^/]*$")
  if dir and exists(dir .. "/" .. spec.script) then return dir .. "/" .. spec.script end
  return spec.script
end

local mkdir_p = fs.mkdir_p

--- sweep.store_path(spec, opts) -> the store the trials write to: opts.store, the
-- spec's store, else mb.store's default ($MOONBERT_STORE or results/moonbert.db).
function M.store_path(spec, opts)
  return (opts and opts.store) or spec.store or require("moonbert.store").default_path
end

--- sweep.log_dir(name, store_path) -> where a sweep's logs, job scripts and sweep.json go:
-- sweeps/<name>/ beside a store file, or under results/ for a PostgreSQL store.
function M.log_dir(name, store_path)
  local base = require("moonbert.store").is_url(store_path) and "results" or (store_path:match("^(.*)/[^/]*$") or ".")
  return base .. "/sweeps/" .. tostring(name):gsub("[^%w_%-]", "_")
end
local function log_dir_of(spec, store_path) return M.log_dir(spec.name, store_path) end

--- sweep.trial_command(spec, t, store_path [, bin [, extra]]) -> shell words: the trial's
-- environment (MOONBERT_SWEEP, MOONBERT_TRIAL, MOONBERT_EXPERIMENT, MOONBERT_TRIAL_NUMBER) and its
-- `moonbert run SCRIPT ARGS... --option value ... --store STORE [EXTRA...]`.
function M.trial_command(spec, t, store_path, bin, extra)
  local words = { "MOONBERT_SWEEP=" .. shq(spec.name), "MOONBERT_TRIAL=" .. shq(t.key),
                  "MOONBERT_EXPERIMENT=" .. shq(spec.experiment) }
  -- TPE: the trial's number (its random stream) becomes the tag trial_number
  if t.number then words[#words + 1] = "MOONBERT_TRIAL_NUMBER=" .. string.format("%d", t.number) end
  -- ASHA's settings reach the trial (moonbert.asha), on either backend
  if spec.pruner then words[#words + 1] = (require("moonbert.search").trial_env(spec, shq):gsub("^ ", "")) end
  for _, w in ipairs { shq(bin or M.binary()), "run", shq(resolve_script(spec)) } do words[#words + 1] = w end
  for _, a in ipairs(spec.args) do words[#words + 1] = shq(a) end
  for _, a in ipairs(M.option_args(t.options)) do words[#words + 1] = shq(a) end
  words[#words + 1] = "--store"
  words[#words + 1] = shq(store_path)
  for _, a in ipairs(extra or {}) do words[#words + 1] = shq(a) end
  return table.concat(words, " ")
end

-- ---- the store side ------------------------------------------------------------------

--- sweep.trial_runs(store, spec) -> {key = {runs...}} for runs tagged with the sweep
-- Each run record gains .tags and .value (its final spec.metric, or nil).
function M.trial_runs(store, spec)
  local by_key = {}
  for _, r in ipairs(store:runs { experiment = spec.experiment }) do
    local tags = store:tags(r.id)
    if tags.sweep == spec.name and tags.trial then
      r.tags = tags
      local m = store:final_metrics(r.id)[spec.metric]
      r.value = m and m.value
      by_key[tags.trial] = by_key[tags.trial] or {}
      table.insert(by_key[tags.trial], r)
    end
  end
  return by_key
end

--- sweep.done_keys(store, spec) -> {key = true} for trials with a completed (or pruned) run
function M.done_keys(store, spec)
  local done = {}
  for key, runs in pairs(M.trial_runs(store, spec)) do
    for _, r in ipairs(runs) do if DONE[r.status] then done[key] = true end end
  end
  return done
end

local function better(spec, a, b)
  if b == nil or b ~= b then return a ~= nil and a == a end
  if a == nil or a ~= a then return false end
  if spec.mode == "max" then return a > b end
  return a < b
end

--- sweep.rank(store, spec [, trials]) -> rows sorted best first:
---   {key=, status=, run_id=, value=} (value nil: no completed run or no metric)
-- A trial's value is the best final metric among its completed runs.
function M.rank(store, spec, trials)
  trials = trials or M.trials(spec, store)
  local runs = M.trial_runs(store, spec)
  local rows = {}
  for _, t in ipairs(trials) do
    local row = { key = t.key, index = t.index, status = "not run" }
    for _, r in ipairs(runs[t.key] or {}) do
      if r.status == "completed" then
        if row.status ~= "completed" or better(spec, r.value, row.value) then
          row.status, row.run_id, row.value = "completed", r.id, r.value
        end
      elseif r.status == "pruned" and row.status ~= "completed" then
        -- pruned: the value where it stopped, shown below the completed trials
        if row.status ~= "pruned" or better(spec, r.value, row.value) then
          row.status, row.run_id, row.value, row.rung = "pruned", r.id, r.value, r.pruned_rung
        end
      elseif row.status ~= "completed" and row.status ~= "pruned" then
        row.status, row.run_id = r.status, r.id
      end
    end
    rows[#rows + 1] = row
  end
  table.sort(rows, function(a, b)
    local ca, cb = a.status == "completed", b.status == "completed"
    if ca ~= cb then return ca end
    local ha, hb = a.value ~= nil and a.value == a.value, b.value ~= nil and b.value == b.value
    if ha ~= hb then return ha end
    if ha and a.value ~= b.value then return better(spec, a.value, b.value) end
    return a.index < b.index
  end)
  return rows
end

-- ---- running --------------------------------------------------------------------------

-- Sleep; true when a Ctrl-C (SIGINT to the terminal's process group) or a
-- SIGTERM ended the sleep: system() ignores SIGINT in this process while it
-- waits, so the dead sleep is how the sweep learns of the interruption.
function M.sleep_interrupted(s)
  local _, how, sig = os.execute("sleep " .. s)
  return how == "signal" and (sig == 2 or sig == 15)
end
local sleep_interrupted = M.sleep_interrupted

local read_file = fs.read_file

local function tail_lines(text, n)
  local lines = {}
  for l in (text or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
  return table.concat(lines, "\n", math.max(1, #lines - n + 1), #lines)
end

--- sweep.run(spec, opts) -> summary
--- trial_threads(jobs [, cores]) -> the MOONBERT_THREADS each of `jobs` parallel trials gets:
-- max(1, cores // jobs), cores from nproc; nil when the user set MOONBERT_THREADS (it is kept).
-- Without it every trial would start one thread per core: --jobs 2 on 2 cores ran 3x slower.
function M.trial_threads(jobs, cores)
  local set = os.getenv("MOONBERT_THREADS")
  if set and set:match("%d") then return nil end
  if not cores then
    local p = io.popen("nproc 2>/dev/null")
    cores = p and tonumber((p:read("a") or ""):match("%d+")) or 1
    if p then p:close() end
  end
  return math.max(1, cores // jobs)
end

-- opts: store (path; default spec.store or results/moonbert.db), jobs (default
-- spec.jobs or 1), binary (default sweep.binary()), dry_run, out (a file
-- handle for progress lines; io.stdout). summary: {trials=, skipped=,
-- completed=, failed=, failures = {{key=, code=, log=}}, ranking = sweep.rank(...),
-- interrupted = true when a Ctrl-C stopped it (then no ranking)}
-- sweep.with_signals(fn, spec, opts): fn(spec, opts) with
-- Ctrl-C and SIGTERM only setting a flag while a sweep runs (core.signal), which its loop reads
-- between steps: the host's own Ctrl-C handler raises "interrupted!" wherever Lua happens to
-- be, and outside the loop's pcall that lost the running trials and the summary.
function M.with_signals(fn, spec, opts)
  signal.watch()
  local ok, summary = pcall(fn, spec, opts)
  if ok and summary.interrupted then summary.signal = summary.signal or signal.pending() or "SIGINT" end
  signal.unwatch()
  signal.clear()
  if not ok then error(summary, 0) end
  return summary
end

M.STOP_GRACE = 30 -- seconds the trials get to save and end after a Ctrl-C

-- What `moonbert report --sweep NAME` needs beyond the runs' tags: the metric, the parameters
-- and the pruner (sweeps/<name>/sweep.json beside the store; both backends write it).
function M.write_sweep_json(spec, log_dir, n_trials)
  local params = {}
  for k in pairs(spec.grid or spec.random or {}) do params[#params + 1] = k end
  table.sort(params)
  fs.write_file_atomic(log_dir .. "/sweep.json", require("dkjson").encode {
    name = spec.name, experiment = spec.experiment, script = spec.script, metric = spec.metric, mode = spec.mode,
    parameters = params, trials = n_trials, pruner = spec.pruner })
end

local run_local
function M.run(spec, opts) return M.with_signals(run_local, spec, opts) end

function run_local(spec, opts)
  opts = opts or {}
  local out = opts.out or io.stdout
  local store_path = M.store_path(spec, opts)
  local jobs = opts.jobs or spec.jobs or 1
  local bin = opts.binary or M.binary()
  local mb_store = require "moonbert.store"
  local trials = M.trials(spec)
  local summary = { trials = #trials, skipped = 0, completed = 0, failed = 0, failures = {}, pruned = 0, stopped = 0 }
  local search = require "moonbert.search"

  local done, resumable = {}, {}
  if not (opts.dry_run and not exists(store_path)) then -- a dry run creates no store
    local store = mb_store.open(store_path)
    done = M.done_keys(store, spec)
    for key, runs in pairs(M.trial_runs(store, spec)) do
      for _, r in ipairs(runs) do
        if r.status == "interrupted" or r.status == "killed" then resumable[key] = true end
      end
    end
    store:close()
  end

  local todo = {}
  if spec.sampler == "tpe" then -- drawn one by one as slots free (moonbert.search)
    todo = search.tpe_queue(spec, store_path, exists)
    summary.trials, summary.skipped = todo.total_trials, todo.skipped
  end
  for _, t in ipairs(trials) do
    if done[t.key] then summary.skipped = summary.skipped + 1 else todo[#todo + 1] = t end
  end
  out:write(string.format("sweep %s: %d trials (%d already completed, %d to run, %d at a time); experiment %s, store %s\n",
                          spec.name, summary.trials, summary.skipped, #todo, jobs, spec.experiment, store_path))
  out:write(search.describe(spec))
  if opts.dry_run then
    for _, t in ipairs(trials) do
      out:write(string.format("  %s %s\n", done[t.key] and "done" or "todo", t.key))
    end
    if spec.sampler == "tpe" then out:write("  (tpe: new points are drawn as trials finish)\n") end
    return summary
  end
  local budget = search.budget(spec)

  local log_dir = log_dir_of(spec, store_path)
  mkdir_p(log_dir)
  local script = resolve_script(spec)
  -- A trial whose run was interrupted (SIGTERM: checkpointed) or killed continues that run when
  -- the script takes --resume (its --help says so; experiments/baseline_vs_finetune.lua does).
  local takes_resume
  if next(resumable) then
    local hp = io.popen(shq(bin) .. " run " .. shq(script) .. " --help 2>/dev/null")
    takes_resume = hp:read("a"):find("--resume", 1, true) ~= nil
    hp:close()
  end
  M.write_sweep_json(spec, log_dir, #trials)

  local function start(t)
    local stem = string.format("%s/%03d-%s", log_dir, t.index, t.key:gsub("[^%w_%-=.,]", "_"))
    t.log = stem .. ".log"
    -- The trial is this process's own child (popen's shell exec'd into it, so
    -- it keeps the pid it prints first), which the wait loop polls through
    -- /proc and reaps with close() for its exit status. setpriv --pdeathsig:
    -- the kernel kills it when the sweep dies, even by SIGKILL (a timeout
    -- wrapper forks, so its child gets the same). setsid: a process group of
    -- its own (pid = group id), stopped as a whole on Ctrl-C.
    local deathsig = "setpriv --pdeathsig KILL "
    local cmd = M.trial_command(spec, t, store_path, bin, takes_resume and resumable[t.key] and { "--resume" } or nil)
    local threads = M.trial_threads(jobs)
    if threads then cmd = "MOONBERT_THREADS=" .. threads .. " " .. cmd end
    if spec.timeout then
      cmd = "timeout " .. string.format("%d", math.ceil(spec.timeout)) .. " " .. deathsig .. "env " .. cmd
    else
      cmd = "env " .. cmd
    end
    local shell = "echo $$; exec " .. deathsig .. "setsid " .. cmd .. " < /dev/null > " .. shq(t.log) .. " 2>&1"
    t.proc = assert(io.popen(shell))
    t.pid = tonumber((t.proc:read("l") or ""):match("%d+"))
    t.started = mb_store.now()
    out:write(string.format("[%d/%d] start  %s (pid %s)\n", t.index, summary.trials, t.key, tostring(t.pid)))
    out:flush()
  end

  local running, next_i = {}, 1
  local function has_ended(t)
    local stat = t.pid and read_file("/proc/" .. t.pid .. "/stat")
    return not stat or stat:match("%) [ZX] ") ~= nil -- gone, or a zombie until close() reaps it
  end
  -- Ctrl-C / SIGTERM / an error: SIGTERM to each running trial's process group (the trainer
  -- checkpoints and marks its run interrupted), then wait for them (sweep.STOP_GRACE seconds,
  -- 30) and reap them, so that the store holds their final status before the sweep exits
  -- (the sweep's exit would SIGKILL them through --pdeathsig). A second Ctrl-C (or the grace
  -- running out) kills them at once; the store then calls their runs killed.
  local function stop_running(why)
    local n = #running
    summary.signal = summary.signal or signal.pending()
    signal.clear() -- from now on a signal is the second one
    for _, t in ipairs(running) do
      if t.pid then os.execute("kill -TERM -" .. t.pid .. " 2>/dev/null") end
    end
    if n > 0 then
      out:write(string.format("%s: stopping %d running trial%s (Ctrl-C again to kill them)\n", why, n, n == 1 and "" or "s"))
      out:flush()
    end
    local deadline = mb_store.now() + M.STOP_GRACE
    local killed = false
    while true do
      -- a trial has ended when its process is reaped and its process group is empty
      local alive = 0
      for _, t in ipairs(running) do
        if not t.reaped and has_ended(t) then t.proc:close(); t.reaped = true end
        if not t.reaped or (t.pid and os.execute("kill -0 -" .. t.pid .. " 2>/dev/null")) then alive = alive + 1 end
      end
      if alive == 0 then break end
      if killed or mb_store.now() > deadline or sleep_interrupted(0.1) or signal.pending() then
        if killed then os.execute("sleep 0.05") end
        for _, t in ipairs(running) do
          if t.pid then os.execute("kill -KILL -" .. t.pid .. " 2>/dev/null") end
        end
        killed = true
      end
    end
    running = {}
    out:write(string.format("%s: stopped %d running trial%s; rerun the sweep to go on\n", why, n, n == 1 and "" or "s"))
    out:flush()
    summary.interrupted = true
  end
  while (next_i <= #todo and not budget.spent) or #running > 0 do
    local ok, err = pcall(function()
      while #running < jobs and next_i <= #todo and not budget:check(out) do
        local t = todo[next_i]
        if not t then break end -- tpe: no new point left in the space
        start(t)
        budget.started = budget.started + 1
        running[#running + 1] = t
        next_i = next_i + 1
      end
      budget:check(out)
      if budget.out_of_time and #running > 0 then -- max_minutes: the trials still running are stopped
        -- (the whole process group, its shell too: no exit status will come)
        for _, t in ipairs(running) do
          if t.pid then os.execute("kill -TERM -" .. t.pid .. " 2>/dev/null") end
          t.stopped = true
          if t.proc then t.proc:close() end -- reap it
          summary.stopped = summary.stopped + 1
          out:write(string.format("[%d/%d] stopped %s (out of budget) after %.1fs\n", t.index, summary.trials, t.key,
                                  mb_store.now() - t.started))
        end
        running = {}
      end
      if sleep_interrupted(0.1) or signal.pending() then error("interrupted!", 0) end
    end)
    if not ok then
      stop_running(tostring(err):match("interrupted") and "interrupted" or ("error: " .. tostring(err)))
      if not tostring(err):match("interrupted") then error(err, 0) end
      return summary
    end
    for i = #running, 1, -1 do
      local t = running[i]
      if has_ended(t) then
        table.remove(running, i)
        local _, how, n = t.proc:close()
        local code = how == "exit" and n or (128 + (n or 0))
        local secs = mb_store.now() - t.started
        if code == 0 then
          summary.completed = summary.completed + 1
          out:write(string.format("[%d/%d] done   %s in %.1fs\n", t.index, summary.trials, t.key, secs))
        else
          summary.failed = summary.failed + 1
          summary.failures[#summary.failures + 1] = { key = t.key, code = code, log = t.log }
          out:write(string.format("[%d/%d] FAILED %s (exit %d after %.1fs), log %s:\n", t.index, summary.trials, t.key, code, secs, t.log))
          local tl = tail_lines(read_file(t.log), 6)
          if tl ~= "" then out:write("    " .. tl:gsub("\n", "\n    ") .. "\n") end
        end
        out:flush()
      end
    end
  end

  local store = mb_store.open(store_path)
  summary.ranking = M.rank(store, spec, spec.sampler ~= "tpe" and trials or nil) -- tpe: the store's trials
  store:close()
  -- A trial that exited 0 without a completed run of this sweep is not done either.
  local ran = {} -- trials started now that ran to their end (not stopped by the budget)
  for i = 1, next_i - 1 do
    local t = rawget(todo, i)
    if t and not t.stopped then ran[t.key] = true end
  end
  for _, row in ipairs(summary.ranking) do
    if row.status == "pruned" and ran[row.key] then
      summary.pruned = summary.pruned + 1
      summary.completed = summary.completed - 1
    elseif not DONE[row.status] and ran[row.key] then
      local listed = false
      for _, f in ipairs(summary.failures) do if f.key == row.key then listed = true end end
      if not listed then
        summary.completed = summary.completed - 1
        summary.failed = summary.failed + 1
        summary.failures[#summary.failures + 1] = { key = row.key, code = 0, log = nil, no_run = true }
        out:write(string.format("warning: trial %s exited 0 but recorded no completed run (does the script call store:start_run?)\n", row.key))
      end
    end
  end
  return summary
end

--- sweep.print_ranking(spec, ranking [, out]): the table of trials, best first, and the best.
function M.print_ranking(spec, ranking, out)
  out = out or io.stdout
  local rows = { { "RANK", "TRIAL", "RUN", spec.metric, "STATUS" } }
  for i, r in ipairs(ranking) do
    rows[#rows + 1] = { tostring(i), r.key, r.run_id and tostring(r.run_id) or "-",
                        r.value ~= nil and string.format("%.6g", r.value) or "-",
                        r.status .. (r.rung and string.format(" (rung %d)", r.rung) or "") }
  end
  require("moonbert.columns").print(rows, out)
  local best = ranking[1]
  if best and best.value ~= nil then
    out:write(string.format("best: %s (run %d) with %s = %.6g (%s)\n", best.key, best.run_id, spec.metric, best.value, spec.mode))
  else
    out:write("best: none (no completed trial logged " .. spec.metric .. ")\n")
  end
end

return M
