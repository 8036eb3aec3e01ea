-- moonbert.sweep_slurm: the SLURM backend of moonbert.sweep (`moonbert sweep SPEC --backend slurm`).
--
--   local slurm = require "moonbert.sweep_slurm"
--   local summary = slurm.run(spec, { store = "postgresql://...", jobs = 2, time = "1:00:00" })
--   slurm.run_trial(spec, n)          -- what array task n - 1 runs: `moonbert sweep SPEC --trial n`
--   slurm.print_status(spec, slurm.status(spec, opts))   -- `moonbert sweep SPEC --status`
--
-- The trials not yet completed go out as one job array, one array task per trial
-- (SLURM_ARRAY_TASK_ID = the trial's number - 1); they write to a central store (PostgreSQL).
--
-- Grid and random search: trial n is the n-th of sweep.trials(spec), known up front.
-- TPE (sampler = "tpe"): the array has spec.trials tasks and each draws its own point when it
-- starts, from the finished trials the store holds then (moonbert.search.draw_tpe), with trial
-- number n = SLURM_ARRAY_TASK_ID + 1 naming the random stream (the same stream as trial n of a
-- local sweep: with one task at a time, --jobs 1, a SLURM sweep draws what a local one with one
-- job draws). Before it trains, the task records the key it drew as a reservation run (status
-- running, tags sweep, trial, trial_number and sweep_reservation), so that tasks running at the
-- same time see each other's points and skip their keys; the trial's own run carries the tag
-- trial_number too, and the reservation is deleted when the trial process ends. A task whose
-- trial number already has a completed or pruned run exits at once; one whose trial was stopped
-- (scancel, a crash) runs the same key again, so a rerun of the sweep continues the same search.
-- A task killed with its reservation leaves it running until the store reaps it as killed.
--
-- Budgets: max_trials submits at most that many tasks; max_minutes cancels the array (scancel)
-- when it is spent while the sweep waits, and every task gets MOONBERT_SWEEP_DEADLINE (Unix
-- seconds): a task that starts after it exits 0 without running (so also under --no-wait).
-- A cancelled task's trial run ends interrupted (the trainer's SIGTERM handler) or is reaped as
-- killed; a rerun of the sweep runs it again.
local sweep = require "moonbert.sweep"
local fs = require "moonbert.fs"
local signal = require("moonbert.core").signal
local shq = fs.shell_quote

local M = {}

local DONE = { completed = true, pruned = true }

-- Output of a command, its exit code (stderr kept apart for messages).
local function capture(cmd)
  local errf = os.tmpname()
  local p = assert(io.popen(cmd .. " 2> " .. shq(errf)))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = fs.read_file(errf) or ""
  os.remove(errf)
  return out, code, (err:gsub("%s+$", ""))
end

-- The job name of a sweep's arrays (how --status and reruns find them in squeue).
local function job_name(spec) return "moonbert-sweep-" .. spec.name:gsub("[^%w_%-]", "_") end

local function open_store(spec, opts, o)
  return require("moonbert.store").open(sweep.store_path(spec, opts), o)
end

-- The sweep's trials in the store (moonbert.search.trials_in_store): by key, and the ones that
-- carry a trial number by number.
local function recorded(spec, opts)
  local store = open_store(spec, opts)
  local ok, list = pcall(require("moonbert.search").trials_in_store, store, spec)
  store:close()
  if not ok then error(list, 0) end
  local by_key, by_number = {}, {}
  for _, t in ipairs(list) do
    by_key[t.key] = t
    if t.number and not by_number[t.number] then by_number[t.number] = t end
  end
  return list, by_key, by_number
end

-- ---- the array task ---------------------------------------------------------------------------

-- TPE: trial n's point: the key recorded for it, or a new draw, reserved in the store.
-- -> t, store, reservation run | nil (the trial is done already). The store stays open while the
-- trial runs: closing it would end the reservation (failed).
local function tpe_trial(spec, n, opts)
  local search = require "moonbert.search"
  local list, _, by_number = recorded(spec, opts)
  local t = by_number[n]
  if t and DONE[t.state] then return nil end
  local store = open_store(spec, opts)
  if t then -- a rerun: the reservations of a task that was stopped are dropped (killed by now)
    for _, r in ipairs(store:runs { experiment = spec.experiment }) do
      local tags = r.status ~= "running" and store:tags(r.id)
      if tags and tags.sweep == spec.name and tags.sweep_reservation and tags.trial_number == tostring(n) then
        store:delete_run(r.id)
      end
    end
  end
  local function reserve(key)
    return store:start_run { experiment = spec.experiment, name = key, git = false, script = "-",
                             tags = { sweep = spec.name, trial = key, trial_number = tostring(n),
                                      sweep_reservation = "1" } }
  end
  if t and t.options then -- stopped before: the same point again
    return { index = n, number = n, key = t.key, options = t.options }, store, reserve(t.key)
  end
  local taken = {}
  for _, r in ipairs(list) do taken[r.key] = true end
  for _ = 1, 20 do
    local options, key = search.draw_tpe(spec, list, n, taken)
    if not options then break end
    local run = reserve(key)
    -- Another task may have drawn the same key between our read and our reservation: the
    -- earlier reservation keeps it, and the later one draws again.
    local _, by_key = recorded(spec, opts)
    if not by_key[key] or by_key[key].number == n then return { index = n, number = n, key = key, options = options }, store, run end
    run:interrupt("reservation of a TPE trial: another task holds the key")
    store:delete_run(run.id)
    taken[key] = true
  end
  store:close()
  error(string.format("trial %d: no new point left in the search space", n), 0)
end

--- slurm.run_trial(spec, n [, opts]) -> exit code: run trial number n (1-based) here, in the
-- foreground; what a SLURM array task does (`moonbert sweep SPEC --trial N`, N =
-- SLURM_ARRAY_TASK_ID + 1). opts: store, binary, out (messages; io.stderr).
function M.run_trial(spec, n, opts)
  opts = opts or {}
  local out = opts.out or io.stderr
  local now = require("moonbert.store").now
  local deadline = tonumber(os.getenv("MOONBERT_SWEEP_DEADLINE") or "")
  if deadline and now() >= deadline then
    out:write(string.format("trial %d not started: the sweep's max_minutes budget was spent\n", n))
    return 0
  end
  local t, store, reservation
  if spec.sampler == "tpe" then
    if n > spec.trials then error(string.format("no trial %d: the sweep has %d trials", n, spec.trials), 0) end
    t, store, reservation = tpe_trial(spec, n, opts)
    if not t then
      out:write(string.format("trial %d is done already (a completed or pruned run in the store)\n", n))
      return 0
    end
    out:write(string.format("trial %d: %s\n", n, t.key))
  else
    local trials = sweep.trials(spec)
    t = trials[n]
    if not t then error(string.format("no trial %d: the sweep has %d trials", n, #trials), 0) end
  end
  local cmd = "env " .. sweep.trial_command(spec, t, sweep.store_path(spec, opts), opts.binary)
  -- a SLURM task uses the CPUs it was given (--cpus-per-task), unless MOONBERT_THREADS is set
  local cpus = math.tointeger(tonumber(os.getenv("SLURM_CPUS_PER_TASK") or ""))
  local set = os.getenv("MOONBERT_THREADS")
  if cpus and cpus >= 1 and not (set and set:match("%d")) then cmd = "env MOONBERT_THREADS=" .. cpus .. " " .. cmd:gsub("^env ", "") end
  if spec.timeout then cmd = "timeout " .. string.format("%d", math.ceil(spec.timeout)) .. " " .. cmd end
  local ok, how, code = os.execute(cmd)
  if reservation then -- the trial's own run holds its outcome now (a running run cannot be deleted)
    -- (a store on another host may have reaped it as killed meanwhile: it has no heartbeat)
    pcall(reservation.interrupt, reservation, "reservation of a TPE trial, released")
    local dok, derr = pcall(store.delete_run, store, reservation.id)
    if not dok then out:write("warning: could not delete the reservation run " .. reservation.id .. ": " .. tostring(derr) .. "\n") end
    store:close()
  end
  if ok then return 0 end
  return how == "exit" and code or 128 + (code or 0)
end

-- ---- the submitting side ----------------------------------------------------------------------

--- slurm.tasks(spec) -> {[n] = {job=, state=}}: the sweep's array tasks SLURM still knows
-- (pending, running, completing), by trial number (1-based).
function M.tasks(spec)
  local out, code, err = capture("squeue -h -r -n " .. shq(job_name(spec)) .. " -o '%A %K %T'")
  if code ~= 0 then error("squeue failed: " .. err, 0) end
  local tasks = {}
  for job, idx, state in out:gmatch("(%d+)%s+(%d+)%s+(%S+)") do
    tasks[tonumber(idx) + 1] = { job = job, state = state }
  end
  return tasks
end

--- slurm.sbatch_args(opts) -> the sbatch options from the command line's
-- --partition, --time, --cpus-per-task, --mem, --gres and --sbatch-arg (a list).
function M.sbatch_args(opts)
  local a = {}
  for _, k in ipairs { "partition", "time", "cpus_per_task", "mem", "gres" } do
    if opts[k] then a[#a + 1] = "--" .. k:gsub("_", "-") .. "=" .. tostring(opts[k]) end
  end
  for _, x in ipairs(opts.sbatch_args or {}) do a[#a + 1] = x end
  return a
end

-- The sweep's trials by number: grid and random from the spec; TPE numbers 1..spec.trials with
-- the key recorded for each, if any (else "(drawn by its task)").
local function numbered_trials(spec, by_number)
  if spec.sampler ~= "tpe" then return sweep.trials(spec) end
  local trials = {}
  for n = 1, spec.trials do
    local t = by_number[n]
    trials[n] = { index = n, number = n, key = t and t.key or "(drawn by its task)", drawn = t ~= nil }
  end
  return trials
end

local function cancel_array(spec)
  local ids = {}
  for _, task in pairs(M.tasks(spec)) do ids[task.job] = true end
  for id in pairs(ids) do os.execute("scancel " .. shq(id)) end
end

--- slurm.run(spec, opts) -> summary (as sweep.run's)
-- Submits the trials neither completed in the store nor queued or running in
-- SLURM as one job array (sbatch --array=I,J,...%J), then waits for it, printing
-- each trial as it ends, and ranks. opts: store (a postgresql:// URL; a SQLite
-- file only with allow_shared_sqlite), jobs (at most this many tasks at once;
-- default all), partition, time, cpus_per_task, mem, gres, sbatch_args,
-- binary, spec_path, wait (false: submit and return), poll (seconds, 2), out.
-- Ctrl-C while waiting cancels the array (scancel) and returns interrupted.
local run
function M.run(spec, opts) return sweep.with_signals(run, spec, opts) end

function run(spec, opts)
  opts = opts or {}
  local out = opts.out or io.stdout
  local mb_store = require "moonbert.store"
  local store_path = sweep.store_path(spec, opts)
  if not mb_store.is_url(store_path) and not opts.allow_shared_sqlite then
    error("the store " .. store_path .. " is a SQLite file: trials on several nodes cannot share it (SQLite's " ..
          "locking does not work over a network file system). Give --store postgresql://user@host:port/db, or " ..
          "--allow-shared-sqlite on a single-node cluster", 0)
  end
  local _, by_key, by_number = recorded(spec, opts)
  local trials = numbered_trials(spec, by_number)
  local summary = { trials = #trials, skipped = 0, completed = 0, failed = 0, failures = {}, pruned = 0 }
  local function done(t)
    local r = t.drawn ~= false and by_key[t.key]
    return r and DONE[r.state]
  end
  local queued = M.tasks(spec)
  local todo, indices, waiting = {}, {}, 0
  for _, t in ipairs(trials) do
    if done(t) then summary.skipped = summary.skipped + 1
    elseif queued[t.index] then waiting = waiting + 1
    elseif spec.max_trials and #todo >= spec.max_trials then summary.not_submitted = (summary.not_submitted or 0) + 1
    else todo[#todo + 1] = t; indices[#indices + 1] = tostring(t.index - 1) end
  end
  if summary.not_submitted then
    out:write(string.format("budget: max_trials %d: %d trials left for a later run of the sweep\n", spec.max_trials,
                            summary.not_submitted))
  end
  out:write(string.format("sweep %s on SLURM: %d trials (%d already completed, %d queued or running, %d to submit); " ..
                          "experiment %s, store %s\n", spec.name, #trials, summary.skipped, waiting, #todo,
                          spec.experiment, store_path))
  out:write(require("moonbert.search").describe(spec))
  local log_dir = sweep.log_dir(spec.name, store_path)
  fs.mkdir_p(log_dir)
  sweep.write_sweep_json(spec, log_dir, #trials)
  local started = mb_store.now()
  local job
  if #todo > 0 then
    -- The array task runs this sweep's own trial runner with the same store.
    local script_path = log_dir .. "/job.sh"
    local f = assert(io.open(script_path, "w"))
    f:write("#!/bin/sh\n# written by moonbert sweep --backend slurm: array task N runs trial N + 1\n")
    if spec.max_minutes then -- tasks that start after the budget exit without running
      f:write(string.format("export MOONBERT_SWEEP_DEADLINE=%.3f\n", started + spec.max_minutes * 60))
    end
    f:write("exec ", shq(opts.binary or sweep.binary()), " sweep ", shq(opts.spec_path or spec.path), " --store ",
            shq(store_path), " --trial \"$((SLURM_ARRAY_TASK_ID + 1))\"\n")
    f:close()
    local array = table.concat(indices, ",") .. (opts.jobs and ("%" .. opts.jobs) or "")
    local words = { "sbatch", "--parsable", "--job-name=" .. shq(job_name(spec)), "--array=" .. array,
                    "--output=" .. shq(log_dir .. "/%A_%a.log"), "--chdir=" .. shq(require("lfs").currentdir()) }
    for _, a in ipairs(M.sbatch_args(opts)) do words[#words + 1] = shq(a) end
    words[#words + 1] = shq(script_path)
    local text, code, err = capture(table.concat(words, " "))
    if code ~= 0 then error("sbatch refused the array: " .. (err ~= "" and err or text), 0) end
    job = text:match("^(%d+)")
    out:write(string.format("submitted job array %s (%d tasks, --array=%s); logs %s/%s_<task>.log\n", job, #todo,
                            array, log_dir, job))
    out:flush()
  end
  summary.job = job
  if opts.wait == false then return summary end
  -- Wait: until SLURM has none of the sweep's tasks. A trial ends when its task
  -- leaves squeue; its outcome (and, for TPE, its key) is what the store says.
  local pending = {}
  for _, t in ipairs(todo) do pending[t.index] = t end
  for _, t in ipairs(trials) do if queued[t.index] and not done(t) then pending[t.index] = t end end
  while next(pending) do
    local ok, tasks = pcall(M.tasks, spec)
    if ok then
      local _, keys, numbers = recorded(spec, opts)
      for i, t in pairs(pending) do
        if not tasks[i] then
          pending[i] = nil
          local r = spec.sampler == "tpe" and numbers[i] or keys[t.key]
          local key = r and r.key or t.key
          local secs = mb_store.now() - started
          if r and r.state == "pruned" then
            summary.pruned = summary.pruned + 1
            out:write(string.format("[%d/%d] pruned %s at rung %s (%.0fs after submitting)\n", t.index, #trials, key,
                                    tostring(r.step), secs))
          elseif r and r.state == "completed" then
            summary.completed = summary.completed + 1
            out:write(string.format("[%d/%d] done   %s (%.0fs after submitting)\n", t.index, #trials, key, secs))
          else
            summary.failed = summary.failed + 1
            summary.failures[#summary.failures + 1] = { key = key, log = job and string.format("%s/%s_%d.log", log_dir, job, i - 1) }
            out:write(string.format("[%d/%d] FAILED %s (no completed run; log %s/<job>_%d.log)\n", t.index, #trials, key, log_dir, i - 1))
          end
          out:flush()
        end
      end
    end
    if next(pending) and spec.max_minutes and mb_store.now() - started >= spec.max_minutes * 60 then
      -- max_minutes: the array is cancelled; a rerun submits the trials not completed
      cancel_array(spec)
      local n = 0
      for _ in pairs(pending) do n = n + 1 end
      summary.stopped = n
      out:write(string.format("budget spent (max_minutes: %g minutes passed): cancelled the job array, %d trials " ..
                              "stopped or not started; rerun the sweep to go on\n", spec.max_minutes, n))
      out:flush()
      break
    end
    if next(pending) and (signal.pending() or sweep.sleep_interrupted(opts.poll or 2) or signal.pending()) then
      cancel_array(spec)
      out:write("interrupted: cancelled the job array; rerun the sweep to submit what is left\n")
      out:flush()
      summary.interrupted = true
      return summary
    end
  end
  local s3 = open_store(spec, opts)
  summary.ranking = sweep.rank(s3, spec, spec.sampler ~= "tpe" and trials or nil) -- tpe: the store's trials
  s3:close()
  return summary
end

--- slurm.status(spec, opts) -> rows {index=, key=, slurm=, status=, run_id=, value=} in trial order:
-- each trial's state in SLURM (squeue: PENDING, RUNNING, ...; "-" when SLURM has
-- no task of it) and in the store (its best run's status, or "not run"). TPE: a task that has
-- not drawn its point yet is a row "(drawn by its task)".
function M.status(spec, opts)
  local store = open_store(spec, opts, { create = false })
  local ranking = sweep.rank(store, spec)
  store:close()
  local ok, tasks = pcall(M.tasks, spec)
  if not ok then tasks = {} end
  if spec.sampler == "tpe" then
    local seen = {}
    for _, r in ipairs(ranking) do seen[r.index] = true end
    for n in pairs(tasks) do
      if not seen[n] then ranking[#ranking + 1] = { index = n, key = "(drawn by its task)", status = "not run" } end
    end
  end
  table.sort(ranking, function(a, b) return a.index < b.index end)
  for _, r in ipairs(ranking) do
    r.slurm = ok and (tasks[r.index] and (tasks[r.index].state .. " (job " .. tasks[r.index].job .. ")") or "-")
              or "? (no squeue)"
  end
  return ranking
end

--- slurm.print_status(spec, rows [, out]): the table of slurm.status.
function M.print_status(spec, rows, out)
  local t = { { "TRIAL", "KEY", "SLURM", "STORE", "RUN", spec.metric } }
  for _, r in ipairs(rows) do
    t[#t + 1] = { tostring(r.index), r.key, r.slurm or "-", r.status .. (r.rung and string.format(" (rung %d)", r.rung) or ""),
                  r.run_id and tostring(r.run_id) or "-",
                  r.value ~= nil and string.format("%.6g", r.value) or "-" }
  end
  require("moonbert.columns").print(t, out or io.stdout)
end

return M
