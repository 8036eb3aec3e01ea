-- moonbert.repl: how `moonbert repl` shows the values of an expression.
--
-- The REPL host (bindings/cli/main.c) calls require("moonbert.repl").print(v1, v2, ...)
-- with the values an input line returned. They are printed like `lua5.4 -i` does
-- (tab-separated, strings raw) except that tensors print PyTorch-style and plain
-- tables print their contents one level deep: {1, 2, x = "a", sub = {...}}.
-- M.format(v) returns the text for one value.
local M = {}

local MAX_ENTRIES = 40 -- a table with more entries ends with ", ..."

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__tostring ~= nil
end

-- A value inside a table: strings quoted, nested tables elided.
local function short(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" and not has_tostring(v) then return next(v) == nil and "{}" or "{...}" end
  return tostring(v)
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  return "[" .. short(k) .. "]"
end

local function format_table(t)
  local parts, n = {}, #t
  for i = 1, math.min(n, MAX_ENTRIES) do parts[#parts + 1] = short(t[i]) end
  local keys = {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
    return type(a) < type(b)
  end)
  for _, k in ipairs(keys) do
    if #parts >= MAX_ENTRIES then break end
    parts[#parts + 1] = key_text(k) .. " = " .. short(t[k])
  end
  local total = n + #keys
  if total > #parts then parts[#parts + 1] = "... (" .. total .. " entries)" end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function M.format(v)
  if type(v) == "table" and not has_tostring(v) then return format_table(v) end
  return tostring(v)
end

function M.print(...)
  local n = select("#", ...)
  if n == 0 then return end
  local out = {}
  for i = 1, n do out[i] = M.format((select(i, ...))) end
  io.stdout:write(table.concat(out, "\t"), "\n")
  io.stdout:flush()
end

return M
