-- repl_spec.lua: the REPL on a real pseudo-terminal (tests/spec/repl_pty.py): Ctrl-C clears the
-- line and drops an unfinished chunk without exiting, history is on disk after every line (the
-- REPL is killed, not exited), Tab completes mb.tok; and in-process: moonbert.repl.complete for
-- fields and methods, mb.help("tokenizer") with a description per function.
local mb = require "moonbert"
local support = require "tests.spec.support"
local lfs = require "lfs"

local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/tests/spec/[^/]*$") or ".")
local PY = "/usr/bin/python3"

describe("moonbert repl on a terminal", function()
  it("Ctrl-C clears the line and keeps the REPL; history is saved after each line; Tab completes", function()
    if lfs.attributes(BIN, "mode") ~= "file" then pending("needs " .. BIN) return end
    if os.execute(PY .. " -c 'import pty' 2>/dev/null") ~= true then pending("needs " .. PY .. " (pty)") return end
    local home = support.tmpdir()
    local out = support.run("env -u LD_PRELOAD " .. PY .. " " .. support.q(ROOT .. "/tests/spec/repl_pty.py") .. " " .. support.q(BIN) .. " " ..
                            support.q(home))
    os.execute("rm -rf " .. support.q(home))
    local screen, hist, alive = out:match("^(.*)\n=== HISTORY ===\n(.*)=== ALIVE (%d) ===\n$")
    assert.is_truthy(screen, out)
    assert.are.equal("1", alive, out)                         -- still running after two Ctrl-C
    assert.truthy(screen:find("\n42\r?\n"), screen)           -- x survived; the for-chunk was dropped
    assert.is_nil(screen:find("'end' expected", 1, true), screen)
    assert.truthy(screen:find("mb.tokenizer", 1, true), screen) -- Tab completed mb.tok
    assert.are.equal("x = 41\nx + 1\n", hist)                -- written while running
  end)
end)

describe("moonbert.repl.complete", function()
  local complete = require("moonbert.repl").complete
  it("completes globals, fields, lazily loaded modules of mb, and methods after ':'", function()
    _G.mb = mb
    assert.are.same({ "mb.tokenizer" }, complete("mb.tok"))
    assert.are.same({ "print" }, complete("prin"))
    local loads = complete("mb.data.load_")
    assert.truthy(#loads >= 5, table.concat(loads, " "))
    for _, c in ipairs(loads) do assert.truthy(c:find("^mb%.data%.load_")) end
    _G.__t = mb.tensor.zeros { 2 }
    assert.are.same({ "__t:softmax" }, complete("__t:softm"))
    assert.are.same({}, complete("__t:nothing_like_this"))
    assert.are.same({}, complete("nope_nothing.x"))
    _G.__t = nil
  end)
end)

describe("mb.help", function()
  it("lists a module's functions with a one-line description each", function()
    local text = mb.help_text("tokenizer")
    assert.truthy(text:find("^mb%.tokenizer: Hugging Face BERT WordPiece tokenizers"), text)
    assert.truthy(text:find("mb.tokenizer.load%s+Load a Hugging Face tokenizer directory"), text)
    assert.truthy(text:find("\n  tok:encode ", 1, true), text)
    for line in text:gmatch("[^\n]+") do
      if line:match("^  mb%.") then assert.truthy(line:match("^  mb%.[%w_.]+%s+%S"), "no description: " .. line) end
    end
    assert.truthy(mb.help_text():find("mb.tokenizer", 1, true))
    assert.has_error(function() mb.help_text("no_such_module") end)
  end)
end)
