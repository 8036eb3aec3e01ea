-- moonbert sweep: run a hyperparameter grid or random search (moonbert.sweep).
--
-- Exit codes: 0 every trial completed (now or in an earlier run of the sweep),
-- 1 a trial failed or the spec or store is unusable (message on stderr),
-- 2 a usage error, 130 interrupted (Ctrl-C; running trials are stopped and reaped first),
-- 143 the same for a SIGTERM to the sweep.
local args = require "moonbert.args"

local SPEC = {
  { "--jobs", "N", "trials run at once (local: processes; slurm: the array's %limit) (default: the spec's jobs, else 1; slurm: all)", type = "number" },
  { "--store", "PATH", "results store, a file or postgresql://... (default: the spec's store, else $MOONBERT_STORE, else results/moonbert.db)" },
  { "--dry-run", nil, "list the trials and which are already completed; run nothing" },
  { "--rank", nil, "print the ranking of the trials run so far; run nothing" },
  { "--backend", "B", "local (processes on this machine) or slurm (one job array)", default = "local", choices = { "local", "slurm" } },
  { "--status", nil, "each trial's state in SLURM (squeue) and in the store; run nothing" },
  { "--partition", "P", "slurm: sbatch --partition" },
  { "--time", "T", "slurm: sbatch --time, a trial's time limit (e.g. 2:00:00)" },
  { "--cpus-per-task", "N", "slurm: sbatch --cpus-per-task" },
  { "--mem", "M", "slurm: sbatch --mem (e.g. 8G)" },
  { "--gres", "G", "slurm: sbatch --gres (e.g. gpu:1)" },
  { "--sbatch-arg", "ARG", "slurm: any other sbatch option, e.g. --sbatch-arg=--qos=long (repeatable)", multiple = true },
  { "--allow-shared-sqlite", nil, "slurm: accept a SQLite store (a single-node cluster only)" },
  { "--no-wait", nil, "slurm: submit the array and return (see --status)" },
  { "--trial", "N", "run trial N (1-based) here and exit with its status (what each array task runs)", type = "number" },
}

local M = { summary = "run a hyperparameter sweep (grid, random or TPE, ASHA pruning), several processes, resumable" }

M.usage = args.usage(SPEC, [[
usage: moonbert sweep SPEC.lua [--jobs N] [--store PATH] [--dry-run | --rank | --status]
       moonbert sweep SPEC.lua --backend slurm --store postgresql://user@host/db
                      [--partition P] [--time T] [--cpus-per-task N] [--mem M] [--gres G]
                      [--sbatch-arg ARG]... [--no-wait]

SPEC.lua returns a table:
  script = "experiments/baseline_vs_finetune.lua", args = {"--quick"},
  grid = { lr = {1e-5, 2e-5}, batch_size = {32, 64} },       -- every combination
  -- or random = { lr = {log_uniform = {1e-5, 1e-4}}, batch_size = {choice = {32, 64}} },
  --    (also uniform = {a, b}, int_uniform = {a, b}), with seed = 1
  sampler = "tpe",               -- with random = {...}: TPE draws each point from the finished trials
  pruner = { asha = { min_resource = 1, reduction_factor = 3, resource = "epoch" } },
                                 -- stop trials outside the top 1/3 at epochs 1, 3, 9 (status pruned)
  max_trials = 20, max_minutes = 30,  -- budgets of this run of the sweep
  trials = 6,                    -- random: points to draw; grid: at most this many
  metric = "val/accuracy", mode = "max",
  experiment = "sweep_lr",       -- experiment of the trials' runs (default: spec file name)
  store = "results/moonbert.db", jobs = 2, timeout = 3600 (seconds per trial)

Each trial runs `moonbert run SCRIPT ARGS --lr 2e-05 --batch-size 64 --store PATH`.
Trials already completed are skipped, so rerunning resumes. At the end the
trials are ranked by the metric; `moonbert results best --experiment E --metric M`
and `moonbert results compare` work on their runs. Logs: sweeps/<name>/ beside the store
(results/sweeps/<name>/ for a PostgreSQL store).

--backend slurm submits the trials not yet completed (nor queued) as one job array
(sbatch --array=...%J), one task per trial, writing to a central PostgreSQL store
(a SQLite file is refused unless --allow-shared-sqlite), and waits for it; Ctrl-C
cancels the array (scancel). Rerunning submits only what is not completed. With
sampler = "tpe" each task draws its own point when it starts, from the trials the
store holds then; max_minutes cancels the array and tasks starting later exit.

options:]])

function M.main(argv)
  local opts, rest = args.parse(argv, SPEC)
  if #rest ~= 1 then args.usage_error("sweep takes one spec file (moonbert sweep SPEC.lua)") end
  if opts.jobs ~= nil and (opts.jobs < 1 or opts.jobs ~= math.floor(opts.jobs)) then
    args.usage_error("option '--jobs' must be a positive integer, got " .. tostring(opts.jobs))
  end
  local sweep = require "moonbert.sweep"
  local ok, spec = pcall(sweep.load_spec, rest[1])
  if not ok then
    io.stderr:write("moonbert sweep: " .. tostring(spec) .. "\n")
    return 1
  end
  if opts.trial then
    local n = args.integer(opts, "trial", 1)
    local rok, code = pcall(require("moonbert.sweep_slurm").run_trial, spec, n, { store = opts.store })
    if not rok then
      io.stderr:write("moonbert sweep: " .. tostring(code) .. "\n")
      return 1
    end
    return code
  end
  if opts.status then
    local slurm = require "moonbert.sweep_slurm"
    local rok, rows = pcall(slurm.status, spec, { store = opts.store })
    if not rok then
      io.stderr:write("moonbert sweep: " .. tostring(rows) .. "\n")
      return 1
    end
    slurm.print_status(spec, rows)
    return 0
  end
  if opts.rank then
    local rok, err = pcall(function()
      local store = require("moonbert.store").open(sweep.store_path(spec, opts), { create = false })
      local ranking = sweep.rank(store, spec)
      store:close()
      sweep.print_ranking(spec, ranking)
    end)
    if not rok then
      io.stderr:write("moonbert sweep: " .. tostring(err) .. "\n")
      return 1
    end
    return 0
  end
  local summary
  if opts.backend == "slurm" and not opts.dry_run then
    ok, summary = pcall(require("moonbert.sweep_slurm").run, spec, {
      jobs = opts.jobs and math.tointeger(opts.jobs), store = opts.store, spec_path = rest[1],
      partition = opts.partition, time = opts.time, cpus_per_task = opts.cpus_per_task, mem = opts.mem,
      gres = opts.gres, sbatch_args = opts.sbatch_arg, allow_shared_sqlite = opts.allow_shared_sqlite,
      wait = not opts.no_wait })
    if ok and opts.no_wait then return 0 end
  else
    ok, summary = pcall(sweep.run, spec, { jobs = opts.jobs and math.tointeger(opts.jobs), store = opts.store,
                                           dry_run = opts.dry_run })
  end
  if not ok then
    io.stderr:write("moonbert sweep: " .. tostring(summary) .. "\n")
    return 1
  end
  if opts.dry_run then return 0 end
  if summary.interrupted then return summary.signal == "SIGTERM" and 143 or 130 end
  io.stdout:write("\n")
  sweep.print_ranking(spec, summary.ranking)
  io.stdout:write(string.format("%d trials: %d completed now, %d skipped (already completed), %d failed%s%s\n",
                                summary.trials, summary.completed, summary.skipped, summary.failed,
                                spec.pruner and string.format(", %d pruned", summary.pruned or 0) or "",
                                (summary.stopped or 0) > 0 and string.format(", %d stopped by the budget", summary.stopped) or ""))
  return summary.failed == 0 and 0 or 1
end

return M
