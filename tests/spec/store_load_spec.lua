-- store_load_spec.lua: the results store stays fast with months of runs. The queries behind
-- `moonbert results list/best/compare/show` (taken from the store's source, so this spec
-- follows the code) are planned by SQLite's EXPLAIN QUERY PLAN on a store made through mb.store:
-- every lookup of the metrics table (5 M rows after 10,000 runs) goes through an index
-- (metrics_by_run_key), never a scan. The timing itself, on a generated store of 10,000 runs and
-- 5 M metric rows, is `moonbert bench store` (a benchmark: building the store takes about a minute).
local mb = require "moonbert"
local support = require "tests.spec.support"

local have_sqlite = select(3, support.sh("command -v sqlite3")) == 0

-- The SQL text of the prepare() call in the store's source whose literals contain marker:
-- runtime/store_query.c (the reads) first, then the store's other files.
local STORE_FILES = {"store_query.c", "store_write.c", "store_run.c", "store_copy.c", "store.c"}
local function store_sql(marker)
  local parts = {}
  for i, f in ipairs(STORE_FILES) do parts[i] = support.read("runtime/" .. f) end
  local src = table.concat(parts, "\n")
  local at = src:find(marker, 1, true)
  assert(at, "runtime/store*.c have no query with " .. marker)
  local start = src:sub(1, at):match(".*()prepare%(s,")
  local stop = src:find(",%s*err%)", at)
  -- The first argument's literals: DIALECT(s, sqlite_sql, pg_sql) holds the SQLite text first,
  -- and a comma between two literals ends it.
  local parts, region, last = {}, src:sub(start, stop), nil
  for from, lit, to in region:gmatch('()"(.-)"()') do
    if last and region:sub(last, from - 1):find(",", 1, true) then break end
    parts[#parts + 1] = lit
    last = to
  end
  return table.concat(parts)
end

local function plan(db, sql)
  local out, err, code = support.sh("sqlite3 " .. support.q(db) .. " " .. support.q("EXPLAIN QUERY PLAN " .. sql))
  assert(code == 0, err)
  return out
end

local describe_sqlite = have_sqlite and describe or function(name) pending(name .. " (needs the sqlite3 shell)") end

describe_sqlite("the results store under load", function()
  local dir, db
  setup(function()
    dir = support.tmpdir()
    db = dir .. "/s.db"
    local store = mb.store.open(db)
    for i = 1, 30 do
      local run = store:start_run { experiment = "exp" .. (i % 3), git = false, params = { lr = i } }
      for s = 1, 20 do run:log_metrics({ ["train/loss"] = 1 / s, ["eval/accuracy"] = s / 20 }, { step = s }) end
      run:finish()
    end
    store:close()
  end)
  teardown(function() require("moonbert.checkpoint").rmtree(dir) end)

  local queries = {
    best = "FROM metrics m",
    final_metrics = "MAX(id) FROM metrics",
    metrics = "SELECT key, value, step, epoch, split, time FROM metrics",
    params = "SELECT key, value FROM params",
    tags = "SELECT key, value FROM tags",
  }
  for name, marker in pairs(queries) do
    it(name .. ": an index lookup, never a scan of a big table", function()
      local sql = store_sql(marker)
      local p = plan(db, sql)
      assert.is_falsy(p:find("SCAN metrics", 1, true) or p:find("SCAN m\n", 1, true) or p:find("SCAN m$"), p)
      assert.is_falsy(p:find("SCAN params", 1, true) or p:find("SCAN tags", 1, true), p)
      assert.is_truthy(p:find("USING", 1, true), p)
      if sql:find("FROM metrics", 1, true) then
        assert.is_truthy(p:find("metrics_by_run_key", 1, true), p)
      end
    end)
  end
end)
