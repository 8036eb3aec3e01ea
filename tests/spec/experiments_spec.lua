-- experiments_spec.lua: experiments/baseline_vs_finetune.lua and frozen_vs_unfrozen.lua end to
-- end on the tiny DistilBERT fixture (dim 64, 2 layers) with --quick --limit, through the real
-- binary, then checked from the store they wrote: every metric, confusion matrices consistent
-- with the logged predictions, the dummy baseline against the label counts, the saved model
-- reloading to the same probabilities, the feature cache hit on a second run, the random-init
-- banner and its init=random record, and the model lookup order.
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local BIN = os.getenv("MOONBERT_BIN")
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local EMOTION = SHARED .. "/data/emotion"
local lfs = require "lfs"
local have = BIN and lfs.attributes(BIN, "mode") == "file" and lfs.attributes(TINY .. "/model.safetensors", "mode")
  and lfs.attributes(EMOTION .. "/train.txt", "mode")

local support = require "tests.spec.support"
local tmpdir = support.tmpdir
local q = support.q

local sh = support.sh

local function copy(src, dst)
  local i = assert(io.open(src, "rb"))
  local s = i:read("a")
  i:close()
  local o = assert(io.open(dst, "wb"))
  o:write(s)
  o:close()
end

local LIMIT = 48
local QUICK = "--quick --limit " .. LIMIT .. " --batch-size 16 --seed 7"

if not have then
  describe("experiments", function()
    pending("needs build/bin/moonbert and " .. TINY .. " with " .. EMOTION .. " (run make; ../shared absent?)")
  end)
  return
end

local mb = require "moonbert"
local ex = require "moonbert.experiment"

-- The last value of every metric of a run: {key = number}.
local function final(store, id)
  local out = {}
  for k, v in pairs(store:final_metrics(id)) do
    if type(v) == "table" then out[v.key or k] = v.value else out[k] = v end
  end
  return out
end

describe("baseline_vs_finetune.lua on the tiny fixture", function()
  local dir, store_path, out, err, code, store, run_id
  setup(function()
    dir = tmpdir()
    store_path = dir .. "/s.db"
    out, err, code = sh(q(BIN) .. " run experiments/baseline_vs_finetune.lua --model " .. q(TINY) .. " " .. QUICK ..
                        " --store " .. q(store_path))
    store = mb.store.open(store_path)
    local runs = store:runs { experiment = "baseline_vs_finetune" }
    run_id = runs[1] and runs[1].id
  end)
  teardown(function()
    if store then store:close() end
    os.execute("rm -rf " .. q(dir))
  end)

  it("exits 0 and leaves a completed run", function()
    assert.are.equal(0, code, err)
    assert.is_not_nil(run_id)
    assert.are.equal("completed", store:get_run(run_id).status)
  end)

  it("records init=pretrained for a folder with weights, and the run parameters", function()
    local p = store:params(run_id)
    assert.are.equal("pretrained", p.init)
    assert.are.equal(tostring(LIMIT), tostring(p.n_train))
    assert.are.equal("64", tostring(p.max_length)) -- --quick
    assert.are.equal("1", tostring(p.epochs))
  end)

  it("logs every baseline and the fine-tuned model on validation, test and out-of-domain", function()
    local m = final(store, run_id)
    for _, k in ipairs { "dummy_most_frequent", "dummy_uniform", "tfidf_logreg", "features_logreg" } do
      for _, s in ipairs { "val", "test" } do
        for _, metric in ipairs { "accuracy", "f1" } do
          local v = m[k .. "/" .. s .. "/" .. metric]
          assert.is_number(v, k .. "/" .. s .. "/" .. metric)
          assert.is_true(v >= 0 and v <= 1)
        end
      end
    end
    for _, k in ipairs { "val/accuracy", "val/f1", "test/accuracy", "test/f1", "ood/accuracy", "ood/f1",
                         "eval/accuracy" } do
      assert.is_number(m[k], k)
      assert.is_true(m[k] >= 0 and m[k] <= 1)
    end
  end)

  it("the most_frequent dummy scores the share of the training majority class", function()
    local data = ex.load_splits { data = EMOTION, quick = true, limit = LIMIT, seed = 7 }
    local counts = data.train:class_counts()
    local best = 1
    for i = 2, #counts do if counts[i] > counts[best] then best = i end end
    local hits = 0
    for _, y in ipairs(data.validation.label) do if y == best - 1 then hits = hits + 1 end end
    local m = final(store, run_id)
    assert.near(hits / #data.validation.label, m["dummy_most_frequent/val/accuracy"], 1e-9)
  end)

  it("confusion matrices and predictions agree with the logged accuracy", function()
    local preds = store:predictions(run_id, "validation")
    assert.are.equal(LIMIT, #preds)
    local correct = 0
    for _, r in ipairs(preds) do
      if r.label == r.predicted then correct = correct + 1 end
      local s = 0
      for _, p in ipairs(r.probs) do s = s + p end
      assert.near(1, s, 1e-4)
    end
    local m = final(store, run_id)
    assert.near(correct / LIMIT, m["val/accuracy"], 1e-9)
    local all = store:confusion(run_id, "validation") -- the trainer's per epoch, then the final one
    local cm = all[#all].matrix
    local total, diag = 0, 0
    for i, row in ipairs(cm) do
      for j, v in ipairs(row) do total = total + v; if i == j then diag = diag + v end end
    end
    assert.are.equal(LIMIT, total)
    assert.are.equal(correct, diag)
    for _, split in ipairs { "test", "ood", "dummy_most_frequent/validation", "tfidf_logreg/test", "features_logreg/validation" } do
      assert.are.equal(1, #store:confusion(run_id, split), split)
    end
  end)

  it("saves a model that reloads and predicts the logged probabilities", function()
    local model_dir = dir .. "/runs/" .. run_id .. "/model"
    assert.are.equal("file", lfs.attributes(model_dir .. "/model.safetensors", "mode"))
    assert.are.equal("file", lfs.attributes(model_dir .. "/tokenizer.json", "mode"))
    local data = ex.load_splits { data = EMOTION, quick = true, limit = LIMIT, seed = 7 }
    local model = mb.distilbert.load(model_dir)
    local tok = mb.tokenizer.load(model_dir)
    local p = ex.predict(model, data.validation, tok, { max_length = 64 })
    local logged = {}
    for _, r in ipairs(store:predictions(run_id, "validation")) do logged[r.index] = r end
    local worst = 0
    for i = 1, LIMIT do
      assert.are.equal(logged[i].predicted, p.predicted[i])
      for k = 1, 6 do worst = math.max(worst, math.abs(logged[i].probs[k] - p.probs[i][k])) end
    end
    assert.is_true(worst < 1e-5, "max |prob difference| " .. worst)
    model:free(); tok:free()
    local arts = store:artifacts(run_id)
    local kinds = {}
    for _, a in ipairs(arts) do kinds[a.kind] = true end
    assert.is_true(kinds.model)
    assert.is_true(kinds.custom_texts)
    local custom = store:predictions(run_id, "custom")
    assert.are.equal(3, #custom)
    for _, r in ipairs(custom) do
      local s, best = 0, 1
      for k, p in ipairs(r.probs) do s = s + p; if p > r.probs[best] then best = k end end
      assert.near(1, s, 1e-5)
      assert.are.equal(best - 1, r.predicted)
    end
  end)

  it("prints the summary table, the error analysis and the run folder", function()
    assert.truthy(out:find("== Summary: baseline_vs_finetune, run " .. run_id, 1, true))
    for _, s in ipairs { "dummy (most_frequent)", "logistic regression, TF-IDF", "logistic regression, cls features",
                         "fine-tuned distilbert-tiny", "out-of-domain: accuracy", "highest loss:", "lowest loss:",
                         "I saw a movie today and it was really good." } do
      assert.truthy(out:find(s, 1, true), s)
    end
    assert.truthy(out:find("run folder: " .. dir .. "/runs/" .. run_id, 1, true))
  end)

  it("reads the frozen-model features from the cache on a second run", function()
    assert.truthy(out:find("computed", 1, true))
    local out2, err2, code2 = sh(q(BIN) .. " run experiments/baseline_vs_finetune.lua --model " .. q(TINY) .. " " ..
                                 QUICK .. " --no-ood --no-report --store " .. q(store_path))
    assert.are.equal(0, code2, err2)
    local _, hits = out2:gsub("from cache", "")
    assert.are.equal(3, hits)
    local runs = store:runs { experiment = "baseline_vs_finetune" }
    local second
    for _, r in ipairs(runs) do if r.id ~= run_id then second = r.id end end
    local m1, m2 = final(store, run_id), final(store, second)
    assert.are.equal(3, m2["features/cache_hits"])
    assert.are.equal(0, m1["features/cache_hits"])
    assert.near(m1["features_logreg/val/accuracy"], m2["features_logreg/val/accuracy"], 1e-12)
    assert.is_nil(m2["ood/accuracy"])
    local n = 0
    for f in lfs.dir(dir .. "/cache") do if f:match("^features%-.*%.safetensors$") then n = n + 1 end end
    assert.are.equal(4, n) -- train, validation, test and the first run's out-of-domain set
  end)
end)

describe("baseline_vs_finetune.lua without pretrained weights", function()
  it("prints the banner, continues from random weights and records init=random", function()
    local dir = tmpdir()
    local model = dir .. "/config-only"
    lfs.mkdir(model)
    for _, f in ipairs { "config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json" } do
      copy(TINY .. "/" .. f, model .. "/" .. f)
    end
    local out, err, code = sh(q(BIN) .. " run experiments/baseline_vs_finetune.lua --model " .. q(model) ..
                              " --quick --limit 24 --batch-size 12 --no-ood --no-report --store " .. q(dir .. "/s.db"))
    assert.are.equal(0, code, err)
    assert.truthy(out:find("RANDOM initial weights", 1, true))
    assert.truthy(out:find("scripts/fetch-model", 1, true))
    assert.truthy(out:find("init=random", 1, true))
    if not mb.cuda.available() then -- --device auto (the default) says where it runs and why
      assert.truthy(out:find("device: cpu, precision fp32 (--device auto: ", 1, true), out)
    end
    local store = mb.store.open(dir .. "/s.db")
    local r = store:runs { experiment = "baseline_vs_finetune" }[1]
    assert.are.equal("completed", r.status)
    local params = store:params(r.id)
    assert.are.equal(r.device, params.device)   -- device, precision (and gpu on cuda) recorded
    assert.are.equal(mb.cuda.available() and mb.cuda.DEFAULT_PRECISION or "fp32", params.precision)
    assert.are.equal("random", store:params(r.id).init)
    assert.are.equal("random", store:tags(r.id).init)
    store:close()
    os.execute("rm -rf " .. q(dir))
  end)

  it("--device cuda without a GPU: the reason at once, exit 1, no run in the store", function()
    if require("moonbert").cuda.available() then return pending("a GPU is present") end
    local dir = tmpdir()
    local out, err, code = sh(q(BIN) .. " run experiments/baseline_vs_finetune.lua --device cuda --model " .. q(TINY) ..
                              " --store " .. q(dir .. "/s.db"))
    assert.are.equal(1, code)
    assert.truthy(err:find("--device cuda: CUDA is not available: ", 1, true), err)
    assert.falsy(err:find("traceback", 1, true), err)
    assert.falsy(out:find("Dataset", 1, true), out) -- before any data is loaded
    assert.is_nil(lfs.attributes(dir .. "/s.db"))   -- no store, so no half-made run
    -- a precision the CPU runtime cannot run fails as early
    local _, err2, code2 = sh(q(BIN) .. " run experiments/baseline_vs_finetune.lua --device cpu --precision tf32 " ..
                              "--model " .. q(TINY) .. " --store " .. q(dir .. "/s.db"))
    assert.are.equal(1, code2)
    assert.truthy(err2:find("--device cpu --precision tf32: precision 'fp32' or 'bf16' expected, got tf32", 1, true), err2)
    os.execute("rm -rf " .. q(dir))
  end)

  it("--help prints the options and exits 0", function()
    local out, _, code = sh(q(BIN) .. " run experiments/baseline_vs_finetune.lua --help")
    assert.are.equal(0, code)
    assert.truthy(out:find("--pooling P", 1, true))
    assert.truthy(out:find("--quick", 1, true))
  end)
end)

describe("moonbert.experiment model lookup", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf " .. q(dir)) end)

  local function fake_model(path, with_weights)
    lfs.mkdir(path)
    for _, f in ipairs { "config.json", "tokenizer.json", "vocab.txt" } do copy(TINY .. "/" .. f, path .. "/" .. f) end
    if with_weights then copy(TINY .. "/model.safetensors", path .. "/model.safetensors") end
  end

  it("goes distilbert-base-uncased with weights, moonbert-small-mlm, then config only (random)", function()
    local models = dir .. "/models"
    lfs.mkdir(models)
    local info = ex.resolve_model { models_dir = models }
    assert.are.equal("random", info.init)
    assert.is_nil(info.weights)
    assert.truthy(ex.banner(info):find("RANDOM", 1, true))

    fake_model(models .. "/moonbert-small-mlm", true)
    info = ex.resolve_model { models_dir = models }
    assert.are.equal("moonbert-small-mlm", info.init)
    assert.are.equal(models .. "/moonbert-small-mlm", info.dir)
    assert.truthy(ex.banner(info):find("init=moonbert-small-mlm", 1, true))

    fake_model(models .. "/distilbert-base-uncased", false) -- config only: the small model still wins
    assert.are.equal("moonbert-small-mlm", ex.resolve_model { models_dir = models }.init)
    copy(TINY .. "/model.safetensors", models .. "/distilbert-base-uncased/model.safetensors")
    info = ex.resolve_model { models_dir = models }
    assert.are.equal("pretrained", info.init)
    assert.are.equal(models .. "/distilbert-base-uncased", info.dir)

    -- --model wins over everything; a missing folder is a clear error
    local shared_cfg = SHARED .. "/models/distilbert-base-uncased" -- config and tokenizer, no weights
    if lfs.attributes(shared_cfg .. "/config.json", "mode") then
      info = ex.resolve_model { models_dir = models, model = shared_cfg }
      assert.are.equal("random", info.init)
      assert.are.equal(shared_cfg, info.dir)
    end
    local ok, e = pcall(ex.resolve_model, { model = dir .. "/nope" })
    assert.is_false(ok)
    assert.truthy(tostring(e):find("no such folder", 1, true))
  end)

  it("hashes random initialisations by config and seed", function()
    local info = { dir = TINY, init = "random" }
    assert.are_not.equal(ex.model_hash(info, 1), ex.model_hash(info, 2))
    assert.are.equal(ex.model_hash(info, 1), ex.model_hash(info, 1))
  end)
end)

describe("moonbert.experiment features", function()
  -- The fixture's PyTorch reference: 4 sentences, their [CLS] states and every token's last state.
  local json = require "dkjson"
  local fx, meta = mb.safetensors.load(TINY .. "/cases.safetensors")
  local sentences = json.decode(meta.sentences)
  local split = mb.data.from_table { text = sentences, label = fx.labels:totable(), label_names =
    { "sadness", "joy", "love", "anger", "fear", "surprise" } }
  local model = mb.distilbert.load(TINY)
  local tok = mb.tokenizer.load(TINY)

  local function max_rel(a, b)
    local worst, scale = 0, 0
    for i, row in ipairs(b) do
      for j, v in ipairs(row) do
        worst = math.max(worst, math.abs(a[i][j] - v))
        scale = math.max(scale, math.abs(v))
      end
    end
    return worst / scale
  end

  it("cls pooling is the reference [CLS] hidden state, in split order", function()
    local X = ex.features(model, split, tok, { pooling = "cls", batch_size = 3 })
    assert.are.same({ 4, 64 }, X:shape())
    assert.is_true(max_rel(X:totable(), fx.cls_hidden:totable()) < 1e-4)
  end)

  it("mean pooling is the masked mean of the reference last hidden state", function()
    local h, mask = fx.last_hidden_state:totable(), fx.attention_mask:totable()
    local ref = {}
    for i = 1, 4 do
      local n, r = 0, {}
      for d = 1, 64 do r[d] = 0 end
      for t = 1, #mask[i] do
        if mask[i][t] == 1 then
          n = n + 1
          for d = 1, 64 do r[d] = r[d] + h[i][t][d] end
        end
      end
      for d = 1, 64 do r[d] = r[d] / n end
      ref[i] = r
    end
    local X = ex.features(model, split, tok, { pooling = "mean", batch_size = 3 })
    assert.is_true(max_rel(X:totable(), ref) < 1e-4)
    -- layers-mean: embeddings + 2 layers, the last block is the mean pooling above
    local L = ex.features(model, split, tok, { pooling = "layers-mean", batch_size = 3 })
    assert.are.same({ 4, 3 * 64 }, L:shape())
    assert.is_true(max_rel(L:narrow(2, 129, 64):totable(), ref) < 1e-4)
  end)

  it("caches by model, data and pooling", function()
    local dir = tmpdir()
    local o = { pooling = "mean", cache_dir = dir, model_hash = "m1" }
    local X1, hit1 = ex.features(model, split, tok, o)
    local X2, hit2 = ex.features(model, split, tok, { pooling = "mean", cache_dir = dir, model_hash = "m1" })
    local _, hit3 = ex.features(model, split, tok, { pooling = "cls", cache_dir = dir, model_hash = "m1" })
    local _, hit4 = ex.features(model, split, tok, { pooling = "mean", cache_dir = dir, model_hash = "m2" })
    local _, hit5 = ex.features(model, split:head(3), tok, { pooling = "mean", cache_dir = dir, model_hash = "m1" })
    assert.is_false(hit1)
    assert.is_true(hit2)
    assert.are.same(X1:totable(), X2:totable())
    assert.is_false(hit3); assert.is_false(hit4); assert.is_false(hit5)
    os.execute("rm -rf " .. q(dir))
  end)

  it("rejects an unknown pooling", function()
    local ok, e = pcall(ex.features, model, split, tok, { pooling = "max" })
    assert.is_false(ok)
    assert.truthy(tostring(e):find("pooling must be cls, mean or layers-mean", 1, true))
  end)
end)

describe("frozen_vs_unfrozen.lua on the tiny fixture", function()
  it("trains the head alone and the whole model, and compares them in one run", function()
    local dir = tmpdir()
    local out, err, code = sh(q(BIN) .. " run experiments/frozen_vs_unfrozen.lua --model " .. q(TINY) .. " " .. QUICK ..
                              " --frozen-lr 1e-3 --store " .. q(dir .. "/s.db"))
    assert.are.equal(0, code, err)
    local store = mb.store.open(dir .. "/s.db")
    local r = store:runs { experiment = "frozen_vs_unfrozen" }[1]
    assert.are.equal("completed", r.status)
    local m = final(store, r.id)
    -- the head: pre_classifier dim x dim + dim, classifier dim x 6 + 6 (dim 64 in the fixture)
    assert.are.equal(64 * 64 + 64 + 64 * 6 + 6, m["frozen/trainable_parameters"])
    assert.are.equal(2066246, m["unfrozen/trainable_parameters"])
    for _, v in ipairs { "frozen", "unfrozen" } do
      for _, k in ipairs { "val/accuracy", "val/f1", "test/accuracy", "test/f1", "ood/accuracy", "eval/accuracy" } do
        assert.is_number(m[v .. "/" .. k], v .. "/" .. k)
      end
      assert.is_true(#store:confusion(r.id, v .. "/validation") >= 1)
    end
    assert.truthy(out:find("== Summary: frozen_vs_unfrozen, run " .. r.id, 1, true))
    assert.truthy(out:find("\nfrozen ", 1, true) and out:find("\nunfrozen ", 1, true))
    store:close()
    os.execute("rm -rf " .. q(dir))
  end)
end)
