-- trainer_spec.lua: mb.trainer.fit / predict / evaluate on a tiny random DistilBERT (dim 16)
-- (one layer) and 200 emotion training texts: bit-exact resume after a run killed at the end of epoch 1,
-- store logging, a NaN loss stopping the run with the step named, eval metrics against
-- mb.metrics, predict's per-example losses against model:loss, progress output.
-- (Fixture parity of the optimizer steps is tests/spec/trajectory_spec.lua.)
local mb = require "moonbert"
local support = require "tests.spec.support"
local tmpdir = support.tmppath

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local EMOTION = SHARED .. "/data/emotion"
local have_shared = io.open(TINY .. "/vocab.txt") ~= nil and io.open(EMOTION .. "/train.txt") ~= nil

local CONFIG = { dim = 16, n_layers = 1, n_heads = 2, hidden_dim = 32, vocab_size = 30522,
                 max_position_embeddings = 64 }

local function rmtree(dir)
  local lfs = require "lfs"
  if lfs.attributes(dir, "mode") ~= "directory" then os.remove(dir) return end
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." then rmtree(dir .. "/" .. name) end
  end
  lfs.rmdir(dir)
end

local function new_model(seed)
  return mb.distilbert.new(CONFIG, { seed = seed or 7, id2label = mb.data.EMOTION_LABELS })
end

-- a stream that keeps what is written (progress output)
local function capture()
  local s = { text = {} }
  function s:write(...) for _, v in ipairs { ... } do self.text[#self.text + 1] = tostring(v) end return self end
  function s:flush() end
  function s:get() return table.concat(self.text) end
  return s
end

-- every parameter element compared with ==; returns the number of differing elements
local function count_differences(ma, mb_)
  local a = ma:parameter_block().params:totable()
  local b = mb_:parameter_block().params:totable()
  assert.are.equal(#a, #b)
  local diff = 0
  for i = 1, #a do if a[i] ~= b[i] then diff = diff + 1 end end
  return diff, #a
end

describe("mb.trainer", function()
  if not have_shared then
    pending("needs " .. TINY .. " and " .. EMOTION .. " (../shared is absent)")
    return
  end

  local small = support.emotion_fit(TINY, EMOTION)
  local tok, train, val
  setup(function()
    small.load()
    tok, train, val = small.tok, small.train, small.val
  end)
  local fit = small.fit

  describe("fit", function()
    local dirs, db = {}, nil
    local model_a, res_a
    teardown(function()
      for _, d in ipairs(dirs) do rmtree(d) end
      if db then for _, s in ipairs { "", "-wal", "-shm", "-reserve" } do os.remove(db .. s) end end
    end)

    it("logs train and eval series, the confusion matrix and predictions to a store run", function()
      db = tmpdir("trainer.db")
      dirs[1] = tmpdir("trainer_a")
      local store <close> = mb.store.open(db)
      local run = store:start_run { experiment = "trainer-spec", git = false }
      local out = capture()
      model_a = new_model()
      res_a = fit(model_a, { checkpoint_dir = dirs[1], run = run, log_every = 3, progress = "log",
                             progress_stream = out })
      run:finish()
      assert.are.equal(8, res_a.steps) -- 200 / 50 = 4 steps per epoch
      assert.is_false(res_a.stopped)
      assert.are.equal(2, #res_a.history)
      assert.is_true(res_a.train_tokens_per_s > 0)

      -- train/loss at a fixed interval across epochs: steps 3 and 6
      local loss = store:metrics(run.id, "train/loss")
      local steps = {}
      for i, m in ipairs(loss) do steps[i] = m.step end
      assert.are.same({ 3, 6 }, steps)
      assert.are.equal(2, #store:metrics(run.id, "train/lr"))
      assert.are.equal(2, #store:metrics(run.id, "train/grad_norm"))
      -- lr decays linearly from 1e-3 over 8 steps: step 3 used factor 1 - 2/8
      assert.is_true(math.abs(store:metrics(run.id, "train/lr")[1].value - 1e-3 * 6 / 8) < 1e-15)
      for _, key in ipairs { "eval/loss", "eval/accuracy", "eval/f1_weighted" } do
        local series = store:metrics(run.id, key)
        assert.are.equal(2, #series, key)
        assert.are.equal(4, series[1].step)
        assert.are.equal(1, series[1].epoch)
        assert.are.equal("validation", series[1].split)
        assert.are.equal(2, series[2].epoch)
      end
      local acc = store:metrics(run.id, "eval/accuracy")
      assert.are.equal(res_a.history[2].eval_accuracy, acc[2].value)
      local cms = store:confusion(run.id, "validation")
      assert.are.equal(2, #cms)
      local total = 0
      for _, row in ipairs(cms[2].matrix) do for _, v in ipairs(row) do total = total + v end end
      assert.are.equal(#val, total)
      assert.are.equal(#val, #store:predictions(run.id, "validation"))

      -- plain progress: a line every 3 steps and at each epoch end, and the eval lines
      local text = out:get()
      assert.is_truthy(text:find("[train] epoch 1/2 step 3/8 loss", 1, true))
      assert.is_truthy(text:find("[train] epoch 2/2 step 8/8 loss", 1, true))
      assert.is_falsy(text:find("step 2/8", 1, true))
      assert.is_truthy(text:find("[eval] epoch 2 step 8 validation loss", 1, true))
      assert.is_falsy(text:find("\r", 1, true))
    end)

    it("resumes a run killed after epoch 1 to the same parameters, bit for bit", function()
      assert.is_not_nil(model_a, "needs the uninterrupted run of the previous test")
      dirs[2] = tmpdir("trainer_b")
      -- the "kill": the callback raises once the epoch-1 checkpoint is written
      local events = {}
      local ok, err = pcall(fit, new_model(), { checkpoint_dir = dirs[2], run = function(event, t)
        events[#events + 1] = event
        if event == "checkpoint" and t.epoch == 1 then error("simulated kill") end
      end })
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("simulated kill", 1, true))
      local seq, n = table.concat(events, " "), 1
      while n > 0 do seq, n = seq:gsub("predictions predictions", "predictions") end
      n = 1 -- a short run logs every step: the epoch's logs read as one
      while n > 0 do seq, n = seq:gsub("log log", "log") end
      local tail = seq:match("log [%a ]+$")
      assert.are.equal("log predictions eval epoch checkpoint", tail)

      -- a fresh process would build a fresh model: a different init seed proves the weights are loaded
      local model_b = new_model(999)
      local diff0 = count_differences(model_a, model_b)
      assert.is_true(diff0 > 0)
      local res_b = fit(model_b, { checkpoint_dir = dirs[2], resume = true })
      assert.are.equal(8, res_b.steps)
      local diff, n = count_differences(model_a, model_b)
      assert.are.equal(0, diff, string.format("%d of %d parameters differ after resume", diff, n))
      -- the history carries over and the epoch-2 metrics are identical
      assert.are.equal(2, #res_b.history)
      for _, k in ipairs { "train_loss", "eval_loss", "eval_accuracy", "eval_f1_weighted" } do
        assert.are.equal(res_a.history[2][k], res_b.history[2][k], k)
        assert.are.equal(res_a.history[1][k], res_b.history[1][k], k)
      end
    end)

    it("stop_after_epoch stops with a checkpoint; resuming it equals the uninterrupted run too", function()
      dirs[3] = tmpdir("trainer_c")
      local model_c = new_model()
      local res = fit(model_c, { checkpoint_dir = dirs[3], stop_after_epoch = 1 })
      assert.is_true(res.stopped)
      assert.are.equal(4, res.steps)
      assert.is_true(count_differences(model_a, model_c) > 0)
      -- resuming with other settings is refused with the reason
      local ok, err = pcall(fit, new_model(), { checkpoint_dir = dirs[3], resume = true, epochs = 3 })
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("total_steps", 1, true), tostring(err))
      -- resume from the folder itself, into the same model object
      fit(model_c, { resume = dirs[3] .. "/checkpoint-4" })
      assert.are.equal(0, (count_differences(model_a, model_c)))
    end)
  end)

  it("stops on a NaN loss with an error naming the step", function()
    local model = new_model()
    local ok, err = pcall(fit, model, { log_every = 1, epochs = 1, run = function(event, t)
      -- poison the weights after step 2: step 3 must fail
      if event == "log" and t.step == 2 then
        model:named_parameters()["classifier.weight"].value:fill(0 / 0)
      end
    end })
    assert.is_false(ok)
    err = tostring(err)
    assert.is_truthy(err:find("step 3 (epoch 1, batch 3 of 4)", 1, true), err)
    assert.is_truthy(err:lower():find("nan", 1, true), err)
  end)

  it("rejects bad arguments with the field named", function()
    assert.has_error(function() mb.trainer.fit { tokenizer = tok, train = train } end,
      "bad argument #1 to 'fit' (field 'model' must be an mb.distilbert model, got nil)")
    assert.has_error(function() mb.trainer.fit { model = new_model(), tokenizer = tok, train = train, epochs = 0 } end,
      "bad argument #1 to 'fit' (field 'epochs' must be an integer >= 1, got 0)")
    assert.has_error(function() mb.trainer.fit { model = new_model(), tokenizer = tok, train = train, progress = "x" } end,
      "bad argument #1 to 'fit' (field 'progress' must be nil, \"bar\", \"log\" or false, got x)")
  end)

  it("draws a progress bar with \\r when asked, and evaluates every N steps with eval_every", function()
    local out = capture()
    local evals = {}
    fit(new_model(), { epochs = 1, progress = "bar", progress_stream = out, eval_every = 2,
                       run = function(event, t) if event == "eval" then evals[#evals + 1] = t end end })
    local text = out:get()
    assert.is_truthy(text:find("\repoch 1/1 [", 1, true))
    assert.is_truthy(text:find("4/4 loss %d%.%d+ %d+ tok/s ETA 00:00"), text)
    -- step 2 (mid-epoch, fractional epoch) and step 4 (the epoch end, once)
    assert.are.equal(2, #evals)
    assert.are.equal(2, evals[1].step)
    assert.are.equal(0.5, evals[1].epoch)
    assert.is_false(evals[1].epoch_end)
    assert.are.equal(4, evals[2].step)
    assert.is_true(evals[2].epoch_end)
  end)

  describe("predict and evaluate", function()
    local model, p
    setup(function()
      model = new_model(3)
      p = mb.trainer.predict(model, val, { tokenizer = tok, batch_size = 16 })
    end)

    it("returns one prediction, probability row and loss per example, in split order", function()
      assert.are.equal(#val, #p.predicted)
      assert.are.equal(#val, #p.loss)
      assert.are.equal(#val, #p.probs)
      for i = 1, #val do
        assert.are.equal(val.label[i], p.labels[i])
        local s, best = 0, 1
        for c, q in ipairs(p.probs[i]) do
          s = s + q
          if q > p.probs[i][best] then best = c end
        end
        assert.is_true(math.abs(s - 1) < 1e-5)
        assert.are.equal(best - 1, p.predicted[i])
        -- cross-entropy is -log of the true label's probability
        assert.is_true(math.abs(p.loss[i] + math.log(p.probs[i][p.labels[i] + 1])) < 1e-4)
      end
    end)

    it("computes accuracy and weighted F1 as mb.metrics does on the predictions", function()
      -- (a tiny random model predicts one class; the confusion-matrix reduction is checked on
      -- varied predictions in the next test)
      assert.is_true(math.abs(p.accuracy - mb.metrics.accuracy(p.labels, p.predicted)) < 1e-12)
      local f1 = mb.metrics.f1(p.labels, p.predicted, { average = "weighted", zero_division = 0 })
      assert.is_true(math.abs(p.f1_weighted - f1) < 1e-12, p.f1_weighted .. " vs " .. f1)
      local s = 0
      for _, l in ipairs(p.loss) do s = s + l end
      assert.is_true(math.abs(p.loss_mean - s / #p.loss) < 1e-9)
      -- evaluate: the same metrics, rows only through on_batch
      local seen = 0
      local m = mb.trainer.evaluate(model, val, { tokenizer = tok, batch_size = 16, on_batch = function(rows)
        seen = seen + #rows
      end })
      assert.are.equal(#val, seen)
      assert.are.equal(p.accuracy, m.accuracy)
      assert.are.equal(p.f1_weighted, m.f1_weighted)
      assert.is_nil(m.predicted)
    end)

    it("reduces a confusion matrix to mb.metrics' accuracy and weighted F1 on varied predictions", function()
      -- 300 random pairs over 6 labels; label 4 never true, label 5 never predicted
      local y, yp = {}, {}
      local state = 12345
      local function rnd(k) state = (state * 1103515245 + 12345) % 2147483648 return state % k end
      local cm = {}
      for i = 1, 6 do cm[i] = { 0, 0, 0, 0, 0, 0 } end
      for i = 1, 300 do
        local t = rnd(6)
        if t == 4 then t = 0 end
        local q = rnd(3) == 0 and t or rnd(6)
        if q == 5 then q = 1 end
        y[i], yp[i] = t, q
        cm[t + 1][q + 1] = cm[t + 1][q + 1] + 1
      end
      local m = mb.trainer.confusion_metrics(cm)
      assert.are.equal(300, m.n)
      assert.is_true(math.abs(m.accuracy - mb.metrics.accuracy(y, yp)) < 1e-12)
      local f1 = mb.metrics.f1(y, yp, { average = "weighted", zero_division = 0 })
      assert.is_true(math.abs(m.f1_weighted - f1) < 1e-12, m.f1_weighted .. " vs " .. f1)
      assert.is_true(m.f1_weighted > 0.2 and m.f1_weighted < 0.9)
    end)

    it("gives per-example losses equal to model:loss on the same rows", function()
      local rows = { 1, 2, 3, 4, 5, 6, 7, 8 }
      local texts, labels = {}, {}
      for j, i in ipairs(rows) do texts[j], labels[j] = val.text[i], val.label[i] end
      local batch = tok:encode_batch(texts, { padding = "longest", truncation = true })
      local mean, _, per = model:loss(batch, labels, { train = false })
      per = per:totable()
      local s = 0
      for j, i in ipairs(rows) do
        -- batches pad to different widths; masked positions change the sums only by rounding
        assert.is_true(math.abs(p.loss[i] - per[j]) <= 1e-5 * math.max(1, per[j]), i .. ": " .. p.loss[i] .. " vs " .. per[j])
        s = s + per[j]
      end
      assert.is_true(math.abs(mean - s / #rows) < 1e-5)
    end)
  end)
end)
