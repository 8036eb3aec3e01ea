-- moonbert bench NAME...: benchmark figures as JSON.
--
-- Each benchmark is a module moonbert.bench.<name> returning
--   { summary = "...", run = function(opts) -> table of figures }
-- `moonbert bench all` runs every one; the output is one JSON object keyed by name.
local args = require "moonbert.args"

local SPEC = {
  { "--threads", "N", "thread count (default: MOONBERT_THREADS or all cores)", type = "number" },
  { "--quick", nil, "smaller sizes, for tests" },
  { "--device", "DEV", "cpu, cuda or auto (train: cuda runs the GPU step)", default = "cpu" },
  { "--precision", "P", "fp32 or bf16 on the CPU (bench train); fp32, tf32 or bf16 on cuda (default: each)",
    choices = { "fp32", "tf32", "bf16" } },
  { "--out", "FILE", "also write the JSON to FILE" },
}

local function bench_names()
  local names = {}
  local lfs = require "lfs"
  local one = package.searchpath("moonbert.bench.matmul", package.path)
  local dir = one and one:match("^(.*)/[^/]*$") or ((MOONBERT_ROOT or ".") .. "/bindings/moonbert/bench")
  for file in lfs.dir(dir) do
    local n = file:match("^([%w_]+)%.lua$")
    if n then names[#names + 1] = n end
  end
  table.sort(names)
  return names
end

local M = { summary = "throughput and memory figures as JSON (moonbert bench --help lists them)" }

M.usage = function()
  return args.usage(SPEC, "usage: moonbert bench NAME... | all  [options]\n\nbenchmarks: " ..
    table.concat(bench_names(), ", ") .. "\n\noptions:")
end

function M.main(argv)
  local opts, names = args.parse(argv, SPEC)
  if #names == 0 then args.usage_error("which benchmark? one of: all, " .. table.concat(bench_names(), ", ")) end
  if names[1] == "all" then names = bench_names() end
  local mb = require "moonbert"
  if opts.threads then mb.set_threads(opts.threads) end
  local result = {}
  for _, name in ipairs(names) do
    local ok, b = pcall(require, "moonbert.bench." .. name)
    if not ok then args.usage_error("unknown benchmark '" .. name .. "'") end
    io.stderr:write("bench " .. name .. " ...\n")
    if #names > 1 then
      -- one benchmark that cannot run here (no GPU) must not hide the others' figures
      local okr, r = pcall(b.run, opts)
      result[name] = okr and r or { skipped = args.message(r) }
      if not okr then io.stderr:write("bench " .. name .. ": skipped: " .. args.message(r) .. "\n") end
    else
      result[name] = b.run(opts)
    end
  end
  result.threads = mb.threads()
  local text = args.json(result, { indent = true })
  print(text)
  if opts.out then
    local f = assert(io.open(opts.out, "w"))
    f:write(text, "\n")
    f:close()
  end
  return 0
end

M.usage = M.usage()
return M
