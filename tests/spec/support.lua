-- tests/spec/support.lua: helpers shared by the specs that run commands (not a spec itself).
--
--   local support = require "tests.spec.support"
--   local out, err, code = support.sh("ls /", optional_stdin)
--   support.q("it's") --> shell-quoted
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

return M
