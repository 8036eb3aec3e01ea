-- optim_spec.lua: mb.optim against PyTorch's update formulas written out by hand, and
-- Hugging Face's schedules and parameter groups.
local mb = require "moonbert"
local T = mb.tensor
local O = mb.optim

local function near(a, b, tol, what)
  assert.is_true(math.abs(a - b) <= tol, ("%s: %.9g vs %.9g"):format(what or "value", a, b))
end

local function params()
  return {
    { name = "pre_classifier.weight", value = T.from({ 1.0, -2.0 }), grad = T.from({ 0.5, -0.25 }) },
    { name = "pre_classifier.bias", value = T.from({ 0.5 }), grad = T.from({ 1.0 }) },
    { name = "embeddings.LayerNorm.weight", value = T.from({ 1.0 }), grad = T.from({ -1.0 }) },
    { name = "distilbert.frozen.weight", value = T.from({ 3.0 }), grad = T.from({ 9.0 }), requires_grad = false },
  }
end

describe("mb.optim.adamw", function()
  it("follows torch.optim.AdamW for two steps (decoupled decay, bias correction, HF groups)", function()
    local p = params()
    local opt = O.adamw(p, { lr = 0.1, weight_decay = 0.5 })
    assert.are.equal(4, opt:state_numel()) -- the frozen tensor has no state
    local lr, wd, b1, b2, eps = 0.1, 0.5, 0.9, 0.999, 1e-8
    -- reference for the decayed weight's first entry: g = 0.5 both steps
    local w, m, v = 1.0, 0, 0
    local bw, bm, bv = 0.5, 0, 0 -- the bias: no decay, g = 1
    for t = 1, 2 do
      w = w * (1 - lr * wd)
      m = b1 * m + (1 - b1) * 0.5; v = b2 * v + (1 - b2) * 0.25
      w = w - lr / (1 - b1 ^ t) * m / (math.sqrt(v) / math.sqrt(1 - b2 ^ t) + eps)
      bm = b1 * bm + (1 - b1) * 1; bv = b2 * bv + (1 - b2) * 1
      bw = bw - lr / (1 - b1 ^ t) * bm / (math.sqrt(bv) / math.sqrt(1 - b2 ^ t) + eps)
      opt:step()
    end
    near(p[1].value:totable()[1], w, 1e-6, "weight")
    near(p[2].value:totable()[1], bw, 1e-6, "bias (no decay)")
    near(p[3].value:totable()[1], 1.0 + 2 * 0.1, 1e-6, "LayerNorm weight: no decay, two steps of lr against g<0")
    assert.are.equal(3.0, p[4].value:totable()[1])
    assert.are.equal(2, opt:steps())
  end)

  it("groups parameters like Hugging Face's Trainer", function()
    assert.is_true(O.decays("classifier.weight"))
    assert.is_false(O.decays("classifier.bias"))
    assert.is_false(O.decays("distilbert.embeddings.LayerNorm.weight"))
    assert.is_false(O.decays("distilbert.transformer.layer.0.sa_layer_norm.weight"))
    assert.is_false(O.decays("distilbert.transformer.layer.1.output_layer_norm.bias"))
  end)

  it("uses the schedule: lr_k = lr * factor(k)", function()
    local p = params()
    local opt = O.adamw(p, { lr = 1e-3, schedule = O.schedule.linear{ warmup_steps = 0, total_steps = 5 } })
    for k = 0, 4 do
      near(opt:get_lr(), 1e-3 * (1 - k / 5), 1e-15, "lr at step " .. k)
      near(opt:step(), 1e-3 * (1 - k / 5), 1e-15)
    end
  end)

  it("rejects bad options and parameters with the function's name", function()
    local ok, err = pcall(O.adamw, params(), { betas = { 0.9, 1.0 } })
    assert.truthy(tostring(err):find("adamw", 1, true) and tostring(err):find("betas", 1, true), err)
    ok, err = pcall(O.adamw, { { name = "x", value = T.from({ 1 }) } })
    assert.truthy(tostring(err):find("grad must be", 1, true), err)
    ok, err = pcall(O.adamw, "params")
    assert.truthy(tostring(err):find("bad argument #1 to 'adamw'", 1, true), err)
  end)
end)

describe("mb.optim.sgd", function()
  it("momentum and nesterov as torch.optim.SGD", function()
    local p = { { name = "w", value = T.from({ 1.0 }), grad = T.from({ 0.5 }) } }
    local opt = O.sgd(p, { lr = 0.1, momentum = 0.9, nesterov = true })
    local w, buf = 1.0, nil
    for _ = 1, 3 do
      local g = 0.5
      buf = buf and (0.9 * buf + g) or g
      w = w - 0.1 * (g + 0.9 * buf)
      opt:step()
    end
    near(p[1].value:totable()[1], w, 1e-6, "nesterov")
    local ok, err = pcall(O.sgd, p, { nesterov = true })
    assert.truthy(tostring(err):find("nesterov", 1, true), err)
  end)
end)

describe("mb.optim.clip_grad_norm", function()
  it("returns the norm before clipping and scales to max_norm, skipping frozen tensors", function()
    local p = params()
    local norm = O.clip_grad_norm(p, 0.5)
    near(norm, math.sqrt(0.25 + 0.0625 + 1 + 1), 1e-6, "norm")
    local g = 0
    for i = 1, 3 do for _, v in ipairs(p[i].grad:totable()) do g = g + v * v end end
    near(math.sqrt(g), 0.5, 1e-6, "clipped norm")
    assert.are.equal(9.0, p[4].grad:totable()[1])
    near(O.clip_grad_norm(p, math.huge), 0.5, 1e-6, "measure only")
  end)
end)

describe("mb.optim.schedule", function()
  it("linear, cosine and constant match transformers' lambdas", function()
    local lin = O.schedule.linear{ warmup_ratio = 0.2, total_steps = 10 }
    assert.are.equal(2, lin.warmup_steps)
    near(lin(1), 0.5, 1e-15); near(lin(2), 1, 1e-15); near(lin(6), 0.5, 1e-15); near(lin(10), 0, 1e-15)
    local cos = O.schedule.cosine{ warmup_steps = 0, total_steps = 4 }
    near(cos(0), 1, 1e-15); near(cos(2), 0.5, 1e-12); near(cos(4), 0, 1e-12)
    local c = O.schedule.constant{ warmup_steps = 4 }
    near(c(2), 0.5, 1e-15); near(c(100), 1, 1e-15)
    local ok, err = pcall(O.schedule.linear, { warmup_steps = 2 })
    assert.truthy(tostring(err):find("total_steps", 1, true), err)
  end)
end)
