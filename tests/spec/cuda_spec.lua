-- cuda_spec.lua: one model, two backends: mb.cuda, tensors across devices, and every model,
-- optimizer, trainer and pipeline call on the device.
--
-- Without a GPU (or in a CUDA=0 build) the CPU fallback is checked: available() is false with a
-- reason, t:to("cuda"), model:to("cuda"), mb.trainer.fit{device="cuda"} and `moonbert bench train
-- --device cuda` raise errors that say why, and --device auto resolves to the CPU.
--
-- With a device, the device specs run. scripts/run-tests runs this file a second time against
-- the emulated device (build/emu/lib/moonbert/core.so, tests/c/cuda_emul.c: device memory is host
-- memory and each kernel is its host reference), so that every path above the kernels is
-- exercised here; scripts/gpu-check runs it on a real GPU. The references are independent: the
-- distilbert-tiny fixture (PyTorch; README tolerances: 1e-4 of max|ref| per tensor, after5 atol
-- 1e-4) and the CPU model (runtime/distilbert.c, its own code). Checked: fixture parity in fp32
-- through the model's own methods and mb.optim; every method against the CPU model with the same
-- weights; bf16/tf32 logits; seeded runs bit-identical; no allocation after the first step of a
-- shape; freeing in every order; and mb.trainer.fit on 200 emotion examples for 2 epochs equal to
-- the CPU run, with a resume from the epoch-1 checkpoint bit-identical to the uninterrupted run.
local mb = require "moonbert"
local T = mb.tensor
local cuda = mb.cuda
local support = require "tests.spec.support"
local json = require "dkjson"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local EMOTION = SHARED .. "/data/emotion"
local have_shared = io.open(TINY .. "/config.json") ~= nil
local have_emotion = io.open(EMOTION .. "/train.txt") ~= nil
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

local function gc() collectgarbage() collectgarbage() end

describe("mb.cuda without a GPU (the CPU fallback)", function()
  -- the models and tensors made here go before the next spec file runs
  -- (specs share one Lua state; some count live storages)
  teardown(gc)
  if GPU then
    pending("a device is present (" .. tostring(cuda.device_name()) .. "): the device specs below cover it")
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
    assert.are.equal("fp32", model:precision())
    assert.are.equal(model, model:to("cpu"))
    assert.are.equal(model, model:to("cpu", { precision = "fp32" }))
    local loss = model:loss(small_batch(), { 0, 1, 2 })
    assert.is_true(loss > 0)
    assert.are.equal("cpu", model:parameters()[1].value:device())
    model:free()
  end)

  it("trainer.fit{device='cuda'} fails at once with the reason", function()
    local model = mb.distilbert.new(tiny_config(), { seed = 3 })
    local ok, err = pcall(mb.trainer.fit, { model = model, device = "cuda", tokenizer = {}, train = {} })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("CUDA is not available", 1, true), err)
    model:free()
  end)

  it("moonbert bench train --device cuda fails with the reason", function()
    local bin = os.getenv("MOONBERT_BIN")
    if not bin then return pending("needs MOONBERT_BIN") end
    local text, code = support.run(bin .. " bench train --device cuda --quick")
    assert.truthy(text:find("CUDA is not available", 1, true), text)
    assert.are.equal(1, code)
    assert.falsy(text:find("stack traceback", 1, true), text) -- a missing GPU is not a bug
  end)
end)

describe("model:to on either build", function()
  teardown(gc)

  it("rejects an unknown precision before touching the device, and tf32 on the CPU (fp32 or bf16)", function()
    local model = mb.distilbert.new(tiny_config(), { seed = 3 })
    local ok, err = pcall(model.to, model, "cuda", { precision = "fp8" })
    assert.is_false(ok)
    assert.truthy(err:find("precision 'fp32', 'tf32' or 'bf16' expected, got 'fp8'", 1, true), err)
    ok, err = pcall(model.to, model, "cpu", { precision = "tf32" })
    assert.is_false(ok)
    assert.truthy(err:find("precision 'fp32' or 'bf16' expected, got tf32", 1, true), err)
    ok, err = pcall(model.to, model, "tpu")
    assert.is_false(ok)
    assert.truthy(err:find("invalid option 'tpu'", 1, true), err)
    assert.are.equal("cpu", model:device())
    model:free()
  end)

  it("the masked-LM model: a bad precision is refused, the CPU is fp32, no device names the reason", function()
    local mlm = mb.distilbert.new_masked_lm(tiny_config(), { seed = 3 })
    local ok, err = pcall(mlm.to, mlm, "cuda", { precision = "fp8" })
    assert.is_false(ok)
    assert.truthy(err:find("precision 'fp32', 'tf32' or 'bf16' expected, got 'fp8'", 1, true), err)
    ok, err = pcall(mlm.to, mlm, "cpu", { precision = "bf16" })
    assert.is_false(ok)
    assert.truthy(err:find("precision 'bf16' is not available on the CPU (fp32 only)", 1, true), err)
    if not GPU then
      ok, err = pcall(mlm.to, mlm, "cuda")
      assert.is_false(ok)
      assert.truthy(err:find("CUDA is not available: ", 1, true), err)
    end
    assert.are.equal("cpu", mlm:device())
    assert.are.equal("fp32", mlm:precision())
    assert.are.equal(mlm, mlm:to("cpu"))
    mlm:free()
  end)
end)

describe("tensors on the device", function()
  teardown(gc)
  if not GPU then
    pending("no GPU (" .. cuda.unavailable_reason() .. "): device tensor specs skipped")
    return
  end

  it("round-trips through device memory; CPU ops refuse a device tensor; copy works across devices", function()
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
    local u = T.randn({ 3, 5 }, { seed = 2 })
    d:copy(u)                                       -- host -> device
    assert.are.equal(0, (d:cpu() - u):abs():max())
    local h = T.zeros({ 15 })
    h:copy(d)                                       -- device -> host (same size, another shape)
    assert.are.equal(0, (h:reshape({ 3, 5 }) - u):abs():max())
    ok, err = pcall(d.copy, d, T.zeros({ 4 }))
    assert.is_false(ok)
    assert.truthy(err:find("across devices", 1, true), err)
    local mem = cuda.memory()
    assert.is_true(mem.total > 0 and mem.peak >= mem.allocated)
  end)
end)

-- ---- the one model on the device ------------------------------------------------------------------

-- The fixture model with dropout off (CPU/device parity: the device's Philox masks differ from the
-- CPU's xoshiro ones by design), or as saved (dropout 0.1) when keep_dropout.
local function fixture_model(keep_dropout)
  if keep_dropout then return mb.distilbert.load(TINY, { quiet = true }) end
  local cfg = json.decode(support.read(TINY .. "/config.json"))
  cfg.dropout, cfg.attention_dropout, cfg.seq_classif_dropout = 0, 0, 0
  local model = mb.distilbert.new(cfg)
  local st = mb.safetensors.load(TINY .. "/model.safetensors")
  for _, p in ipairs(model:parameters()) do
    local t = st[p.name] or st[p.name:gsub("^distilbert%.", "")]
    assert(t, "fixture has no " .. p.name)
    p.value:copy(t)
  end
  return model
end

local function block_of(model) -- the parameters as one CPU tensor, wherever they live
  return model:parameter_block().params:to("cpu"):clone()
end

describe("one model on the device", function()
  teardown(gc)
  if not GPU then
    pending("no GPU (" .. cuda.unavailable_reason() .. "): the device specs (fixture parity, methods vs the " ..
            "CPU model, optimizer, trainer, ownership) run under make test on the emulated device")
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
    local model = mb.distilbert.load(TINY, { quiet = true }):to("cuda", { precision = "fp32" })
    assert.are.equal("cuda", model:device())
    assert.are.equal("fp32", model:precision())
    local loss, logits, per = model:loss(batch, fx.labels)
    assert.are.equal("cpu", logits:device())
    assert.are.equal("cpu", per:device())
    assert.is_true(math.abs(loss - fx.loss[1]) <= 1e-4 * math.abs(fx.loss[1]), loss .. " vs " .. fx.loss[1])
    assert.is_true(rel_err(logits, fx.logits) <= 1e-4)
    assert.is_true(rel_err(per, fx.per_example_loss) <= 1e-4)
    model:backward()
    local worst, worst_name = 0, nil
    for _, p in ipairs(model:parameters()) do
      assert.are.equal("cuda", p.value:device())
      assert.are.equal("cuda", p.grad:device())
      local ref, got = fx["grad." .. p.name], p.grad:cpu()
      if p.name:find("k_lin.bias", 1, true) then
        assert.is_true((got - ref):abs():max() <= 1e-9 + 1e-4 * ref:abs():max(), p.name)
      else
        local e = rel_err(got, ref)
        if e > worst then worst, worst_name = e, p.name end
      end
    end
    assert.is_true(worst <= 1e-4, string.format("worst gradient %s: %.3g", tostring(worst_name), worst))
    print(string.format("\n    %s fp32: loss rel %.2g, logits rel %.2g, worst grad rel %.2g", cuda.device_name(),
      math.abs(loss - fx.loss[1]) / math.abs(fx.loss[1]), rel_err(logits, fx.logits), worst))
    model:free()
  end)

  it("fp32: the 5-step trajectory through mb.optim.adamw, clip_grad_norm and the schedule", function()
    for _, case in ipairs { { prefix = "", clip = 1.0 }, { prefix = "clipped.", clip = 0.1 } } do
      local model = mb.distilbert.load(TINY, { quiet = true }):to("cuda", { precision = "fp32" })
      local params = mb.trainer.optimizer_params(model)
      local opt = mb.optim.adamw(params, { lr = 1e-3, weight_decay = 0.01,
        schedule = mb.optim.schedule.linear { warmup_steps = 0, total_steps = 5 } })
      assert.are.equal("cuda", opt.core:device())
      for k = 0, 4 do
        opt:zero_grad()
        local loss = model:loss(batch, fx.labels)
        model:backward()
        local gn = mb.optim.clip_grad_norm(params, case.clip)
        local lr = opt:step()
        assert.is_true(math.abs(lr - 1e-3 * (1 - k / 5)) < 1e-15)
        local rl, rn = fx[case.prefix .. "traj.loss"][k + 1], fx[case.prefix .. "traj.grad_norm"][k + 1]
        assert.is_true(math.abs(loss - rl) <= 1e-4 * math.abs(rl), "loss " .. k)
        assert.is_true(math.abs(gn - rn) <= 1e-4 * rn, "norm " .. k)
      end
      assert.are.equal(5, opt:steps())
      local worst = 0
      for _, p in ipairs(model:parameters()) do
        worst = math.max(worst, (p.value:cpu() - fx[case.prefix .. "after5." .. p.name]):abs():max())
      end
      assert.is_true(worst <= 1e-4, case.prefix .. "after5 " .. worst)
      -- the state is the CPU optimizer's layout: a checkpoint is the same file on either device
      local cpu_model = mb.distilbert.load(TINY, { quiet = true })
      local cpu_opt = mb.optim.adamw(mb.trainer.optimizer_params(cpu_model), { lr = 1e-3 })
      assert.are.equal(cpu_opt:state_numel(), opt:state_numel())
      local s = opt:state()
      assert.are.equal("cpu", s.m:device())
      assert.are.equal(5, s.step)
      cpu_opt:set_state(s)
      opt:set_state(cpu_opt:state())
      assert.are.equal(0, (opt:state().v - s.v):abs():max())
      opt:free(); cpu_opt:free(); model:free(); cpu_model:free()
    end
  end)

  it("bf16 logits within 2e-2 relative and tf32 within 1e-2 of the fixture", function()
    for prec, tol in pairs { bf16 = 2e-2, tf32 = 1e-2 } do
      local model = mb.distilbert.load(TINY, { quiet = true }):to("cuda", { precision = prec })
      local logits = model:forward(batch).logits
      local e = rel_err(logits, fx.logits)
      print(string.format("\n    %s %s: logits rel %.3g", cuda.device_name(), prec, e))
      assert.is_true(e <= tol, prec .. " " .. e)
      assert.are.equal(prec, model:precision())
      model:free()
    end
  end)

  it("every method means what it means on the CPU (the CPU model as reference)", function()
    local cpu = fixture_model()
    local dev = fixture_model():to("cuda", { precision = "fp32" })
    local o = { train = false, output_hidden_states = true, output_attentions = true }
    local a, b = cpu:forward(batch, o), dev:forward(batch, o)
    assert.are.equal("cpu", b.logits:device())
    assert.is_true(rel_err(b.logits, a.logits) <= 1e-4)
    assert.is_true(rel_err(b.last_hidden_state, a.last_hidden_state) <= 1e-4)
    assert.are.equal(#a.hidden_states, #b.hidden_states)
    for l = 1, #a.hidden_states do assert.is_true(rel_err(b.hidden_states[l], a.hidden_states[l]) <= 1e-4, l) end
    for l = 1, #a.attentions do assert.is_true(rel_err(b.attentions[l], a.attentions[l]) <= 1e-4, l) end
    local plain = dev:forward(batch)
    assert.is_true(rel_err(plain.last_hidden_state, a.last_hidden_state) <= 1e-4)
    assert.is_nil(plain.hidden_states)
    assert.is_true(rel_err(dev:features(batch), cpu:features(batch)) <= 1e-4)
    local lc, _, pc = cpu:loss(batch, fx.labels, { train = true })
    local ld, _, pd = dev:loss(batch, fx.labels, { train = true })
    assert.is_true(math.abs(lc - ld) <= 1e-4 * lc and rel_err(pd, pc) <= 1e-4)
    -- gradients accumulate, zero_grad clears them
    cpu:backward(); dev:backward()
    local gd = dev:parameter_block().grads:cpu()
    assert.is_true(rel_err(gd, cpu:parameter_block().grads) <= 1e-4)
    dev:zero_grad()
    assert.are.equal(0, dev:parameter_block().grads:cpu():abs():max())
    -- a frozen encoder gets no gradient on the device either
    dev:freeze_encoder(true)
    assert.is_true(dev:encoder_frozen())
    dev:loss(batch, fx.labels); dev:backward()
    for _, p in ipairs(dev:parameters()) do
      local g = p.grad:cpu():abs():max()
      if p.encoder then assert.are.equal(0, g, p.name) else assert.is_true(g > 0, p.name) end
    end
    dev:freeze_encoder(false)
    -- save writes the Hugging Face files of the device weights; config and labels as on the CPU
    local dir = support.tmpdir()
    dev:save(dir)
    local back = mb.distilbert.load(dir, { quiet = true })
    assert.are.equal(0, (block_of(back) - block_of(dev)):abs():max())
    assert.are.same(cpu:config(), dev:config())
    assert.are.same(cpu:label_names(), dev:label_names())
    assert.truthy(tostring(dev):find("cuda fp32", 1, true))
    -- the device's dropout position travels with the RNG state
    assert.is_true(#dev:rng_state() > #cpu:rng_state())
    -- and back: to("cpu") brings the weights and gradients home
    dev:loss(batch, fx.labels); dev:backward()
    local g_before = dev:parameter_block().grads:cpu()
    dev:to("cpu")
    assert.are.equal("cpu", dev:device())
    assert.are.equal(0, (dev:parameter_block().grads - g_before):abs():max())
    assert.are.equal(0, (block_of(dev) - block_of(back)):abs():max())
    os.execute("rm -rf " .. support.q(dir))
    back:free(); cpu:free(); dev:free()
  end)

  it("a bad batch is refused with the CPU model's message (ids outside the vocabulary, too long)", function()
    local cpu = fixture_model()
    local dev = fixture_model():to("cuda", { precision = "fp32" })
    local cfg = json.decode(support.read(TINY .. "/config.json"))
    local V, P = cfg.vocab_size, cfg.max_position_embeddings
    for _, ids in ipairs { T.from({ { 1, V, 2 } }, { dtype = "int32" }), T.from({ { 1, -1 } }, { dtype = "int32" }),
                           T.zeros(1, P + 1, { dtype = "int32" }) } do
      local ok1, e1 = pcall(cpu.forward, cpu, { input_ids = ids })
      local ok2, e2 = pcall(dev.forward, dev, { input_ids = ids })
      assert.is_false(ok1)
      assert.is_false(ok2)
      assert.are.equal(tostring(e1), tostring(e2))
    end
    dev:free(); cpu:free()
  end)

  it("seeded train-mode runs (dropout on) are bit-identical; no allocation after the first step", function()
    local function run(prec, seed)
      local model = mb.distilbert.load(TINY, { quiet = true }):to("cuda", { precision = prec })
      model:seed(seed)
      local opt = mb.optim.adamw(mb.trainer.optimizer_params(model), { lr = 1e-3 })
      local out, allocated = {}, nil
      for k = 1, 4 do
        local loss, gn = mb.trainer.step(model, opt, batch, fx.labels, { max_grad_norm = 1.0 })
        out[#out + 1], out[#out + 1] = loss, gn
        if k == 2 then allocated = cuda.memory().allocated end
        if k > 2 then assert.are.equal(allocated, cuda.memory().allocated, "allocation during step " .. k) end
      end
      local p = block_of(model)
      opt:free(); model:free()
      return out, p
    end
    for _, prec in ipairs { "fp32", "bf16" } do
      local l1, p1 = run(prec, 7)
      local l2, p2 = run(prec, 7)
      local l3 = run(prec, 8)
      assert.are.same(l1, l2)
      assert.are.equal(0, (p1 - p2):abs():max(), prec)
      assert.are_not.equal(l1[1], l3[1], "another seed, the same dropout")
    end
    assert.is_true(cuda.memory().peak > 0)
  end)

  it("frees in every order: no view or optimizer dangles, and the device memory comes back", function()
    local function warm() -- the clipping scratch is kept between calls: allocate it once first
      local m = mb.distilbert.load(TINY, { quiet = true }):to("cuda")
      mb.optim.clip_grad_norm(mb.trainer.optimizer_params(m), 1.0)
      m:free()
    end
    warm()
    gc()
    local base = cuda.memory().allocated
    local function trained()
      local m = mb.distilbert.load(TINY, { quiet = true }):to("cuda", { precision = "fp32" })
      local params = mb.trainer.optimizer_params(m)
      local opt = mb.optim.adamw(params, { lr = 1e-3 })
      m:loss(batch, fx.labels); m:backward()
      return m, params, opt
    end
    -- 1. the model first: its views and the optimizer still step on live memory
    do
      local m, params, opt = trained()
      m:free()
      assert.has_error(function() m:loss(batch, fx.labels) end)
      mb.optim.clip_grad_norm(params, 1.0)
      opt:step()
      assert.is_true(params[1].value:cpu():abs():max() > 0)
      opt:free()
    end
    gc()
    assert.are.equal(base, cuda.memory().allocated, "after model, then optimizer and views")
    -- 2. the optimizer first, then the views, then the model
    do
      local m, params, opt = trained()
      opt:free()
      params = nil
      gc()
      m:free()
    end
    gc()
    assert.are.equal(base, cuda.memory().allocated, "after optimizer, views, model")
    -- 3. to("cpu") while an optimizer holds device views: the old device memory stays valid until
    -- they go, and the model trains on the CPU from the weights it brought back
    do
      local m, params, opt = trained()
      m:to("cpu")
      opt:step()
      local cpu_opt = mb.optim.adamw(mb.trainer.optimizer_params(m), { lr = 1e-3 })
      assert.are.equal("cpu", cpu_opt.core:device())
      opt:free(); cpu_opt:free()
      params = nil
      m:to("cuda"); m:to("cuda", { precision = "bf16" }); m:to("cpu") -- re-created, released
    end
    gc()
    assert.are.equal(base, cuda.memory().allocated, "after to('cpu') with a live optimizer")
    -- 4. nothing freed by hand: the collector finds model, views and optimizer in any order
    do trained() end
    gc()
    assert.are.equal(base, cuda.memory().allocated, "after garbage collection")
  end)

  it("pipeline('text-classification', {device='cuda'}) scores as on the CPU", function()
    local texts = { "i feel so happy today", "this is awful and i am scared" }
    local a = mb.pipeline("text-classification", TINY, { top_k = "all" })
    local b = mb.pipeline("text-classification", TINY, { top_k = "all", device = "cuda", precision = "fp32" })
    assert.are.equal("cuda", b.model:device())
    local ra, rb = a(texts), b(texts)
    for i = 1, #texts do
      for j = 1, #ra[i] do
        assert.are.equal(ra[i][j].label, rb[i][j].label)
        assert.is_true(math.abs(ra[i][j].score - rb[i][j].score) <= 1e-5)
      end
    end
    a:free(); b:free()
  end)
end)

describe("mb.trainer.fit on the device", function()
  teardown(gc)
  if not GPU then
    pending("no GPU (" .. cuda.unavailable_reason() .. "): the trainer-on-device specs run on the emulated device")
    return
  end
  if not (have_shared and have_emotion) then
    pending("needs " .. TINY .. " and " .. EMOTION .. " (../shared is absent)")
    return
  end

  local small = support.emotion_fit(TINY, EMOTION)
  setup(small.load)
  local fit = small.fit

  it("2 epochs on 200 emotion examples: the same losses, accuracies and weights as the CPU (fp32)", function()
    local cpu_model, dev_model = fixture_model(), fixture_model()
    local rc = fit(cpu_model)
    local rd = fit(dev_model, { device = "cuda", precision = "fp32" })
    assert.are.equal("cuda", dev_model:device())
    assert.are.equal(rc.steps, rd.steps)
    local worst_loss = 0
    for e = 1, 2 do
      local a, b = rc.history[e], rd.history[e]
      for _, k in ipairs { "train_loss", "eval_loss" } do
        local r = math.abs(a[k] - b[k]) / math.abs(a[k])
        worst_loss = math.max(worst_loss, r)
        assert.is_true(r <= 1e-4, string.format("epoch %d %s: cpu %.9g device %.9g", e, k, a[k], b[k]))
      end
      assert.are.equal(a.eval_accuracy, b.eval_accuracy, "epoch " .. e .. " accuracy")
      assert.is_true(math.abs(a.eval_f1_weighted - b.eval_f1_weighted) <= 1e-12, "epoch " .. e .. " f1")
    end
    local dw = (block_of(cpu_model) - block_of(dev_model)):abs():max()
    assert.is_true(dw <= 1e-4, "final weights differ by " .. dw)
    print(string.format("\n    trainer on %s vs CPU: losses rel <= %.2g, accuracy %.4f = %.4f, weights abs %.2g",
      cuda.device_name(), worst_loss, rc.history[2].eval_accuracy, rd.history[2].eval_accuracy, dw))
    cpu_model:free(); dev_model:free()
  end)

  it("an experiment with --device auto runs there and records device, GPU, precision and peak memory", function()
    local bin = os.getenv("MOONBERT_BIN")
    if not bin then return pending("needs MOONBERT_BIN (scripts/run-tests sets it)") end
    local dir = support.tmpdir()
    local out, err, code = support.sh(support.q(bin) .. " run experiments/baseline_vs_finetune.lua --device auto --model " ..
      support.q(TINY) .. " --quick --limit 24 --batch-size 12 --no-ood --no-report --store " .. support.q(dir .. "/s.db"))
    assert.are.equal(0, code, err)
    local note = "device: cuda (" .. cuda.device_name() .. "), precision " .. cuda.DEFAULT_PRECISION ..
                 " (--device auto: a GPU is available)"
    assert.truthy(out:find(note, 1, true), out)
    local store = mb.store.open(dir .. "/s.db")
    local r = store:runs { experiment = "baseline_vs_finetune" }[1]
    assert.are.equal("completed", r.status)
    assert.are.equal("cuda", r.device)
    local params = store:params(r.id)
    assert.are.equal("cuda", params.device)
    assert.are.equal(cuda.DEFAULT_PRECISION, params.precision)
    assert.are.equal(cuda.device_name(), params.gpu)
    local peak = store:metrics(r.id, "device/peak_memory_mb")
    assert.are.equal(1, #peak)
    assert.is_true(peak[1].value > 0)
    assert.is_true(#store:metrics(r.id, "train/loss") > 0)
    store:close()
    os.execute("rm -rf " .. support.q(dir))
  end)

  it("a run resumed from the epoch-1 checkpoint ends bit-identical to the uninterrupted run (dropout on)", function()
    local dir_a, dir_b = support.tmpdir(), support.tmpdir()
    local full = fixture_model(true)
    local ra = fit(full, { device = "cuda", checkpoint_dir = dir_a })
    local part = fixture_model(true)
    local rp = fit(part, { device = "cuda", checkpoint_dir = dir_b, stop_after_epoch = 1 })
    assert.is_true(rp.stopped)
    part:free()
    gc()
    local resumed = fixture_model(true):to("cuda")
    local rb = fit(resumed, { checkpoint_dir = dir_b, resume = true })
    assert.are.equal(ra.steps, rb.steps)
    assert.are.same(ra.history[2].train_loss, rb.history[2].train_loss)
    assert.are.same(ra.history[2].eval_loss, rb.history[2].eval_loss)
    assert.are.equal(0, (block_of(full) - block_of(resumed)):abs():max())
    -- the checkpoint is the CPU's format: the CPU model loads it
    local newest = require("moonbert.checkpoint").newest(dir_b)
    local cpu = mb.distilbert.load(newest, { quiet = true })
    assert.are.equal("cpu", cpu:device())
    cpu:free(); full:free(); resumed:free()
    os.execute("rm -rf " .. support.q(dir_a) .. " " .. support.q(dir_b))
  end)
end)

-- ---- the masked-LM model -----------------------------------------------------------------------
-- References: the distilbert-mlm-tiny fixture (PyTorch DistilBertForMaskedLM; README tolerances
-- 1e-4 of max|ref| per tensor, atol 1e-9 for k_lin.bias, after3 atol 1e-4) and the CPU model
-- (runtime/distilbert_mlm.c). Two parameter blocks (the encoder's and the head's), so the device
-- optimizer spans both.
local MLM = SHARED .. "/fixtures/distilbert-mlm-tiny"
local have_mlm = io.open(MLM .. "/cases.safetensors") ~= nil

local function max_param_diff(a, b) -- max |a - b| over every parameter, wherever they live
  local pb, worst = b:parameters(), 0
  for i, p in ipairs(a:parameters()) do
    worst = math.max(worst, (p.value:to("cpu") - pb[i].value:to("cpu")):abs():max())
  end
  return worst
end

describe("the masked-LM model on the device", function()
  teardown(gc)
  if not GPU then
    pending("no GPU (" .. cuda.unavailable_reason() .. "): run under make test on the emulated device")
    return
  end
  if not have_mlm then
    pending("needs " .. MLM .. " (../shared is absent)")
    return
  end
  local fx, batch
  setup(function()
    fx = mb.safetensors.load(MLM .. "/cases.safetensors")
    batch = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }
  end)
  local function load(prec)
    local m = mb.distilbert.load_masked_lm(MLM, { quiet = true })
    if prec then m:to("cuda", { precision = prec }) end
    return m
  end
  local function grad_errors(model, ref_of)
    local worst, worst_name = 0, nil
    for _, p in ipairs(model:parameters()) do
      local ref, got = ref_of(p.name), p.grad:cpu()
      if p.name:find("k_lin.bias", 1, true) then
        assert.is_true((got - ref):abs():max() <= 1e-9 + 1e-4 * ref:abs():max(), p.name)
      else
        local e = rel_err(got, ref)
        if e > worst then worst, worst_name = e, p.name end
      end
    end
    return worst, worst_name
  end

  it("fp32: loss, masked logits and all 41 gradients match the fixture and the CPU model", function()
    local dev, cpu = load("fp32"), load()
    assert.are.equal("cuda", dev:device())
    local loss, n, logits = dev:loss(batch, fx.labels, { logits = true })
    local closs, cn, clogits = cpu:loss(batch, fx.labels, { logits = true })
    assert.are.equal("cpu", logits:device())
    assert.are.equal(12, n)
    assert.are.equal(cn, n)
    local loss_rel = math.abs(loss - fx.loss[1]) / math.abs(fx.loss[1])
    assert.is_true(loss_rel <= 1e-4, loss .. " vs " .. fx.loss[1])
    local logits_rel = rel_err(logits, fx.masked_logits)
    assert.is_true(logits_rel <= 1e-4, logits_rel)
    assert.is_true(rel_err(logits, clogits) <= 1e-4)
    assert.is_true(math.abs(loss - closs) <= 1e-5 * math.abs(closs))
    dev:backward()
    cpu:backward()
    local params = dev:parameters()
    assert.are.equal(41, #params)
    for _, p in ipairs(params) do
      assert.are.equal("cuda", p.value:device())
      assert.are.equal("cuda", p.grad:device())
    end
    local worst, wname = grad_errors(dev, function(name) return fx["grad." .. name] end)
    assert.is_true(worst <= 1e-4, string.format("worst gradient %s: %.3g", tostring(wname), worst))
    local cpu_grads = {}
    for _, p in ipairs(cpu:parameters()) do cpu_grads[p.name] = p.grad end
    local worst_cpu = grad_errors(dev, function(name) return cpu_grads[name] end)
    assert.is_true(worst_cpu <= 1e-4, worst_cpu)
    print(string.format("\n    %s masked-LM fp32 vs fixture: loss rel %.2g, masked logits rel %.2g, worst grad rel " ..
      "%.2g (%s); vs the CPU model: logits %.2g, worst grad %.2g", cuda.device_name(), loss_rel, logits_rel, worst,
      wname, rel_err(logits, clogits), worst_cpu))
    dev:free(); cpu:free()
  end)

  it("fp32: 3 AdamW steps (clip 1.0, linear schedule) over both blocks, as the fixture and the CPU", function()
    local function run(prec)
      local model = load(prec)
      local params = mb.trainer.optimizer_params(model)
      local opt = mb.optim.adamw(params, { lr = 1e-3, weight_decay = 0.01,
        schedule = mb.optim.schedule.linear { warmup_steps = 0, total_steps = 3 } })
      local losses, norms = {}, {}
      for k = 0, 2 do
        opt:zero_grad()
        losses[k + 1] = model:loss(batch, fx.labels)
        model:backward()
        norms[k + 1] = mb.optim.clip_grad_norm(params, 1.0)
        opt:step()
      end
      return model, opt, losses, norms
    end
    local dev, opt, losses, norms = run("fp32")
    assert.are.equal("cuda", opt.core:device())
    local cpu, cpu_opt, closs = run(nil)
    for k = 1, 3 do
      assert.is_true(math.abs(losses[k] - fx["traj.loss"][k]) <= 1e-4 * math.abs(fx["traj.loss"][k]), "loss " .. k)
      assert.is_true(math.abs(norms[k] - fx["traj.grad_norm"][k]) <= 1e-4 * fx["traj.grad_norm"][k], "norm " .. k)
    end
    local worst, worst_cpu = 0, 0
    local cpu_values = {}
    for _, p in ipairs(cpu:parameters()) do cpu_values[p.name] = p.value end
    for _, p in ipairs(dev:parameters()) do
      local v = p.value:cpu()
      worst = math.max(worst, (v - fx["after3." .. p.name]):abs():max())
      worst_cpu = math.max(worst_cpu, (v - cpu_values[p.name]):abs():max())
    end
    assert.is_true(worst <= 1e-4, "after3 " .. worst)
    assert.is_true(worst_cpu <= 1e-4, "vs CPU " .. worst_cpu)
    -- the moments in the CPU optimizer's layout: the same checkpoint file on either device
    assert.are.equal(cpu_opt:state_numel(), opt:state_numel())
    local s, cs = opt:state(), cpu_opt:state()
    assert.are.equal(3, s.step)
    assert.is_true(rel_err(s.m, cs.m) <= 1e-4 and rel_err(s.v, cs.v) <= 1e-3)
    print(string.format("\n    masked-LM 3 AdamW steps: after3 max abs %.2g vs the fixture, %.2g vs the CPU; " ..
      "losses %.2g rel (CPU %.2g)", worst, worst_cpu, math.abs(losses[3] - fx["traj.loss"][3]) / fx["traj.loss"][3],
      math.abs(closs[3] - fx["traj.loss"][3]) / fx["traj.loss"][3]))
    opt:free(); cpu_opt:free(); dev:free(); cpu:free()
  end)

  it("bf16 masked logits within 2e-2 and tf32 within 1e-2 of the fixture", function()
    for prec, tol in pairs { bf16 = 2e-2, tf32 = 1e-2 } do
      local m = load(prec)
      assert.are.equal(prec, m:precision())
      local loss, _, logits = m:loss(batch, fx.labels, { logits = true })
      local e = rel_err(logits, fx.masked_logits)
      assert.is_true(e <= tol, prec .. " " .. e)
      assert.is_true(math.abs(loss - fx.loss[1]) <= tol * fx.loss[1], prec .. " loss")
      m:backward() -- runs (bf16 products through the head's scratch)
      print(string.format("\n    masked-LM %s: masked logits rel %.2g", prec, e))
      m:free()
    end
  end)

  it("forward, zero_grad, save, to('cpu') and rng_state mean what they mean on the CPU", function()
    local dev, cpu = load("fp32"), load()
    -- every position [B,T,V] and a list of positions [n,V]. The rows of padding tokens differ by
    -- design: the CPU's packed forward leaves their hidden state 0, the device computes them as
    -- PyTorch does; compare the real tokens.
    local all, call = dev:forward(batch), cpu:forward(batch)
    assert.are.same(call:shape(), all:shape())
    local mask = fx.attention_mask
    for bi = 1, 4 do
      for t = 1, 36 do
        if mask[bi][t] == 1 then assert.is_true(rel_err(all[bi][t], call[bi][t]) <= 1e-4, bi .. "," .. t) end
      end
    end
    local pos = T.from({ 0, 5, 40, 71 }, { dtype = "int32" })
    local some = dev:forward(batch, { positions = pos })
    assert.are.same({ 4, 30522 }, some:shape())
    assert.is_true(rel_err(some, cpu:forward(batch, { positions = pos })) <= 1e-4)
    local ok, err = pcall(dev.forward, dev, batch, { positions = T.from({ 999 }, { dtype = "int32" }) })
    assert.is_false(ok)
    assert.truthy(err:find("outside the batch's 4 x 36 tokens", 1, true), err)
    ok, err = pcall(dev.backward, dev)
    assert.is_false(ok)
    assert.truthy(err:find("backward needs model:loss first", 1, true), err)
    -- zero_grad clears both blocks; to("cpu") brings weights and gradients back
    dev:loss(batch, fx.labels); dev:backward()
    local head_grad = dev:parameters()[41].grad:cpu()
    assert.is_true(head_grad:abs():max() > 0)
    dev:zero_grad()
    for _, p in ipairs(dev:parameters()) do assert.are.equal(0, p.grad:cpu():abs():max(), p.name) end
    dev:loss(batch, fx.labels); dev:backward()
    local g41, w1 = dev:parameters()[41].grad:cpu(), dev:parameters()[1].value:cpu()
    -- save from the device: the same files as the CPU model with those weights
    local d1, d2 = support.tmpdir(), support.tmpdir()
    dev:save(d1)
    assert.are.equal(dev, dev:to("cpu"))
    assert.are.equal("cpu", dev:device())
    assert.are.equal(0, (dev:parameters()[41].grad - g41):abs():max())
    assert.are.equal(0, (dev:parameters()[1].value - w1):abs():max())
    dev:save(d2)
    local a, b = mb.safetensors.load(d1 .. "/model.safetensors"), mb.safetensors.load(d2 .. "/model.safetensors")
    local count = 0
    for name, t in pairs(a) do
      assert.are.equal(0, (t - b[name]):abs():max(), name)
      count = count + 1
    end
    assert.are.equal(41, count) -- HF's names: no vocab_projector.weight (tied)
    assert.is_nil(a["vocab_projector.weight"])
    -- the device dropout state goes into rng_state and back
    dev:to("cuda", { precision = "fp32", seed = 11 })
    local r0 = dev:rng_state()
    local l1 = dev:loss(batch, fx.labels, { train = true })
    dev:set_rng_state(r0)
    assert.are.equal(l1, dev:loss(batch, fx.labels, { train = true }))
    dev:free(); cpu:free()
    os.execute("rm -rf " .. support.q(d1) .. " " .. support.q(d2))
  end)

  it("checkpoint + resume on the device: bit-identical to the run without it (dropout on); no allocation per step",
    function()
    local dir = support.tmpdir()
    local function steps(model, opt, params, from, to, check_alloc)
      local losses, allocated = {}, nil
      for k = from, to do
        opt:zero_grad()
        local b = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }
        losses[#losses + 1] = model:loss(b, fx.labels, { train = true })
        model:backward()
        mb.optim.clip_grad_norm(params, 1.0)
        opt:step()
        -- buffers are made once per shape: nothing allocated after the first step
        if check_alloc and k == from then allocated = cuda.memory().allocated end
        if check_alloc and k > from then assert.are.equal(allocated, cuda.memory().allocated, "step " .. k) end
      end
      return losses
    end
    local function fresh(path)
      local m = mb.distilbert.load_masked_lm(path or MLM, { quiet = true }):to("cuda", { precision = "fp32", seed = 5 })
      local params = mb.trainer.optimizer_params(m)
      return m, mb.optim.adamw(params, { lr = 1e-3, weight_decay = 0.01 }), params
    end
    local full, fopt, fparams = fresh()
    local lf = steps(full, fopt, fparams, 1, 4, true)
    local part, popt, pparams = fresh()
    steps(part, popt, pparams, 1, 2)
    part:save(dir)
    popt:save(dir .. "/optimizer.safetensors")
    local rng = part:rng_state()
    popt:free(); part:free()
    local res, ropt, rparams = fresh(dir)
    ropt:load(dir .. "/optimizer.safetensors")
    res:set_rng_state(rng)
    local lr = steps(res, ropt, rparams, 3, 4)
    assert.are.same({ lf[3], lf[4] }, lr)
    assert.are.equal(0, max_param_diff(full, res))
    local fs, rs = fopt:state(), ropt:state()
    assert.are.equal(0, (fs.m - rs.m):abs():max())
    assert.are.equal(0, (fs.v - rs.v):abs():max())
    fopt:free(); ropt:free(); full:free(); res:free()
    os.execute("rm -rf " .. support.q(dir))
  end)

  it("frees in every order; the device memory comes back", function()
    gc()
    local function trained()
      local m = load("fp32")
      local params = mb.trainer.optimizer_params(m)
      local opt = mb.optim.adamw(params, { lr = 1e-3 })
      m:loss(batch, fx.labels); m:backward()
      mb.optim.clip_grad_norm(params, 1.0)
      return m, params, opt
    end
    do local m, _, opt = trained(); opt:free(); m:free() end -- the clipping scratch, once
    gc()
    local base = cuda.memory().allocated
    do
      local m, params, opt = trained()
      m:free()
      assert.has_error(function() m:loss(batch, fx.labels) end)
      opt:step() -- the views keep both device blocks alive
      assert.is_true(params[41].value:cpu():abs():max() > 0)
      opt:free()
    end
    gc()
    assert.are.equal(base, cuda.memory().allocated, "model first, then optimizer and views")
    do
      local m, params, opt = trained()
      m:to("cpu")
      opt:step()
      opt:free()
      m:to("cuda", { precision = "bf16" }); m:to("cpu")
    end
    gc()
    assert.are.equal(base, cuda.memory().allocated, "to('cpu') with a live optimizer")
    do trained() end
    gc()
    assert.are.equal(base, cuda.memory().allocated, "garbage collection")
  end)

  it("moves whatever problem_type its config carries (the classification head never runs)", function()
    local cfg = tiny_config()
    cfg.problem_type, cfg.num_labels = "multi_label_classification", 3
    local m = mb.distilbert.new_masked_lm(cfg, { seed = 3 }):to("cuda", { precision = "fp32" })
    local cpu = mb.distilbert.new_masked_lm(cfg, { seed = 3 })
    local b = small_batch()
    local labels = T.from({ { -100, 7, -100, 13, -100, -100 }, { -100, -100, 45, -100, -100, -100 },
                            { -100, 8, -100, -100, -100, -100 } }, { dtype = "int32" })
    local l1, n1 = m:loss(b, labels)
    local l2, n2 = cpu:loss(b, labels)
    assert.are.equal(4, n1)
    assert.are.equal(n2, n1)
    assert.is_true(math.abs(l1 - l2) <= 1e-5 * l2)
    m:free(); cpu:free()
  end)

  it("pipeline('fill-mask', {device='cuda'}) gives the CPU's tokens and scores", function()
    local text = "i feel so [MASK] today"
    local a = mb.pipeline("fill-mask", MLM)
    local b = mb.pipeline("fill-mask", MLM, { device = "cuda", precision = "fp32" })
    assert.are.equal("cuda", b.model:device())
    local ra, rb = a(text, { top_k = 5 }), b(text, { top_k = 5 })
    for i = 1, 5 do
      assert.are.equal(ra[i].token, rb[i].token)
      assert.is_true(math.abs(ra[i].score - rb[i].score) <= 1e-5 * ra[i].score)
    end
    a:free(); b:free()
  end)
end)

describe("experiments on the device", function()
  teardown(gc)
  local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
  if not GPU then
    pending("no GPU (" .. cuda.unavailable_reason() .. "): run under make test on the emulated device")
    return
  end
  if not (have_mlm and have_emotion) then
    pending("needs " .. MLM .. " and " .. EMOTION .. " (../shared is absent)")
    return
  end

  it("pretrain_mlm --device cuda trains, checkpoints, and resumes bit for bit", function()
    local tmp = support.tmpdir()
    local corpus = tmp .. "/corpus.txt"
    local f = assert(io.open(corpus, "w"))
    local k = 0
    for line in io.lines(EMOTION .. "/validation.txt") do
      k = k + 1
      if k > 300 then break end
      f:write((line:gsub(";%a+$", "")), "\n")
    end
    f:close()
    local common = table.concat({ support.q(BIN), "run experiments/pretrain_mlm.lua --config tiny --no-train-texts",
      "--tokenizer", support.q(MLM), "--data", support.q(EMOTION), "--corpus", support.q(corpus),
      "--steps 4 --batch-size 4 --max-length 24 --eval-size 8 --eval-every 2 --checkpoint-every 2 --log-every 1",
      "--device cuda --precision fp32 --checkpoint-dir", support.q(tmp .. "/ckpt"),
      "--store", support.q(tmp .. "/s.db") },
      " ")
    local out, code = support.run(common .. " --out " .. support.q(tmp .. "/a"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("device: cuda", 1, true), out)
    assert.truthy(out:find("cuda fp32", 1, true), out) -- the model line: where it runs
    out, code = support.run(common .. " --resume --out " .. support.q(tmp .. "/b"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("resumed from", 1, true), out)
    local a = mb.safetensors.load(tmp .. "/a/model.safetensors")
    local b = mb.safetensors.load(tmp .. "/b/model.safetensors")
    for name, t in pairs(a) do assert.are.equal(0, (t - b[name]):abs():max(), name) end
    local store = mb.store.open(tmp .. "/s.db")
    local runs = store:runs { experiment = "pretrain_mlm" }
    assert.are.equal(2, #runs)
    assert.are.equal("cuda", runs[1].device)
    for _, r in ipairs(runs) do -- device, GPU name, precision and peak device memory, as the other experiments
      local params = store:params(r.id)
      assert.are.equal("cuda", params.device)
      assert.are.equal(cuda.device_name(), params.gpu)
      assert.are.equal("fp32", params.precision)
      local peak = store:metrics(r.id, "device/peak_memory_mb")
      assert.are.equal(1, #peak)
      assert.is_true(peak[1].value > 0)
    end
    store:close()
    os.execute("rm -rf " .. support.q(tmp))
  end)

  it("--device cuda with a BERT --model fails at once with the reason; nothing in the store", function()
    local BERT = SHARED .. "/fixtures/bert-tiny"
    local tmp = support.tmpdir()
    local out, err, code = support.sh(support.q(BIN) .. " run experiments/baseline_vs_finetune.lua --device cuda " ..
      "--model " .. support.q(BERT) .. " --store " .. support.q(tmp .. "/s.db") .. " --quick")
    assert.are.equal(1, code, out .. err)
    assert.truthy(err:find("--device cuda: --model " .. BERT .. " is a BERT model, which runs on the CPU only", 1,
      true),
      err)
    assert.is_nil(require("lfs").attributes(tmp .. "/s.db"))
    assert.falsy(out:find("loading", 1, true))
    os.execute("rm -rf " .. support.q(tmp))
  end)
end)
