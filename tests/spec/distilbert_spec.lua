-- distilbert_spec.lua: mb.distilbert against the PyTorch fixtures (float32
-- forward, loss and gradients), save/reload, freezing, and bad input.
-- Tolerances (issue): forward and loss max abs error <= 1e-4 of the largest
-- reference magnitude, every gradient <= 1e-3 on the same scale; the fixture
-- READMEs suggest 1e-4 for both and the C test (tests/c/test_distilbert.c)
-- checks that; measured errors are ~1e-6.
local mb = require "moonbert"
local support = require "tests.spec.support"
local tmpdir = support.tmppath
local T = mb.tensor

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local HEADS12 = SHARED .. "/fixtures/distilbert-heads12"
local have_shared = io.open(TINY .. "/config.json") ~= nil

local function rel_err(got, ref)
  local scale = ref:abs():max()
  local err = (got - ref):abs():max()
  return scale > 0 and err / scale or err, err
end

local function rmtree(dir)
  os.remove(dir .. "/config.json")
  os.remove(dir .. "/model.safetensors")
  os.remove(dir)
end

local function tiny_config(extra)
  local c = { dim = 16, n_layers = 2, n_heads = 4, hidden_dim = 32, vocab_size = 60,
              max_position_embeddings = 16 }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function small_batch()
  return {
    input_ids = T.from({ { 1, 5, 9, 13, 2, 0 }, { 1, 44, 45, 46, 47, 2 } }, { dtype = "int32" }),
    attention_mask = T.from({ { 1, 1, 1, 1, 1, 0 }, { 1, 1, 1, 1, 1, 1 } }, { dtype = "int32" }),
  }
end

describe("mb.distilbert parity with the PyTorch fixtures", function()
  if not have_shared then
    pending("needs " .. TINY .. " (../shared is absent)")
    return
  end

  for _, fx_dir in ipairs { TINY, HEADS12 } do
    local name = fx_dir:match("[^/]+$")
    describe(name, function()
      local model, fx, batch
      setup(function()
        model = mb.distilbert.load(fx_dir, { quiet = true })
        fx = mb.safetensors.load(fx_dir .. "/cases.safetensors")
        batch = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }
      end)
      teardown(function() model:free() end)

      it("matches hidden states and logits (eval mode)", function()
        local out = model:forward(batch, { train = false, output_hidden_states = true })
        local e = rel_err(out.last_hidden_state, fx.last_hidden_state)
        assert.is_true(e <= 1e-4, "last_hidden_state rel err " .. e)
        assert.are.equal(model:config().n_layers + 1, #out.hidden_states)
        e = rel_err(out.hidden_states[#out.hidden_states], fx.last_hidden_state)
        assert.is_true(e <= 1e-4, "hidden_states[last] rel err " .. e)
        e = rel_err(out.logits, fx.logits)
        assert.is_true(e <= 1e-4, "logits rel err " .. e)
      end)

      it("gives the [CLS] features", function()
        local X = model:features(batch)
        assert.are.same(fx.cls_hidden:shape(), X:shape())
        local e = rel_err(X, fx.cls_hidden)
        assert.is_true(e <= 1e-4, "cls_hidden rel err " .. e)
      end)

      it("matches the loss and every stored gradient", function()
        model:zero_grad()
        local loss, logits, per_example = model:loss(batch, fx.labels)
        local ref = fx.loss[1]
        assert.is_true(math.abs(loss - ref) <= 1e-4 * math.abs(ref), ("loss %.9g vs %.9g"):format(loss, ref))
        local e = rel_err(per_example, fx.per_example_loss)
        assert.is_true(e <= 1e-4, "per-example loss rel err " .. e)
        assert.is_true(rel_err(logits, fx.logits) <= 1e-4)
        model:backward()
        local n_grads, n_norms = 0, 0
        for _, p in ipairs(model:parameters()) do
          local k_bias = p.name:find("k_lin.bias", 1, true)
          local g = fx["grad." .. p.name]
          if g then
            local rel, abs = rel_err(p.grad, g)
            if k_bias then
              assert.is_true(abs <= 1e-8, p.name .. " (analytically 0) abs err " .. abs)
            else
              assert.is_true(rel <= 1e-3, p.name .. " gradient rel err " .. rel)
            end
            n_grads = n_grads + 1
          end
          local gn = fx["grad_norm." .. p.name]
          if gn then
            local norm = math.sqrt((p.grad * p.grad):sum())
            if k_bias then
              assert.is_true(norm <= 1e-7)
            else
              local ref_norm = gn[1]
              assert.is_true(math.abs(norm - ref_norm) <= 1e-3 * ref_norm, p.name .. " grad norm")
            end
            n_norms = n_norms + 1
          end
        end
        assert.is_true(n_grads >= 6 and n_norms >= 24, "grads " .. n_grads .. " norms " .. n_norms)
        -- the padding row of the word embeddings gets no gradient
        local wg = model:parameters()[1].grad
        assert.are.equal(0, wg[1]:abs():sum())
      end)
    end)
  end

  it("loads the F16 fixture as float32 with the config's shapes", function()
    local m = mb.distilbert.load(HEADS12)
    local ps = m:parameters()
    assert.are.equal(24, #ps)
    assert.are.equal("float32", ps[1].value:dtype())
    assert.are.same({ 1000, 768 }, ps[1].value:shape())
    assert.are.equal(8845830, m:num_parameters())
    m:free()
  end)
end)

describe("mb.distilbert end to end", function()
  local has_tok = pcall(require, "moonbert.tokenizer")
  if not (have_shared and has_tok) then
    pending("needs ../shared and mb.tokenizer")
    return
  end
  it("text -> tokenizer -> logits matches the fixture", function()
    local json = require "dkjson"
    local fx, meta = mb.safetensors.load(TINY .. "/cases.safetensors")
    local sentences = json.decode(meta.sentences)
    local tok = mb.tokenizer.load(TINY)
    local b = tok:encode_batch(sentences, { padding = "longest", truncation = true, max_length = 128 })
    assert.are.equal(0, (b.input_ids - fx.input_ids):abs():max())
    local model = mb.distilbert.load(TINY, { quiet = true })
    local out = model:forward(b)
    assert.is_true(rel_err(out.logits, fx.logits) <= 1e-4)
    model:free()
  end)
end)

describe("mb.distilbert model API", function()
  it("creates reproducible random models and names parameters in Hugging Face order", function()
    local a = mb.distilbert.new(tiny_config(), { seed = 7, num_labels = 3 })
    local b = mb.distilbert.new(tiny_config(), { seed = 7, num_labels = 3 })
    local c = mb.distilbert.new(tiny_config(), { seed = 8, num_labels = 3 })
    local la = a:forward(small_batch()).logits
    assert.are.equal(0, (la - b:forward(small_batch()).logits):abs():max())
    assert.is_true((la - c:forward(small_batch()).logits):abs():max() > 0)
    local ps = a:parameters()
    assert.are.equal(4 + 16 * 2 + 4, #ps)
    assert.are.equal("distilbert.embeddings.word_embeddings.weight", ps[1].name)
    assert.are.equal("distilbert.transformer.layer.0.attention.q_lin.weight", ps[5].name)
    assert.are.equal("classifier.bias", ps[#ps].name)
    assert.is_true(ps[6].no_decay)       -- q_lin.bias
    assert.is_false(ps[5].no_decay)      -- q_lin.weight
    assert.is_true(ps[3].no_decay)       -- embeddings LayerNorm weight
    local total = 0
    for _, p in ipairs(ps) do total = total + p.value:numel() end
    assert.are.equal(total, a:num_parameters())
    -- the padding row starts at zero
    assert.are.equal(0, ps[1].value[1]:abs():sum())
    a:free(); b:free(); c:free()
  end)

  it("parameters are views: writing one changes the model", function()
    local m = mb.distilbert.new(tiny_config(), { seed = 1, num_labels = 2 })
    local before = m:forward(small_batch()).logits
    local bias = m:named_parameters()["classifier.bias"].value
    bias:fill(1.5)
    local after = m:forward(small_batch()).logits
    assert.is_true(math.abs((after - before):mean() - (1.5 - 0)) < 1e-5)
    m:free()
    -- a view outlives the model object
    assert.are.equal(1.5, bias[1])
  end)

  it("config() honours id2label and label2id", function()
    local m = mb.distilbert.new(tiny_config(), { id2label = { "neg", "pos" } })
    local cfg = m:config()
    assert.are.equal("neg", cfg.id2label[0])
    assert.are.equal(1, cfg.label2id.pos)
    assert.are.equal(2, cfg.num_labels)
    assert.are.same({ "neg", "pos" }, m:label_names())
    m:free()
  end)

  it("save and reload give identical outputs bit for bit", function()
    local m = mb.distilbert.new(tiny_config(), { seed = 3, id2label = { "a", "b", "c" } })
    local dir = tmpdir("rt")
    m:save(dir)
    local r = mb.distilbert.load(dir)
    local b = small_batch()
    assert.are.equal(0, (m:forward(b).logits - r:forward(b).logits):abs():max())
    assert.are.equal(0, (m:features(b) - r:features(b)):abs():max())
    assert.are.same({ "a", "b", "c" }, r:label_names())
    local st, meta = mb.safetensors.load(dir .. "/model.safetensors")
    assert.are.equal("pt", meta.format)
    assert.is_not_nil(st["distilbert.transformer.layer.1.ffn.lin2.weight"])
    rmtree(dir)
    m:free(); r:free()
  end)

  it("a base checkpoint gets a new head and a warning listing it", function()
    local m = mb.distilbert.new(tiny_config(), { seed = 3 })
    local dir = tmpdir("base")
    m:save(dir)
    -- rewrite the weights as a DistilBertModel would: no head, no prefix
    local st = mb.safetensors.load(dir .. "/model.safetensors")
    local base = {}
    for k, v in pairs(st) do
      if k:match("^distilbert%.") then base[k:sub(#"distilbert." + 1)] = v end
    end
    mb.safetensors.save(dir .. "/model.safetensors", base, { format = "pt" })
    local r = mb.distilbert.load(dir, { num_labels = 6, quiet = true, seed = 5 })
    local w = r:warnings()
    assert.truthy(w:find("newly initialized", 1, true))
    assert.truthy(w:find("'pre_classifier.weight'", 1, true))
    assert.truthy(w:find("'classifier.bias'", 1, true))
    assert.are.equal(6, r:config().num_labels)
    local e = r:named_parameters()["distilbert.transformer.layer.0.ffn.lin1.weight"].value
    local o = m:named_parameters()["distilbert.transformer.layer.0.ffn.lin1.weight"].value
    assert.are.equal(0, (e - o):abs():max())
    rmtree(dir)
    m:free(); r:free()
  end)

  it("freezing the encoder leaves encoder gradients untouched", function()
    local m = mb.distilbert.new(tiny_config(), { seed = 9, num_labels = 3 })
    m:freeze_encoder(true)
    assert.is_true(m:encoder_frozen())
    m:zero_grad()
    m:loss(small_batch(), T.from({ 0, 2 }, { dtype = "int32" }))
    m:backward()
    local head_norm = 0
    for _, p in ipairs(m:parameters()) do
      local s = p.grad:abs():sum()
      if p.encoder then
        assert.are.equal(0, s, p.name)
        assert.is_false(p.trainable)
      else
        head_norm = head_norm + s
      end
    end
    assert.is_true(head_norm > 0)
    assert.is_true(m:num_parameters(true) < m:num_parameters())
    m:free()
  end)

  it("train mode draws dropout from the model's seeded RNG", function()
    local m = mb.distilbert.new(tiny_config(), { seed = 2, num_labels = 2 })
    local labels = { 0, 1 }
    local eval1 = m:loss(small_batch(), labels)
    local eval2 = m:loss(small_batch(), labels)
    assert.are.equal(eval1, eval2)
    local state = m:rng_state()
    local t1 = m:loss(small_batch(), labels, { train = true })
    local t2 = m:loss(small_batch(), labels, { train = true })
    assert.are_not.equal(t1, t2)
    m:set_rng_state(state)
    assert.are.equal(t1, m:loss(small_batch(), labels, { train = true }))
    m:free()
  end)

  it("returns attention weights that sum to one over unmasked keys", function()
    local m = mb.distilbert.new(tiny_config(), { seed = 4 })
    local out = m:forward(small_batch(), { output_attentions = true })
    assert.are.equal(2, #out.attentions)
    local a = out.attentions[1]
    assert.are.same({ 2, 4, 6, 6 }, a:shape())
    local sums = a:sum(-1)
    assert.is_true((sums - 1):abs():max() < 1e-5)
    -- key 6 of sequence 1 is padding: no weight
    assert.are.equal(0, a[1]:select(3, 6):abs():sum())
    m:free()
  end)

  it("accepts any batch size and length up to max_position_embeddings", function()
    local m = mb.distilbert.new(tiny_config(), { seed = 4 })
    for _, shape in ipairs { { 1, 1 }, { 3, 16 }, { 7, 4 } } do
      local ids = T.zeros(shape[1], shape[2], { dtype = "int32" }) + 1
      local out = m:forward({ input_ids = ids })
      assert.are.same({ shape[1], 2 }, out.logits:shape())
    end
    m:free()
  end)
end)

describe("mb.distilbert regression and multi-label losses", function()
  it("regression (num_labels 1) is the mean squared error, with its gradient", function()
    local m = mb.distilbert.new(tiny_config(), { seed = 6, num_labels = 1 })
    assert.are.equal("regression", m:config().problem_type)
    local y = T.from({ 0.5, -1.25 })
    m:zero_grad()
    local loss, logits = m:loss(small_batch(), y)
    local z = logits:reshape(2)
    local want = ((z - y) * (z - y)):mean()
    assert.is_true(math.abs(loss - want) < 1e-6 * math.max(1, want))
    m:backward()
    -- d loss / d classifier.bias = mean of 2 (z - y)
    local gb = m:named_parameters()["classifier.bias"].grad[1]
    assert.is_true(math.abs(gb - (2 * (z - y)):mean()) < 1e-5)
    m:free()
  end)

  it("multi-label uses BCE with logits over float targets", function()
    local m = mb.distilbert.new(tiny_config { problem_type = "multi_label_classification" },
                                { seed = 6, num_labels = 3 })
    local y = T.from({ { 1, 0, 1 }, { 0, 0, 1 } })
    m:zero_grad()
    local loss, z = m:loss(small_batch(), y)
    local p = z:sigmoid()
    local want = -(y * p:log() + (1 - y) * (1 - p):log()):mean()
    assert.is_true(math.abs(loss - want) < 1e-5)
    m:backward()
    local gb = m:named_parameters()["classifier.bias"].grad
    local want_gb = (p - y):sum(1) / 6
    assert.is_true((gb - want_gb):abs():max() < 1e-6)
    m:free()
  end)

  it("fixed sinusoidal positions are sin/cos and never trained", function()
    local m = mb.distilbert.new(tiny_config { sinusoidal_pos_embds = true }, { seed = 6 })
    local pos = m:named_parameters()["distilbert.embeddings.position_embeddings.weight"]
    assert.is_false(pos.trainable)
    assert.is_true(math.abs(pos.value[2][1] - math.sin(1)) < 1e-6)
    assert.is_true(math.abs(pos.value[2][2] - math.cos(1)) < 1e-6)
    m:zero_grad()
    m:loss(small_batch(), { 0, 1 })
    m:backward()
    assert.are.equal(0, pos.grad:abs():sum())
    m:free()
  end)
end)

describe("mb.distilbert errors", function()
  local m
  setup(function() m = mb.distilbert.new(tiny_config(), { seed = 1 }) end)
  teardown(function() m:free() end)

  it("rejects token ids outside the vocabulary", function()
    local ids = T.from({ { 1, 60, 2 } }, { dtype = "int32" })
    assert.has_error(function() m:forward({ input_ids = ids }) end,
      "input_ids[1][2] = 60 is outside the vocabulary (0..59)")
  end)

  it("rejects sequences longer than max_position_embeddings", function()
    local ids = T.zeros(1, 17, { dtype = "int32" })
    local ok, err = pcall(m.forward, m, { input_ids = ids })
    assert.is_false(ok)
    assert.truthy(err:find("sequence length 17 is longer than max_position_embeddings (16)", 1, true))
  end)

  it("rejects bad batches and labels with the argument named", function()
    local ok, err = pcall(function() m:forward({}) end)
    assert.truthy(err:find("bad argument #1 to 'forward' (batch.input_ids is missing)", 1, true), err)
    ok, err = pcall(function() m:forward({ input_ids = T.zeros(2, 3) }) end)
    assert.truthy(err:find("int32 tensor", 1, true), err)
    ok, err = pcall(function() m:loss(small_batch(), { 0 }) end)
    assert.truthy(err:find("2 labels expected for a batch of 2, got 1", 1, true), err)
    ok, err = pcall(function() m:loss(small_batch(), { 0, 7 }) end)
    assert.truthy(err:find("labels[2] = 7 is outside 0..1", 1, true), err)
    assert.is_false(pcall(function() m:backward() end))
  end)

  it("reports a missing config key and a shape that disagrees with the config", function()
    local ok, err = pcall(mb.distilbert.new, { dim = 16, n_heads = 4, hidden_dim = 8, vocab_size = 10,
                                               max_position_embeddings = 8 })
    assert.is_false(ok)
    assert.truthy(err:find("missing key 'n_layers'", 1, true), err)
    ok, err = pcall(mb.distilbert.new, tiny_config { n_heads = 5 })
    assert.truthy(err:find("n_heads (5) does not divide dim (16)", 1, true), err)
    -- a checkpoint saved with hidden_dim 32, loaded with a config that says 24
    local dir = tmpdir("shape")
    local src = mb.distilbert.new(tiny_config(), { seed = 1 })
    src:save(dir)
    src:free()
    local f = assert(io.open(dir .. "/config.json"))
    local text = f:read("a"):gsub('"hidden_dim": 32', '"hidden_dim": 24')
    f:close()
    f = assert(io.open(dir .. "/config.json", "w"))
    f:write(text)
    f:close()
    ok, err = pcall(mb.distilbert.load, dir)
    assert.is_false(ok)
    assert.truthy(err:find("ffn.lin1.weight' has shape [32,16] but config.json needs [24,16]", 1, true), err)
    rmtree(dir)
  end)

  it("names the parameter when the loss is NaN", function()
    local n = mb.distilbert.new(tiny_config(), { seed = 1 })
    n:named_parameters()["distilbert.transformer.layer.1.ffn.lin2.weight"].value:fill(0 / 0)
    local ok, err = pcall(n.loss, n, small_batch(), { 0, 1 })
    assert.is_false(ok)
    assert.truthy(err:find("loss is NaN: parameter 'distilbert.transformer.layer.1.ffn.lin2.weight'", 1, true), err)
    n:free()
  end)

  it("reports a missing checkpoint clearly", function()
    local missing = support.tmppath("nomodel")
    local ok, err = pcall(mb.distilbert.load, missing)
    assert.is_false(ok)
    assert.truthy(err:find(missing .. "/config.json: cannot open", 1, true), err)
  end)
end)

describe("moonbert bench train", function()
  local bin = os.getenv("MOONBERT_BIN")
  if not bin then
    pending("needs MOONBERT_BIN (scripts/run-tests sets it)")
    return
  end
  it("prints throughput figures as JSON (--quick)", function()
    local p = assert(io.popen(bin .. " bench train --quick --threads 1 2>/dev/null"))
    local text = p:read("a")
    p:close()
    local r = require("dkjson").decode(text)
    assert.is_table(r, text)
    local t = r.train
    for _, k in ipairs { "train", "frozen", "inference" } do
      assert.is_true(t[k].sequences_per_s > 0, k)
      assert.is_true(t[k].steps_per_s > 0, k)
      assert.is_true(t[k].gflop_per_s > 0, k)
    end
    assert.is_true(t.peak_rss_mb > 0)
    assert.are.equal(4, t.batch)
  end)
end)
