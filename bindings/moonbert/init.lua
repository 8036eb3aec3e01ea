-- moonbert: the Lua surface of the moonbert runtime.
--
--   local mb = require "moonbert"
--   mb.tensor, mb.tokenizer, mb.data, mb.distilbert, ... (loaded on first use)
--
-- Each submodule is bindings/moonbert/<name>.lua, loaded lazily so that
-- `require "moonbert"` stays cheap and a missing optional part does not break
-- the rest. The C runtime is the module moonbert.core.
local mb = { _VERSION = "moonbert 0.1.0" }

local core = require "moonbert.core"
local check = require "moonbert.check"
mb.core = core

function mb.set_threads(n) core.set_threads(n) end
function mb.threads() return core.threads() end

-- Names of the submodules, for mb.help() and the REPL.
mb.modules = {
  "tensor", "tokenizer", "data", "safetensors", "distilbert", "optim", "trainer",
  "learners", "metrics", "store", "umap", "report", "cuda", "sweep", "mlm", "pipeline",
  "bert", "auto", "conll", "squad", "hub", "dist",
}

-- The first sentence of a comment line, without the comment dashes.
local function comment_text(line) return (line:gsub("^%s*%-%-+%s?", ""):gsub("%s+$", "")) end

--- mb.help_text([name]) -> text: the module list, or one module's functions (and the methods of
-- the objects it makes) with a one-line description each, taken from the module's own comments:
-- the comment just above `function M.name` / `M.name =`, else the header line that shows it.
function mb.help_text(name)
  if name == nil then
    local out = {}
    for _, m in ipairs(mb.modules) do
      if package.searchpath("moonbert." .. m, package.path) then out[#out + 1] = "mb." .. m end
    end
    return "moonbert modules: " .. table.concat(out, ", ") ..
        '\nmb.help("tokenizer") lists a module\'s functions; in the REPL, Tab completes names.'
  end
  if type(name) ~= "string" then check.arg(1, "help", "module name expected, got " .. type(name)) end
  name = name:gsub("^mb%.", "")
  local path = package.searchpath("moonbert." .. name, package.path)
  if not path then error("mb.help: no module '" .. name .. "' (mb.help() lists them)", 2) end
  local lines = {}
  for l in io.lines(path) do lines[#lines + 1] = l end
  local header = {}
  for _, l in ipairs(lines) do
    if not l:match("^%s*%-%-") then break end
    header[#header + 1] = l
  end
  local function doc_of(fname)
    for i, l in ipairs(lines) do
      if l:match("^function M%." .. fname .. "%(") or l:match("^M%." .. fname .. "%s*=") then
        local j = i - 1
        while j >= 1 and lines[j]:match("^%-%-") do j = j - 1 end
        if j + 1 < i then return comment_text(lines[j + 1]) end
        break
      end
    end
    for _, l in ipairs(header) do
      if l:find("[%.:]" .. fname .. "%(") or l:find("[%.:]" .. fname .. "%f[^%w_]") then return comment_text(l) end
    end
    return "(no description in " .. path:match("[^/]+/[^/]+$") .. ")"
  end
  local mod = mb[name]
  local fnames = {}
  if type(mod) == "table" then
    for k, v in pairs(mod) do
      if type(k) == "string" and type(v) == "function" and not k:match("^_") then fnames[#fnames + 1] = k end
    end
  end
  table.sort(fnames)
  local out = { "mb." .. name .. ": " .. (header[1] and comment_text(header[1]):gsub("^[%w%.]+ %(mb%.[%w_]+%):%s*", ""):gsub("^[%w%.]+:%s*", "") or "") }
  out[#out + 1] = "functions:"
  for _, f in ipairs(fnames) do out[#out + 1] = string.format("  mb.%s.%-22s %s", name, f, doc_of(f)) end
  -- methods of the objects the module makes: "obj:method(" in the header's examples
  local methods, seen = {}, {}
  for _, l in ipairs(header) do
    for obj, m in l:gmatch("([%a_][%w_]*):([%a_][%w_]*)%(") do
      if not seen[m] then
        seen[m] = true
        methods[#methods + 1] = { obj .. ":" .. m, (comment_text(l):gsub("^local [%w_, ]+ = ", "")) }
      end
    end
  end
  if #methods > 0 then
    out[#out + 1] = "methods:"
    for _, m in ipairs(methods) do out[#out + 1] = string.format("  %-26s %s", m[1], m[2]) end
  end
  return table.concat(out, "\n")
end

--- mb.help([name]): prints mb.help_text(name).
function mb.help(name) print(mb.help_text(name)) end

-- mb.pipeline(task, dir, opts): Hugging Face-style pipelines, defined in moonbert.pipeline.
function mb.pipeline(task, dir, opts)
  return require("moonbert.pipeline").new(task, dir, opts)
end

setmetatable(mb, {
  __index = function(t, name)
    if type(name) ~= "string" then return nil end
    local found = package.searchpath("moonbert." .. name, package.path)
    if not found then return nil end
    local m = require("moonbert." .. name)
    rawset(t, name, m)
    return m
  end,
})

return mb
