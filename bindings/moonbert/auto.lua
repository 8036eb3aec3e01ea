-- moonbert.auto (mb.auto): load a Hugging Face model folder as the class its config.json and the
-- task call for, as transformers' AutoModelFor* do.
--
--   local m = mb.auto.load("models/bert-base-uncased", {task="token-classification", num_labels=9,
--                                                       id2label=names})
--   mb.auto.load(dir)                 -- the task of config.json's architectures (BertForQuestionAnswering
--                                     -- -> question-answering), else text-classification
--   mb.auto.task_of(dir)              -- that task, without loading
--
-- | model_type  | text-classification | token-classification | question-answering | fill-mask |
-- |-------------|---------------------|----------------------|--------------------|-----------|
-- | bert        | mb.bert             | mb.bert              | mb.bert            | mb.bert   |
-- | distilbert  | mb.distilbert       | mb.bert.load_distilbert (DistilBERT heads) | mb.distilbert.load_masked_lm |
--
-- Every model has forward, loss, backward, features, parameters, freeze_encoder, save and to.
-- opts: task, num_labels, id2label (list or 0-based map), seed, quiet (no load warnings on stderr).
local json = require "dkjson"
local check = require "moonbert.check"
local read_file = require("moonbert.fs").read_file

local M = {}

M.tasks = { "text-classification", "token-classification", "question-answering", "fill-mask" }

-- The task an HF architecture name is trained for.
local SUFFIX_TASK = {
  { "ForSequenceClassification$", "text-classification" },
  { "ForTokenClassification$", "token-classification" },
  { "ForQuestionAnswering$", "question-answering" },
  { "ForMaskedLM$", "fill-mask" },
  { "ForPreTraining$", "fill-mask" },
}

local function read_config(dir, fname)
  if type(dir) ~= "string" then
    check.arg(1, fname, "model folder expected, got " .. type(dir), 2)
  end
  local text = read_file(dir .. "/config.json")
  if not text then error(fname .. ": cannot read " .. dir .. "/config.json", 3) end
  local cfg = json.decode(text)
  if type(cfg) ~= "table" then error(fname .. ": " .. dir .. "/config.json is not a JSON object", 3) end
  return cfg
end

--- The task of the folder's config.json architectures (nil when it names none we know).
function M.task_of(dir)
  local cfg = read_config(dir, "task_of")
  for _, arch in ipairs(type(cfg.architectures) == "table" and cfg.architectures or {}) do
    for _, st in ipairs(SUFFIX_TASK) do
      if type(arch) == "string" and arch:match(st[1]) then return st[2] end
    end
  end
  return nil
end

--- load(dir, opts) -> model of the class for config.json's model_type and opts.task.
function M.load(dir, opts)
  local cfg = read_config(dir, "load")
  opts = opts or {}
  if type(opts) ~= "table" then check.arg(2, "load", "options table expected, got " .. type(opts)) end
  local task = opts.task or M.task_of(dir) or "text-classification"
  local known = false
  for _, t in ipairs(M.tasks) do known = known or t == task end
  if not known then
    check.arg(2, "load", "opts.task must be one of " .. table.concat(M.tasks, ", ") .. ", got "
      .. tostring(task))
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.task = task
  local mt = cfg.model_type
  if mt == "bert" then return require("moonbert.bert").load(dir, o) end
  if mt == "distilbert" then
    if task == "text-classification" then
      require "moonbert.cuda" -- gives DistilBERT's class to() and device()
      return require("moonbert.distilbert").load(dir, o)
    end
    if task == "fill-mask" then return require("moonbert.mlm").load(dir, o) end
    return require("moonbert.bert").load_distilbert(dir, o)
  end
  error(string.format("load: %s/config.json has model_type %s; moonbert knows bert and distilbert", dir,
    mt == nil and "(none)" or json.encode(mt)), 2)
end

return M
