-- results_cli_spec.lua: `moonbert results` (list, show, compare, best, export).
--
-- A store is filled through mb.store with known values; the command's output
-- is checked against them (CSV parsed by an RFC 4180 reader written here, JSON
-- decoded with dkjson).
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local shq = support.q
local json = require "dkjson"

local BIN = os.getenv("MOONBERT_BIN") or (lfs.currentdir() .. "/build/bin/moonbert")

local function capture(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  f:close()
  return (out:gsub("%s+$", ""))
end

-- Run the CLI: stdout, stderr, exit code.
local errfile = os.tmpname()
local function results(args, cwd)
  local cmd = (cwd and ("cd " .. shq(cwd) .. " && ") or "") .. shq(BIN) .. " results " .. args .. " 2>" .. shq(errfile)
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  local _, _, code = f:close()
  local ef = io.open(errfile)
  local err = ef:read("a")
  ef:close()
  return out, err, code
end

-- RFC 4180: quoted fields may hold commas, quotes ("") and line breaks.
local function parse_csv(text)
  local rows, row, field, i, n = {}, {}, {}, 1, #text
  local quoted = false
  while i <= n do
    local c = text:sub(i, i)
    if quoted then
      if c == '"' then
        if text:sub(i + 1, i + 1) == '"' then field[#field + 1] = '"'; i = i + 1
        else quoted = false end
      else
        field[#field + 1] = c
      end
    elseif c == '"' then
      quoted = true
    elseif c == "," then
      row[#row + 1] = table.concat(field); field = {}
    elseif c == "\r" or c == "\n" then
      if c == "\r" and text:sub(i + 1, i + 1) == "\n" then i = i + 1 end
      row[#row + 1] = table.concat(field); field = {}
      rows[#rows + 1] = row; row = {}
    else
      field[#field + 1] = c
    end
    i = i + 1
  end
  if #field > 0 or #row > 0 then row[#row + 1] = table.concat(field); rows[#rows + 1] = row end
  return rows
end

local NASTY = 'lr "fast", then; DROP TABLE runs; --'

describe("moonbert results", function()
  if not lfs.attributes(BIN, "mode") then
    it("needs the moonbert binary", function() pending("no moonbert binary at " .. BIN) end)
    return
  end

  local dir, db, ids
  setup(function()
    dir = capture("mktemp -d /tmp/moonbert-results-spec-XXXXXX")
    db = dir .. "/results/moonbert.db"
    local store = mb.store.open(db)
    ids = {}
    -- sweep: a ends at 0.80 (peak 0.90), b ends at 0.85, c failed at 0.99.
    local a = store:start_run { experiment = "sweep", name = "a", seed = 1, params = { lr = 1e-3, epochs = 3 } }
    for e, v in ipairs { 0.5, 0.9, 0.8 } do a:log_metric("val/accuracy", v, { epoch = e, split = "validation" }) end
    a:log_metric("val/loss", 0.123456789012345)
    a:log_confusion("validation", { { 9, 1 }, { 2, 8 } }, { "sadness", "joy" }, { epoch = 3 })
    a:finish()
    local b = store:start_run { experiment = "sweep", name = "b", seed = 2, params = { lr = 2e-5, epochs = 3 } }
    for e, v in ipairs { 0.7, 0.85 } do b:log_metric("val/accuracy", v, { epoch = e }) end
    b:finish()
    local c = store:start_run { experiment = "sweep", name = NASTY, params = { lr = 1, note = NASTY } }
    c:log_metric("val/accuracy", 0.99)
    c:fail("loss is NaN at step 12")
    local d = store:start_run { experiment = "baseline", name = "dummy", params = { strategy = "most_frequent" } }
    d:log_metric("val/accuracy", 0.35)
    d:finish()
    ids = { a = a.id, b = b.id, c = c.id, d = d.id }
    store:close()
  end)
  teardown(function()
    os.execute("rm -rf " .. shq(dir))
    os.remove(errfile)
  end)

  it("--help prints the commands and options, exit 0", function()
    local out, _, code = results("--help")
    assert.equal(0, code)
    for _, word in ipairs { "list", "show", "compare", "best", "export", "--store", "--format" } do
      assert.matches(word, out, 1, true)
    end
  end)

  it("list shows every run with its status; --experiment and --status filter", function()
    local out, err, code = results("list --store " .. shq(db))
    assert.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(5, #lines) -- header + 4 runs
    assert.matches("^ID%s+EXPERIMENT%s+NAME%s+STATUS", lines[1])
    assert.matches("^" .. ids.a .. "%s+sweep%s+a%s+completed", lines[2])
    assert.matches("failed", lines[4])
    assert.matches("loss is NaN at step 12", lines[4])
    local function count_lines(s) return select(2, s:gsub("[^\n]+", "")) end
    out = results("list --experiment sweep --store " .. shq(db))
    assert.equal(4, count_lines(out))
    out = results("list --status failed --store " .. shq(db))
    assert.equal(2, count_lines(out))
    assert.matches(tostring(ids.c), out)
    assert.not_matches("dummy", out)
  end)

  it("uses results/moonbert.db when --store is not given", function()
    local out, err, code = results("list", dir)
    assert.equal(0, code, err)
    assert.matches("dummy", out)
  end)

  it("show prints provenance, params, final metrics with their series length, confusion matrices", function()
    local out, err, code = results("show " .. ids.a .. " --store " .. shq(db))
    assert.equal(0, code, err)
    assert.matches("run " .. ids.a .. "  sweep / a", out, 1, true)
    assert.matches("status%s+completed", out)
    assert.matches("seed%s+1\n", out)
    assert.matches("lr%s+0.001\n", out)
    assert.matches("val/accuracy%s+0.8%s+epoch 3, validation, 3 points", out)
    assert.matches("true \\ predicted%s+sadness%s+joy", out)
    assert.matches("joy%s+2%s+8", out)
  end)

  it("list notes a pruned run's rung; show gives the UUID and the interruptions; a UUID names a run", function()
    local db2 = dir .. "/lifecycle.db"
    local store = mb.store.open(db2)
    local p = store:start_run { experiment = "asha", name = "slow" }
    p:prune(2)
    local i = store:start_run { experiment = "asha", name = "preempted" }
    i:interrupt("SIGTERM (preempted)")
    local uuid = i:uuid()
    store:close()
    local out, err, code = results("list --store " .. shq(db2))
    assert.equal(0, code, err)
    assert.matches(p.id .. "%s+asha%s+slow%s+pruned%s+.-pruned at rung 2", out)
    assert.matches(i.id .. "%s+asha%s+preempted%s+interrupted%s+.-SIGTERM %(preempted%)", out)
    out, err, code = results("list --status pruned --store " .. shq(db2))
    assert.equal(0, code, err)
    assert.not_matches("preempted", out)
    out, err, code = results("show " .. uuid .. " --store " .. shq(db2))
    assert.equal(0, code, err)
    assert.matches("run " .. i.id .. "  asha / preempted", out, 1, true)
    assert.matches("uuid%s+" .. uuid:gsub("%-", "%%-"), out)
    assert.matches("status%s+interrupted", out)
    assert.matches("events:\n%s+%d%d%d%d%-%d%d%-%d%d [%d:]+%s+interrupted", out)
  end)

  it("compare puts params and final metrics side by side and marks differences", function()
    local out, err, code = results("compare " .. ids.a .. " " .. ids.b .. " --store " .. shq(db))
    assert.equal(0, code, err)
    assert.matches("run " .. ids.a .. "%s+run " .. ids.b, out)
    assert.matches("%* param lr%s+0.001%s+2e%-05", out)
    assert.matches("  param epochs%s+3%s+3", out)
    assert.matches("%* metric val/accuracy%s+0.8%s+0.85", out)
    assert.matches("%* metric val/loss%s+0.123457%s+%-", out)
    local _, err2, code2 = results("compare " .. ids.a .. " --store " .. shq(db))
    assert.equal(2, code2)
    assert.matches("two or more", err2)
  end)

  it("best picks the completed run with the best final value", function()
    local out, err, code = results("best --experiment sweep --metric val/accuracy --store " .. shq(db))
    assert.equal(0, code, err)
    assert.matches("^run " .. ids.b .. " %(b%): val/accuracy = 0.85", out)
    out = results("best --experiment sweep --metric val/accuracy --mode min --store " .. shq(db))
    assert.matches("^run " .. ids.a .. " ", out)
    local _, err2, code2 = results("best --experiment sweep --metric val/f1 --store " .. shq(db))
    assert.equal(1, code2)
    assert.matches("no completed run of experiment 'sweep' has metric 'val/f1'", err2)
    local _, err3, code3 = results("best --metric val/accuracy --store " .. shq(db))
    assert.equal(2, code3)
    assert.matches("needs %-%-experiment", err3)
  end)

  it("export --format csv: one row per run, params and final metrics, exact values", function()
    local out, err, code = results("export --format csv --store " .. shq(db))
    assert.equal(0, code, err)
    local rows = parse_csv(out)
    assert.equal(5, #rows)
    local col = {}
    for i, name in ipairs(rows[1]) do col[name] = i end
    for _, name in ipairs { "id", "experiment", "name", "status", "seed", "param:lr", "param:note",
                            "metric:val/accuracy", "metric:val/loss", "error" } do
      assert.is_not_nil(col[name], "missing column " .. name)
    end
    local by_id = {}
    for i = 2, #rows do
      assert.equal(#rows[1], #rows[i])
      by_id[tonumber(rows[i][col.id])] = rows[i]
    end
    local a, c = by_id[ids.a], by_id[ids.c]
    assert.equal(1e-3, tonumber(a[col["param:lr"]]))
    assert.equal(0.8, tonumber(a[col["metric:val/accuracy"]]))
    assert.equal(0.123456789012345, tonumber(a[col["metric:val/loss"]]))
    assert.equal(NASTY, c[col.name])
    assert.equal(NASTY, c[col["param:note"]])
    assert.equal("failed", c[col.status])
    assert.equal("loss is NaN at step 12", c[col.error])
    assert.equal("", by_id[ids.d][col["param:lr"]])
  end)

  it("export --format json: runs with params, tags and whole metric series", function()
    local out, err, code = results("export --format json --experiment sweep --store " .. shq(db))
    assert.equal(0, code, err)
    local runs = json.decode(out)
    assert.equal(3, #runs)
    local a = runs[1]
    assert.equal(ids.a, a.id)
    assert.equal("sweep", a.experiment)
    assert.equal(1e-3, a.params.lr)
    assert.equal(3, #a.metrics["val/accuracy"])
    for e, v in ipairs { 0.5, 0.9, 0.8 } do
      assert.near(v, a.metrics["val/accuracy"][e].value, 1e-12)
      assert.equal(e, a.metrics["val/accuracy"][e].epoch)
    end
    assert.near(0.8, a.final_metrics["val/accuracy"], 1e-12)
    assert.same({ { 9, 1 }, { 2, 8 } }, a.confusion[1].matrix)
    assert.equal(NASTY, runs[3].name)
  end)

  it("export --output writes a file", function()
    local file = dir .. "/runs.csv"
    local _, err, code = results("export --format csv --output " .. shq(file) .. " --store " .. shq(db))
    assert.equal(0, code, err)
    assert.matches("wrote 4 runs", err)
    local f = assert(io.open(file))
    assert.equal(5, #parse_csv(f:read("a")))
    f:close()
  end)

  it("a run that does not exist is a clear error with a non-zero exit", function()
    local out, err, code = results("show 999 --store " .. shq(db))
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("no run 999 in", err)
    assert.not_matches("traceback", err)
    local _, err2, code2 = results("show abc --store " .. shq(db))
    assert.equal(2, code2)
    assert.matches("run id must be a positive integer, got 'abc'", err2)
    local _, err3, code3 = results("compare " .. ids.a .. " 4242 --store " .. shq(db))
    assert.equal(1, code3)
    assert.matches("no run 4242", err3)
  end)

  it("a missing store is an error and is not created; bad options are usage errors", function()
    local missing = dir .. "/nope.db"
    local _, err, code = results("list --store " .. shq(missing))
    assert.equal(1, code)
    assert.matches("no results store at", err)
    assert.is_nil(lfs.attributes(missing))
    local _, err2, code2 = results("export --format xml --store " .. shq(db))
    assert.equal(2, code2)
    assert.matches("must be one of csv, json", err2)
    local _, err3, code3 = results("frobnicate --store " .. shq(db))
    assert.equal(2, code3)
    assert.matches("unknown command 'frobnicate'", err3)
    local _, _, code4 = results("")
    assert.equal(2, code4)
  end)
end)
