-- tests/spec/support.lua: helpers shared by the specs that run commands (not a spec itself).
--
--   local support = require "tests.spec.support"
--   local out, err, code = support.sh("ls /", optional_stdin)
--   local out, code = support.run("cmd")        -- stdout and stderr together
--   support.q("it's") --> shell-quoted
--   support.tmpdir()      a new empty folder;  support.tmppath(tag)  a fresh path, not created
--                         (both removed when the spec file is done; MOONBERT_KEEP_TMP=1 keeps them)
--   support.read(path), support.write(path, s), support.count(s, pattern)
local M = {}

M.q = require("moonbert.fs").shell_quote

-- Run a shell command line; returns stdout, stderr and the exit code. stdin (a string) is fed
-- through a temporary file.
function M.sh(cmdline, stdin)
  local errf, inf = os.tmpname(), nil
  if stdin then
    inf = os.tmpname()
    local f = assert(io.open(inf, "w"))
    f:write(stdin)
    f:close()
    cmdline = cmdline .. " < " .. M.q(inf)
  end
  local p = assert(io.popen(cmdline .. " 2>" .. M.q(errf) .. "; echo \"__rc=$?\""))
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("__rc=(%d+)\n?$"))
  out = out:gsub("__rc=%d+\n?$", "")
  local f = assert(io.open(errf))
  local err = f:read("a")
  f:close()
  os.remove(errf)
  if inf then os.remove(inf) end
  return out, err, code
end

-- Run a shell command line with stderr merged into stdout; returns the output and exit code.
function M.run(cmdline)
  local f = assert(io.popen(cmdline .. " 2>&1"))
  local out = f:read("a")
  local _, _, code = f:close()
  return out, code
end

-- Every folder tmpdir made and every path tmppath gave is removed, with what is in it, when this
-- module is collected (after its spec file, or when busted closes the Lua state at exit).
-- MOONBERT_KEEP_TMP=1 keeps them, to look at after a failure.
local made = {}
M._remove_made = setmetatable({}, { __gc = function()
  if os.getenv("MOONBERT_KEEP_TMP") == "1" then return end
  local rmtree = require("moonbert.checkpoint").rmtree
  for _, d in ipairs(made) do pcall(rmtree, d) end
end })

function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(require("lfs").mkdir(d))
  made[#made + 1] = d
  return d
end

-- A path nobody uses yet, for a folder that the code under test creates.
function M.tmppath(tag)
  local d = os.tmpname()
  os.remove(d)
  made[#made + 1] = d .. "_" .. tag
  return d .. "_" .. tag
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Occurrences of a Lua pattern in s.
function M.count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

return M
