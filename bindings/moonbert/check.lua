-- moonbert.check: the one argument checker for moonbert's Lua code. Its messages read like
-- lauxlib's (luaL_argerror, luaL_typeerror), so a mistake reads the same whether a C binding or
-- a Lua module caught it:
--
--   local check = require "moonbert.check"
--   check.arg(n, fname, msg)               raise "bad argument #n to 'fname' (msg)"
--   check.type(v, "table", n, fname)        v, or raise "(table expected, got nil)"
--   check.opts(o, n, fname)                 o, {} for nil, or raise "(options table expected, got ...)"
--   check.field_int(o, key, n, fname, default, min)     o[key] (an integer >= min) or default
--   check.field_num(o, key, n, fname, default, ok)      o[key] (a number for which ok(v) holds) or default
--   check.rename(err, n, fname)             a C binding's "bad argument #k to 'x' (msg)" as argument n of fname
--   check.reason(err)                       the msg of such an error (the text in its parentheses)
--
-- Every raising function takes an optional level last (default 1: the caller of the function that
-- called the checker, as luaL_argerror blames the C function's caller), or a chunk's source
-- (debug.getinfo(1, "S").source): the first Lua frame outside that file is blamed. "got" names a value's type the way
-- luaL_typeerror does: its metatable's __name when it has one ("moonbert.Tensor"), "no value"
-- for a missing argument is left to C.
local M = {}

local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end
M.typename = typename

function M.arg(n, fname, msg, level)
  msg = string.format("bad argument #%d to '%s' (%s)", n, fname, msg)
  if type(level) == "string" then -- a chunk's source: blame the first Lua frame outside it
    local l = 2
    while true do
      local info = debug.getinfo(l, "S")
      if not info then error(msg, 0) end
      if info.source ~= level and info.what ~= "C" then break end
      l = l + 1
    end
    error(msg, l)
  end
  error(msg, (level or 1) + 2)
end
local arg = M.arg

-- the level for arg, one frame further up (a source string stays as it is)
local function up(level)
  if type(level) == "string" then return level end
  return (level or 1) + 1
end

function M.type(v, want, n, fname, level)
  if type(v) ~= want then arg(n, fname, want .. " expected, got " .. typename(v), up(level)) end
  return v
end

function M.opts(o, n, fname, level)
  if o == nil then return {} end
  if type(o) ~= "table" then arg(n, fname, "options table expected, got " .. typename(o), up(level)) end
  return o
end

function M.field_int(o, key, n, fname, default, min, level)
  local v = o[key]
  if v == nil then return default end
  if math.type(v) ~= "integer" or (min and v < min) then
    arg(n, fname, string.format("field '%s' must be an integer >= %d, got %s", key, min or math.mininteger, tostring(v)),
      up(level))
  end
  return v
end

function M.field_num(o, key, n, fname, default, ok, level)
  local v = o[key]
  if v == nil then return default end
  if type(v) ~= "number" or (ok and not ok(v)) then
    arg(n, fname, string.format("field '%s' is invalid (%s)", key, tostring(v)), up(level))
  end
  return v
end

function M.reason(err)
  err = tostring(err):gsub("^[^%s:]+%.lua:%d+: ", "")
  return err:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or err
end

function M.rename(err, n, fname)
  return string.format("bad argument #%d to '%s' (%s)", n, fname, M.reason(err))
end

return M
