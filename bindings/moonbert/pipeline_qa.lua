-- moonbert.pipeline_qa: mb.pipeline("question-answering", dir) as Hugging Face's
-- QuestionAnsweringPipeline (fast-tokenizer path).
--
--   local qa = mb.pipeline("question-answering", "models/distilbert-base-cased-distilled-squad")
--   qa("Where do I live?", "My name is Wolfgang and I live in Berlin")
--     --> {score = 0.97, start = 35, ["end"] = 40, answer = "Berlin"}
--   qa({question = q, context = c}, {top_k = 3})    --> a list of 3 such tables, best first
--   qa({{question = q1, context = c1}, {question = q2, context = c2}})  --> one result per pair
--
-- start and end are 1-based inclusive byte positions in the context (context:sub(start, end) is the
-- answer), where Hugging Face gives 0-based character offsets; the impossible answer is
-- {score =, start = 0, ["end"] = 0, answer = ""}.
--
-- The algorithm (HF's): the question and the context are encoded as a pair truncated only_second to
-- max_seq_len (min(model_max_length, 384)) in overflowing windows that share doc_stride
-- (min(max_seq_len // 2, 128)) tokens. In each window only the context tokens and [CLS] may carry
-- the answer: the other logits are set to -10000 before a softmax over the window, for the start
-- and the end separately. With handle_impossible_answer the null score is the smallest
-- p_start([CLS]) * p_end([CLS]) over the windows. [CLS] is then given probability 0 and a span
-- (s, e) of context tokens with s <= e < s + max_answer_len (15) scores p_start(s) * p_end(e).
-- The top_k spans over all windows (and the null answer) are returned best first; a span is widened
-- to whole words (a WordPiece word is a piece and its ## continuations) and mapped to the context
-- through the tokenizer's offsets.
local check = require "moonbert.check"
local pipeline = require "moonbert.pipeline"
local M = {}

local DEFAULTS = { top_k = 1, max_answer_len = 15, handle_impossible_answer = false, batch_size = 8 }

local function positive(v, name)
  if v ~= nil and (math.type(v) ~= "integer" or v < 1) then
    error(string.format("question-answering: %s must be a positive integer (got %s)", name, tostring(v)), 3)
  end
  return v
end

-- softmax of logits over positions 1..n where allowed[i], the others at -10000 (as HF)
local function masked_softmax(logits, allowed, n)
  local x, mx = {}, -math.huge
  for i = 1, n do
    x[i] = allowed[i] and logits[i] or -10000.0
    if x[i] > mx then mx = x[i] end
  end
  local s = 0
  for i = 1, n do x[i] = math.exp(x[i] - mx); s = s + x[i] end
  for i = 1, n do x[i] = x[i] / s end
  return x
end

-- The first and last token of the words around tokens s and e (1-based) of a window.
local function widen_to_words(enc, s, e)
  local tokens, seq = enc.tokens, enc.sequence_ids
  while s > 1 and tokens[s]:sub(1, 2) == "##" and seq[s - 1] == seq[s] do s = s - 1 end
  while e < #tokens and tokens[e + 1]:sub(1, 2) == "##" and seq[e + 1] == seq[e] do e = e + 1 end
  return s, e
end

--- Span scores of one window (HF's postprocess for a feature), appended to `answers`.
-- win = {start_logits = {...}, end_logits = {...}, encoding = enc} (logits over enc's tokens);
-- returns the window's null score p_start([CLS]) * p_end([CLS]).
function M.window_spans(win, context, o, answers)
  local enc = win.encoding
  local n = #enc.input_ids
  local allowed, cls = {}, nil
  for i = 1, n do
    allowed[i] = enc.sequence_ids[i] == 1
    if enc.sequence_ids[i] == -1 and cls == nil then cls = i end -- [CLS] stays unmasked
  end
  if cls then allowed[cls] = true end
  local ps = masked_softmax(win.start_logits, allowed, n)
  local pe = masked_softmax(win.end_logits, allowed, n)
  local null = cls and ps[cls] * pe[cls] or 0
  if cls then ps[cls], pe[cls] = 0, 0 end
  local L = o.max_answer_len
  local cands = {}
  for s = 1, n do
    if allowed[s] and s ~= cls then
      for e = s, math.min(n, s + L - 1) do
        if allowed[e] and e ~= cls then cands[#cands + 1] = { ps[s] * pe[e], s, e } end
      end
    end
  end
  table.sort(cands, function(a, b)
    if a[1] ~= b[1] then return a[1] > b[1] end
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  for k = 1, math.min(o.top_k, #cands) do
    local s, e = widen_to_words(enc, cands[k][2], cands[k][3])
    local first, last = enc.offsets[s][1], enc.offsets[e][2]
    answers[#answers + 1] = { score = cands[k][1], start = first, ["end"] = last, answer = context:sub(first, last) }
  end
  return null
end

--- HF's postprocess over every window of one question: a result (top_k = 1) or a list.
function M.postprocess(windows, context, o)
  o = o or {}
  local opts = {}
  for k, v in pairs(DEFAULTS) do opts[k] = v end
  for k, v in pairs(o) do opts[k] = v end
  local answers, min_null = {}, 1000000
  for _, win in ipairs(windows) do
    local null = M.window_spans(win, context, opts, answers)
    if null < min_null then min_null = null end
  end
  if opts.handle_impossible_answer then
    answers[#answers + 1] = { score = min_null, start = 0, ["end"] = 0, answer = "" }
  end
  -- stable: equal scores keep window order
  for i, a in ipairs(answers) do a._i = i end
  table.sort(answers, function(a, b) if a.score ~= b.score then return a.score > b.score end return a._i < b._i end)
  local out = {}
  for i = 1, math.min(opts.top_k, #answers) do
    answers[i]._i = nil
    out[i] = answers[i]
  end
  if opts.top_k == 1 then return out[1] end
  return out
end

-- ---- the pipeline object ----------------------------------------------------------------------
local QA = pipeline.class("moonbert.QuestionAnsweringPipeline")

--- The windows of (question, context) with model's logits: {{start_logits=, end_logits=, encoding=}, ...}.
-- o: max_seq_len, doc_stride, batch_size (windows per forward).
function M.windows_of(model, tok, question, context, o)
  local encs = tok:encode(question, context, {
    truncation = "only_second", max_length = o.max_seq_len, stride = o.doc_stride,
    return_overflowing_tokens = true, return_offsets_mapping = true })
  local T = require "moonbert.tensor"
  local out = {}
  for first = 1, #encs, o.batch_size do
    local last = math.min(#encs, first + o.batch_size - 1)
    local width = 0
    for i = first, last do width = math.max(width, #encs[i].input_ids) end
    local ids, mask, types = {}, {}, {}
    for i = first, last do
      local e, r, m, t = encs[i], {}, {}, {}
      for j = 1, width do
        r[j] = e.input_ids[j] or 0
        m[j] = e.input_ids[j] and 1 or 0
        t[j] = e.token_type_ids and e.token_type_ids[j] or 0
      end
      ids[#ids + 1], mask[#mask + 1], types[#types + 1] = r, m, t
    end
    local batch = { input_ids = T.from(ids, { dtype = "int32" }), attention_mask = T.from(mask, { dtype = "int32" }) }
    if encs[first].token_type_ids then batch.token_type_ids = T.from(types, { dtype = "int32" }) end
    local res = model:forward(batch)
    local st, en = res.start_logits:totable(), res.end_logits:totable()
    for _, v in pairs(res) do if type(v) == "userdata" then v:free() end end
    for i = first, last do
      out[#out + 1] = { start_logits = st[i - first + 1], end_logits = en[i - first + 1], encoding = encs[i] }
    end
  end
  return out
end

function QA:windows(question, context, o)
  return M.windows_of(self.model, self.tokenizer, question, context, o or self.opts)
end

function QA:__call(a, b, c)
  if self.model == nil then error("question-answering: pipeline is freed", 2) end
  -- (question, context [, opts]) | ({question=, context=} [, opts]) | ({{question=, context=}, ...} [, opts])
  local items, o, single
  if type(a) == "string" then
    if type(b) ~= "string" then check.arg(2, "question-answering", "context string expected, got " .. type(b)) end
    items, o, single = { { question = a, context = b } }, c, true
  elseif type(a) == "table" and a.question ~= nil then
    items, o, single = { a }, b, true
  elseif type(a) == "table" then
    items, o, single = a, b, false
  else
    check.arg(1, "question-answering", "question string, {question=, context=} or a list of them expected, got " .. type(a))
  end
  if o ~= nil and type(o) ~= "table" then check.arg(single and type(a) == "string" and 3 or 2, "question-answering", "options table expected") end
  local opts = {}
  for k, v in pairs(self.opts) do opts[k] = v end
  for k, v in pairs(o or {}) do opts[k] = v end
  positive(opts.top_k, "top_k"); positive(opts.max_answer_len, "max_answer_len")
  positive(opts.max_seq_len, "max_seq_len"); positive(opts.batch_size, "batch_size")
  if math.type(opts.doc_stride) ~= "integer" or opts.doc_stride < 0 then
    error("question-answering: doc_stride must be a non-negative integer", 2)
  end
  local results = {}
  for i, it in ipairs(items) do
    if type(it) ~= "table" or type(it.question) ~= "string" or type(it.context) ~= "string" then
      check.arg(1, "question-answering", "item " .. i .. ": {question = string, context = string} expected")
    end
    if it.question == "" or it.context == "" then
      check.arg(1, "question-answering", "item " .. i .. ": question and context cannot be empty")
    end
    results[i] = M.postprocess(self:windows(it.question, it.context, opts), it.context, opts)
  end
  if single then return results[1] end
  return results
end

--- load(dir, opts) -> pipeline. opts: top_k (1), max_answer_len (15), max_seq_len
-- (min(model_max_length, 384)), doc_stride (min(max_seq_len // 2, 128)), handle_impossible_answer
-- (false), batch_size (windows per forward, 8).
function M.load(dir, opts)
  opts = opts or {}
  local model = require("moonbert.auto").load(dir, { task = "question-answering", quiet = true })
  local tok = require("moonbert.tokenizer").load(dir)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  o.max_seq_len = o.max_seq_len or math.min(tok.model_max_length, 384)
  o.doc_stride = o.doc_stride or math.min(o.max_seq_len // 2, 128)
  return setmetatable({ model = model, tokenizer = tok, opts = o, dir = dir }, QA)
end

return M
