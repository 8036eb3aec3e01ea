-- user_errors_spec.lua: what a newcomer's mistakes look like. A data, model or option error in
-- an experiment is one line naming the file and the problem, exit 1, no traceback (one appears
-- with MOONBERT_DEBUG=1), and leaves a failed run in the store; --data reads CSV and JSONL folders;
-- predict and fill-mask refuse a folder of the other kind; pretrain_mlm --quick never writes
-- models/moonbert-small-mlm; and a fresh clone with no ../shared, no cache and no network fails
-- at once naming the fetch commands. Runs without ../shared: the models are made here.
local mb = require "moonbert"
local support = require "tests.spec.support"
local lfs = require "lfs"
local q, sh = support.q, support.sh

local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/tests/spec/[^/]*$") or ".")
if not ROOT:match("^/") then ROOT = lfs.currentdir() .. "/" .. ROOT end
local have_bin = lfs.attributes(BIN, "mode") == "file"

local WORDS = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "am", "happy", "sad", "today", "so", "very" }
local CONFIG = { dim = 32, n_layers = 1, n_heads = 2, hidden_dim = 64, vocab_size = #WORDS, max_position_embeddings = 64 }

local function write_tokenizer(dir)
  support.write(dir .. "/vocab.txt", table.concat(WORDS, "\n") .. "\n")
  support.write(dir .. "/tokenizer_config.json", '{"do_lower_case": true, "model_max_length": 64}')
end

local function classifier(dir)
  local m = mb.distilbert.new(CONFIG, { seed = 3, num_labels = 2, id2label = { "neg", "pos" } })
  m:save(dir)
  m:free()
  write_tokenizer(dir)
  return dir
end

local function masked_lm(dir)
  local m = mb.distilbert.new_masked_lm(CONFIG, { seed = 3 })
  m:save(dir)
  write_tokenizer(dir)
  return dir
end

local function csv_folder(dir, header, rows_by_split)
  assert(lfs.mkdir(dir))
  for split, rows in pairs(rows_by_split) do
    support.write(dir .. "/" .. split .. ".csv", header .. "\n" .. table.concat(rows, "\n") .. "\n")
  end
  return dir
end

local function lines(s) return support.count(s, "\n") end

local describe_cli = have_bin and describe or function(name)
  describe(name, function() it("needs " .. BIN, function() pending("no " .. BIN .. " (run make)") end) end)
end

describe_cli("a newcomer's mistakes", function()
  local tmp
  before_each(function() tmp = support.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. q(tmp)) end)

  local function experiment(args, env)
    return sh("cd " .. q(tmp) .. " && " .. (env or "") .. " " .. q(BIN) .. " run " ..
              q(ROOT .. "/experiments/baseline_vs_finetune.lua") .. " --store " .. q(tmp .. "/r.db") .. " " .. args)
  end

  it("a bad label is one line naming file and line, exit 1, and a failed run in the store", function()
    local data = csv_folder(tmp .. "/d", "text,label", {
      train = { "i am happy,pos", "i am sad,neg" }, validation = { "so happy,pos" }, test = { "very sad,angry" } })
    local out, err, code = experiment("--data " .. q(data) .. " --model " .. q(classifier(tmp .. "/m")))
    assert.are.equal(1, code, out .. err)
    assert.are.equal("moonbert: " .. data .. "/test.csv:2: unknown label 'angry' (known labels: neg, pos)\n", err)
    local list = sh(q(BIN) .. " results list --store " .. q(tmp .. "/r.db"))
    assert.truthy(list:find("baseline_vs_finetune", 1, true), list)
    assert.truthy(list:find("failed", 1, true), list)
    local show = sh(q(BIN) .. " results show 1 --store " .. q(tmp .. "/r.db"))
    assert.truthy(show:find("unknown label 'angry'", 1, true), show)
    -- MOONBERT_DEBUG=1 keeps the traceback
    _, err, code = experiment("--data " .. q(data) .. " --model " .. q(tmp .. "/m"), "MOONBERT_DEBUG=1")
    assert.are.equal(1, code)
    assert.truthy(err:find("stack traceback", 1, true), err)
  end)

  it("a missing column, an empty folder and a missing model are one line each, exit 1", function()
    local data = csv_folder(tmp .. "/d", "review,stars", {
      train = { "i am happy,5" }, validation = { "so sad,1" }, test = { "very happy,5" } })
    classifier(tmp .. "/m")
    local _, err, code = experiment("--data " .. q(data) .. " --model " .. q(tmp .. "/m"))
    assert.are.equal(1, code)
    assert.are.equal(1, lines(err), err)
    assert.truthy(err:find(data .. "/train.csv", 1, true) and err:find("text", 1, true), err)
    assert.is_nil(err:find("%.lua:%d+:"), err)
    assert(lfs.mkdir(tmp .. "/empty"))
    _, err, code = experiment("--data " .. q(tmp .. "/empty") .. " --model " .. q(tmp .. "/m"))
    assert.are.equal(1, code)
    assert.are.equal("moonbert: " .. tmp .. "/empty: no train.txt, train.csv or train.jsonl (a data folder holds " ..
                     "train, validation and test splits as .txt lines text;label, .csv with a header, or .jsonl)\n", err)
    _, err, code = experiment("--data " .. q(data) .. " --text-column review --label-column stars --model " ..
                              q(tmp .. "/nomodel"))
    assert.are.equal(1, code)
    assert.are.equal("moonbert: --model " .. tmp .. "/nomodel: no such folder (a Hugging Face model folder with " ..
                     "config.json, or a hub name)\n", err)
    support.write(tmp .. "/m/model.safetensors", "not a safetensors file")
    _, err, code = experiment("--data " .. q(data) .. " --text-column review --label-column stars --model " .. q(tmp .. "/m"))
    assert.are.equal(1, code)
    assert.are.equal(1, lines(err), err)
    assert.truthy(err:find("^moonbert: model " .. tmp:gsub("%p", "%%%0") .. "/m: "), err)
    assert.is_nil(err:find("traceback", 1, true), err)
  end)

  it("--data reads a CSV folder with --text-column/--label-column, and a JSONL folder", function()
    local data = csv_folder(tmp .. "/d", "id,review,stars", {
      train = { "1,i am happy,1", "2,i am sad,0", "3,so happy today,1", "4,very sad,0" },
      validation = { "5,i am so happy,1", "6,sad today,0" }, test = { "7,happy,1", "8,very very sad,0" } })
    local out, err, code = experiment("--data " .. q(data) .. " --text-column review --label-column stars --model " ..
                                      q(classifier(tmp .. "/m")) .. " --epochs 1 --batch-size 2 --no-report --no-cache")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("train%s+4%s+2%s+2"), out) -- examples, then the classes 0 and 1 (ids)
    assert.truthy(out:find("fine-tuned m", 1, true), out)
    assert(lfs.mkdir(tmp .. "/j"))
    for split, rows in pairs { train = { { "i am happy", "pos" }, { "i am sad", "neg" } },
                               validation = { { "so happy", "pos" } }, test = { { "so sad", "neg" } } } do
      local l = {}
      for _, r in ipairs(rows) do l[#l + 1] = string.format('{"sentence": %q, "y": %q}', r[1], r[2]) end
      support.write(tmp .. "/j/" .. split .. ".jsonl", table.concat(l, "\n") .. "\n")
    end
    out, err, code = experiment("--data " .. q(tmp .. "/j") .. " --text-column sentence --label-column y --model " ..
                                q(tmp .. "/m") .. " --epochs 1 --batch-size 2 --no-report --no-cache")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("train%s+2%s+1%s+1"), out)
  end)

  it("predict refuses a masked-LM folder and fill-mask a classifier, saying what the folder holds", function()
    masked_lm(tmp .. "/mlm")
    classifier(tmp .. "/clf")
    local _, err, code = sh(q(BIN) .. " predict --model " .. q(tmp .. "/mlm") .. " 'i am happy'")
    assert.are.equal(1, code)
    assert.truthy(err:find("^moonbert predict: " .. tmp:gsub("%p", "%%%0") ..
                           "/mlm holds a masked%-language model %(DistilBertForMaskedLM%)"), err)
    _, err, code = sh(q(BIN) .. " fill-mask --model " .. q(tmp .. "/clf") .. " 'i am [MASK]'")
    assert.are.equal(1, code)
    assert.truthy(err:find("/clf holds a text classifier (DistilBertForSequenceClassification, labels neg, pos)",
                           1, true), err)
    -- and each works on its own kind
    _, err, code = sh(q(BIN) .. " predict --model " .. q(tmp .. "/clf") .. " 'i am happy'")
    assert.are.equal(0, code, err)
    _, err, code = sh(q(BIN) .. " fill-mask --model " .. q(tmp .. "/mlm") .. " 'i am [MASK]'")
    assert.are.equal(0, code, err)
  end)

  it("a bad option is one line naming it, exit 2", function()
    local out, err, code = experiment("--epochz 3")
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("baseline_vs_finetune: unknown option '--epochz' (--help lists the options)\n", err)
  end)

  it("pretrain_mlm --quick refuses to write models/moonbert-small-mlm", function()
    local _, err, code = sh("cd " .. q(tmp) .. " && " .. q(BIN) .. " run " .. q(ROOT .. "/experiments/pretrain_mlm.lua") ..
                            " --quick --out models/moonbert-small-mlm")
    assert.are.equal(2, code)
    assert.truthy(err:find("--quick does not write models/moonbert-small-mlm", 1, true), err)
    assert.is_nil(lfs.attributes(tmp .. "/models"))
    local help = sh(q(BIN) .. " run " .. q(ROOT .. "/experiments/pretrain_mlm.lua") .. " --help")
    assert.truthy(help:find("--quick: results/scratch/mlm-quick", 1, true), help)
  end)

  it("a fresh clone with no ../shared, no cache and no network fails at once naming the fetch commands", function()
    local env = "MOONBERT_SHARED=" .. q(tmp .. "/noshared") .. " MOONBERT_CACHE=" .. q(tmp .. "/cache") ..
        " HF_HUB_OFFLINE=1"
    local t0 = os.time()
    local out, err, code = experiment("--quick", env)
    assert.are.equal(1, code)
    assert.is_nil(out:find("==", 1, true), out) -- nothing of the run itself (a device line may come first)
    assert.are.equal(1, lines(err), err)
    assert.truthy(err:find("needs the emotion data", 1, true), err)
    assert.truthy(err:find("scripts/fetch-data", 1, true), err)
    assert.truthy(err:find("scripts/fetch-model", 1, true), err)
    assert.is_nil(err:find("traceback", 1, true))
    assert.is_true(os.time() - t0 < 10)
  end)
end)
