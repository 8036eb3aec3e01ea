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

-- ---- tab completion --------------------------------------------------------------------------

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
                   "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

-- The names a value offers after "." (fields) or ":" (methods): its own keys (a table), the
-- lazily loaded submodules of mb (mb.modules), and the keys of its metatable's __index table(s).
local function names_of(v, methods_only)
  local out, seen = {}, {}
  local function add(k, val)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not seen[k] and
       (not methods_only or type(val) == "function") then
      seen[k] = true
      out[#out + 1] = k
    end
  end
  local depth = 0
  local t = v
  while t ~= nil and depth < 4 do
    if type(t) == "table" then
      for k, val in pairs(t) do add(k, val) end
      if type(rawget(t, "modules")) == "table" and rawget(t, "_VERSION") then -- mb: modules load on first use
        for _, m in ipairs(t.modules) do add(m, true) end
      end
    end
    local mt = getmetatable(t)
    local idx = type(mt) == "table" and rawget(mt, "__index") or nil
    -- the C objects (tensors, tokenizers, models) index through a function over mt.methods
    if type(idx) ~= "table" and type(mt) == "table" then idx = rawget(mt, "methods") end
    if type(idx) ~= "table" then break end
    t, depth = idx, depth + 1
  end
  return out
end

--- complete(word) -> sorted list of completions of word ("mb.tok" -> {"mb.tokenizer"}, "tok:enc" ->
-- {"tok:encode", "tok:encode_batch"}, "pri" -> {"print"}). Only plain name chains are looked up
-- (a.b.c); nothing is called but the lazy loading of mb's modules.
function M.complete(word)
  local out = {}
  local base, sep, part = word:match("^(.*)([%.:])([%w_]*)$")
  local cands
  if not base then
    part, base, sep = word, "", ""
    cands = names_of(_G)
    for _, k in ipairs(KEYWORDS) do cands[#cands + 1] = k end
  else
    if not base:match("^[%a_][%w_]*$") and not base:match("^[%a_][%w_]*[%.%w_]*[%w_]$") then return out end
    local v = _G
    for name in base:gmatch("[^%.]+") do
      local ok, nv = pcall(function() return v[name] end)
      if not ok or nv == nil then return out end
      v = nv
    end
    cands = names_of(v, sep == ":")
  end
  local seen = {}
  for _, k in ipairs(cands) do
    if k:sub(1, #part) == part and not k:match("^__") and not seen[k] then
      seen[k] = true
      out[#out + 1] = base .. sep .. k
    end
  end
  table.sort(out)
  return out
end

return M
