-- predict_spec.lua: mb.pipeline("text-classification", dir) and `moonbert predict` on the tiny
-- DistilBERT fixture, checked against the fixture's PyTorch logits (cases.safetensors: four
-- emotion sentences, eval mode): the scores must be softmax(logits) of the reference.
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local BIN = os.getenv("MOONBERT_BIN")
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local lfs = require "lfs"
local have = lfs.attributes(TINY .. "/model.safetensors", "mode") == "file"
local NAMES = { "sadness", "joy", "love", "anger", "fear", "surprise" }

local support = require "tests.spec.support"
local q = support.q

local sh = support.sh

if not have then
  describe("predict", function() pending("needs " .. TINY .. " (../shared absent?)") end)
  return
end

local mb = require "moonbert"
local json = require "dkjson"

-- Reference probabilities: softmax of the fixture's logits, in double precision.
local fx, meta = mb.safetensors.load(TINY .. "/cases.safetensors")
local SENTENCES = json.decode(meta.sentences)
local REF = {}
for i, row in ipairs(fx.logits:totable()) do
  local m = math.max(table.unpack(row))
  local s, p = 0, {}
  for k, v in ipairs(row) do p[k] = math.exp(v - m); s = s + p[k] end
  for k = 1, #p do p[k] = p[k] / s end
  REF[i] = p
end

describe("mb.pipeline('text-classification')", function()
  local clf
  setup(function() clf = mb.pipeline("text-classification", TINY) end)
  teardown(function() clf:free() end)

  it("scores are the reference softmax probabilities, summing to 1", function()
    local res = clf(SENTENCES, { top_k = "all" })
    assert.are.equal(#SENTENCES, #res)
    local worst = 0
    for i, scores in ipairs(res) do
      assert.are.equal(6, #scores)
      local sum = 0
      for _, s in ipairs(scores) do
        local k
        for j, n in ipairs(NAMES) do if n == s.label then k = j end end
        assert.is_not_nil(k, s.label)
        worst = math.max(worst, math.abs(s.score - REF[i][k]))
        sum = sum + s.score
      end
      assert.near(1, sum, 1e-5)
    end
    assert.is_true(worst < 1e-5, "max |score - reference| " .. worst)
  end)

  it("orders by score and top_k keeps the best k", function()
    local all = clf(SENTENCES[2], { top_k = "all" })
    for j = 2, #all do assert.is_true(all[j - 1].score >= all[j].score) end
    local top3 = clf(SENTENCES[2], { top_k = 3 })
    assert.are.equal(3, #top3)
    for j = 1, 3 do
      assert.are.equal(all[j].label, top3[j].label)
      assert.are.equal(all[j].score, top3[j].score)
    end
  end)

  it("returns one result for a string (top 1 by default) and one list per text for a list", function()
    local one = clf(SENTENCES[1])
    assert.are.equal(1, #one)
    assert.is_string(one[1].label)
    local many = clf({ SENTENCES[1], SENTENCES[3] })
    assert.are.equal(2, #many)
    assert.are.equal(one[1].label, many[1][1].label)
    assert.near(one[1].score, many[1][1].score, 1e-6)
    local d = mb.pipeline("text-classification", TINY, { top_k = 2 })
    assert.are.equal(2, #d(SENTENCES[1]))
    d:free()
  end)

  it("does not depend on the other texts of a batch (padding is masked)", function()
    local alone = clf(SENTENCES[1], { top_k = "all" })
    local batched = clf({ SENTENCES[1], SENTENCES[2] }, { top_k = "all" })[1]
    for j = 1, #alone do assert.near(alone[j].score, batched[j].score, 1e-5) end
  end)

  it("reports misuse clearly", function()
    local ok, e = pcall(mb.pipeline, "summarization", TINY)
    assert.is_false(ok)
    assert.truthy(tostring(e):find("unknown task 'summarization'", 1, true))
    local missing = support.tmppath("nomodel")
    ok, e = pcall(mb.pipeline, "text-classification", missing)
    assert.is_false(ok)
    assert.truthy(tostring(e):find("model folder '" .. missing .. "' not found", 1, true))
    ok, e = pcall(clf, 42)
    assert.is_false(ok)
    assert.truthy(tostring(e):find("string or list of strings expected", 1, true))
    ok, e = pcall(clf, "x", { top_k = -1 })
    assert.is_false(ok)
    assert.truthy(tostring(e):find("top_k", 1, true))
  end)
end)

describe("moonbert predict", function()
  local have_bin = BIN and lfs.attributes(BIN, "mode") == "file"
  if not have_bin then pending("needs build/bin/moonbert (run make)") return end

  it("prints the label and every class probability for texts given as arguments", function()
    local out, err, code = sh(q(BIN) .. " predict --model " .. q(TINY) .. " " .. q(SENTENCES[1]) .. " " .. q(SENTENCES[3]))
    assert.are.equal(0, code, err)
    assert.truthy(out:find(SENTENCES[1] .. "\n  label: ", 1, true))
    assert.truthy(out:find(SENTENCES[3] .. "\n  label: ", 1, true))
    local _, lines = out:gsub("\n  %a+%s+0%.%d%d%d%d", "")
    assert.are.equal(12, lines) -- 6 classes for each of 2 texts
  end)

  it("--json gives the reference probabilities, best first; --top-k cuts the list", function()
    local out, err, code = sh(q(BIN) .. " predict --json --model " .. q(TINY) .. " " .. q(SENTENCES[4]))
    assert.are.equal(0, code, err)
    local r = json.decode(out)
    assert.are.equal(SENTENCES[4], r.text)
    assert.are.equal(6, #r.scores)
    assert.are.equal(r.scores[1].label, r.label)
    for _, s in ipairs(r.scores) do
      for k, n in ipairs(NAMES) do if n == s.label then assert.near(REF[4][k], s.score, 1e-5) end end
    end
    out = sh(q(BIN) .. " predict --json --top-k 2 --model " .. q(TINY) .. " " .. q(SENTENCES[4]))
    local r2 = json.decode(out)
    assert.are.equal(2, #r2.scores)
    assert.are.equal(r.scores[2].label, r2.scores[2].label)
  end)

  it("reads one text per stdin line without arguments", function()
    local out, err, code = sh(q(BIN) .. " predict --json --model " .. q(TINY), SENTENCES[1] .. "\n\n" .. SENTENCES[2] .. "\n")
    assert.are.equal(0, code, err)
    local texts = {}
    for line in out:gmatch("[^\n]+") do texts[#texts + 1] = json.decode(line).text end
    assert.are.same({ SENTENCES[1], SENTENCES[2] }, texts)
  end)

  it("--help shows the usage; missing or bad arguments fail with a message", function()
    local out, _, code = sh(q(BIN) .. " predict --help")
    assert.are.equal(0, code)
    assert.truthy(out:find("usage: moonbert predict --model DIR", 1, true))
    local _, err
    local missing = support.tmppath("nomodel")
    _, err, code = sh(q(BIN) .. " predict --model " .. q(missing) .. " hello")
    assert.are.equal(1, code)
    assert.are.equal("moonbert predict: model folder '" .. missing .. "' not found\n", err)
    _, err, code = sh(q(BIN) .. " predict hello")
    assert.are.equal(2, code)
    assert.truthy(err:find("--model DIR is required", 1, true))
    _, err, code = sh(q(BIN) .. " predict --model " .. q(TINY) .. " --top-k 0 hello")
    assert.are.equal(2, code)
    assert.truthy(err:find("--top-k must be an integer >= 1, got 0", 1, true), err)
    _, err, code = sh(q(BIN) .. " predict --model " .. q(TINY), "") -- no arguments, empty stdin
    assert.are.equal(2, code)
    assert.truthy(err:find("no texts", 1, true), err)
    _, err, code = sh(q(BIN) .. " predict --model " .. q(SHARED .. "/models/distilbert-base-uncased") .. " hello")
    if lfs.attributes(SHARED .. "/models/distilbert-base-uncased/config.json", "mode") then
      assert.are.equal(1, code)
      assert.truthy(err:find("model.safetensors", 1, true), err)
    end
  end)
end)
