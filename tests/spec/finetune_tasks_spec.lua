-- finetune_tasks_spec.lua: experiments/finetune_token_classification.lua and experiments/finetune_qa.lua
-- on small synthetic data files of the CoNLL-2003 and SQuAD v1.1 formats that the spec writes, from
-- the bert-tiny masked-LM checkpoint (a new head): the validation metric goes up, the store run holds
-- the metrics per epoch; plus the metric functions (seqeval's chunking, the official SQuAD EM/F1)
-- on hand-worked examples.
local mb = require "moonbert"
local support = require "tests.spec.support"
local json = require "dkjson"
local q = support.q

local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local BASE = SHARED .. "/fixtures/bert-tiny-heads/masked-lm"

describe("seqeval and SQuAD metrics", function()
  it("chunks tags as seqeval (default mode) and scores entities", function()
    local conll = mb.conll
    assert.are.same({ { "PER", 1, 2 }, { "LOC", 4, 4 } }, conll.entities { "B-PER", "I-PER", "O", "B-LOC" })
    -- an I- after O or after another type starts an entity; B- B- are two
    assert.are.same({ { "PER", 1, 1 }, { "LOC", 2, 3 }, { "PER", 4, 4 }, { "PER", 5, 5 } },
      conll.entities { "I-PER", "I-LOC", "I-LOC", "B-PER", "B-PER" })
    local sc = conll.seqeval({ { "B-PER", "I-PER", "O", "B-LOC" }, { "B-ORG", "O" } },
                             { { "B-PER", "I-PER", "O", "B-PER" }, { "B-ORG", "B-ORG" } })
    -- gold: PER, LOC, ORG (3); predicted: PER, PER, ORG, ORG (4); correct: PER(1-2), ORG(1-1)
    assert.are.equal(2 / 4, sc.precision)
    assert.are.equal(2 / 3, sc.recall)
    assert.is_true(math.abs(sc.f1 - 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)) < 1e-12)
    assert.are.equal(4 / 6, sc.accuracy)
    assert.are.equal(0, sc.per_type.LOC.f1)
  end)

  it("normalises and scores answers as the official SQuAD v1.1 script", function()
    local squad = mb.squad
    assert.are.equal("eiffel tower", squad.normalize("The  Eiffel Tower!"))
    assert.are.equal("cat sat on mat", squad.normalize("a cat sat on an... mat"))
    assert.is_true(squad.exact_match("the Eiffel tower", "Eiffel Tower."))
    -- prediction "in paris france", truth "paris": overlap 1, precision 1/3, recall 1
    assert.is_true(math.abs(squad.f1("in Paris, France", "Paris") - 0.5) < 1e-12)
    local ex = { { id = "1", answers = { { text = "Paris" }, { text = "in Paris" } } }, { id = "2", answers = { { text = "Bob" } } } }
    local r = squad.evaluate(ex, { ["1"] = "in Paris", ["2"] = "Alice" })
    assert.are.equal(50, r.exact_match)
    assert.are.equal(50, r.f1)
  end)
end)

describe("fine-tuning experiments on synthetic data", function()
  if not io.open(BASE .. "/model.safetensors") or not io.open(BIN) then
    pending("needs " .. BASE .. " and " .. BIN)
    return
  end
  local PER = { "anna", "bob", "carla", "david", "emma", "frank", "greta", "hans" }
  local LOC = { "berlin", "paris", "rome", "madrid", "vienna", "oslo", "lima", "cairo" }
  local function picker(seed)
    local r = seed
    return function(t) r = (r * 1103515245 + 12345) % 2147483648; return t[r % #t + 1] end
  end
  local function cap(w) return w:sub(1, 1):upper() .. w:sub(2) end

  local function metric_series(db, run_key)
    local store = mb.store.open(db)
    local runs = store:runs()
    local id = runs[#runs].id
    local out = {}
    for _, m in ipairs(store:metrics(id, run_key)) do out[#out + 1] = m.value end
    store:close()
    return out
  end

  it("finetune_token_classification: entity F1 rises from the untrained head", function()
    local dir = support.tmpdir()
    for _, split in ipairs { { "train", 48, 1 }, { "valid", 16, 7 } } do
      local pick = picker(split[3])
      local lines = { "-DOCSTART- -X- -X- O", "" }
      for _ = 1, split[2] do
        lines[#lines + 1] = cap(pick(PER)) .. " NNP B-NP B-PER"
        lines[#lines + 1] = "lives VBZ B-VP O"
        lines[#lines + 1] = "in IN B-PP O"
        lines[#lines + 1] = cap(pick(LOC)) .. " NNP B-NP B-LOC"
        lines[#lines + 1] = ". . O O"
        lines[#lines + 1] = ""
      end
      support.write(dir .. "/" .. split[1] .. ".txt", table.concat(lines, "\n"))
    end
    local db = dir .. "/s.db"
    local out, code = support.run(BIN .. " run experiments/finetune_token_classification.lua --train " .. q(dir .. "/train.txt")
      .. " --validation " .. q(dir .. "/valid.txt") .. " --model " .. q(BASE) .. " --store " .. q(db)
      .. " --epochs 2 --batch-size 8 --lr 2e-3 --max-length 32")
    assert.are.equal(0, code, out)
    assert.is_truthy(out:find("tag confusion", 1, true), out)
    local f1 = metric_series(db, "val/f1")
    assert.are.equal(3, #f1) -- epochs 0, 1, 2
    assert.is_true(f1[3] > f1[1] + 0.3, string.format("F1 %.3f -> %.3f", f1[1], f1[3]))
  end)

  it("finetune_qa: exact match and F1 rise from the untrained head", function()
    local dir = support.tmpdir()
    for _, split in ipairs { { "train", 24, 3 }, { "valid", 8, 11 } } do
      local pick = picker(split[3])
      local paras = {}
      for i = 1, split[2] do
        local p, l = pick(PER), pick(LOC)
        local ctx = p .. " was born in " .. l .. " and later studied music there."
        paras[i] = { context = ctx, qas = {
          { id = split[1] .. i .. "a", question = "where was " .. p .. " born?", answers = { { text = l, answer_start = #p + 13 } } },
          { id = split[1] .. i .. "b", question = "who was born in " .. l .. "?", answers = { { text = p, answer_start = 0 } } } } }
      end
      support.write(dir .. "/" .. split[1] .. ".json", json.encode { version = "1.1", data = { { title = "t", paragraphs = paras } } })
    end
    local db = dir .. "/s.db"
    local out, code = support.run(BIN .. " run experiments/finetune_qa.lua --train " .. q(dir .. "/train.json")
      .. " --validation " .. q(dir .. "/valid.json") .. " --model " .. q(BASE) .. " --store " .. q(db)
      .. " --epochs 2 --batch-size 8 --lr 3e-3 --max-seq-len 48 --doc-stride 16")
    assert.are.equal(0, code, out)
    local f1 = metric_series(db, "val/f1")
    local em = metric_series(db, "val/exact_match")
    assert.are.equal(3, #f1)
    assert.is_true(f1[3] > f1[1] + 30, string.format("F1 %.1f -> %.1f", f1[1], f1[3]))
    assert.is_true(em[3] > em[1], string.format("EM %.1f -> %.1f", em[1], em[3]))
  end)
end)
