-- pretrain_mlm_spec.lua: experiments/pretrain_mlm.lua end to end on a tiny config: it logs to the
-- store, saves a HF masked-LM folder with the tokenizer that both loaders read (the classification
-- one drops the head), and a run resumed from its checkpoint ends bit-identical to the uninterrupted one.
-- Then experiments/pretraining_effect.lua on that folder: the table's rows, the store's metrics, and
-- the mean row over --seeds equal to the mean of the per-seed rows.
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local lfs = require "lfs"
local have = lfs.attributes(SHARED .. "/data/emotion/validation.txt", "mode") == "file"
  and lfs.attributes(SHARED .. "/models/distilbert-base-uncased/vocab.txt", "mode") == "file"

if not have then
  describe("pretrain_mlm", function() pending("needs " .. SHARED .. "/data/emotion and models (../shared absent?)") end)
  return
end

local mb = require "moonbert"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"__rc=$?\""))
  local out = p:read("a")
  p:close()
  return out:gsub("__rc=%d+\n?$", ""), tonumber(out:match("__rc=(%d+)\n?$"))
end

describe("experiments/pretrain_mlm.lua", function()
  local tmp = os.tmpname()
  os.remove(tmp)
  lfs.mkdir(tmp)
  local corpus = tmp .. "/corpus.txt"
  local f = assert(io.open(corpus, "w"))
  for line in io.lines(SHARED .. "/data/emotion/validation.txt") do f:write((line:gsub(";%a+$", "")), "\n") end
  f:close()
  local common = table.concat({ BIN, "run experiments/pretrain_mlm.lua --config tiny --no-train-texts",
    "--corpus", corpus, "--steps 6 --batch-size 8 --max-length 32 --eval-size 16 --eval-every 3",
    "--checkpoint-every 3 --log-every 2 --checkpoint-dir", tmp .. "/ckpt", "--store", tmp .. "/s.db" }, " ")

  it("trains, logs, checkpoints, saves a HF masked-LM folder, and resumes bit for bit", function()
    local out, rc = sh(common .. " --out " .. tmp .. "/a")
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("saved " .. tmp .. "/a", 1, true), out)
    assert.are.equal("file", lfs.attributes(tmp .. "/ckpt/checkpoint-3/trainer_state.json", "mode"))
    for _, fname in ipairs { "config.json", "model.safetensors", "vocab.txt", "tokenizer.json" } do
      assert.are.equal("file", lfs.attributes(tmp .. "/a/" .. fname, "mode"), fname)
    end
    local st = mb.safetensors.load(tmp .. "/a/model.safetensors")
    assert.is_nil(st["vocab_projector.weight"])
    local store = mb.store.open(tmp .. "/s.db")
    local runs = store:runs { experiment = "pretrain_mlm" }
    assert.are.equal(1, #runs)
    assert.are.equal(3, #store:metrics(runs[1].id, "train/mlm_loss"))
    assert.are.equal(3, #store:metrics(runs[1].id, "eval/masked_accuracy")) -- steps 0, 3, 6
    local m = mb.distilbert.load_masked_lm(tmp .. "/a", { quiet = true })
    local clf = mb.distilbert.load(tmp .. "/a", { num_labels = 6, quiet = true })
    assert.are.equal(0, (clf:parameters()[1].value - m:parameters()[1].value):abs():max())

    -- resume from step 3 into another folder: the same weights as the uninterrupted run
    out, rc = sh(common .. " --resume --out " .. tmp .. "/b")
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("resumed from " .. tmp .. "/ckpt/checkpoint-3", 1, true), out)
    local a, b = mb.safetensors.load(tmp .. "/a/model.safetensors"), mb.safetensors.load(tmp .. "/b/model.safetensors")
    local n = 0
    for k, t in pairs(a) do
      assert.are.equal(0, (t - b[k]):abs():max(), k)
      n = n + 1
    end
    assert.are.equal(41, n)
    -- a different setting refuses to resume
    out, rc = sh(common:gsub("%-%-batch%-size 8", "--batch-size 4") .. " --resume --out " .. tmp .. "/c")
    assert.are_not.equal(0, rc)
    assert.truthy(out:find("batch_size", 1, true), out)
  end)

  it("pretraining_effect puts random and pretrained side by side, per seed and on average", function()
    local effect = table.concat({ BIN, "run experiments/pretraining_effect.lua --pretrained", tmp .. "/a",
      "--limit 48 --batch-size 16 --max-length 32 --feature-iters 30 --store", tmp .. "/e.db" }, " ")
    local out, rc = sh(effect .. " --seeds 2")
    assert.are.equal(0, rc, out)
    for _, title in ipairs { "dummy (most frequent)", "bag-of-words logistic regression",
                             "frozen cls features", "frozen mean features", "frozen layers-mean features",
                             "fine-tuned, 1 epoch (lr 0.0005), seed 42", "fine-tuned, 1 epoch (lr 0.0005), seed 43",
                             "fine-tuned, mean of 2 seeds", "standard deviation" } do
      assert.truthy(out:find(title, 1, true), title .. "\n" .. out)
    end
    local store = mb.store.open(tmp .. "/e.db")
    local runs = store:runs { experiment = "pretraining_effect" }
    assert.are.equal(1, #runs)
    local function metric(key)
      local m = store:metrics(runs[1].id, key)
      assert.are.equal(1, #m, key)
      return m[1].value
    end
    for _, init in ipairs { "random", "pretrained" } do
      for _, key in ipairs { "val/accuracy", "val/f1", "test/accuracy" } do
        local a, b = metric(init .. "/fine_tune_seed42/" .. key), metric(init .. "/fine_tune_seed43/" .. key)
        assert.is_true(math.abs(metric(init .. "/fine_tune/" .. key) - (a + b) / 2) < 1e-12, init .. " " .. key)
      end
      local a, b = metric(init .. "/fine_tune_seed42/val/accuracy"), metric(init .. "/fine_tune_seed43/val/accuracy")
      assert.is_true(math.abs(metric(init .. "/fine_tune/val/accuracy_sd") - math.abs(a - b) / math.sqrt(2)) < 1e-12)
    end
    -- the baselines do not depend on the weights
    assert.are.equal(metric("random/dummy/val/accuracy"), metric("pretrained/dummy/val/accuracy"))
    -- bad input: a clear message, no run
    out, rc = sh(effect .. " --seeds 0")
    assert.are.equal(2, rc, out)
    assert.truthy(out:find("--seeds must be an integer >= 1, got 0", 1, true), out)
    out, rc = sh(BIN .. " run experiments/pretraining_effect.lua --pretrained " .. tmp .. "/none --store " .. tmp .. "/e.db")
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("no pretrained model in " .. tmp .. "/none", 1, true), out)
    assert.are.equal(1, #store:runs { experiment = "pretraining_effect" })
    store:close()
  end)

  teardown(function() os.execute("rm -rf '" .. tmp .. "'") end)
end)
