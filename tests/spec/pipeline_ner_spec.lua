-- pipeline_ner_spec.lua: mb.pipeline("token-classification" / "ner") (bindings/moonbert/pipeline_ner.lua).
-- Entity grouping for every aggregation strategy is checked on hand-made probabilities against
-- Hugging Face's algorithm as its pipeline documents it (B-/I- grouping of "simple", word-level
-- first/average/max, ignore_labels, subwords from the ## prefix, [UNK] read from the text); then
-- end to end on the bert-tiny-heads/token-classification model (random weights: invariants only).
local mb = require "moonbert"
local ner = require "moonbert.pipeline_ner"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TC_DIR = SHARED .. "/fixtures/bert-tiny-heads/token-classification"
local DTC_DIR = SHARED .. "/fixtures/distilbert-tiny-heads/token-classification"

local LABELS = { "O", "B-PER", "I-PER", "B-LOC", "I-LOC" }

-- probabilities that put p on label name and share the rest
local function p(name, v)
  local out = {}
  for i, l in ipairs(LABELS) do out[i] = l == name and v or (1 - v) / (#LABELS - 1) end
  return out
end

-- WordPiece's convert_tokens_to_string
local function to_string(tokens) return (table.concat(tokens, " "):gsub(" ##", "")) end

local TEXT = "Wolfgang lives in Berlin"
local function enc(tokens, offsets, ids)
  local e = { tokens = { "[CLS]" }, sequence_ids = { -1 }, offsets = { { 0, 0 } }, input_ids = { 101 } }
  for i, t in ipairs(tokens) do
    e.tokens[#e.tokens + 1] = t
    e.sequence_ids[#e.sequence_ids + 1] = 0
    e.offsets[#e.offsets + 1] = offsets[i]
    e.input_ids[#e.input_ids + 1] = ids and ids[i] or 2000 + i
  end
  e.tokens[#e.tokens + 1] = "[SEP]"
  e.sequence_ids[#e.sequence_ids + 1] = -1
  e.offsets[#e.offsets + 1] = { 0, 0 }
  e.input_ids[#e.input_ids + 1] = 102
  return e
end
local TOKENS = { "wolfgang", "lives", "in", "ber", "##lin" }
local OFFSETS = { { 1, 8 }, { 10, 14 }, { 16, 17 }, { 19, 21 }, { 22, 24 } }

local function run(probs, strategy, ignore)
  local e = enc(TOKENS, OFFSETS)
  local rows = { p("O", 1) }
  for i, pr in ipairs(probs) do rows[i + 1] = pr end
  rows[#rows + 1] = p("O", 1)
  return ner.aggregate(ner.gather(TEXT, e, rows, 100), strategy, LABELS, to_string, ignore)
end

describe("token-classification aggregation (hand-made probabilities)", function()
  local agree = { p("B-PER", 0.9), p("O", 0.8), p("O", 0.7), p("B-LOC", 0.8), p("I-LOC", 0.6) }

  it("none: one entry per word piece, O left out, 1-based token index", function()
    local r = run(agree, "none")
    assert.are.equal(3, #r)
    assert.are.same({ "B-PER", "B-LOC", "I-LOC" }, { r[1].entity, r[2].entity, r[3].entity })
    assert.are.same({ 2, 5, 6 }, { r[1].index, r[2].index, r[3].index })
    assert.are.equal("##lin", r[3].word)
    assert.are.equal(0.9, r[1].score)
    assert.are.equal("lin", TEXT:sub(r[3].start, r[3]["end"]))
  end)

  it("simple: B- then I- of one tag group; scores averaged; words joined", function()
    local r = run(agree, "simple")
    assert.are.equal(2, #r)
    assert.are.same({ entity_group = "PER", score = 0.9, word = "wolfgang", start = 1, ["end"] = 8 }, r[1])
    assert.are.equal("LOC", r[2].entity_group)
    assert.are.equal("berlin", r[2].word)
    assert.is_true(math.abs(r[2].score - 0.7) < 1e-12)
    assert.are.equal("Berlin", TEXT:sub(r[2].start, r[2]["end"]))
    -- two B- in a row are two entities; an I- after another tag starts a new one
    local split = run({ p("B-PER", 0.9), p("B-PER", 0.8), p("O", 0.7), p("I-LOC", 0.8), p("I-PER", 0.6) }, "simple")
    assert.are.same({ "PER", "PER", "LOC", "PER" }, { split[1].entity_group, split[2].entity_group,
                                                     split[3].entity_group, split[4].entity_group })
    assert.are.equal("##lin", split[4].word) -- convert_tokens_to_string keeps a leading ##, as HF
    -- ignore_labels = {} keeps the O groups
    local all = run(agree, "simple", {})
    assert.are.same({ "PER", "O", "LOC" }, { all[1].entity_group, all[2].entity_group, all[3].entity_group })
    assert.are.equal("lives in", all[2].word)
  end)

  it("first / average / max give every word one label", function()
    -- the word "ber ##lin" disagrees: B-LOC 0.6 then B-PER 0.9
    local mixed = { p("B-PER", 0.9), p("O", 0.8), p("O", 0.7), p("B-LOC", 0.6), p("B-PER", 0.9) }
    local simple = run(mixed, "simple")
    assert.are.equal(3, #simple) -- PER wolfgang, LOC ber, PER lin
    local first = run(mixed, "first")
    assert.are.equal(2, #first)
    assert.are.same({ entity_group = "LOC", score = 0.6, word = "berlin", start = 19, ["end"] = 24 }, first[2])
    local max = run(mixed, "max")
    assert.are.equal("PER", max[2].entity_group)
    assert.are.equal(0.9, max[2].score)
    assert.are.equal("berlin", max[2].word)
    -- average: B-PER (0.1 + 0.9) / 2 = 0.5 beats B-LOC (0.6 + 0.025) / 2 = 0.3125
    local avg = run(mixed, "average")
    assert.are.equal("PER", avg[2].entity_group)
    assert.is_true(math.abs(avg[2].score - 0.5) < 1e-12)
    -- word-level labels then group: "wolfgang" PER and "berlin" PER stay apart (O between)
    assert.are.equal(2, #avg)
  end)

  it("reads an [UNK] piece from the text and a whole word as one even when lengths differ", function()
    local e = enc({ "hello", "[UNK]" }, { { 1, 5 }, { 7, 10 } }, { 7592, 100 })
    local rows = { p("O", 1), p("B-PER", 0.9), p("I-PER", 0.9), p("O", 1) }
    local r = ner.aggregate(ner.gather("Hello 😀😀", e, rows, 100), "simple", LABELS, to_string)
    assert.are.equal(1, #r)
    assert.are.equal("hello 😀", r[1].word)
  end)
end)

describe("token-classification pipeline (bert-tiny-heads model)", function()
  if not io.open(TC_DIR .. "/model.safetensors") then
    pending("needs " .. TC_DIR .. " (../shared is absent)")
    return
  end
  for _, dir in ipairs { TC_DIR, DTC_DIR } do
    it("tags every piece and groups them: " .. dir:match("[^/]+/[^/]+$"), function()
      local text = "Angela Merkel visited the Bundestag in Berlin on Tuesday."
      local tags = mb.pipeline("ner", dir)(text, { ignore_labels = {} })
      local pieces = mb.tokenizer.load(dir):encode(text)
      assert.are.equal(#pieces.input_ids - 2, #tags) -- every piece but [CLS] and [SEP]
      for _, t in ipairs(tags) do
        assert.is_true(t.score > 0 and t.score <= 1)
        local ref = text:sub(t.start, t["end"]):lower()
        assert.are.equal((t.word:gsub("^##", "")), ref)
      end
      local grouped = mb.pipeline("token-classification", dir, { aggregation_strategy = "first" })
      local g = grouped({ text, "hello" }, { ignore_labels = {} })
      assert.are.equal(2, #g)
      -- words never split under "first": every group starts a word and spans whole words
      for _, e in ipairs(g[1]) do
        assert.is_nil(e.word:find("^##"))
        assert.are.equal(e.word, text:sub(e.start, e["end"]):lower())
      end
      assert.has_error(function() mb.pipeline("ner", dir, { aggregation_strategy = "best" }) end)
      grouped:free()
    end)
  end
end)
