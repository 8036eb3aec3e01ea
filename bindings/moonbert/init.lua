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
mb.core = core

function mb.set_threads(n) core.set_threads(n) end
function mb.threads() return core.threads() end

-- Names of the submodules, for mb.help() and the REPL.
mb.modules = {
  "tensor", "tokenizer", "data", "safetensors", "distilbert", "optim", "trainer",
  "learners", "metrics", "store", "umap", "report", "cuda", "sweep", "mlm", "pipeline",
  "bert", "auto", "conll", "squad",
}

function mb.help()
  local out = {}
  for _, name in ipairs(mb.modules) do
    local ok = package.searchpath("moonbert." .. name, package.path)
    if ok then out[#out + 1] = "mb." .. name end
  end
  print("moonbert modules: " .. table.concat(out, ", "))
end

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
