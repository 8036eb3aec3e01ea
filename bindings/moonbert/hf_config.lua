-- moonbert.hf_config: the Hugging Face config.json pieces that the model modules (mb.distilbert,
-- mb.bert) share: label lists from id2label, a config's JSON text with the labels written into
-- it, and the config/label_names/named_parameters methods.
--
--   hf_config.label_list(id2label, fname)  -> {"O", ...} (1-based) or nil; id2label a list or a 0-based map
--   hf_config.text(config, names, n, fname) -> JSON text, source name; config a table, a config.json
--                                              path or a folder; names/n set id2label and label2id
--   hf_config.install(methods)             model:config() (id2label 0-based, num_labels),
--                                              model:label_names(), model:named_parameters()
local check = require "moonbert.check"
local json = require "dkjson"
local read_file = require("moonbert.fs").read_file

local M = {}

function M.label_list(id2label, fname)
  if id2label == nil then return nil end
  if type(id2label) ~= "table" then check.arg(2, fname, "opts.id2label must be a table", 2) end
  local list = {}
  if id2label[0] ~= nil then
    local n = 0
    for k in pairs(id2label) do
      if math.type(k) ~= "integer" then check.arg(2, fname, "opts.id2label keys must be integer ids", 2) end
      n = math.max(n, k + 1)
    end
    for i = 0, n - 1 do
      if id2label[i] == nil then check.arg(2, fname, "opts.id2label has no name for id " .. i, 2) end
      list[i + 1] = tostring(id2label[i])
    end
  else
    for i, v in ipairs(id2label) do list[i] = tostring(v) end
  end
  if #list == 0 then check.arg(2, fname, "opts.id2label is empty", 2) end
  return list
end

function M.text(config, names, n, fname)
  local text, source
  if type(config) == "string" then
    source = config
    text = read_file(config .. "/config.json")
    if text then source = config .. "/config.json" else text = read_file(config) end
    if not text then check.arg(1, fname, "cannot read config '" .. config .. "'", 2) end
  elseif type(config) == "table" then
    local ok, err = pcall(function() text = json.encode(config) end)
    if not ok or not text then check.arg(1, fname, "config table cannot be encoded as JSON: " .. tostring(err), 2) end
    source = "config"
  else
    check.arg(1, fname, "config table or path expected, got " .. type(config), 2)
  end
  if names or n then
    local cfg = json.decode(text)
    if type(cfg) ~= "table" then check.arg(1, fname, source .. " is not a JSON object", 2) end
    n = n or #names
    cfg.id2label, cfg.label2id = {}, {}
    for i = 0, n - 1 do
      local name = names and names[i + 1] or ("LABEL_" .. i)
      cfg.id2label[tostring(i)] = name
      cfg.label2id[name] = i
    end
    cfg.num_labels = nil
    text = json.encode(cfg)
  end
  return text, source
end

function M.install(methods)
  --- The configuration as a table (config.json keys; id2label as a 0-based map; num_labels).
  function methods:config()
    local cfg = json.decode(self:config_json())
    local id2label, n = {}, 0
    for k, v in pairs(cfg.id2label or {}) do id2label[tonumber(k)] = v; n = n + 1 end
    cfg.id2label, cfg.num_labels = id2label, n
    return cfg
  end

  --- Label names as a 1-based list (label id i is names[i + 1]).
  function methods:label_names()
    local cfg = self:config()
    local out = {}
    for i = 0, cfg.num_labels - 1 do out[i + 1] = cfg.id2label[i] end
    return out
  end

  --- The named parameters as a map name -> {value=, grad=, ...}.
  function methods:named_parameters()
    local out = {}
    for _, p in ipairs(self:parameters()) do out[p.name] = p end
    return out
  end
end

return M
