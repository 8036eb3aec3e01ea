-- mlm_spec.lua: DistilBertForMaskedLM against the PyTorch reference ../shared/fixtures/distilbert-mlm-tiny
-- (HF head: vocab_transform, GELU, vocab_layer_norm, vocab_projector tied to the word embeddings).
-- Tolerances (fixture README): masked_logits, loss, grads, traj.* |got - ref| <= 1e-4 * max|ref| per
-- tensor; grad.*k_lin.bias (analytically 0) atol 1e-9; after3.* atol 1e-4. MOONBERT_VERBOSE=1 prints
-- the measured errors. Also: save/load in HF's format (no vocab_projector.weight), and a
-- classification model loaded from the masked-LM checkpoint takes the encoder and drops the head.
local mb = require "moonbert"
local support = require "tests.spec.support"
local tmpdir = support.tmpdir

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local DIR = SHARED .. "/fixtures/distilbert-mlm-tiny"
local have_shared = io.open(DIR .. "/cases.safetensors") ~= nil
local report, check_close = support.report, support.check_close

describe("masked-LM model (distilbert-mlm-tiny parity)", function()
  if not have_shared then
    pending("needs " .. DIR .. " (../shared is absent)")
    return
  end
  local fx = mb.safetensors.load(DIR .. "/cases.safetensors")
  local batch = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }

  it("lists the 41 HF tensors once (no vocab_projector.weight), head after the encoder", function()
    local m = mb.distilbert.load_masked_lm(DIR, { quiet = true })
    local ps = m:parameters()
    assert.are.equal(41, #ps)
    assert.are.equal("distilbert.embeddings.word_embeddings.weight", ps[1].name)
    assert.are.equal("vocab_transform.weight", ps[37].name)
    assert.are.equal("vocab_projector.bias", ps[41].name)
    for _, p in ipairs(ps) do assert.are_not.equal("vocab_projector.weight", p.name) end
    assert.are.equal(2096506, m:num_parameters())
    assert.are.equal("", m:warnings())
  end)

  it("matches masked_logits and the loss over the 12 labelled positions", function()
    local m = mb.distilbert.load_masked_lm(DIR, { quiet = true })
    local loss, n, logits = m:loss(batch, fx.labels, { logits = true })
    assert.are.equal(12, n)
    check_close("masked_logits", logits, fx.masked_logits, 1e-4)
    local ref = fx.loss:totable()[1]
    report("%-62s abs err %.3e (ref %.6f)", "loss", math.abs(loss - ref), ref)
    assert.is_true(math.abs(loss - ref) <= 1e-4 * math.abs(ref))
    -- forward at every position gives the same rows at the masked positions
    local all = m:forward(batch)
    local pos = fx.masked_positions:totable()
    local T = fx.input_ids:size(2)
    local flat = {}
    for i, bt in ipairs(pos) do flat[i] = bt[1] * T + bt[2] end
    local sel = m:forward(batch, { positions = flat })
    check_close("forward(positions) vs loss logits", sel, logits, 0, 1e-5)
    for i, bt in ipairs(pos) do
      check_close("forward(all) row " .. i, all[bt[1] + 1][bt[2] + 1], logits[i], 0, 1e-5)
    end
  end)

  it("matches every gradient (tied matrix: lookup + projector parts, [PAD] row included)", function()
    local m = mb.distilbert.load_masked_lm(DIR, { quiet = true })
    m:zero_grad()
    m:loss(batch, fx.labels, { train = false })
    m:backward()
    local n = 0
    for _, p in ipairs(m:parameters()) do
      local ref = fx["grad." .. p.name]
      assert(ref, "fixture has no grad." .. p.name)
      if p.name:match("k_lin%.bias$") then check_close("grad." .. p.name, p.grad, ref, nil, 1e-9)
      else check_close("grad." .. p.name, p.grad, ref, 1e-4) end
      n = n + 1
    end
    assert.are.equal(41, n)
    -- row 0 ([PAD]) gets the projector part only: non-zero
    local row0 = m:named_parameters()["distilbert.embeddings.word_embeddings.weight"].grad[1]
    assert.is_true(row0:abs():max() > 0)
  end)

  it("follows the 3-step AdamW trajectory (clip 1.0, lr 1e-3 linear to 0, wd 0.01)", function()
    local m = mb.distilbert.load_masked_lm(DIR, { quiet = true })
    local opt = mb.optim.adamw(mb.trainer.optimizer_params(m), {
      lr = 1e-3, weight_decay = 0.01, schedule = mb.optim.schedule.linear { warmup_steps = 0, total_steps = 3 } })
    local losses, norms, lrs = {}, {}, {}
    for k = 1, 3 do
      losses[k], norms[k], lrs[k] = mb.trainer.step(m, opt, batch, fx.labels, { max_grad_norm = 1.0, train = false })
    end
    opt:free()
    check_close("traj.loss", mb.tensor(losses), fx["traj.loss"], 1e-4)
    check_close("traj.grad_norm", mb.tensor(norms), fx["traj.grad_norm"], 1e-4)
    check_close("traj.lr", mb.tensor(lrs), fx["traj.lr"], 1e-6)
    assert.is_true(norms[1] > 1.0, "the clip must act")
    local worst = 0
    for _, p in ipairs(m:parameters()) do
      worst = math.max(worst, check_close("after3." .. p.name, p.value, fx["after3." .. p.name], nil, 1e-4))
    end
    report("after3.* worst abs err %.3e", worst)
    -- weights moved (so the check can fail): compare with the start
    local m0 = mb.distilbert.load_masked_lm(DIR, { quiet = true })
    local moved = (m:parameters()[1].value - m0:parameters()[1].value):abs():max()
    assert.is_true(moved > 1e-4, "word embeddings moved by " .. moved)
  end)

  it("saves HF's format (no vocab_projector.weight) and reloads bit-identically", function()
    local m = mb.distilbert.load_masked_lm(DIR, { quiet = true })
    local d = tmpdir()
    m:save(d)
    local st = mb.safetensors.load(d .. "/model.safetensors")
    local names = 0
    for k in pairs(st) do names = names + 1 end
    assert.are.equal(41, names)
    assert.is_nil(st["vocab_projector.weight"])
    assert.truthy(st["vocab_projector.bias"])
    local cfg = io.open(d .. "/config.json"):read("a")
    assert.truthy(cfg:find("DistilBertForMaskedLM", 1, true))
    local m2 = mb.distilbert.load_masked_lm(d, { quiet = true })
    local p2 = m2:named_parameters()
    for _, p in ipairs(m:parameters()) do
      assert.are.equal(0, (p.value - p2[p.name].value):abs():max(), p.name)
    end
    local l1 = m:loss(batch, fx.labels)
    local l2 = m2:loss(batch, fx.labels)
    assert.are.equal(l1, l2)
    os.execute("rm -rf '" .. d .. "'")
  end)

  it("a classification model loaded from it takes the encoder and drops the head", function()
    local clf = mb.distilbert.load(DIR, { num_labels = 6, quiet = true })
    assert.truthy(clf:warnings():find("vocab_transform", 1, true))
    local mlm = mb.distilbert.load_masked_lm(DIR, { quiet = true })
    local enc = mlm:named_parameters()
    local n = 0
    for _, p in ipairs(clf:parameters()) do
      if p.encoder then
        assert.are.equal(0, (p.value - enc[p.name].value):abs():max(), p.name)
        n = n + 1
      else
        assert.is_nil(enc[p.name])
      end
    end
    assert.are.equal(36, n)
    -- same encoder: same last hidden state
    local h1 = clf:forward(batch).last_hidden_state
    local d = tmpdir()
    mlm:save(d)
    local clf2 = mb.distilbert.load(d, { num_labels = 6, quiet = true })
    assert.are.equal(0, (clf2:forward(batch).last_hidden_state - h1):abs():max())
    os.execute("rm -rf '" .. d .. "'")
  end)

  it("a new model has HF's init and a base/classification checkpoint gets a new head with a warning", function()
    local m = mb.distilbert.new_masked_lm(DIR, { seed = 7 })
    local p = m:named_parameters()
    assert.are.equal(0, p["distilbert.embeddings.word_embeddings.weight"].value[1]:abs():max())
    assert.are.equal(1, p["vocab_layer_norm.weight"].value:min())
    assert.are.equal(0, p["vocab_projector.bias"].value:abs():max())
    local w = p["vocab_transform.weight"].value
    local sd = math.sqrt((w * w):mean())
    assert.is_true(math.abs(sd - 0.02) < 0.002, "vocab_transform std " .. sd)
    local clf = mb.distilbert.load(DIR, { num_labels = 3, quiet = true })
    local d = tmpdir()
    clf:save(d)
    local m2 = mb.distilbert.load_masked_lm(d, { quiet = true })
    assert.truthy(m2:warnings():find("newly initialized", 1, true))
    os.execute("rm -rf '" .. d .. "'")
  end)

  it("raises errors a user can act on", function()
    assert.has_error(function() mb.distilbert.load_masked_lm(support.tmppath("nodir")) end)
    local m = mb.distilbert.load_masked_lm(DIR, { quiet = true })
    local none = mb.tensor.full({ 4, 36 }, -100, { dtype = "int32" })
    local ok, err = pcall(m.loss, m, batch, none)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("-100", 1, true))
    assert.has_error(function() m:backward() end)
    ok, err = pcall(m.forward, m, batch, { positions = { 1000 } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("outside", 1, true))
    -- a head tensor of the wrong shape or dtype names the tensor and what was expected
    local d = tmpdir()
    m:save(d)
    local st = mb.safetensors.load(d .. "/model.safetensors")
    local dim = st["vocab_transform.bias"]:shape()[1]
    st["vocab_transform.bias"] = mb.tensor.zeros({ dim + 1 })
    mb.safetensors.save(d .. "/model.safetensors", st)
    ok, err = pcall(mb.distilbert.load_masked_lm, d, { quiet = true })
    assert.is_false(ok)
    assert.truthy(tostring(err):find(string.format("'vocab_transform.bias' has shape [%d] but config.json needs [%d]",
                                                   dim + 1, dim), 1, true), err)
    st["vocab_transform.bias"] = mb.tensor.zeros({ dim }, { dtype = "int32" })
    mb.safetensors.save(d .. "/model.safetensors", st)
    ok, err = pcall(mb.distilbert.load_masked_lm, d, { quiet = true })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("'vocab_transform.bias' has dtype I32; F32, F16 or BF16 expected", 1, true), err)
    os.execute("rm -rf '" .. d .. "'")
  end)
end)
