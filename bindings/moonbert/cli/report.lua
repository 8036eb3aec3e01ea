-- moonbert report: write the HTML report of a run (moonbert.report) and print its path.
--
-- Exit codes: 0 written, 1 a store or run that does not exist or a folder that
-- cannot be written (message on stderr), 2 a usage error.
local args = require "moonbert.args"

local SPEC = {
  { "--store", "PATH", "results store", default = "results/moonbert.db" },
  { "--out", "DIR", "folder for index.html (default: runs/<id>/report beside the store)" },
}

local M = { summary = "write a run's HTML report (plots as inline SVG) and print its path" }

M.usage = args.usage(SPEC, [[
usage: moonbert report RUN [--store PATH] [--out DIR]

Writes one self-contained page (no script, nothing loaded from the network):
run details and params, class distribution and words per text, training
curves, confusion matrices, [CLS] feature maps before and after fine-tuning,
class probabilities of custom texts, and the highest and lowest losses.
Sections the run did not record say how to record them (see mb.report).

options:]])

function M.main(argv)
  local opts, rest = args.parse(argv, SPEC)
  if #rest ~= 1 then args.usage_error("report takes one run id (moonbert report RUN)") end
  local id = math.tointeger(tonumber(rest[1]))
  if not id or id <= 0 then args.usage_error("run id must be a positive integer, got '" .. rest[1] .. "'") end
  local ok, store = pcall(require("moonbert.store").open, opts.store, { create = false })
  if not ok then
    io.stderr:write("moonbert report: " .. tostring(store) .. "\n")
    return 1
  end
  local path, info = require("moonbert.report").write(store, id, opts.out)
  store:close()
  if not path then
    io.stderr:write("moonbert report: " .. tostring(info) .. "\n")
    return 1
  end
  for _, n in ipairs(info.notes) do io.stderr:write("note: " .. n .. "\n") end
  print(path)
  return 0
end

return M
