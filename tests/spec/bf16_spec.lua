-- bf16_spec.lua: precision "bf16" on the CPU (README "bf16 on the CPU", runtime/bf16.h).
-- Fixture parity in bf16 (../shared/fixtures/distilbert-tiny, distilbert-heads12), with the
-- README's tolerance: logits, [CLS] features and the loss within 2e-2 relative (max |err| /
-- max |ref|), as for the GPU's bf16; gradients within 1e-1 relative (a gradient through the
-- classifier sums dlogits, which add up to 0 over the labels, so bf16's 2^-9 rounding of each
-- term is left over: 6.2e-2 measured on distilbert-heads12's pre_classifier); the five-step AdamW
-- trajectory's losses within 2e-2. On a CPU without AVX-512 BF16 these run the emulated kernel
-- (bf16-rounded operands through sgemm: the same numbers as a bf16 kernel), chosen here with
-- core.bf16.kernel("emulate") as MOONBERT_BF16=emulate would; oneDNN's kernel is
-- checked against the emulated one in tests/c/test_bf16.c where the CPU has the instructions.
-- Each check also asserts that bf16 moved the result away from fp32 (bf16 really ran).
-- Measured errors are printed with MOONBERT_VERBOSE=1.
local mb = require "moonbert"
local bcore = require("moonbert.core").bf16

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local HEADS12 = SHARED .. "/fixtures/distilbert-heads12"
local have_shared = io.open(TINY .. "/cases.safetensors") ~= nil
local report = require("tests.spec.support").report

local function rel_err(got, ref)
  local scale = ref:abs():max()
  local err = (got - ref):abs():max()
  return scale > 0 and err / scale or err
end

local function tiny_config()
  return { dim = 16, n_layers = 2, n_heads = 4, hidden_dim = 32, vocab_size = 60, max_position_embeddings = 16 }
end

describe("precision bf16 on the CPU", function()
  local saved_kernel
  setup(function() saved_kernel = bcore.kernel() end)
  teardown(function() bcore.kernel("auto") end)

  it("falls back to fp32 with a one-line reason where there is no bf16 kernel", function()
    bcore.kernel("off")
    local model = mb.distilbert.new(tiny_config(), { seed = 1 })
    local notice = model:set_precision("bf16")
    assert.are.equal("fp32", model:precision())
    assert.truthy(notice and notice:find("MOONBERT_BF16=off", 1, true), tostring(notice))
    assert.is_nil(notice:find("\n"))
    model:free()
  end)

  it("reports the kernel this CPU gets by default", function()
    local name, why = bcore.kernel("auto")
    assert.truthy(name == "onednn" or name == "none", name)
    if name == "none" then assert.truthy(why:find("AVX-512 BF16", 1, true), why) end
    report("bf16 kernel here: %s%s (before this spec: %s)", name, why and (" (" .. why .. ")") or "", saved_kernel)
  end)

  it("rejects a precision other than fp32 and bf16, naming the function", function()
    local ok, err = pcall(mb.distilbert.new, tiny_config(), { precision = "fp16" })
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #2 to 'new'", 1, true) and err:find("fp16", 1, true), err)
    local model = mb.distilbert.new(tiny_config())
    ok, err = pcall(model.to, model, "cpu", { precision = "tf32" })
    assert.is_false(ok)
    assert.truthy(err:find("'to'", 1, true) and err:find("tf32", 1, true), err)
    ok, err = pcall(model.set_precision, model, "half")
    assert.is_false(ok)
    assert.truthy(err:find("precision 'fp32' or 'bf16' expected, got 'half'", 1, true), err)
    model:free()
  end)

  describe("fixture parity (emulated bf16 kernel where the CPU has none)", function()
    if not have_shared then
      pending("needs " .. TINY .. " (../shared is absent)")
      return
    end
    setup(function()
      if bcore.kernel("auto") == "none" then bcore.kernel("emulate") end
    end)

    for _, fx_dir in ipairs { TINY, HEADS12 } do
      local name = fx_dir:match("[^/]+$")
      it(name .. ": logits, [CLS] features, loss and gradients", function()
        local fx = mb.safetensors.load(fx_dir .. "/cases.safetensors")
        local batch = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }
        local model = mb.distilbert.load(fx_dir, { quiet = true })
        local fp32_logits = model:forward(batch, { train = false }).logits:clone()
        model:to("cpu", { precision = "bf16" })
        assert.are.equal("bf16", model:precision())
        local logits = model:forward(batch, { train = false }).logits
        local e = rel_err(logits, fx.logits)
        report("%s bf16: logits rel err %.3e", name, e)
        assert.is_true(e <= 2e-2, "logits rel err " .. e)
        assert.is_true(rel_err(logits, fp32_logits) > 1e-5, "bf16 logits equal fp32's: bf16 did not run")
        e = rel_err(model:features(batch), fx.cls_hidden)
        report("%s bf16: [CLS] features rel err %.3e", name, e)
        assert.is_true(e <= 2e-2, "cls_hidden rel err " .. e)
        model:zero_grad()
        local loss = model:loss(batch, fx.labels)
        model:backward()
        local ref_loss = fx.loss:totable()[1]
        e = math.abs(loss - ref_loss) / math.abs(ref_loss)
        report("%s bf16: loss rel err %.3e", name, e)
        assert.is_true(e <= 2e-2, "loss rel err " .. e)
        local worst, worst_name, n = 0, "", 0
        for _, p in ipairs(model:parameters()) do
          local ref = fx["grad." .. p.name]
          if ref and not p.name:find("k_lin.bias", 1, true) then
            local g = rel_err(p.grad, ref)
            n = n + 1
            if g > worst then worst, worst_name = g, p.name end
          end
        end
        report("%s bf16: worst gradient rel err %.3e (%s) over %d tensors", name, worst, worst_name, n)
        assert.is_true(n >= 4, "compared " .. n .. " gradients")
        assert.is_true(worst <= 1e-1, worst_name .. " grad rel err " .. worst)
        model:free()
      end)
    end

    it("five AdamW steps follow the reference trajectory's losses within 2e-2", function()
      local fx = mb.safetensors.load(TINY .. "/cases.safetensors")
      local model = mb.distilbert.load(TINY, { quiet = true, precision = "bf16" })
      local opt = mb.optim.adamw(mb.trainer.optimizer_params(model), {
        lr = 1e-3, weight_decay = 0.01, schedule = mb.optim.schedule.linear { warmup_steps = 0, total_steps = 5 } })
      local batch = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }
      local ref = fx["traj.loss"]:totable()
      local worst = 0
      for k = 1, 5 do
        local loss = mb.trainer.step(model, opt, batch, fx.labels, { train = false })
        worst = math.max(worst, math.abs(loss - ref[k]) / math.abs(ref[k]))
      end
      report("bf16 trajectory: worst loss rel err %.3e over 5 steps (losses %.4f .. %.4f)", worst, ref[1], ref[5])
      assert.is_true(worst <= 2e-2, "trajectory loss rel err " .. worst)
      assert.is_true(ref[5] < ref[1] - 0.05, "the reference loss falls")
      opt:free()
      model:free()
    end)

    -- The bf16 weight copy is converted once per optimizer step: a forward after the
    -- parameters changed (an update in place, the encoder frozen or not) must see them.
    for _, frozen in ipairs { false, true } do
      it("sees the updated weights after a step" .. (frozen and " (encoder frozen)" or ""), function()
        local fx = mb.safetensors.load(TINY .. "/cases.safetensors")
        local batch = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }
        local a = mb.distilbert.load(TINY, { quiet = true, precision = "bf16" })
        a:freeze_encoder(frozen)
        local opt = mb.optim.sgd(mb.trainer.optimizer_params(a), { lr = 0.5 })
        local before = a:forward(batch, { train = false }).logits:clone()
        a:zero_grad()
        a:loss(batch, fx.labels, { train = false })
        a:backward()
        opt:step()
        local after = a:forward(batch, { train = false }).logits:clone()
        -- a second model from the updated parameters, converted from scratch
        local b = mb.distilbert.load(TINY, { quiet = true })
        local pa = a:parameters()
        for i, p in ipairs(b:parameters()) do p.value:copy(pa[i].value) end
        b:to("cpu", { precision = "bf16" })
        local fresh = b:forward(batch, { train = false }).logits
        assert.is_true((after - before):abs():max() > 1e-4, "the step changed nothing")
        assert.are.equal(0, (after - fresh):abs():max())
        opt:free()
        a:free()
        b:free()
      end)
    end
  end)
end)
