-- cuda_spec.lua: mb.cuda, tensors across devices and the DistilBERT step on the GPU.
--
-- Without a GPU (or in a CUDA=0 build) the CPU fallback is checked: available()
-- is false with a reason, device_name() and memory() return nil and the reason,
-- t:to("cuda") and model:to("cuda") raise errors that say why, --device auto
-- resolves to the CPU, and `moonbert bench train_cuda` fails with that message.
-- With a GPU (scripts/gpu-check) the device specs run instead: fp32 parity on
-- the distilbert-tiny fixture with the README's tolerances (forward, loss,
-- gradients 1e-4 of the largest reference magnitude; the 5-step AdamW
-- trajectory, after5 atol 1e-4), bf16 logits within 2e-2 relative, tf32
-- within 1e-2, two seeded train-mode runs bit-identical, and no device
-- allocation after the first step of a shape.
local mb = require "moonbert"
local T = mb.tensor
local cuda = mb.cuda

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local have_shared = io.open(TINY .. "/config.json") ~= nil
local GPU = cuda.available()

local function rel_err(got, ref)
  local scale = ref:abs():max()
  local err = (got - ref):abs():max()
  return scale > 0 and err / scale or err, err
end

local function tiny_config()
  return { dim = 32, n_layers = 2, n_heads = 4, hidden_dim = 64, vocab_size = 120,
           max_position_embeddings = 32, num_labels = 3 }
end

local function small_batch()
  return {
    input_ids = T.from({ { 1, 5, 9, 13, 2, 0 }, { 1, 44, 45, 46, 47, 2 }, { 1, 7, 7, 7, 2, 0 } }, { dtype = "int32" }),
    attention_mask = T.from({ { 1, 1, 1, 1, 1, 0 }, { 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 1, 0 } }, { dtype = "int32" }),
  }
end

describe("mb.cuda without a GPU (the CPU fallback)", function()
  -- the models and tensors made here go before the next spec file runs
  -- (specs share one Lua state; some count live storages)
  teardown(function() collectgarbage() collectgarbage() end)
  if GPU then
    pending("a GPU is present (" .. tostring(cuda.device_name()) .. "): the device specs below cover it")
    return
  end

  it("reports no device, with the reason", function()
    assert.is_false(cuda.available())
    local why = cuda.unavailable_reason()
    assert.is_string(why)
    assert.is_true(#why > 0)
    if cuda.built() then
      assert.truthy(why:find("CUDA", 1, true), why)
    else
      assert.truthy(why:find("built without CUDA", 1, true), why)
    end
    local name, msg = cuda.device_name()
    assert.is_nil(name)
    assert.truthy(msg:find(why, 1, true), msg)
    local mem, msg2 = cuda.memory()
    assert.is_nil(mem)
    assert.is_string(msg2)
  end)

  it("resolves --device: auto is the CPU, cuda is an error naming the reason", function()
    local dev, why = cuda.device("auto")
    assert.are.equal("cpu", dev)
    assert.are.equal(cuda.unavailable_reason(), why)
    assert.are.equal("cpu", cuda.device("cpu"))
    local ok, err = pcall(cuda.device, "cuda")
    assert.is_false(ok)
    assert.truthy(err:find("--device cuda: CUDA is not available", 1, true), err)
    ok, err = pcall(cuda.device, "tpu")
    assert.is_false(ok)
    assert.truthy(err:find("bad device 'tpu'", 1, true), err)
  end)

  it("t:to('cuda') raises a clear error and leaves the tensor on the CPU", function()
    local t = T.from({ 1, 2, 3 })
    local ok, err = pcall(t.to, t, "cuda")
    assert.is_false(ok)
    assert.truthy(err:find('t:to("cuda"): CUDA is not available', 1, true), err)
    assert.are.equal("cpu", t:device())
    assert.are.equal(t, t:to("cpu"))   -- already there: the same tensor
    assert.are.equal(t, t:cpu())
    assert.are.equal(6, t:sum()) -- still usable
  end)

  it("model:to('cuda') raises a clear error; the model stays usable on the CPU", function()
    local model = mb.distilbert.new(tiny_config(), { seed = 3 })
    local ok, err = pcall(model.to, model, "cuda")
    assert.is_false(ok)
    assert.truthy(err:find('model:to("cuda"): CUDA is not available', 1, true), err)
    assert.are.equal("cpu", model:device())
    assert.are.equal(model, model:to("cpu"))
    ok, err = pcall(model.train_step, model, small_batch(), { 0, 1, 2 })
    assert.is_false(ok)
    assert.truthy(err:find("needs the model on the GPU", 1, true), err)
    ok, err = pcall(cuda.model, model, { precision = "bf16" })
    assert.is_false(ok)
    assert.truthy(err:find("CUDA", 1, true), err)
    local loss = model:loss(small_batch(), { 0, 1, 2 })
    assert.is_true(loss > 0)
  end)

  it("rejects an unknown precision before touching the device", function()
    local model = mb.distilbert.new(tiny_config(), { seed = 3 })
    local ok, err = pcall(cuda.model, model, { precision = "fp8" })
    assert.is_false(ok)
    assert.truthy(err:find("precision 'fp32', 'tf32' or 'bf16' expected, got 'fp8'", 1, true), err)
  end)

  it("moonbert bench train_cuda fails with the reason", function()
    local bin = os.getenv("MOONBERT_BIN")
    if not bin then return pending("needs MOONBERT_BIN") end
    local p = assert(io.popen(bin .. " bench train_cuda --quick 2>&1; echo \"exit=$?\""))
    local text = p:read("a")
    p:close()
    assert.truthy(text:find("CUDA is not available", 1, true), text)
    assert.truthy(text:find("exit=1", 1, true), text)
    assert.falsy(text:find("stack traceback", 1, true), text) -- a missing GPU is not a bug
  end)
end)

describe("tensors on the GPU", function()
  if not GPU then
    pending("no GPU (" .. cuda.unavailable_reason() .. "): device tensor specs skipped")
    return
  end

  it("round-trips through device memory; CPU ops refuse a device tensor", function()
    local t = T.randn({ 3, 5 }, { seed = 1 })
    local d = t:to("cuda")
    assert.are.equal("cuda", d:device())
    assert.are.same({ 3, 5 }, d:shape())
    assert.truthy(tostring(d):find("on cuda", 1, true))
    local ok, err = pcall(function() return d:sum() end)
    assert.is_false(ok)
    assert.truthy(err:find("tensor is on cuda", 1, true), err)
    local back = d:cpu()
    assert.are.equal(0, (back - t):abs():max())
    local tt = t:transpose():to("cuda"):cpu()     -- non-contiguous source is packed first
    assert.are.equal(0, (tt - t:transpose()):abs():max())
    local mem = cuda.memory()
    assert.is_true(mem.total > 0 and mem.peak >= mem.allocated)
  end)
end)

describe("DistilBERT training step on the GPU", function()
  if not GPU then
    pending("no GPU (" .. cuda.unavailable_reason() .. "): fixture parity (fp32, tf32, bf16), " ..
            "bit-identical seeded runs and the allocation check are skipped")
    return
  end
  if not have_shared then
    pending("needs " .. TINY .. " (../shared is absent)")
    return
  end

  local fx, batch
  setup(function()
    fx = mb.safetensors.load(TINY .. "/cases.safetensors")
    batch = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }
  end)

  it("fp32: loss, logits and every gradient match the fixture (1e-4 of max|ref|)", function()
    local model = mb.distilbert.load(TINY, { quiet = true })
    local cm = cuda.model(model, { precision = "fp32" })
    local loss, logits = cm:loss(batch, fx.labels)
    assert.is_true(math.abs(loss - fx.loss[1]) <= 1e-4 * math.abs(fx.loss[1]), loss .. " vs " .. fx.loss[1])
    assert.is_true(rel_err(logits, fx.logits) <= 1e-4)
    cm:backward()
    local g = cm:grads()
    local worst, worst_name = 0, nil
    for _, p in ipairs(model:parameters()) do
      local ref = fx["grad." .. p.name]
      local off, n = p.offset, p.value:numel()
      local got = g:narrow(1, off + 1, n):reshape(p.value:shape())
      if p.name:find("k_lin.bias", 1, true) then
        assert.is_true((got - ref):abs():max() <= 1e-9 + 1e-4 * ref:abs():max(), p.name)
      else
        local e = rel_err(got, ref)
        if e > worst then worst, worst_name = e, p.name end
      end
    end
    assert.is_true(worst <= 1e-4, string.format("worst gradient %s: %.3g", tostring(worst_name), worst))
    print(string.format("\n    cuda fp32: loss rel %.2g, logits rel %.2g, worst grad rel %.2g",
      math.abs(loss - fx.loss[1]) / math.abs(fx.loss[1]), rel_err(logits, fx.logits), worst))
  end)

  it("fp32: the 5-step AdamW trajectory matches (traj 1e-4 rel, after5 atol 1e-4)", function()
    local model = mb.distilbert.load(TINY, { quiet = true })
    local cm = cuda.model(model, { precision = "fp32" })
    for k = 0, 4 do
      cm:zero_grad()
      local loss = cm:loss(batch, fx.labels)
      cm:backward()
      local gn = cm:step({ lr = 1e-3 * (1 - k / 5), weight_decay = 0.01, max_grad_norm = 1.0 })
      assert.is_true(math.abs(loss - fx["traj.loss"][k + 1]) <= 1e-4 * math.abs(fx["traj.loss"][k + 1]), "loss " .. k)
      assert.is_true(math.abs(gn - fx["traj.grad_norm"][k + 1]) <= 1e-4 * fx["traj.grad_norm"][k + 1], "norm " .. k)
    end
    cm:download()
    for _, p in ipairs(model:parameters()) do
      local d = (p.value - fx["after5." .. p.name]):abs():max()
      assert.is_true(d <= 1e-4, p.name .. " " .. d)
    end
  end)

  it("bf16 logits within 2e-2 relative and tf32 within 1e-2 of the fixture", function()
    for prec, tol in pairs { bf16 = 2e-2, tf32 = 1e-2 } do
      local model = mb.distilbert.load(TINY, { quiet = true })
      local cm = cuda.model(model, { precision = prec })
      local logits = cm:forward(batch)
      local e = rel_err(logits, fx.logits)
      print(string.format("\n    cuda %s: logits rel %.3g", prec, e))
      assert.is_true(e <= tol, prec .. " " .. e)
      assert.are.equal(prec, cm:precision())
    end
  end)

  it("two seeded train-mode runs (dropout on) are bit-identical; no allocation after the first step", function()
    local function run(prec)
      local model = mb.distilbert.load(TINY, { quiet = true })
      local cm = cuda.model(model, { precision = prec, seed = 7 })
      local losses = {}
      local allocated
      for k = 1, 4 do
        local loss, gn = cm:train_step(batch, fx.labels, { lr = 1e-3 })
        losses[#losses + 1] = loss
        losses[#losses + 1] = gn
        if k == 2 then allocated = cuda.memory().allocated end
        if k > 2 then assert.are.equal(allocated, cuda.memory().allocated, "allocation during step " .. k) end
      end
      cm:download()
      return losses, model:parameter_block().params:clone()
    end
    for _, prec in ipairs { "fp32", "bf16" } do
      local l1, p1 = run(prec)
      local l2, p2 = run(prec)
      assert.are.same(l1, l2)
      assert.are.equal(0, (p1 - p2):abs():max(), prec)
    end
    assert.is_true(cuda.memory().peak > 0)
  end)

  it("model:to('cuda') trains and model:to('cpu') brings the weights back", function()
    local model = mb.distilbert.load(TINY, { quiet = true })
    local before = model:parameter_block().params:clone()
    model:to("cuda", { precision = "fp32" })
    assert.are.equal("cuda", model:device())
    local l1 = model:train_step(batch, fx.labels, { lr = 1e-3 })
    local l2 = model:train_step(batch, fx.labels, { lr = 1e-3 })
    assert.is_true(l2 < l1)
    model:to("cpu")
    assert.are.equal("cpu", model:device())
    assert.is_true((model:parameter_block().params - before):abs():max() > 0)
    local cpu_loss = model:loss(batch, fx.labels)
    assert.is_true(math.abs(cpu_loss - l2) < l1) -- the host model now holds the trained weights
  end)
end)
