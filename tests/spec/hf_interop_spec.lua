-- What moonbert saves, an independent PyTorch DistilBERT with Hugging Face's names loads strictly
-- and computes the same logits from (scripts/hf-interop-check.py over ../shared/peer).
-- Skips where /usr/bin/python3 has no torch or ../shared/peer is absent.
local mb = require "moonbert"
local json = require "dkjson"

local shared = os.getenv("MOONBERT_SHARED") or "../shared"
local has_torch = os.execute("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == true
local has_peer = io.open(shared .. "/peer/distilbert_torch.py") ~= nil

describe("Hugging Face interoperability", function()
  it("a saved model loads strictly into PyTorch with HF names and gives the same logits", function()
    if not (has_torch and has_peer) then
      pending("needs /usr/bin/python3 with torch (apt-get install python3-torch) and ../shared/peer")
      return
    end
    local model = mb.distilbert.new({ dim = 32, n_layers = 2, n_heads = 4, hidden_dim = 64, vocab_size = 500,
                                      max_position_embeddings = 64 },
                                    { seed = 7, num_labels = 3, id2label = { "neg", "neu", "pos" } })
    -- one training step so that no tensor is still at its initial value
    local batch = { input_ids = mb.tensor.from({ { 101, 7, 9, 102, 0, 0 }, { 101, 40, 41, 42, 43, 102 } }, { dtype = "int32" }),
                    attention_mask = mb.tensor.from({ { 1, 1, 1, 1, 0, 0 }, { 1, 1, 1, 1, 1, 1 } }, { dtype = "int32" }) }
    local opt = mb.optim.adamw(model:parameters(), { lr = 1e-2 })
    model:zero_grad(); model:loss(batch, { 0, 2 }, { train = false }); model:backward(); opt:step()
    local dir = os.tmpname(); os.remove(dir)
    model:save(dir)
    local logits = model:forward(batch, { train = false }).logits:totable()

    local inputs = dir .. "/inputs.json"
    local f = assert(io.open(inputs, "w"))
    f:write(json.encode({ input_ids = batch.input_ids:totable(), attention_mask = batch.attention_mask:totable() }))
    f:close()
    local out = dir .. "/torch.json"
    local ok = os.execute(string.format("MOONBERT_SHARED=%q /usr/bin/python3 scripts/hf-interop-check.py %q %q %q",
                                        shared, dir, inputs, out))
    assert.is_true(ok == true, "hf-interop-check.py failed")
    local ref = json.decode(assert(io.open(out)):read("a"))
    local worst, scale = 0, 0
    for i = 1, 2 do
      for j = 1, 3 do
        worst = math.max(worst, math.abs(logits[i][j] - ref.logits[i][j]))
        scale = math.max(scale, math.abs(ref.logits[i][j]))
      end
    end
    assert(worst <= 1e-5 * math.max(scale, 1), string.format("max |moonbert - torch| = %.3g", worst))
    assert.same({ ["0"] = "neg", ["1"] = "neu", ["2"] = "pos" }, ref.id2label)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
