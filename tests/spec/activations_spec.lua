-- activations_spec.lua: a model keeps one activation set at a time (runtime/distilbert.c gives
-- the training set back when features or evaluation run, and the reverse). Interleaving
-- features and evaluation with training must change nothing: the losses, gradients and
-- features of train/features/train equal those of train/train and of a features call alone.
local mb = require "moonbert"
local T = mb.tensor

local function batch(B, L, seed)
  local rng = T.rand({ B * L }, { seed = seed }):totable()
  local ids, mask = {}, {}
  for b = 1, B do
    local len = math.max(2, math.floor(L * (0.4 + 0.6 * rng[b])))
    ids[b], mask[b] = {}, {}
    for t = 1, L do
      ids[b][t] = t <= len and (1 + math.floor(rng[(b - 1) * L + t] * 58)) or 0
      mask[b][t] = t <= len and 1 or 0
    end
  end
  return { input_ids = T.from(ids, { dtype = "int32" }), attention_mask = T.from(mask, { dtype = "int32" }) }
end

local CFG = { dim = 32, n_layers = 2, n_heads = 4, hidden_dim = 64, vocab_size = 60, max_position_embeddings = 32 }

-- loss, gradient block copy after a step on b1 then b2; with features of fb in between when given
local function run(b1, b2, labels, fb)
  local model = mb.distilbert.new(CFG, { seed = 3, num_labels = 3 })
  local opt = mb.optim.sgd(mb.trainer.optimizer_params(model), { lr = 0.1 })
  local losses, feats = {}, nil
  for k, b in ipairs { b1, b2 } do
    model:zero_grad()
    losses[k] = model:loss(b, labels, { train = false })
    model:backward()
    opt:step()
    if k == 1 and fb then feats = model:features(fb):clone() end
  end
  local grads = model:parameter_block().grads:clone()
  opt:free()
  return losses, grads, feats, model
end

describe("activation sets", function()
  it("train, features (longer batch), train equals train, train", function()
    local b1, b2, fb = batch(4, 12, 1), batch(4, 9, 2), batch(6, 30, 3)
    local labels = { 0, 1, 2, 1 }
    local l0, g0, _, m0 = run(b1, b2, labels)
    local l1, g1, f1, m1 = run(b1, b2, labels, fb)
    assert.are.equal(l0[1], l1[1])
    assert.are.equal(l0[2], l1[2])
    assert.are.equal(0, (g0 - g1):abs():max())
    -- the features taken between the steps equal a features call on a model in that state
    local fresh = mb.distilbert.new(CFG, { seed = 3, num_labels = 3 })
    local opt = mb.optim.sgd(mb.trainer.optimizer_params(fresh), { lr = 0.1 })
    fresh:zero_grad()
    fresh:loss(b1, labels, { train = false })
    fresh:backward()
    opt:step()
    local p0, p1 = fresh:parameter_block().params, m1:parameter_block().params
    assert.is_true((p0 - p1):abs():max() > 0, "the second step moved the parameters")
    local m2 = mb.distilbert.new(CFG, { seed = 3, num_labels = 3 })
    m2:parameter_block().params:copy(p0)
    assert.are.equal(0, (m2:features(fb) - f1):abs():max())
    opt:free()
    for _, m in ipairs { m0, m1, fresh, m2 } do m:free() end
  end)
end)
