-- moonbert.pipeline: Hugging Face-style pipelines (mb.pipeline(task, dir, opts)).
--
--   local clf = mb.pipeline("text-classification", "results/runs/3/model")
--   clf("I saw a movie today and it was really good.")
--     --> {{label = "joy", score = 0.93}}                 (top_k = 1, as Hugging Face's default)
--   clf({"text one", "text two"}, {top_k = 3})
--     --> {{{label=, score=}, x3}, {{label=, score=}, x3}}  one list per text, best first
--   clf(text, {top_k = "all"})                            -- every class (also top_k = 0)
--   clf:free()
--
-- opts (at creation or per call): top_k (1), max_length (the tokenizer's, 512),
-- batch_size (32). At creation also device ("cpu", "cuda" or "auto": mb.cuda.device) and precision
-- ("fp32" or "bf16" on the CPU, fp32/tf32/bf16 on cuda): the model runs there, the scores come back as
-- on the CPU. The folder is a Hugging Face model folder: config.json (with id2label),
-- model.safetensors and tokenizer files, as the experiments save under a run's folder.
-- Scores are softmax probabilities in evaluation mode (no dropout); ties keep label order.
--
-- Tasks live in M.tasks: each is {load = function(dir, opts) -> pipeline object}. A new task
-- ("fill-mask", ...) adds an entry; mb.pipeline needs no change.
local check = require "moonbert.check"
local M = { tasks = {} }

local function exists(path, mode)
  local lfs = require "lfs"
  return lfs.attributes(path, "mode") == mode
end

--- pipeline.check_dir(dir, task): dir (argument #2 of mb.pipeline) is a model folder with a config
-- and tokenizer files, else an error that names the task ("fill-mask: no config.json in 'x'"),
-- blaming the caller of the task's load.
function M.check_dir(dir, task)
  if type(dir) ~= "string" then
    check.arg(2, "pipeline", "model folder expected, got " .. type(dir), 3)
  end
  if not exists(dir, "directory") then error(task .. ": model folder '" .. dir .. "' not found", 4) end
  if not exists(dir .. "/config.json", "file") then error(task .. ": no config.json in '" .. dir .. "'", 4) end
  if not exists(dir .. "/tokenizer.json", "file") and not exists(dir .. "/vocab.txt", "file") then
    error(task .. ": no tokenizer files (tokenizer.json or vocab.txt) in '" .. dir .. "'", 4)
  end
end
local check_dir = M.check_dir

--- pipeline.class(name) -> the metatable of a task's pipelines (name: its __name). A pipeline holds
-- a model and a tokenizer; free() releases both, once, and serves __close and __gc.
function M.class(name)
  local C = { __name = name }
  C.__index = C
  function C:free()
    if self.model then self.model:free(); self.model = nil end
    if self.tokenizer then self.tokenizer:free(); self.tokenizer = nil end
  end
  C.__close = C.free
  C.__gc = C.free
  return C
end

-- top_k option -> number of classes to return (nil/"all"/0 -> all of K)
local function top_k_of(v, K, fname, n)
  if v == nil then return nil end
  if v == "all" or v == 0 then return K end
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) or v < 0 then
    check.arg(n, fname, "top_k must be a positive integer or \"all\", got " .. tostring(v), 3)
  end
  return math.min(math.tointeger(v), K)
end

--- Move a pipeline's model to opts.device ("auto" resolves with mb.cuda.device) and opts.precision.
-- On the CPU a precision goes to mb.distilbert.set_cpu_precision ("fp32" or "bf16", README: bf16
-- on the CPU); a model without a GPU backend (BERT, the masked-LM model) says so for cuda.
function M.place(model, opts)
  if opts.device == nil and opts.precision == nil then return model end
  local dev = opts.device and require("moonbert.cuda").device(opts.device) or "cpu"
  local ok, err
  if dev == "cpu" then
    ok, err = pcall(require("moonbert.distilbert").set_cpu_precision, model, opts.precision or "fp32", false, "pipeline")
  elseif model.to then
    ok, err = pcall(model.to, model, dev, { precision = opts.precision })
  else
    ok, err = false, tostring(model):match("^[%w.]+") .. " runs on the CPU only"
  end
  if not ok then
    model:free()
    error("pipeline: " .. tostring(err), 4)
  end
  return model
end

-- ---- text-classification --------------------------------------------------------------------------
local TextClassification = M.class("moonbert.TextClassificationPipeline")

function TextClassification:__call(texts, o)
  o = o or {}
  if type(o) ~= "table" then check.arg(2, "text-classification", "options table expected") end
  if self.model == nil then error("text-classification: pipeline is freed", 2) end
  local single = type(texts) == "string"
  if single then texts = { texts } end
  if type(texts) ~= "table" then
    check.arg(1, "text-classification", "string or list of strings expected, got " .. type(texts))
  end
  for i, t in ipairs(texts) do
    if type(t) ~= "string" then
      check.arg(1, "text-classification", string.format("text %d: string expected, got %s", i, type(t)))
    end
  end
  local K = #self.labels
  local k = top_k_of(o.top_k, K, "text-classification", 2) or self.top_k
  local bs = o.batch_size or self.batch_size
  local max_length = o.max_length or self.max_length
  local out = {}
  for start = 1, #texts, bs do
    local chunk = table.move(texts, start, math.min(start + bs - 1, #texts), 1, {})
    local b = self.tokenizer:encode_batch(chunk, { padding = "longest", truncation = true, max_length = max_length })
    local logits = self.model:forward(b, { train = false }).logits
    local probs = logits:softmax(2):totable()
    logits:free()
    for j, p in ipairs(probs) do
      local order = {}
      for c = 1, K do order[c] = c end
      table.sort(order, function(a, c) if p[a] ~= p[c] then return p[a] > p[c] end return a < c end)
      local r = {}
      for c = 1, k do r[c] = { label = self.labels[order[c]], score = p[order[c]] } end
      out[start + j - 1] = r
    end
  end
  if single then return out[1] end
  return out
end

M.tasks["text-classification"] = {
  load = function(dir, opts)
    check_dir(dir, "pipeline")
    local model = require("moonbert.auto").load(dir, { task = "text-classification", quiet = true }) -- DistilBERT or BERT
    M.place(model, opts)
    local self = setmetatable({
      model = model, tokenizer = require("moonbert.tokenizer").load(dir), labels = model:label_names(),
      dir = dir, batch_size = opts.batch_size or 32, max_length = opts.max_length,
    }, TextClassification)
    self.top_k = top_k_of(opts.top_k, #self.labels, "pipeline", 3) or 1
    return self
  end,
}
M.tasks["sentiment-analysis"] = M.tasks["text-classification"] -- Hugging Face's alias
-- The other tasks are modules of their own, loaded when a pipeline of the task is made (they build
-- on this module: class, check_dir, place).
local function task_in(module)
  return { load = function(dir, opts) return require(module).load(dir, opts) end }
end
M.tasks["fill-mask"] = task_in("moonbert.pipeline_fill_mask") -- bindings/moonbert/pipeline_fill_mask.lua
M.tasks["question-answering"] = task_in("moonbert.pipeline_qa") -- bindings/moonbert/pipeline_qa.lua
M.tasks["token-classification"] = task_in("moonbert.pipeline_ner") -- bindings/moonbert/pipeline_ner.lua
M.tasks["ner"] = M.tasks["token-classification"] -- Hugging Face's alias

--- new(task, dir, opts) -> pipeline (callable)
function M.new(task, dir, opts)
  if type(task) ~= "string" then
    check.arg(1, "pipeline", "task name expected, got " .. type(task), 2)
  end
  local t = M.tasks[task]
  if not t then
    local names = {}
    for k in pairs(M.tasks) do names[#names + 1] = k end
    table.sort(names)
    check.arg(1, "pipeline", "unknown task '" .. task .. "'; known: " .. table.concat(names, ", "), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    check.arg(3, "pipeline", "options table expected, got " .. type(opts), 2)
  end
  return t.load(dir, opts or {})
end

return M
