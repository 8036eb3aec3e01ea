-- store_spec.lua: mb.store, the results store, from Lua.
--
-- References: sqlite3 reads of the file where it matters (row counts, integrity),
-- `git`, `hostname` and `sha256sum` for the provenance fields, real processes
-- ($MOONBERT_BIN run) for concurrency, failing scripts and SIGKILL.
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local shq, write = support.q, support.write

local ROOT = lfs.currentdir()
local BIN = os.getenv("MOONBERT_BIN") or (ROOT .. "/build/bin/moonbert")

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>/dev/null"))
  local out = f:read("a")
  f:close()
  return (out:gsub("%s+$", ""))
end

local function tmpdir()
  return sh("mktemp -d /tmp/moonbert-store-spec-XXXXXX")
end

local function exists(path) return lfs.attributes(path, "mode") ~= nil end

local function sleep(s) os.execute("sleep " .. s) end

require("tests.spec.store_api")("SQLite", {
  location = function(d) return d .. "/sub/dir/moonbert.db" end,
  file = true,
}, { describe = describe, it = it, before_each = before_each, after_each = after_each, assert = assert,
     pending = pending })

describe("mb.store (a SQLite file)", function()
  local dir, store
  before_each(function()
    dir = tmpdir()
    store = mb.store.open(dir .. "/sub/dir/moonbert.db")
  end)
  after_each(function()
    if store then store:close() end
    os.execute("rm -rf " .. shq(dir))
  end)

  it("creates the store and its folder, at the current schema version", function()
    assert.is_true(exists(dir .. "/sub/dir/moonbert.db"))
    assert.equal(mb.store.schema_version, store:schema_version())
    assert.equal(5, store:schema_version())
    assert.matches("moonbert.Store", tostring(store))
    assert.is_true(store:integrity_check())
  end)

  it("refuses a missing store when asked not to create one", function()
    local ok, err = pcall(mb.store.open, dir .. "/absent.db", { create = false })
    assert.is_false(ok)
    assert.matches("no results store at", err)
    assert.is_false(exists(dir .. "/absent.db"))
  end)
end)

-- ---- real processes ---------------------------------------------------------

local function have_bin()
  return exists(BIN)
end

describe("mb.store with several processes", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf " .. shq(dir)) end)

  it("a failing script marks its run failed with the script's error", function()
    if not have_bin() then pending("no moonbert binary at " .. BIN) return end
    local db = dir .. "/fail.db"
    write(dir .. "/fails.lua", [[
local store = mb.store.open(arg[1])
local run = store:start_run{experiment = "scripts"}
run:log_metric("x", 1)
local cfg = nil
print(cfg.epochs)
]])
    local rc = os.execute(shq(BIN) .. " run " .. shq(dir .. "/fails.lua") .. " " .. shq(db) .. " >/dev/null 2>&1")
    assert.is_not_true(rc)
    local s = mb.store.open(db)
    local r = s:runs()[1]
    assert.equal("failed", r.status)
    assert.matches("attempt to index a nil value", r.error)
    assert.matches("fails.lua:5", r.error)
    s:close()
  end)

  it("4 processes log 1,000 metrics each at the same time: 4,000 rows, no error", function()
    if not have_bin() then pending("no moonbert binary at " .. BIN) return end
    local db = dir .. "/conc.db"
    mb.store.open(db):close() -- created once, so that the writers race on rows, not on the schema
    write(dir .. "/writer.lua", [[
local db, k, start_at = arg[1], arg[2], tonumber(arg[3])
local store = mb.store.open(db)
local run = store:start_run{experiment = "concurrency", name = "writer-" .. k, params = {k = tonumber(k)}}
while mb.store.now() < start_at do os.execute("sleep 0.01") end
for i = 1, 1000 do run:log_metric("train/loss", 1 / i, {step = i}) end
run:finish()
]])
    local start_at = mb.store.now() + 1.0
    local cmd = {}
    for k = 1, 4 do
      cmd[#cmd + 1] = string.format("( %s run %s %s %d %.3f > %s 2>&1; echo $? > %s ) &", shq(BIN),
        shq(dir .. "/writer.lua"), shq(db), k, start_at, shq(dir .. "/log" .. k), shq(dir .. "/rc" .. k))
    end
    cmd[#cmd + 1] = "wait"
    os.execute(table.concat(cmd, "\n"))
    for k = 1, 4 do
      local f = io.open(dir .. "/rc" .. k)
      local rc = f and f:read("l")
      if f then f:close() end
      local lf = io.open(dir .. "/log" .. k)
      local log = lf and lf:read("a") or ""
      if lf then lf:close() end
      assert.equal("0", rc, "writer " .. k .. " failed: " .. log)
    end
    local s = mb.store.open(db)
    local runs = s:runs { experiment = "concurrency" }
    assert.equal(4, #runs)
    local total = 0
    local windows = {}
    for i, r in ipairs(runs) do
      assert.equal("completed", r.status)
      local series = s:metrics(r.id, "train/loss")
      assert.equal(1000, #series)
      for j, m in ipairs(series) do
        assert.equal(j, m.step)
      end
      total = total + #series
      windows[i] = { series[1].time, series[#series].time }
    end
    assert.equal(4000, total)
    -- The writers really overlapped (otherwise this test proves nothing about locking).
    local overlaps = 0
    for i = 1, 4 do
      for j = i + 1, 4 do
        if windows[i][1] < windows[j][2] and windows[j][1] < windows[i][2] then overlaps = overlaps + 1 end
      end
    end
    assert.is_true(overlaps >= 1, "no two writers overlapped in time")
    assert.is_true(s:integrity_check())
    s:close()
  end)

  it("a writer killed with SIGKILL leaves an intact store and a run marked killed", function()
    if not have_bin() then pending("no moonbert binary at " .. BIN) return end
    local db, ready = dir .. "/kill.db", dir .. "/ready"
    write(dir .. "/victim.lua", [[
local store = mb.store.open(arg[1])
local run = store:start_run{experiment = "sigkill", name = "victim"}
local rows = {}
for i = 1, 2000 do rows[i] = {label = i % 6, predicted = (i + 1) % 6, loss = i / 100, probs = {0.1, 0.2, 0.3, 0.4}} end
local deadline = mb.store.now() + 20
local i = 0
while mb.store.now() < deadline do
  i = i + 1
  run:log_metric("train/loss", 1 / i, {step = i})
  if i == 200 then io.open(arg[2], "w"):close() end
  if i % 50 == 0 then run:log_predictions("train", rows) end -- long transactions to die inside
end
run:finish()
]])
    local pid = sh(string.format("%s run %s %s %s > %s 2>&1 & echo $!", shq(BIN), shq(dir .. "/victim.lua"),
      shq(db), shq(ready), shq(dir .. "/victim.log")))
    assert.matches("^%d+$", pid)
    local waited = 0
    while not exists(ready) and waited < 15 do sleep(0.05); waited = waited + 0.05 end
    assert.is_true(exists(ready), "the writer never got going")
    sleep(0.1)
    os.execute("kill -9 " .. pid)
    -- Wait until the process is gone or a zombie.
    for _ = 1, 100 do
      local f = io.open("/proc/" .. pid .. "/stat")
      local st = f and f:read("a")
      if f then f:close() end
      if not st or st:match("%) Z") or st:match("%) X") then break end
      sleep(0.02)
    end
    local s = mb.store.open(db) -- opening reaps
    assert.is_true(s:integrity_check())
    local r = s:runs { experiment = "sigkill" }[1]
    assert.equal("killed", r.status)
    assert.matches("process " .. pid .. " on .* is gone", r.error)
    assert.equal(r.heartbeat, r.end_time) -- ended when last seen alive, not when reaped
    assert.is_true(#s:metrics(r.id, "train/loss") >= 200)
    s:close()
    local out = sh(shq(BIN) .. " results list --store " .. shq(db))
    assert.matches("killed", out)
  end)
end)
