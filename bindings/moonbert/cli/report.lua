-- moonbert report: write the HTML report of a run, or of a sweep's trials (moonbert.report),
-- and print its path.
--
-- Exit codes: 0 written, 1 a store, run or sweep that does not exist or a folder that
-- cannot be written (message on stderr), 2 a usage error.
local args = require "moonbert.args"

local SPEC = {
  { "--store", "PATH", "results store: a SQLite file or postgresql://user@host:port/db (default: $MOONBERT_STORE, else results/moonbert.db)",
    default = require("moonbert.store").default_path },
  { "--out", "DIR", "folder for index.html (default: runs/<id>/report, or sweeps/<name>/report, beside the store)" },
  { "--sweep", "NAME", "report on the trials of sweep NAME instead of one run" },
  { "--metric", "KEY", "with --sweep: the metric that ranks the trials (default: the sweep's, else val/accuracy)" },
  { "--mode", "MODE", "with --sweep: max or min (default: the sweep's, else max)", choices = { "max", "min" } },
}

local M = { summary = "write a run's (or a sweep's) HTML report, plots as inline SVG, and print its path" }

M.usage = args.usage(SPEC, [[
usage: moonbert report RUN [--store PATH] [--out DIR]
       moonbert report --sweep NAME [--metric KEY] [--mode max|min] [--store PATH] [--out DIR]

Writes one self-contained page (no script, nothing loaded from the network) that
prints cleanly to PDF. A run's page opens with the comparison of every model it
trained (accuracy and weighted F1 on validation, test and out-of-domain data,
the best in bold, the time each took) under a banner naming the initial weights,
then the run's details, class distribution and words per text, training curves,
confusion matrices, [CLS] feature maps before and after fine-tuning, custom
texts and the highest and lowest losses; a section the run did not record is
left out. A sweep's page ranks its trials by the metric and plots the metric
against each parameter, the best marked.

options:]])

local function open_store(path)
  local ok, store = pcall(require("moonbert.store").open, path, { create = false })
  if not ok then args.fail(tostring(store)) end
  return store
end

function M.main(argv)
  local opts, rest = args.parse(argv, SPEC)
  local report = require "moonbert.report"
  if opts.sweep then
    if #rest ~= 0 then args.usage_error("--sweep NAME takes no run id") end
    local store = open_store(opts.store)
    local path, info = report.write_sweep(store, opts.sweep, opts.out, { metric = opts.metric, mode = opts.mode })
    store:close()
    if not path then args.fail(tostring(info)) end
    print(path)
    return 0
  end
  if opts.metric or opts.mode then args.usage_error("--metric and --mode go with --sweep NAME") end
  if #rest ~= 1 then args.usage_error("report takes one run id (moonbert report RUN) or --sweep NAME") end
  local id = math.tointeger(tonumber(rest[1]))
  if not id or id <= 0 then args.usage_error("run id must be a positive integer, got '" .. rest[1] .. "'") end
  local store = open_store(opts.store)
  local path, info = report.write(store, id, opts.out)
  store:close()
  if not path then args.fail(tostring(info)) end
  for _, n in ipairs(info.notes) do io.stderr:write("note: " .. n .. "\n") end
  print(path)
  return 0
end

return M
