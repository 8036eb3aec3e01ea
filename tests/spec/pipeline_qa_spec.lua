-- pipeline_qa_spec.lua: mb.pipeline("question-answering") (bindings/moonbert/pipeline_qa.lua).
-- Span selection, windowing, the impossible answer and the offset mapping are checked on
-- hand-made encodings and logits against Hugging Face's algorithm as its pipeline documents it
-- (masked softmax over context tokens and [CLS], [CLS] zeroed, s <= e < s + max_answer_len,
-- best p_start * p_end over all windows, spans widened to words); then end to end on the
-- bert-tiny-heads/question-answering model (random weights: only the invariants are checked).
local mb = require "moonbert"
local qa = require "moonbert.pipeline_qa"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local QA_DIR = SHARED .. "/fixtures/bert-tiny-heads/question-answering"
local DQA_DIR = SHARED .. "/fixtures/distilbert-tiny-heads/question-answering"

-- An encoding of "[CLS] question [SEP] context... [SEP]" from context words with byte spans.
local function encoding(qtokens, ctx_pieces)
  local e = { input_ids = {}, tokens = {}, sequence_ids = {}, offsets = {} }
  local function add(t, seq, a, b)
    e.input_ids[#e.input_ids + 1] = 1000 + #e.input_ids
    e.tokens[#e.tokens + 1] = t
    e.sequence_ids[#e.sequence_ids + 1] = seq
    e.offsets[#e.offsets + 1] = { a, b }
  end
  add("[CLS]", -1, 0, 0)
  for _, t in ipairs(qtokens) do add(t, 0, 1, 1) end
  add("[SEP]", -1, 0, 0)
  for _, p in ipairs(ctx_pieces) do add(p[1], 1, p[2], p[3]) end
  add("[SEP]", -1, 0, 0)
  return e
end

-- softmax over the allowed positions (others excluded: exp(-10000) is 0 in double)
local function probs(logits, allowed)
  local s = 0
  for i, z in ipairs(logits) do if allowed[i] then s = s + math.exp(z) end end
  local p = {}
  for i, z in ipairs(logits) do p[i] = allowed[i] and math.exp(z) / s or 0 end
  return p
end

local CONTEXT = "we met in Zürich yesterday"
-- context pieces: we(1-2) met(4-6) in(8-9) zu(11-13) ##rich(14-17) yesterday(19-27)
local PIECES = { { "we", 1, 2 }, { "met", 4, 6 }, { "in", 8, 9 }, { "zu", 11, 13 }, { "##rich", 14, 17 },
                 { "yesterday", 19, 27 } }

describe("question-answering postprocess (hand-made logits)", function()
  local enc = encoding({ "where" }, PIECES) -- positions: 1 [CLS], 2 where, 3 [SEP], 4..9 context, 10 [SEP]
  local allowed = { true, false, false, true, true, true, true, true, true, false }

  it("picks the best span inside the context, widened to words, mapped through the offsets", function()
    -- the question token has the largest logits: masked, it cannot win
    local st = { 0, 9, 0, 0, 0, 1, 0, 4, 0, 9 }
    local en = { 0, 9, 0, 0, 0, 0, 0, 4, 0, 9 }
    local r = qa.postprocess({ { start_logits = st, end_logits = en, encoding = enc } }, CONTEXT)
    -- best: start = end = "##rich" (position 8), widened to the word "zu ##rich"
    local ps, pe = probs(st, allowed), probs(en, allowed)
    ps[1], pe[1] = 0, 0
    assert.are.equal("Zürich", r.answer)
    assert.are.equal(11, r.start)
    assert.are.equal(17, r["end"])
    assert.are.equal(CONTEXT:sub(r.start, r["end"]), r.answer)
    assert.is_true(math.abs(r.score - ps[8] * pe[8]) < 1e-12)
  end)

  it("keeps s <= e < s + max_answer_len and returns top_k best first", function()
    -- start strongest at "we" (4), end strongest at "yesterday" (9): 6 tokens apart
    local st = { 0, 0, 0, 5, 0, 0, 0, 0, 2, 0 }
    local en = { 0, 0, 0, 0, 3, 0, 0, 0, 5, 0 }
    local w = { { start_logits = st, end_logits = en, encoding = enc } }
    local long = qa.postprocess(w, CONTEXT, { max_answer_len = 15 })
    assert.are.equal("we met in Zürich yesterday", long.answer)
    local short = qa.postprocess(w, CONTEXT, { max_answer_len = 2, top_k = 3 })
    assert.are.equal(3, #short)
    -- brute force over the allowed spans of length <= 2
    local ps, pe = probs(st, allowed), probs(en, allowed)
    ps[1], pe[1] = 0, 0
    local best = {}
    for s = 4, 9 do for e = s, math.min(9, s + 1) do best[#best + 1] = ps[s] * pe[e] end end
    table.sort(best, function(a, b) return a > b end)
    for k = 1, 3 do assert.is_true(math.abs(short[k].score - best[k]) < 1e-12, "rank " .. k) end
    assert.are.equal("we met", short[1].answer) -- (4, 5)
    for k = 2, 3 do assert.is_true(short[k - 1].score >= short[k].score) end
    -- an end before the start is never chosen: reversed logits give single tokens
    local rev = qa.postprocess({ { start_logits = en, end_logits = st, encoding = enc } }, CONTEXT, { top_k = 1 })
    assert.is_true(rev.start <= rev["end"])
  end)

  it("chooses over every window and maps each through its own offsets", function()
    -- window 2 holds the context from "in" on (a stride-style overlap of one token)
    local enc2 = encoding({ "where" }, { PIECES[3], PIECES[4], PIECES[5], PIECES[6] })
    local w1 = { start_logits = { 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 }, end_logits = { 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 }, encoding = enc }
    local w2 = { start_logits = { 0, 0, 0, 0, 0, 0, 6, 0 }, end_logits = { 0, 0, 0, 0, 0, 0, 6, 0 }, encoding = enc2 }
    local r = qa.postprocess({ w1, w2 }, CONTEXT, { top_k = 2 })
    assert.are.equal("yesterday", r[1].answer)
    assert.are.equal(19, r[1].start)
    assert.are.equal("we", r[2].answer)
    local a2 = { true, false, false, true, true, true, true, false }
    local ps = probs(w2.start_logits, a2)
    ps[1] = 0
    assert.is_true(math.abs(r[1].score - ps[7] * ps[7]) < 1e-12)
  end)

  it("handle_impossible_answer: the null score is the smallest [CLS] score over the windows", function()
    local enc2 = encoding({ "where" }, { PIECES[5], PIECES[6] })
    local w1 = { start_logits = { 8, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, end_logits = { 8, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, encoding = enc }
    local w2 = { start_logits = { 6, 0, 0, 1, 0, 0 }, end_logits = { 6, 0, 0, 0, 1, 0 }, encoding = enc2 }
    local r = qa.postprocess({ w1, w2 }, CONTEXT, { handle_impossible_answer = true, top_k = 2 })
    local n1 = probs(w1.start_logits, allowed)[1] ^ 2
    local n2 = probs(w2.start_logits, { true, false, false, true, true, false })[1] *
               probs(w2.end_logits, { true, false, false, true, true, false })[1]
    assert.are.equal("", r[1].answer)
    assert.are.equal(0, r[1].start)
    assert.is_true(math.abs(r[1].score - math.min(n1, n2)) < 1e-12)
    assert.is_true(r[2].score < r[1].score)
    -- without the option the null answer never appears
    local plain = qa.postprocess({ w1, w2 }, CONTEXT, { top_k = 20 })
    for _, a in ipairs(plain) do assert.are_not.equal("", a.answer) end
  end)
end)

describe("question-answering pipeline (bert-tiny-heads model)", function()
  if not io.open(QA_DIR .. "/model.safetensors") then
    pending("needs " .. QA_DIR .. " (../shared is absent)")
    return
  end

  local words = {}
  for i = 1, 120 do words[i] = ({ "the", "river", "flows", "through", "old", "München", "and", "its", "bridges" })[i % 9 + 1] end
  local context = table.concat(words, " ") .. "."

  for _, dir in ipairs { QA_DIR, DQA_DIR } do
    it("answers from the context through the windows: " .. dir:match("[^/]+/[^/]+$"), function()
      local p = mb.pipeline("question-answering", dir, { max_seq_len = 48, doc_stride = 16 })
      local r = p("where does the river flow?", context)
      assert.are.equal(context:sub(r.start, r["end"]), r.answer)
      assert.is_true(r.score > 0 and r.score <= 1)
      -- the result is the best over the windows as the model scores them
      local windows = p:windows("where does the river flow?", context, p.opts)
      assert.is_true(#windows > 3, #windows .. " windows")
      local best = 0
      for _, w in ipairs(windows) do
        local all = {}
        qa.window_spans(w, context, { top_k = 1, max_answer_len = 15 }, all)
        if all[1] and all[1].score > best then best = all[1].score end
      end
      assert.is_true(math.abs(best - r.score) < 1e-12)
      local top = p({ question = "where does the river flow?", context = context }, { top_k = 4 })
      assert.are.equal(4, #top)
      assert.are.equal(r.score, top[1].score)
      local many = p({ { question = "where?", context = "in München." }, { question = "who?", context = context } })
      assert.are.equal(2, #many)
      assert.are.equal(("in München."):sub(many[1].start, many[1]["end"]), many[1].answer)
      assert.has_error(function() p("where?", "") end)
      assert.has_error(function() p("where?", context, { top_k = 0 }) end)
      p:free()
    end)
  end
end)
