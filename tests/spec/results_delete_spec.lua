-- results_delete_spec.lua: `moonbert results delete RUN...` and `moonbert results gc`, run as a
-- user would on a store made through mb.store: deleting removes a run and every row logged to
-- it (checked through the store API and with sqlite3 row counts), refuses a running run and an
-- unknown id before deleting anything, and leaves the run's folder; gc removes exactly the folders
-- of runs no longer in the store (--dry-run removes nothing).
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"

local BIN = os.getenv("MOONBERT_BIN")
local have_bin = BIN and io.open(BIN, "r") ~= nil
local have_sqlite = select(3, support.sh("command -v sqlite3")) == 0
local describe_bin = (have_bin and have_sqlite) and describe or function(name)
  pending(name .. (have_bin and " (needs the sqlite3 shell)" or " (MOONBERT_BIN not built)"))
end

describe_bin("moonbert results delete / gc", function()
  local dir, db, store, ids, live
  local function results(a) return support.sh(support.q(BIN) .. " results " .. a .. " --store " .. support.q(db)) end
  local function count(sql)
    local out = support.sh("sqlite3 " .. support.q(db) .. " " .. support.q(sql))
    return tonumber(out)
  end

  setup(function()
    dir = support.tmpdir()
    db = dir .. "/s.db"
    store = mb.store.open(db)
    ids = {}
    for i = 1, 3 do
      local run = store:start_run { experiment = "del", git = false, params = { i = i }, tags = { t = "x" } }
      run:log_metrics({ loss = 1 / i, acc = i / 3 }, { step = 1 })
      run:log_confusion("validation", { { 1, 0 }, { 0, 1 } }, { "a", "b" })
      support.write(run:artifact_dir() .. "/model.bin", string.rep("w", 1000))
      run:log_artifact("model", run:artifact_dir() .. "/model.bin")
      run:finish()
      ids[i] = run.id
    end
    live = store:start_run { experiment = "del", git = false } -- stays running: this process is alive
    lfs.mkdir(dir .. "/runs/notes") -- not a run folder: gc leaves it
  end)
  teardown(function()
    live:finish()
    store:close()
    require("moonbert.checkpoint").rmtree(dir)
  end)

  it("refuses a running run or an unknown id, deleting nothing", function()
    local _, err, code = results("delete " .. ids[1] .. " " .. live.id)
    assert.are.equal(1, code)
    assert.is_truthy(err:find("run " .. live.id .. " is running", 1, true), err)
    _, err, code = results("delete " .. ids[1] .. " 999")
    assert.are.equal(1, code)
    assert.is_truthy(err:find("999", 1, true), err)
    assert.are.equal(4, count("SELECT COUNT(*) FROM runs"))
  end)

  it("deletes runs with all their rows; their folders stay until gc", function()
    local before = count("SELECT COUNT(*) FROM metrics")
    local out, err, code = results("delete " .. ids[1] .. " " .. ids[2])
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("deleted run " .. ids[1] .. " (del, completed)", 1, true), out)
    assert.is_nil((store:get_run(ids[1])))
    assert.is_nil((store:get_run(ids[2])))
    assert.is_not_nil((store:get_run(ids[3])))
    for _, t in ipairs { "params", "metrics", "tags", "artifacts", "confusion" } do
      assert.are.equal(0, count(string.format("SELECT COUNT(*) FROM %s WHERE run_id IN (%d, %d)", t, ids[1], ids[2])), t)
      assert.is_true(count(string.format("SELECT COUNT(*) FROM %s WHERE run_id = %d", t, ids[3])) > 0, t)
    end
    assert.are.equal(before - 4, count("SELECT COUNT(*) FROM metrics"))
    assert.are.equal("directory", lfs.attributes(dir .. "/runs/" .. ids[1], "mode"))
    assert.is_true((store:integrity_check()))
  end)

  it("gc removes the folders of deleted runs only; --dry-run removes nothing", function()
    local out, err, code = results("gc --dry-run")
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("would remove " .. dir .. "/runs/" .. ids[1], 1, true), out)
    assert.are.equal("directory", lfs.attributes(dir .. "/runs/" .. ids[1], "mode"))
    out, err, code = results("gc")
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("2 folders of deleted runs", 1, true), out)
    assert.is_nil(lfs.attributes(dir .. "/runs/" .. ids[1]))
    assert.is_nil(lfs.attributes(dir .. "/runs/" .. ids[2]))
    assert.are.equal("file", lfs.attributes(dir .. "/runs/" .. ids[3] .. "/model.bin", "mode"))
    assert.are.equal("directory", lfs.attributes(dir .. "/runs/notes", "mode"))
    out = results("gc")
    assert.is_truthy(out:find("0 folders", 1, true), out)
  end)
end)
