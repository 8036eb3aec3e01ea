-- moonbert.pipeline_ner: mb.pipeline("token-classification" | "ner", dir, opts) as Hugging Face's
-- TokenClassificationPipeline.
--
--   local ner = mb.pipeline("ner", "models/bert-base-NER", {aggregation_strategy = "simple"})
--   ner("My name is Wolfgang and I live in Berlin")
--     --> {{entity_group = "PER", score = 0.99, word = "Wolfgang", start = 12, ["end"] = 19},
--          {entity_group = "LOC", score = 0.99, word = "Berlin", start = 35, ["end"] = 40}}
--   ner({"text one", "text two"})   --> one list per text
--
-- aggregation_strategy (HF's, default "none"):
--   "none"     one entry per word piece: {entity, score, index, word, start, end} (index: the token's
--              1-based position in input_ids, [CLS] being 1)
--   "simple"   adjacent pieces grouped: a piece joins the group before it when its tag (the label
--              without B-/I-) is the same and it is not a B-; {entity_group, score (mean), word, start, end}
--   "first" / "average" / "max"   first every word (a piece and its ## continuations) gets one label:
--              its first piece's, the argmax of its pieces' mean probabilities, or its most confident
--              piece's; then grouped as "simple"
-- Labels in ignore_labels (default {"O"}) are left out. start/end are 1-based inclusive byte positions
-- in the text (text:sub(start, end)), where HF gives 0-based character offsets. Scores are softmax
-- probabilities in evaluation mode.
local check = require "moonbert.check"
local pipeline = require "moonbert.pipeline"
local M = {}

local STRATEGIES = { none = true, simple = true, first = true, average = true, max = true }

local function argmax(v)
  local best = 1
  for i = 2, #v do if v[i] > v[best] then best = i end end
  return best
end

local function softmax(row)
  local mx = -math.huge
  for _, z in ipairs(row) do if z > mx then mx = z end end
  local out, s = {}, 0
  for i, z in ipairs(row) do out[i] = math.exp(z - mx); s = s + out[i] end
  for i = 1, #out do out[i] = out[i] / s end
  return out
end

local function ulen(s) return utf8.len(s) or #s end

-- HF's get_tag: "B-PER" -> "B", "PER"; a label without B-/I- continues ("I").
local function tag_of(label)
  local bi, tag = label:match("^([BI])%-(.*)$")
  if bi then return bi, tag end
  return "I", label
end

--- The pre-entities of one text: every non-special token with its probabilities, word, span and
-- whether it continues a word (HF's gather_pre_entities for a WordPiece tokenizer).
-- enc: an encoding with tokens, sequence_ids, offsets and input_ids; probs[i]: token i's probabilities.
function M.gather(text, enc, probs, unk_id)
  local pre = {}
  for i, tokstr in ipairs(enc.tokens) do
    if enc.sequence_ids[i] ~= -1 then
      local first, last = enc.offsets[i][1], enc.offsets[i][2]
      local ref = text:sub(first, last)
      local word, is_sub = tokstr, ulen(tokstr) ~= ulen(ref)
      if enc.input_ids[i] == unk_id then word, is_sub = ref, false end
      pre[#pre + 1] = { word = word, scores = probs[i], start = first, ["end"] = last, index = i, is_subword = is_sub }
    end
  end
  return pre
end

local function aggregate_word(group, strategy, id2label, tokens_to_string)
  local words = {}
  for i, e in ipairs(group) do words[i] = e.word end
  local scores
  if strategy == "first" then
    scores = group[1].scores
  elseif strategy == "max" then
    local best, best_v = group[1], -1
    for _, e in ipairs(group) do
      local m = e.scores[argmax(e.scores)]
      if m > best_v then best, best_v = e, m end
    end
    scores = best.scores
  else -- average
    scores = {}
    for j = 1, #group[1].scores do
      local s = 0
      for _, e in ipairs(group) do s = s + e.scores[j] end
      scores[j] = s / #group
    end
  end
  local k = argmax(scores)
  return { entity = id2label[k], score = scores[k], word = tokens_to_string(words), start = group[1].start,
           ["end"] = group[#group]["end"] }
end

local function group_sub(entities, tokens_to_string)
  local _, tag = tag_of(entities[1].entity)
  local s, words = 0, {}
  for i, e in ipairs(entities) do s = s + e.score; words[i] = e.word end
  return { entity_group = tag, score = s / #entities, word = tokens_to_string(words), start = entities[1].start,
           ["end"] = entities[#entities]["end"] }
end

--- HF's aggregate + group_entities + ignore_labels filter over the pre-entities of one text.
-- id2label: 1-based list of label names (label id k - 1 is id2label[k]).
function M.aggregate(pre, strategy, id2label, tokens_to_string, ignore_labels)
  ignore_labels = ignore_labels or { "O" }
  local ignore = {}
  for _, l in ipairs(ignore_labels) do ignore[l] = true end
  local entities = {}
  if strategy == "none" or strategy == "simple" then
    for _, p in ipairs(pre) do
      local k = argmax(p.scores)
      entities[#entities + 1] = { entity = id2label[k], score = p.scores[k], index = p.index, word = p.word,
                                  start = p.start, ["end"] = p["end"] }
    end
  else
    local group
    for _, p in ipairs(pre) do
      if group == nil then group = { p }
      elseif p.is_subword then group[#group + 1] = p
      else
        entities[#entities + 1] = aggregate_word(group, strategy, id2label, tokens_to_string)
        group = { p }
      end
    end
    if group then entities[#entities + 1] = aggregate_word(group, strategy, id2label, tokens_to_string) end
  end
  local out = {}
  if strategy == "none" then
    for _, e in ipairs(entities) do if not ignore[e.entity] then out[#out + 1] = e end end
    return out
  end
  local groups, cur = {}, {}
  for _, e in ipairs(entities) do
    if #cur == 0 then
      cur[1] = e
    else
      local bi, tag = tag_of(e.entity)
      local _, last_tag = tag_of(cur[#cur].entity)
      if tag == last_tag and bi ~= "B" then cur[#cur + 1] = e
      else
        groups[#groups + 1] = group_sub(cur, tokens_to_string)
        cur = { e }
      end
    end
  end
  if #cur > 0 then groups[#groups + 1] = group_sub(cur, tokens_to_string) end
  for _, g in ipairs(groups) do if not ignore[g.entity_group] then out[#out + 1] = g end end
  return out
end

-- ---- the pipeline object -----------------------------------------------------------------------
local NER = pipeline.class("moonbert.TokenClassificationPipeline")

function NER:__call(texts, o)
  if self.model == nil then error("token-classification: pipeline is freed", 2) end
  local single = type(texts) == "string"
  if single then texts = { texts } end
  if type(texts) ~= "table" then
    check.arg(1, "token-classification", "string or list of strings expected, got " .. type(texts))
  end
  if o ~= nil and type(o) ~= "table" then check.arg(2, "token-classification", "options table expected") end
  local opts = {}
  for k, v in pairs(self.opts) do opts[k] = v end
  for k, v in pairs(o or {}) do opts[k] = v end
  if not STRATEGIES[opts.aggregation_strategy] then
    error("token-classification: aggregation_strategy must be none, simple, first, average or max (got "
      .. tostring(opts.aggregation_strategy) .. ")", 2)
  end
  local tok = self.tokenizer
  local to_string = function(words) return tok:convert_tokens_to_string(words) end
  local unk = tok:special_tokens().unk_token_id
  local out = {}
  for i, text in ipairs(texts) do
    if type(text) ~= "string" then
      check.arg(1, "token-classification", string.format("text %d: string expected, got %s", i, type(text)))
    end
    local enc = tok:encode(text, { return_offsets_mapping = true, max_length = opts.max_length })
    local batch = { input_ids = { enc.input_ids }, attention_mask = { enc.attention_mask },
                    token_type_ids = enc.token_type_ids and { enc.token_type_ids } or nil }
    local res = self.model:forward(batch)
    local logits = res.logits[1]:totable()
    for _, v in pairs(res) do if type(v) == "userdata" then v:free() end end
    local probs = {}
    for t, row in ipairs(logits) do probs[t] = softmax(row) end
    local pre = M.gather(text, enc, probs, unk)
    out[i] = M.aggregate(pre, opts.aggregation_strategy, self.labels, to_string, opts.ignore_labels)
  end
  if single then return out[1] end
  return out
end

--- load(dir, opts) -> pipeline. opts: aggregation_strategy ("none"), ignore_labels ({"O"}),
-- max_length (the tokenizer's).
function M.load(dir, opts)
  opts = opts or {}
  local o = { aggregation_strategy = "none" }
  for k, v in pairs(opts) do o[k] = v end
  if not STRATEGIES[o.aggregation_strategy] then
    check.arg(3, "pipeline", "aggregation_strategy must be none, simple, first, average or max, got "
      .. tostring(o.aggregation_strategy), 2)
  end
  local model = require("moonbert.auto").load(dir, { task = "token-classification", quiet = true })
  local tok = require("moonbert.tokenizer").load(dir)
  return setmetatable({ model = model, tokenizer = tok, labels = model:label_names(), opts = o, dir = dir }, NER)
end

return M
