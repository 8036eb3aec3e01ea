-- scripts/bench_asha.lua: the table of scripts/bench-asha, from its stores.
--
--   build/bin/moonbert run scripts/bench_asha.lua [--dir results/search-bench] [--seeds 3]
--
-- For each seed: budget B = the CPU seconds that random search's trials used in all (each
-- trial logs time/cpu_seconds). Each sweep's trials are taken in the order they ran until
-- their CPU adds up to B (or B/2); reported: trials run, how many completed and were pruned,
-- the best validation accuracy (eval/accuracy at the end of a completed trial) within B and
-- within B/2, and the CPU share of B at which the sweep first matched random search's best.
local args = require "moonbert.args"
local mb = require "moonbert"

local opts = args.parse(arg, {
  { "--dir", "DIR", "folder of the stores", default = "results/search-bench" },
  { "--seeds", "N", "sweep seeds", type = "number", default = 3 },
})

local CONFIGS = { { "random", "random search" }, { "random_asha", "random + ASHA" }, { "tpe_asha", "TPE + ASHA" } }

-- trials of one sweep in the order they ran: {status=, acc=, cpu=}
local function trials(name)
  local path = opts.dir .. "/" .. name .. ".db"
  if not io.open(path) then return nil end
  local store = mb.store.open(path, { create = false })
  local out = {}
  for _, r in ipairs(store:runs { experiment = name }) do
    if r.status == "completed" or r.status == "pruned" then
      local fm = store:final_metrics(r.id)
      out[#out + 1] = { status = r.status, acc = fm["eval/accuracy"] and fm["eval/accuracy"].value,
                        cpu = fm["time/cpu_seconds"] and fm["time/cpu_seconds"].value or 0, rung = r.pruned_rung }
    end
  end
  store:close()
  return out
end

local function within(ts, budget)
  local s = { trials = 0, completed = 0, pruned = 0, cpu = 0 }
  for _, t in ipairs(ts) do
    if s.cpu + t.cpu > budget + 1e-9 then break end
    s.cpu = s.cpu + t.cpu
    s.trials = s.trials + 1
    if t.status == "completed" then
      s.completed = s.completed + 1
      if t.acc and (s.best == nil or t.acc > s.best) then s.best = t.acc end
    else
      s.pruned = s.pruned + 1
    end
  end
  return s
end

-- the CPU at which a sweep's best completed accuracy first reached `target`
local function cpu_to_reach(ts, target)
  local cpu = 0
  for _, t in ipairs(ts) do
    cpu = cpu + t.cpu
    if t.status == "completed" and t.acc and t.acc >= target - 1e-12 then return cpu end
  end
  return nil
end

local function pct(x) return x and string.format("%.1f%%", 100 * x) or "-" end

print("| seed | budget B (CPU s) | sweep | trials in B (completed / pruned) | CPU spent | best val. accuracy in B | "
      .. "in B/2 | CPU to reach random's best |")
print("|---|---|---|---|---|---|---|---|")
local summary = {}
for seed = 1, math.tointeger(opts.seeds) do
  local base = trials("random-s" .. seed)
  if base and #base > 0 then
    local budget = 0
    for _, t in ipairs(base) do budget = budget + t.cpu end
    local target = within(base, budget).best
    for _, c in ipairs(CONFIGS) do
      local ts = trials(c[1] .. "-s" .. seed)
      if ts then
        local full, half = within(ts, budget), within(ts, budget / 2)
        local reach = target and cpu_to_reach(ts, target)
        print(string.format("| %d | %.0f | %s | %d (%d / %d) | %.0f s | %s | %s | %s |", seed, budget, c[2], full.trials,
          full.completed, full.pruned, full.cpu, pct(full.best), pct(half.best),
          reach and string.format("%.0f s (%.0f%% of B)", reach, 100 * reach / budget) or "not reached"))
        summary[c[1]] = summary[c[1]] or { reached_half = 0, seeds = 0 }
        summary[c[1]].seeds = summary[c[1]].seeds + 1
        if reach and reach <= budget / 2 + 1e-9 then summary[c[1]].reached_half = summary[c[1]].reached_half + 1 end
      end
    end
  end
end
print()
for _, c in ipairs(CONFIGS) do
  local s = summary[c[1]]
  if s then
    print(string.format("%s reached random search's best within B/2 in %d of %d seeds", c[2], s.reached_half, s.seeds))
  end
end
