-- pretrain_mlm_spec.lua: experiments/pretrain_mlm.lua end to end on a tiny config: it logs to the
-- store, saves a HF masked-LM folder with the tokenizer that both loaders read (the classification
-- one drops the head), and a run resumed from its checkpoint ends bit-identical to the uninterrupted one.
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
    assert.are.equal("file", lfs.attributes(tmp .. "/ckpt/step-3/state.json", "mode"))
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
    assert.truthy(out:find("resumed from " .. tmp .. "/ckpt/step-3", 1, true), out)
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
    os.execute("rm -rf '" .. tmp .. "'")
  end)
end)
