-- moonbert.conll (mb.conll): token-classification data in the CoNLL-2003 column format, its
-- alignment to word pieces, and entity-level scores as seqeval computes them.
--
--   local d = mb.conll.read("data/conll/train.txt")   -- {sentences = {{words=, tags=}, ...}, tags = {"B-LOC", ...}}
--   local b = mb.conll.encode(tok, sentences, tag_ids, {max_length=128})  -- input_ids/attention_mask/labels [B,T]
--   mb.conll.entities({"B-PER", "I-PER", "O", "B-LOC"})   --> {{"PER", 1, 2}, {"LOC", 4, 4}}
--   mb.conll.seqeval(true_seqs, pred_seqs)  --> {precision=, recall=, f1=, accuracy=, per_type = {PER = {...}}}
--
-- Files: one token per line, columns separated by spaces or tabs, the tag in the last column
-- (CoNLL-2003: word POS chunk NER); a blank line ends a sentence; -DOCSTART- lines are skipped.
-- Labels follow Hugging Face's run_ner: the first piece of each word carries the word's tag id,
-- the other pieces and [CLS]/[SEP]/padding -100. seqeval's default (non-strict) chunking: an entity
-- starts at B-, or at an I- whose type differs from the previous tag's, and ends before the next
-- B-/O/other type; precision, recall and F1 are micro averages over entities (type, first, last).
local M = {}

--- Read a CoNLL file. Returns {sentences = {{words = {...}, tags = {...}}, ...}, tags = sorted tag names}.
function M.read(path)
  local f, err = io.open(path, "r")
  if not f then error("conll.read: cannot open " .. tostring(path) .. ": " .. tostring(err), 2) end
  local sentences, cur, seen = {}, { words = {}, tags = {} }, {}
  local n = 0
  for line in f:lines() do
    n = n + 1
    local cols = {}
    for c in line:gmatch("%S+") do cols[#cols + 1] = c end
    if #cols == 0 or cols[1] == "-DOCSTART-" then
      if #cur.words > 0 then sentences[#sentences + 1] = cur; cur = { words = {}, tags = {} } end
    elseif #cols < 2 then
      f:close()
      error(string.format("conll.read: %s:%d: a token and its tag expected, got %q", path, n, line), 2)
    else
      cur.words[#cur.words + 1] = cols[1]
      cur.tags[#cur.tags + 1] = cols[#cols]
      seen[cols[#cols]] = true
    end
  end
  f:close()
  if #cur.words > 0 then sentences[#sentences + 1] = cur end
  local tags = {}
  for t in pairs(seen) do tags[#tags + 1] = t end
  table.sort(tags, function(a, b) if a == "O" then return b ~= "O" end if b == "O" then return false end return a < b end)
  return { sentences = sentences, tags = tags }
end

--- The sentences as a padded batch: words joined with spaces, each word's first piece labelled
-- with tag_ids[tag] (0-based), the rest -100. Returns {input_ids=, attention_mask=,
-- token_type_ids= (BERT), labels=} int32 tensors and word_of[b][t] (1-based word of a first piece).
function M.encode(tok, sentences, tag_ids, o)
  o = o or {}
  local T = require "moonbert.tensor"
  local rows, masks, types, labels, word_of = {}, {}, {}, {}, {}
  local width = 0
  for b, s in ipairs(sentences) do
    local starts, pos = {}, 1
    for i, w in ipairs(s.words) do starts[i] = pos; pos = pos + #w + 1 end
    local text = table.concat(s.words, " ")
    local e = tok:encode(text, { return_offsets_mapping = true, max_length = o.max_length })
    local lab, wo, w = {}, {}, 1
    for t = 1, #e.input_ids do
      lab[t], wo[t] = -100, false
      if e.sequence_ids[t] == 0 then
        local first = e.offsets[t][1]
        while w < #s.words and starts[w + 1] <= first do w = w + 1 end
        if first == starts[w] then -- the word's first piece
          local id = tag_ids[s.tags[w]]
          if id == nil then error("conll.encode: tag '" .. tostring(s.tags[w]) .. "' is not among the model's labels", 2) end
          lab[t], wo[t] = id, w
        end
      end
    end
    rows[b], masks[b], labels[b], word_of[b] = e.input_ids, e.attention_mask, lab, wo
    types[b] = e.token_type_ids
    width = math.max(width, #e.input_ids)
  end
  for b = 1, #rows do
    for t = #rows[b] + 1, width do
      rows[b][t], masks[b][t], labels[b][t], word_of[b][t] = 0, 0, -100, false
      if types[b] then types[b][t] = 0 end
    end
  end
  local batch = { input_ids = T.from(rows, { dtype = "int32" }), attention_mask = T.from(masks, { dtype = "int32" }),
                  labels = T.from(labels, { dtype = "int32" }), word_of = word_of }
  if types[1] then batch.token_type_ids = T.from(types, { dtype = "int32" }) end
  return batch
end

-- prefix and type of a tag ("B-PER" -> "B", "PER"; "O" -> "O", "")
local function split_tag(tag)
  if tag == "O" then return "O", "" end
  local p, t = tag:match("^([BIESU])%-(.+)$")
  if p then return p, t end
  return tag:sub(1, 1), tag:sub(3)
end

local function ends_chunk(pp, p, pt, t)
  if pp == "E" or pp == "S" then return true end
  if (pp == "B" or pp == "I") and (p == "B" or p == "S" or p == "O") then return true end
  return pp ~= "O" and pt ~= t
end

local function starts_chunk(pp, p, pt, t)
  if p == "B" or p == "S" then return true end
  if (pp == "E" or pp == "S" or pp == "O") and (p == "E" or p == "I") then return true end
  return p ~= "O" and pt ~= t
end

--- seqeval's get_entities on one tag sequence: {{type, first, last}, ...} (1-based, inclusive).
function M.entities(tags)
  local out = {}
  local pp, pt, begin = "O", "", 1
  for i = 1, #tags + 1 do
    local p, t = split_tag(tags[i] or "O")
    if ends_chunk(pp, p, pt, t) then out[#out + 1] = { pt, begin, i - 1 } end
    if starts_chunk(pp, p, pt, t) then begin = i end
    pp, pt = p, t
  end
  return out
end

--- Entity-level micro precision, recall and F1 (seqeval's classification_report "micro avg"), token
-- accuracy, and per-type scores, over lists of tag sequences.
function M.seqeval(y_true, y_pred)
  local tp, np, nt, correct, total = 0, 0, 0, 0, 0
  local per = {}
  local function bucket(t) per[t] = per[t] or { tp = 0, pred = 0, true_ = 0 }; return per[t] end
  for s = 1, #y_true do
    local gold = {}
    for _, e in ipairs(M.entities(y_true[s])) do gold[table.concat(e, "\0")] = true; nt = nt + 1; bucket(e[1]).true_ = bucket(e[1]).true_ + 1 end
    for _, e in ipairs(M.entities(y_pred[s])) do
      np = np + 1
      bucket(e[1]).pred = bucket(e[1]).pred + 1
      if gold[table.concat(e, "\0")] then tp = tp + 1; bucket(e[1]).tp = bucket(e[1]).tp + 1 end
    end
    for i = 1, #y_true[s] do
      total = total + 1
      if y_true[s][i] == y_pred[s][i] then correct = correct + 1 end
    end
  end
  local function prf(a, pred, tru)
    local p = pred > 0 and a / pred or 0
    local r = tru > 0 and a / tru or 0
    return p, r, (p + r) > 0 and 2 * p * r / (p + r) or 0
  end
  local p, r, f = prf(tp, np, nt)
  local per_type = {}
  for t, c in pairs(per) do
    local pp, rr, ff = prf(c.tp, c.pred, c.true_)
    per_type[t] = { precision = pp, recall = rr, f1 = ff, support = c.true_ }
  end
  return { precision = p, recall = r, f1 = f, accuracy = total > 0 and correct / total or 0, per_type = per_type,
           n_true = nt, n_pred = np }
end

return M
