-- moonbert.squad (mb.squad): SQuAD v1.1 data for extractive question answering, its training
-- features, and the official evaluation (exact match and F1 of evaluate-v1.1.py).
--
--   local ex = mb.squad.read("data/squad/dev-v1.1.json")   -- {{id=, question=, context=, answers={{text=, start=}}}, ...}
--   local f = mb.squad.features(tok, ex, {max_seq_len=384, doc_stride=128})  -- windows with start/end positions
--   mb.squad.evaluate(ex, predictions)                      -- {exact_match=, f1=} in percent (id -> text)
--
-- answers[i].start is the 1-based byte position of the answer in the context (the file's
-- answer_start is a character offset; it is converted through UTF-8). Training windows follow
-- Hugging Face's run_qa: the question and the context as a pair truncated only_second into
-- windows sharing doc_stride tokens; a window that holds the first answer whole is labelled with
-- its first and last token (0-based, as the model's loss takes them), any other window with [CLS]
-- (0, 0). The evaluation normalises as the official script: lower case, punctuation and the articles
-- a/an/the removed, whitespace collapsed; exact match and token F1 take the best gold answer.
local json = require "dkjson"

local M = {}

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then error("squad.read: cannot open " .. tostring(path) .. ": " .. tostring(err), 3) end
  local s = f:read("a")
  f:close()
  return s
end

-- byte position (1-based) of the character with 0-based index c in s
local function char_to_byte(s, c)
  return utf8.offset(s, c + 1) or (#s + 1)
end

--- Read a SQuAD v1.1 JSON file into a flat list of examples.
function M.read(path)
  local doc, _, err = json.decode(read_all(path))
  if type(doc) ~= "table" or type(doc.data) ~= "table" then
    error("squad.read: " .. path .. ": not SQuAD JSON (" .. tostring(err or "no 'data' list") .. ")", 2)
  end
  local out = {}
  for _, article in ipairs(doc.data) do
    for _, para in ipairs(article.paragraphs or {}) do
      local ctx = para.context
      for _, qa in ipairs(para.qas or {}) do
        local answers = {}
        for _, a in ipairs(qa.answers or {}) do
          local s = char_to_byte(ctx, a.answer_start)
          answers[#answers + 1] = { text = a.text, start = s }
        end
        out[#out + 1] = { id = qa.id, question = qa.question, context = ctx, answers = answers }
      end
    end
  end
  return out
end

--- Training windows of examples: a list of {input_ids=, attention_mask=, token_type_ids=,
-- start_position=, end_position=, example=} (positions 0-based).
function M.features(tok, examples, o)
  o = o or {}
  local max_seq_len = o.max_seq_len or math.min(tok.model_max_length, 384)
  local stride = o.doc_stride or math.min(max_seq_len // 2, 128)
  local feats = {}
  for i, ex in ipairs(examples) do
    local wins = tok:encode(ex.question, ex.context, { truncation = "only_second", max_length = max_seq_len,
      stride = stride, return_overflowing_tokens = true, return_offsets_mapping = true })
    local a = ex.answers[1]
    local a_first, a_last = a and a.start, a and (a.start + #a.text - 1)
    for _, e in ipairs(wins) do
      local s, t = 0, 0
      if a then
        local ctx_first, ctx_last
        for k = 1, #e.input_ids do
          if e.sequence_ids[k] == 1 then ctx_first = ctx_first or k; ctx_last = k end
        end
        if ctx_first and e.offsets[ctx_first][1] <= a_first and e.offsets[ctx_last][2] >= a_last then
          local k = ctx_first
          while k <= ctx_last and e.offsets[k][2] < a_first do k = k + 1 end
          s = k - 1
          k = ctx_last
          while k >= ctx_first and e.offsets[k][1] > a_last do k = k - 1 end
          t = k - 1
        end
      end
      feats[#feats + 1] = { input_ids = e.input_ids, attention_mask = e.attention_mask, token_type_ids = e.token_type_ids,
                            start_position = s, end_position = t, example = i }
    end
  end
  return feats
end

--- Pad features[first..last] into a batch with start_positions / end_positions.
function M.batch(feats, first, last)
  local T = require "moonbert.tensor"
  local width = 0
  for i = first, last do width = math.max(width, #feats[i].input_ids) end
  local ids, mask, types, sp, ep = {}, {}, {}, {}, {}
  for i = first, last do
    local f, r, m, t = feats[i], {}, {}, {}
    for j = 1, width do
      r[j] = f.input_ids[j] or 0
      m[j] = f.input_ids[j] and 1 or 0
      t[j] = f.token_type_ids and f.token_type_ids[j] or 0
    end
    ids[#ids + 1], mask[#mask + 1], types[#types + 1] = r, m, t
    sp[#sp + 1], ep[#ep + 1] = f.start_position, f.end_position
  end
  local b = { input_ids = T.from(ids, { dtype = "int32" }), attention_mask = T.from(mask, { dtype = "int32" }),
              start_positions = T.from(sp, { dtype = "int32" }), end_positions = T.from(ep, { dtype = "int32" }) }
  if feats[first].token_type_ids then b.token_type_ids = T.from(types, { dtype = "int32" }) end
  return b
end

-- ---- the official evaluation (evaluate-v1.1.py) ---------------------------------------------------

--- normalize_answer: lower case, no punctuation, no articles, single spaces.
function M.normalize(s)
  s = s:lower()
  s = s:gsub("%p", "")
  s = (" " .. s .. " "):gsub("%s+", "  ")
  s = s:gsub(" an ", " "):gsub(" a ", " "):gsub(" the ", " ")
  local words = {}
  for w in s:gmatch("%S+") do words[#words + 1] = w end
  return table.concat(words, " ")
end

function M.exact_match(prediction, truth) return M.normalize(prediction) == M.normalize(truth) end

function M.f1(prediction, truth)
  local p, t = {}, {}
  for w in M.normalize(prediction):gmatch("%S+") do p[#p + 1] = w end
  for w in M.normalize(truth):gmatch("%S+") do t[#t + 1] = w end
  local counts, same = {}, 0
  for _, w in ipairs(t) do counts[w] = (counts[w] or 0) + 1 end
  for _, w in ipairs(p) do
    if (counts[w] or 0) > 0 then same = same + 1; counts[w] = counts[w] - 1 end
  end
  if same == 0 then return 0 end
  local precision, recall = same / #p, same / #t
  return 2 * precision * recall / (precision + recall)
end

--- {exact_match=, f1=} in percent over examples; predictions maps example id -> answer text
-- (a missing prediction counts 0, as the official script after its warning).
function M.evaluate(examples, predictions)
  local em, f1, n = 0, 0, 0
  for _, ex in ipairs(examples) do
    n = n + 1
    local pred = predictions[ex.id]
    if pred then
      local best_em, best_f1 = 0, 0
      for _, a in ipairs(ex.answers) do
        if M.exact_match(pred, a.text) then best_em = 1 end
        best_f1 = math.max(best_f1, M.f1(pred, a.text))
      end
      em, f1 = em + best_em, f1 + best_f1
    end
  end
  return { exact_match = n > 0 and 100 * em / n or 0, f1 = n > 0 and 100 * f1 / n or 0, n = n }
end

return M
