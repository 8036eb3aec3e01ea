-- bert_spec.lua: the Lua surface of BERT and the DistilBERT token-level heads (mb.bert, mb.auto)
-- against the PyTorch fixtures ../shared/fixtures/bert-tiny, bert-tiny-heads/..., distilbert-tiny-heads/...
-- Tolerances (fixture READMEs): outputs, loss, gradients, traj.* |got - ref| <= 1e-4 * max|ref|;
-- analytically zero gradients atol 1e-7; after5.* atol 1e-4. The C test tests/c/test_bert.c checks
-- every output and gradient; this spec checks the same numbers through the Lua classes (batches with
-- token_type_ids, labels in each task's form, mb.trainer.step for the trajectory), the class
-- choice of mb.auto, and the methods every model shares.
local mb = require "moonbert"
local support = require "tests.spec.support"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/bert-tiny"
local HEADS = SHARED .. "/fixtures/bert-tiny-heads"
local DHEADS = SHARED .. "/fixtures/distilbert-tiny-heads"
local have_shared = io.open(TINY .. "/cases.safetensors") ~= nil
local report, check_close = support.report, support.check_close

local function check_loss(name, got, ref_t)
  local ref = ref_t:totable()[1]
  report("%-58s abs err %.3e (ref %.6f)", name, math.abs(got - ref), ref)
  assert(math.abs(got - ref) <= 1e-4 * math.abs(ref), name .. ": " .. got .. " vs " .. ref)
end

local function batch_of(fx)
  return { input_ids = fx.input_ids, attention_mask = fx.attention_mask, token_type_ids = fx.token_type_ids }
end

describe("mb.auto and mb.bert", function()
  if not have_shared then
    pending("needs " .. TINY .. " (../shared is absent)")
    return
  end

  it("chooses the class from config.json and the task", function()
    assert.are.equal("text-classification", mb.auto.task_of(TINY))
    assert.are.equal("question-answering", mb.auto.task_of(HEADS .. "/question-answering"))
    local cases = {
      { TINY, nil, "moonbert.Bert", "text-classification" },
      { HEADS .. "/token-classification", nil, "moonbert.Bert", "token-classification" },
      { HEADS .. "/masked-lm", nil, "moonbert.Bert", "fill-mask" },
      { HEADS .. "/masked-lm", "question-answering", "moonbert.Bert", "question-answering" },
      { DHEADS .. "/token-classification", nil, "moonbert.DistilBertHeads", "token-classification" },
      { DHEADS .. "/question-answering", nil, "moonbert.DistilBertHeads", "question-answering" },
      { SHARED .. "/fixtures/distilbert-tiny", nil, "moonbert.DistilBert", nil },
    }
    for _, c in ipairs(cases) do
      local m = mb.auto.load(c[1], { task = c[2], quiet = true })
      assert.is_truthy(tostring(m):find(c[3], 1, true), tostring(m))
      if c[4] then assert.are.equal(c[4], m:task()) end
      for _, method in ipairs { "forward", "loss", "backward", "features", "parameters", "freeze_encoder", "save", "to" } do
        assert.are.equal("function", type(m[method]), c[1] .. " lacks " .. method)
      end
      m:free()
    end
    assert.has_error(function() mb.auto.load(TINY, { task = "summarization" }) end)
  end)

  it("bert-tiny: logits, loss and gradients through the Lua class; token types matter", function()
    local fx = mb.safetensors.load(TINY .. "/cases.safetensors")
    local m = mb.auto.load(TINY, { quiet = true })
    local out = m:forward(batch_of(fx))
    check_close("bert-tiny logits", out.logits, fx.logits, 1e-4)
    check_close("bert-tiny pooler_output", out.pooler_output, fx.pooled, 1e-4)
    m:zero_grad()
    local loss, logits, per = m:loss(batch_of(fx), fx.labels)
    check_loss("bert-tiny loss", loss, fx.loss)
    check_close("bert-tiny per_example_loss", per, fx.per_example_loss, 1e-4)
    m:backward()
    for _, p in ipairs(m:parameters()) do
      if p.name:match("key%.bias$") then check_close("grad." .. p.name, p.grad, fx["grad." .. p.name], nil, 1e-7)
      else check_close("grad." .. p.name, p.grad, fx["grad." .. p.name], 1e-4) end
    end
    -- without token_type_ids (all segment A) the logits differ: the types are read
    local no_types = m:forward({ input_ids = fx.input_ids, attention_mask = fx.attention_mask }).logits
    assert.is_true((no_types - fx.logits):abs():max() > 1e-4)
    m:free()
  end)

  it("bert-tiny: the 5-step AdamW trajectory through mb.trainer.step", function()
    local fx = mb.safetensors.load(TINY .. "/cases.safetensors")
    local m = mb.auto.load(TINY, { quiet = true })
    local opt = mb.optim.adamw(mb.trainer.optimizer_params(m), {
      lr = 1e-3, weight_decay = 0.01, schedule = mb.optim.schedule.linear { warmup_steps = 0, total_steps = 5 } })
    local losses, norms = {}, {}
    for k = 1, 5 do
      losses[k], norms[k] = mb.trainer.step(m, opt, batch_of(fx), fx.labels, { max_grad_norm = 1.0, train = false })
    end
    check_close("traj.loss", mb.tensor(losses), fx["traj.loss"], 1e-4)
    check_close("traj.grad_norm", mb.tensor(norms), fx["traj.grad_norm"], 1e-4)
    for _, p in ipairs(m:parameters()) do check_close("after5." .. p.name, p.value, fx["after5." .. p.name], nil, 1e-4) end
    opt:free()
    m:free()
  end)

  it("token classification, question answering and masked LM heads (BERT and DistilBERT)", function()
    local cases = {
      { HEADS .. "/token-classification", "bert" }, { HEADS .. "/question-answering", "bert" },
      { HEADS .. "/masked-lm", "bert" }, { DHEADS .. "/token-classification", "distilbert" },
      { DHEADS .. "/question-answering", "distilbert" },
    }
    for _, c in ipairs(cases) do
      local dir = c[1]
      local fx = mb.safetensors.load(dir .. "/cases.safetensors")
      local m = mb.auto.load(dir, { quiet = true })
      local task = m:task()
      local b = batch_of(fx)
      m:zero_grad()
      if task == "question-answering" then
        local out = m:forward(b)
        check_close(dir .. " start_logits", out.start_logits, fx.start_logits, 1e-4)
        check_close(dir .. " end_logits", out.end_logits, fx.end_logits, 1e-4)
        b.start_positions, b.end_positions = fx.start_positions, fx.end_positions
        local loss = m:loss(b)
        check_loss(dir .. " loss", loss, fx.loss)
      elseif task == "token-classification" then
        check_close(dir .. " logits", m:forward(b).logits, fx.logits, 1e-4)
        local loss, logits, per = m:loss(b, fx.labels)
        check_loss(dir .. " loss", loss, fx.loss)
        assert.are.same({ fx.input_ids:size(1), fx.input_ids:size(2) }, per:shape())
      else
        local loss, logits = m:loss(b, fx.labels)
        check_loss(dir .. " loss", loss, fx.loss)
        check_close(dir .. " masked_logits", logits, fx.masked_logits, 1e-4)
      end
      m:backward()
      local gname = c[2] == "bert" and "bert.encoder.layer.0.intermediate.dense.weight"
                                    or "distilbert.transformer.layer.0.ffn.lin1.weight"
      check_close(dir .. " grad " .. gname, m:named_parameters()[gname].grad, fx["grad." .. gname], 1e-4)
      m:free()
    end
  end)

  it("freeze_encoder trains the head alone; save and load keep the class and labels", function()
    local dir = HEADS .. "/masked-lm" -- a checkpoint of another task: the head is new
    local names = { "O", "B-PER", "I-PER" }
    local m = mb.auto.load(dir, { task = "token-classification", id2label = names, quiet = true })
    assert.is_truthy(m:warnings():find("newly initialized: ['classifier.weight', 'classifier.bias']", 1, true))
    assert.is_truthy(m:warnings():find("'cls.predictions.bias'", 1, true))
    assert.are.same(names, m:label_names())
    local fx = mb.safetensors.load(HEADS .. "/token-classification/cases.safetensors")
    local labels = fx.labels:clone()
    for i = 1, labels:size(1) do for j = 1, labels:size(2) do
      if labels[i][j] > 2 then labels[i][j] = 1 end
    end end
    m:freeze_encoder(true)
    m:zero_grad()
    m:loss(batch_of(fx), labels, { train = true })
    m:backward()
    local ps = m:named_parameters()
    assert.are.equal(0, ps["bert.encoder.layer.1.output.dense.weight"].grad:abs():max())
    assert.is_false(ps["bert.embeddings.word_embeddings.weight"].trainable)
    assert.is_true(ps["classifier.weight"].grad:abs():max() > 0)
    local out = support.tmpdir()
    m:save(out)
    local r = mb.auto.load(out, { quiet = true })
    assert.are.equal("token-classification", r:task())
    assert.are.same(names, r:label_names())
    assert.are.equal("", r:warnings())
    check_close("reloaded logits", r:forward(batch_of(fx)).logits, m:forward(batch_of(fx)).logits, nil, 0)
    assert.has_error(function() m:to("cuda") end)
    m:free(); r:free()
  end)

  it("moonbert bench train_bert --quick reports a training step", function()
    local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
    if not io.open(BIN) then pending("no " .. BIN) return end
    local out, _, code = support.sh(BIN .. " bench train_bert --quick")
    assert.are.equal(0, code)
    local r = require("dkjson").decode(out).train_bert
    assert.are.equal("quick", r.config)
    assert.is_true(r.seconds_per_step > 0 and r.sequences_per_s > 0 and r.gflop_per_s > 0)
  end)

  it("raises lauxlib-style errors for bad batches and labels", function()
    local m = mb.bert.load(TINY, { quiet = true })
    local fx = mb.safetensors.load(TINY .. "/cases.safetensors")
    local ok, err = pcall(m.forward, m, { attention_mask = fx.attention_mask })
    assert.is_false(ok)
    assert.is_truthy(err:find("batch.input_ids is missing", 1, true), err)
    ok, err = pcall(m.loss, m, batch_of(fx), { 1, 2 })
    assert.is_false(ok)
    assert.is_truthy(err:find("4 labels expected", 1, true), err)
    local types = fx.token_type_ids:clone()
    types[1][1] = 2
    ok, err = pcall(m.forward, m, { input_ids = fx.input_ids, token_type_ids = types })
    assert.is_false(ok)
    assert.is_truthy(err:find("token_type_ids[1][1] = 2", 1, true), err)
    m:free()
  end)
end)
