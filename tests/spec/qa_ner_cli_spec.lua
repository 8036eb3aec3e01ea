-- qa_ner_cli_spec.lua: the `moonbert qa` and `moonbert ner` commands (bindings/moonbert/cli/{qa,ner}.lua):
-- help, usage errors (exit 2), a model that cannot load (exit 1, one line, no traceback), and
-- --json output that is what the pipelines return (on the bert-tiny-heads fixtures).
local mb = require "moonbert"
local support = require "tests.spec.support"
local json = require "dkjson"
local q = support.q

local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local QA_DIR = SHARED .. "/fixtures/bert-tiny-heads/question-answering"
local TC_DIR = SHARED .. "/fixtures/bert-tiny-heads/token-classification"

describe("moonbert qa / ner", function()
  if not io.open(BIN) then pending("no " .. BIN) return end

  it("print their help and reject bad usage with exit 2", function()
    for _, cmd in ipairs { "qa", "ner" } do
      local out, _, code = support.sh(BIN .. " " .. cmd .. " --help")
      assert.are.equal(0, code)
      assert.is_truthy(out:find("usage: moonbert " .. cmd, 1, true))
      local _, err, c2 = support.sh(BIN .. " " .. cmd .. " --question x")
      assert.are.equal(2, c2)
      assert.is_nil(err:find("traceback", 1, true))
    end
    local _, err, code = support.sh(BIN .. " qa --model " .. q(QA_DIR) .. " --question 'where?'")
    assert.are.equal(2, code)
    assert.is_truthy(err:find("--question and --context go together", 1, true))
    _, err, code = support.sh(BIN .. " ner --model x --aggregation best hello")
    assert.are.equal(2, code)
  end)

  it("report a model folder that cannot load in one line, exit 1", function()
    local missing = support.tmppath("no-model") -- a fresh path: nothing is there
    local _, err, code = support.sh(BIN .. " qa --model " .. q(missing) .. " --question a --context b")
    assert.are.equal(1, code)
    assert.is_truthy(err:find("^moonbert qa: "))
    assert.are.equal(1, support.count(err, "\n"))
    _, err, code = support.sh(BIN .. " ner --model " .. q(missing) .. " hello")
    assert.are.equal(1, code)
    assert.is_nil(err:find("stack traceback", 1, true))
  end)

  it("--json gives what the pipelines return", function()
    if not io.open(QA_DIR .. "/model.safetensors") then pending("fixtures absent") return end
    local context = "Anna met Bob in München last spring."
    local out, err, code = support.sh(BIN .. " qa --json --top-k 2 --model " .. q(QA_DIR),
      json.encode({ question = "who met Bob?", context = context }) .. "\n")
    assert.are.equal(0, code, err)
    local got = json.decode(out)
    local p = mb.pipeline("question-answering", QA_DIR)
    local want = p("who met Bob?", context, { top_k = 2 })
    assert.are.equal(2, #got)
    for i = 1, 2 do
      assert.are.equal(want[i].answer, got[i].answer)
      assert.are.equal(want[i].start, got[i].start)
      assert.is_true(math.abs(want[i].score - got[i].score) < 1e-9)
    end
    out, err, code = support.sh(BIN .. " ner --json --aggregation first --model " .. q(TC_DIR) .. " " .. q(context))
    assert.are.equal(0, code, err)
    local ents = json.decode(out)
    local ref = mb.pipeline("ner", TC_DIR, { aggregation_strategy = "first" })(context)
    assert.are.equal(#ref, #ents)
    for i, e in ipairs(ref) do
      assert.are.equal(e.entity_group, ents[i].entity_group)
      assert.are.equal(e.word, ents[i].word)
    end
  end)
end)
