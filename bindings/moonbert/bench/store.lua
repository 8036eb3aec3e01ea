-- moonbert bench store: the results store after months of use.
--
-- Builds (once; kept in build/bench/) a store of 10,000 runs in 10 experiments with 5 params
-- each and 500 metric rows per run (400 train/loss, 50 eval/loss, 50 eval/accuracy: 5 M rows),
-- the runs through mb.store (so the file has the store's own schema and migrations), the metric
-- rows by one INSERT ... SELECT in the sqlite3 shell (5 M log_metric calls would take minutes).
-- Then times `moonbert results list`, `list --experiment`, `best` and `compare` of 3 runs as a
-- user runs them (the whole command, fastest of 3, with that run's CPU seconds) and reports the
-- load average beside them.
-- --quick: 1,000 runs of 50 rows. Needs the sqlite3 shell. Building takes about a minute.
local M = { summary = "results list/best/compare on a store of 10,000 runs and 5 M metric rows (seconds)" }

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function build(path, runs, per_run)
  local mb = require "moonbert"
  local store = mb.store.open(path)
  for i = 1, runs do
    local run = store:start_run { experiment = "exp" .. (i % 10), name = "trial-" .. i, seed = i, git = false,
                                  script = false,
                                  params = { lr = 1e-5 * (1 + i % 7), batch_size = 16 * (1 + i % 4), epochs = 2,
                                             warmup = 0.1, model = "distilbert-base-uncased" } }
    if i % 10 == 0 then run:fail("diverged") else run:finish() end
  end
  store:close()
  -- k = 0 .. per_run-1 for every run; k % 10 == 8, 9: the eval points (loss, accuracy)
  local sql = string.format([[
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < %d - 1)
INSERT INTO metrics (run_id, key, value, step, epoch, split, time)
SELECT r.id,
       CASE WHEN k.i %% 10 = 8 THEN 'eval/loss' WHEN k.i %% 10 = 9 THEN 'eval/accuracy' ELSE 'train/loss' END,
       CASE WHEN k.i %% 10 = 9 THEN 0.5 + 0.4 * ((r.id * 7919 + k.i) %% 1000) / 1000.0
            ELSE 2.0 / (1 + k.i) + ((r.id * 104729 + k.i) %% 100) / 1000.0 END,
       k.i + 1, (k.i + 1) / 250.0, CASE WHEN k.i %% 10 >= 8 THEN 'validation' ELSE 'train' END,
       r.start_time + k.i
FROM runs r CROSS JOIN k;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
]], per_run)
  local p = assert(io.popen("sqlite3 " .. sh_quote(path) .. " > /dev/null", "w"))
  p:write(sql)
  local ok = p:close()
  if not ok then error("bench store: the sqlite3 shell failed to fill " .. path, 0) end
end

local function scalar(path, sql)
  local p = assert(io.popen("sqlite3 " .. sh_quote(path) .. " " .. sh_quote(sql)))
  local v = tonumber(p:read("a"))
  p:close()
  return v
end

function M.run(opts)
  local lfs = require "lfs"
  local root = MOONBERT_ROOT or "."
  if not os.execute("command -v sqlite3 > /dev/null") then return { skipped = "needs the sqlite3 shell" } end
  local runs, per_run = 10000, 500
  if opts and opts.quick then runs, per_run = 1000, 50 end
  require("moonbert.fs").mkdir_p(root .. "/build/bench")
  local path = string.format("%s/build/bench/store-%dx%d.db", root, runs, per_run)
  local built_s
  if not lfs.attributes(path) then
    local t0 = require("moonbert.store").now()
    build(path, runs, per_run)
    built_s = require("moonbert.store").now() - t0
  end
  local bin = os.getenv("MOONBERT_BIN") or (root .. "/build/bin/moonbert")
  -- wall seconds of the fastest of 3, and the CPU seconds (user + sys) of that run: on a loaded
  -- machine the difference is time spent waiting for a CPU
  local function parse_times(line)
    local total = 0
    for m, sec in line:gmatch("(%d+)m([%d.]+)s") do total = total + tonumber(m) * 60 + tonumber(sec) end
    return total
  end
  local function time(args)
    local best, best_cpu
    for _ = 1, 3 do
      local t0 = require("moonbert.store").now()
      local p = io.popen("sh -c " .. sh_quote(sh_quote(bin) .. " results " .. args .. " --store " .. sh_quote(path)
        .. " > /dev/null && times"))
      local out = p:read("a")
      local ok = p:close()
      local t = require("moonbert.store").now() - t0
      if not ok then error("bench store: `moonbert results " .. args .. "` failed", 0) end
      if not best or t < best then
        local children = out:match("\n([^\n]*)\n?$") or ""
        best, best_cpu = t, parse_times(children)
      end
    end
    return best, best_cpu
  end
  local f = io.open("/proc/loadavg")
  local load = f and f:read("l"):match("^(%S+ %S+ %S+)")
  if f then f:close() end
  local res = { runs = scalar(path, "SELECT COUNT(*) FROM runs"), metric_rows = scalar(path, "SELECT COUNT(*) FROM metrics"),
                build_s = built_s, loadavg = load }
  res.list_s, res.list_cpu_s = time("list")
  res.list_experiment_s, res.list_experiment_cpu_s = time("list --experiment exp3")
  res.best_s, res.best_cpu_s = time("best --experiment exp3 --metric eval/accuracy")
  res.compare_s, res.compare_cpu_s = time(string.format("compare 17 %d %d", runs // 2, runs - 1))
  return res
end

return M
