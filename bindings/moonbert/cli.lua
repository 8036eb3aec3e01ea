-- moonbert.cli: the dispatcher behind `moonbert COMMAND ...`.
--
-- `run` and `repl` are handled by the C host (bindings/cli/main.c); every
-- other command is a module moonbert.cli.<command> returning
--   { summary = "one line", usage = "full help text", main = function(args) -> exit code }
-- where args holds the arguments after the command name.
local M = {}

local BUILTIN = {
  run = { summary = "run a Lua experiment script with mb loaded",
          usage = [[
usage: moonbert run SCRIPT [ARGS...]

Runs SCRIPT (a Lua 5.4 file, or - for stdin) with the global `mb` set to
require "moonbert" and `arg` set as lua5.4 sets it (arg[0] = SCRIPT,
arg[1..] = ARGS). An error prints a traceback with file:line and exits 1.]] },
  repl = { summary = "interactive Lua with mb loaded (line editing, history)",
           usage = [[
usage: moonbert repl

Lua 5.4 with `mb` preloaded. Expressions print their values (tensors readably,
tables one level deep); a statement that is incomplete continues on the next
line. Tab completes Lua names (mb.tok<Tab>, tok:enc<Tab>); mb.help("tokenizer")
lists a module's functions. History is kept in ~/.moonbert_history, saved after
every line. Ctrl-C clears the line (and drops an unfinished chunk) or
interrupts a running chunk; Ctrl-D exits.]] },
}

local function root()
  return MOONBERT_ROOT or "."
end

-- Every command: builtins plus bindings/moonbert/cli/*.lua.
function M.commands()
  local cmds = {}
  for name, c in pairs(BUILTIN) do cmds[name] = c end
  local ok, lfs = pcall(require, "lfs")
  -- the folder of the command modules, wherever the Lua tree is (bindings/ or an installed copy)
  local here = package.searchpath("moonbert.cli", package.path)
  local dir = here and here:gsub("%.lua$", "") or (root() .. "/bindings/moonbert/cli")
  if ok and lfs.attributes(dir, "mode") == "directory" then
    for file in lfs.dir(dir) do
      local name = file:match("^([%w_%-]+)%.lua$")
      if name then
        local okm, mod = pcall(require, "moonbert.cli." .. name)
        if okm and type(mod) == "table" then cmds[mod.name or name] = mod
        else cmds[name] = { summary = "(failed to load: " .. tostring(mod) .. ")" } end
      end
    end
  end
  return cmds
end

local function version()
  local mb = require "moonbert"
  print(mb._VERSION .. " (" .. _VERSION .. ")")
  return 0
end

local function help(cmds)
  local names = {}
  for name in pairs(cmds) do names[#names + 1] = name end
  table.sort(names)
  local lines = {
    "usage: moonbert COMMAND [ARGS...]",
    "",
    "moonbert: a Lua-scriptable experiment runner for transformer text classification.",
    "",
    "commands:",
  }
  for _, name in ipairs(names) do
    lines[#lines + 1] = string.format("  %-10s %s", name, cmds[name].summary or "")
  end
  lines[#lines + 1] = string.format("  %-10s %s", "version", "print the version")
  lines[#lines + 1] = string.format("  %-10s %s", "help", "help for a command: moonbert help COMMAND")
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Every command takes --help."
  print(table.concat(lines, "\n"))
  return 0
end

function M.main(argv)
  local cmd = argv[1]
  local cmds = M.commands()
  if cmd == nil or cmd == "--help" or cmd == "-h" then return help(cmds) end
  if cmd == "version" or cmd == "--version" then
    if argv[2] == "--help" or argv[2] == "-h" then
      print("usage: moonbert version\n\nPrints moonbert's version and the Lua version it runs on.")
      return 0
    end
    return version()
  end
  if cmd == "help" then
    local target = argv[2]
    if not target then return help(cmds) end
    local c = cmds[target]
    if not c then
      io.stderr:write("moonbert: unknown command '" .. target .. "'\n")
      return 2
    end
    print(c.usage or c.summary)
    return 0
  end
  local c = cmds[cmd]
  if not c or not c.main then
    if c and BUILTIN[cmd] then
      print(c.usage)
      local asked = argv[2] == "--help" or argv[2] == "-h"
      return (cmd == "run" and not asked) and 2 or 0
    end
    io.stderr:write("moonbert: unknown command '" .. tostring(cmd) .. "' (moonbert --help lists them)\n")
    return 2
  end
  local args = table.move(argv, 2, #argv, 1, {})
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then print(c.usage or c.summary); return 0 end
  end
  local ok, rc = xpcall(c.main, function(e)
    if type(e) == "table" and (e.usage_error or e.fail) then
      local d = os.getenv("MOONBERT_DEBUG")
      if d and d ~= "" and d ~= "0" then io.stderr:write(debug.traceback(e.message, 2), "\n") end
      return e
    end
    return debug.traceback(tostring(e), 2)
  end, args)
  if not ok then
    if type(rc) == "table" and rc.usage_error then
      io.stderr:write("moonbert " .. cmd .. ": " .. rc.message .. "\n")
      return 2
    end
    if type(rc) == "table" and rc.fail then rc = rc.message end
    io.stderr:write("moonbert " .. cmd .. ": " .. tostring(rc) .. "\n")
    return 1
  end
  return rc or 0
end

return M
