-- moonbert.args: command-line option parsing shared by the CLI commands and experiments.
--
--   local args = require "moonbert.args"
--   local opts, rest = args.parse(arg, {
--     { "--model", "DIR", "model directory", default = "models/x" },
--     { "--epochs", "N", "number of epochs", type = "number", default = 2 },
--     { "--quick", nil, "small subset, one epoch" },          -- a flag (boolean)
--     { "--ood", "PATH", "out-of-domain set", multiple = true },
--   })
--   opts.model, opts.epochs, opts.quick; rest = positional arguments.
--
-- "--name=value" and "--name value" both work; option names map to keys with
-- '-' turned into '_'. A bad option raises { usage_error = true, message = ... },
-- which the CLI prints with exit code 2; args.usage(spec) formats the help.
-- args.fail(msg) raises { fail = true, message = ... } for a command that
-- cannot run here (no GPU, say) or a user's mistake in data or model: the CLI
-- (and `moonbert run` for a script) prints the message, no traceback, and exits
-- 1; MOONBERT_DEBUG=1 adds the traceback. args.clean(err) strips Lua's "x.lua:N: ".
local M = {}

local function key_of(name) return (name:gsub("^%-%-", ""):gsub("%-", "_")) end

-- The error values print as their message (tostring, a store run failed by them, lua5.4).
local user_error_mt = { __tostring = function(e) return e.message end }
local function usage_error(msg) error(setmetatable({ usage_error = true, message = msg }, user_error_mt), 0) end
M.usage_error = usage_error

function M.fail(msg) error(setmetatable({ fail = true, message = tostring(msg) }, user_error_mt), 0) end

-- The text of an error without the position Lua put in front ("x.lua:12: ", "stdin:3: "): what a
-- user sees of a data or model error. Positions in the user's own files ("train.csv:3:") stay.
function M.clean(e)
  local s = type(e) == "table" and e.message or tostring(e)
  local prev
  repeat
    prev = s
    s = s:gsub("^[^\n:]-%.lua:%d+: ", ""):gsub("^stdin:%d+: ", ""):gsub("^%[string [^\n]-%]:%d+: ", "")
  until s == prev
  return s
end

-- opts[key] (a number option) as a Lua integer, nil when absent; a value below
-- min or not whole is a usage error naming the option.
function M.integer(opts, key, min)
  local v = opts[key]
  if v == nil then return nil end
  if v < min or v ~= math.floor(v) then
    usage_error("--" .. key:gsub("_", "-") .. " must be an integer >= " .. min .. ", got " .. tostring(v))
  end
  return math.tointeger(v)
end

-- The texts a command works on: the positional arguments, or else one per
-- non-blank line of stdin. A usage error when there are none.
function M.texts(rest)
  if #rest > 0 then return rest end
  local texts = {}
  for line in io.stdin:lines() do
    if line:match("%S") then texts[#texts + 1] = line end
  end
  if #texts == 0 then usage_error("no texts (give them as arguments or one per stdin line)") end
  return texts
end

-- The text of an error raised by usage_error/fail or by error(string).
function M.message(e)
  if type(e) == "table" and e.message then return e.message end
  return tostring(e)
end

--- json(value, {indent=, keyorder={...}}) -> text: dkjson with a stable key order, the same on
-- every run: the keys of keyorder first, in that order, then every other key sorted.
function M.json(value, o)
  o = o or {}
  local names, seen = {}, {}
  local function walk(v, depth)
    if type(v) ~= "table" or depth > 32 then return end
    for k, x in pairs(v) do
      if type(k) == "string" and not seen[k] then seen[k] = true names[#names + 1] = k end
      walk(x, depth + 1)
    end
  end
  walk(value, 0)
  table.sort(names)
  local order, first = {}, {}
  for _, k in ipairs(o.keyorder or {}) do order[#order + 1] = k first[k] = true end
  for _, k in ipairs(names) do if not first[k] then order[#order + 1] = k end end
  return require("dkjson").encode(value, { indent = o.indent, keyorder = order })
end

function M.usage(spec, head)
  local lines = { head }
  for _, o in ipairs(spec) do
    local left = o[1] .. (o[2] and (" " .. o[2]) or "")
    local def = o.default ~= nil and o[2] and ("  (default " .. tostring(o.default) .. ")") or ""
    lines[#lines + 1] = string.format("  %-24s %s%s", left, o[3] or "", def)
  end
  return table.concat(lines, "\n")
end

function M.parse(argv, spec)
  local byname, opts, rest = {}, {}, {}
  for _, o in ipairs(spec) do
    byname[o[1]] = o
    if o.short then byname[o.short] = o end
    local k = key_of(o[1])
    if o.multiple then opts[k] = {} elseif o.default ~= nil then opts[k] = o.default
    elseif not o[2] then opts[k] = false end
  end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      table.move(argv, i + 1, #argv, #rest + 1, rest)
      break
    elseif a:sub(1, 1) == "-" and #a > 1 and not tonumber(a) then
      local name, value = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local o = byname[name]
      if not o then usage_error("unknown option '" .. name .. "'") end
      local k = key_of(o[1])
      if not o[2] then
        if value then usage_error("option '" .. name .. "' takes no value") end
        opts[k] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then usage_error("option '" .. name .. "' needs a value (" .. o[2] .. ")") end
        end
        if o.type == "number" then
          local n = tonumber(value)
          if not n then usage_error("option '" .. name .. "' expects a number, got '" .. value .. "'") end
          value = n
        elseif o.choices then
          local okc = false
          for _, c in ipairs(o.choices) do if c == value then okc = true end end
          if not okc then
            usage_error("option '" .. name .. "' must be one of " .. table.concat(o.choices, ", ") ..
                        ", got '" .. value .. "'")
          end
        end
        if o.multiple then table.insert(opts[k], value) else opts[k] = value end
      end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  return opts, rest
end

return M
