-- moonbert.bert (mb.bert): BERT with its task heads, and DistilBERT's token-level heads, in C.
--
--   local m = mb.bert.load("models/bert-base-uncased", {task="token-classification", num_labels=9,
--                                                       id2label={"O", "B-PER", ...}})
--   local m = mb.bert.new({hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
--                          intermediate_size=256, vocab_size=30522}, {task="question-answering", seed=1})
--   local q = mb.bert.load_distilbert(dir, {task="question-answering"})   -- DistilBertFor{TokenClassification,QuestionAnswering}
--   local out = m:forward(batch)                 -- eval mode; {train=true} for dropout
--   local loss, out, per = m:loss(batch, labels, {train=true}); m:backward(); m:zero_grad()
--   m:features(batch)                            -- [CLS] hidden states [B,dim]
--   m:parameters(), m:freeze_encoder(true), m:save(dir), m:to("cpu"), m:config(), m:label_names()
--
-- Tasks are Hugging Face's pipeline names; each model is one of HF's classes:
--   "text-classification"   BertForSequenceClassification  out.logits [B,num_labels], out.pooler_output
--   "token-classification"  Bert/DistilBertForTokenClassification  out.logits [B,T,num_labels]
--   "question-answering"    Bert/DistilBertForQuestionAnswering   out.start_logits, out.end_logits [B,T]
--   "fill-mask"             BertForMaskedLM   out.logits [n,vocab] at out.positions (1-based flat b*T+t);
--                           forward(batch, {positions={...}}) limits the rows (default: every position)
-- Every output has last_hidden_state [B,T,dim].
--
-- A batch is {input_ids=, attention_mask=, token_type_ids=} (int32 tensors [B,T] as the tokenizer
-- makes them, or nested Lua tables); attention_mask and token_type_ids may be absent (all ones,
-- all zeros); DistilBERT ignores token types. Labels (0-based ids, -100 ignored):
--   text-classification  int32 [B] (or a list; float [B,num_labels] for multi-label / regression)
--   token-classification int32 [B,T] (or nested lists); batch.labels when labels is nil
--   question-answering   {start_positions=, end_positions=} token positions (0-based, as HF), or
--                        batch.start_positions / batch.end_positions
--   fill-mask            int32 [B,T]
-- loss returns the mean loss, the logits (the outputs table for question answering) and the
-- per-example (per-token for token classification) losses.
-- load() follows transformers: any BERT checkpoint (bert-base-uncased's BertForPreTraining)
-- loads into any head; unused tensors and new ones are listed in a warning on stderr
-- (opts.quiet silences it; model:warnings() returns it).
local core = require("moonbert.core").bert
local check = require "moonbert.check"
local hf_config = require "moonbert.hf_config"
local T = require "moonbert.tensor"

local M = {}
local methods = core.methods

local TASKS = { ["text-classification"] = true, ["token-classification"] = true,
                ["question-answering"] = true, ["fill-mask"] = true }

local label_list = hf_config.label_list
M.label_list = label_list

local function check_opts(opts, fname)
  opts = opts or {}
  if type(opts) ~= "table" then check.arg(2, fname, "options table expected, got " .. type(opts)) end
  local task = opts.task or "text-classification"
  if not TASKS[task] then
    check.arg(2, fname, "opts.task must be text-classification, token-classification, question-answering or fill-mask, got "
      .. tostring(task))
  end
  local n = opts.num_labels
  if n ~= nil and (math.type(n) ~= "integer" or n < 1) then check.arg(2, fname, "opts.num_labels must be a positive integer") end
  local names = label_list(opts.id2label, fname)
  if names and n and #names ~= n then
    check.arg(2, fname, string.format("opts.id2label has %d names but num_labels is %d", #names, n))
  end
  return opts, task, n, names
end

local function warn(model, opts)
  local w = model:warnings()
  if w ~= "" and not opts.quiet then io.stderr:write(w, "\n") end
  return model
end

--- Load a Hugging Face BERT folder (config.json + model.safetensors) as the class of opts.task.
function M.load(dir, opts)
  if type(dir) ~= "string" then check.arg(1, "load", "directory expected, got " .. type(dir)) end
  local o, task, n, names = check_opts(opts, "load")
  return warn(core.load(dir, task, n, names, o.seed or 42), o)
end

--- DistilBertForTokenClassification / DistilBertForQuestionAnswering from a DistilBERT folder.
function M.load_distilbert(dir, opts)
  if type(dir) ~= "string" then check.arg(1, "load_distilbert", "directory expected, got " .. type(dir)) end
  local o, task, n, names = check_opts(opts, "load_distilbert")
  return warn(core.load_distilbert(dir, task, n, names, o.seed or 42), o)
end

--- A randomly initialised BERT (HF _init_weights). opts: task, seed (42), num_labels, id2label.
function M.new(config, opts)
  local o, task, n, names = check_opts(opts, "new")
  local text, source = hf_config.text(config, names, n, "new")
  return core.new(text, source, task, o.seed or 42)
end

--- A randomly initialised DistilBERT token-classification / question-answering model.
function M.new_distilbert(config, opts)
  local o, task, n, names = check_opts(opts, "new_distilbert")
  local text, source = hf_config.text(config, names, n, "new_distilbert")
  return core.new_distilbert(text, source, task, o.seed or 42)
end

-- ---- batches ------------------------------------------------------------------------------

-- An int32 [B,T] contiguous tensor from a tensor or nested table (nil stays nil).
local function int_matrix(v, what, fname)
  if v == nil then return nil end
  local t = v
  if type(v) == "table" then
    local ok, res = pcall(T.from, v, { dtype = "int32" })
    if not ok then check.arg(1, fname, "batch." .. what .. ": " .. tostring(res)) end
    t = res
  elseif not T.is_tensor(v) then
    check.arg(1, fname, "batch." .. what .. " must be an int32 tensor [B,T] (got " .. type(v) .. ")")
  end
  if t:dtype() ~= "int32" then check.arg(1, fname, "batch." .. what .. " must be int32 (got " .. t:dtype() .. ")") end
  if t:dim() == 1 then t = t:reshape(1, t:size(1)) end
  if t:dim() ~= 2 then check.arg(1, fname, "batch." .. what .. " must be 2-D [B,T]") end
  if not t:is_contiguous() then t = t:contiguous() end
  return t
end

local function batch_args(batch, fname)
  if type(batch) ~= "table" then check.arg(1, fname, "batch table expected, got " .. type(batch)) end
  if batch.input_ids == nil then check.arg(1, fname, "batch.input_ids is missing") end
  return int_matrix(batch.input_ids, "input_ids", fname), int_matrix(batch.attention_mask, "attention_mask", fname),
         int_matrix(batch.token_type_ids, "token_type_ids", fname)
end

local function int_vector(v, what, fname)
  local t = v
  if type(v) == "table" then t = T.from(v, { dtype = "int32" })
  elseif not T.is_tensor(v) then check.arg(2, fname, what .. " must be an int32 tensor or a list (got " .. type(v) .. ")") end
  if t:dtype() ~= "int32" then t = t:int() end
  if not t:is_contiguous() then t = t:contiguous() end
  return t
end

--- Outputs of a forward pass (eval mode unless opts.train). opts.positions (fill-mask): 1-based flat
-- positions b*T+t (list or int32 tensor) to compute logits at.
function methods:forward(batch, opts)
  opts = opts or {}
  if type(opts) ~= "table" then check.arg(2, "forward", "options table expected, got " .. type(opts)) end
  local ids, mask, types = batch_args(batch, "forward")
  local pos
  if opts.positions ~= nil then
    pos = int_vector(opts.positions, "opts.positions", "forward") - 1
  end
  return self:_forward(ids, mask, types, opts.train == true, false, pos)
end

--- loss(batch, labels, {train=}) -> mean loss, logits (outputs for question answering), per-example losses
function methods:loss(batch, labels, opts)
  opts = opts or {}
  local ids, mask, types = batch_args(batch, "loss")
  local task = self:task()
  local l1, l2, targets
  if task == "question-answering" then
    local lab = labels or batch
    if type(lab) ~= "table" or lab.start_positions == nil or lab.end_positions == nil then
      check.arg(2, "loss", "{start_positions=, end_positions=} expected")
    end
    l1 = int_vector(lab.start_positions, "start_positions", "loss")
    l2 = int_vector(lab.end_positions, "end_positions", "loss")
  else
    labels = labels or batch.labels
    if labels == nil then check.arg(2, "loss", "labels expected") end
    if task == "text-classification" and T.is_tensor(labels) and labels:dtype() == "float32" then
      targets = labels:is_contiguous() and labels or labels:contiguous()
    elseif task == "text-classification" then
      l1 = int_vector(labels, "labels", "loss")
    else
      l1 = int_matrix(labels, "labels", "loss")
    end
  end
  local loss, out, per = self:_loss(ids, mask, types, l1, l2, targets, opts.train == true)
  if task == "question-answering" then return loss, out, per end
  return loss, out.logits, per
end

--- [CLS] hidden states [B,dim] (eval mode).
function methods:features(batch)
  return self:_features(batch_args(batch, "features"))
end

--- Where the model runs: BERT and the DistilBERT heads run on the CPU.
function methods:to(device)
  if device ~= "cpu" then
    error(string.format("%s: runs on the CPU only (device '%s' is not supported for this model)",
      self:model_type(), tostring(device)), 2)
  end
  return self
end
function methods:device() return "cpu" end

hf_config.install(methods) -- model:config(), model:label_names(), model:named_parameters()

M.methods = methods
return M
