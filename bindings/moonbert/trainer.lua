-- moonbert.trainer (mb.trainer): the one training loop, for sequence classification and masked-LM
-- pretraining, with the semantics of Hugging Face's Trainer (AdamW, linear decay, gradient
-- clipping, evaluation per epoch or every N steps, checkpoints, resume, preemption).
--
--   local res = mb.trainer.fit{
--     model = model, tokenizer = tok, train = data.train, eval = data.validation,
--     objective = "classification", -- or "masked_lm" (an mb.mlm model; see Objectives below)
--     epochs = 2, batch_size = 64, lr = 2e-5, weight_decay = 0.01,  -- the notebook's Trainer run
--     max_steps = nil,         -- N: a run of N steps (over as many epochs as that takes, the last
--                              -- cut short); evaluation every eval_every steps and at the end,
--                              -- checkpoints every save_steps steps; no per-epoch ones
--     warmup = 0,              -- steps (integer >= 1) or a ratio of all steps (0 <= x < 1, rounded up)
--     max_grad_norm = 1.0,     -- false/0: no clipping (the norm is still measured and logged)
--     seed = 42,               -- dropout RNG, the shuffling of every epoch (and the masking)
--     bucket = true,           -- length-bucketed batches (less padding)
--     eval_every = "epoch",    -- or N: also evaluate every N steps
--     eval_on_start = false,   -- true: evaluate once before the first step (step 0)
--     checkpoint_dir = "results/runs/7/checkpoints",  -- checkpoint-<step>/ after each epoch
--     save_steps = nil,        -- N: also a checkpoint every N steps, mid-epoch included
--     save_total_limit = nil,  -- K: keep the newest K checkpoints
--     resume = true,           -- or a checkpoint folder: continue a killed run, bit for bit
--     settings = nil,          -- {name = value}: more settings a resume must share (an experiment's)
--     handle_signals = true,   -- SIGTERM/SIGINT: finish the step, checkpoint, stop (see below)
--     exit_on_signal = true,   -- ... then exit with 128 + the signal (143, 130); false: return
--     run = run,               -- a results-store run (metrics are logged) or function(event, t)
--     callback = nil,          -- function(event, t): every event as well (e.g. a script's own
--                              -- evaluation on "epoch"), after the run's logging
--     log_every = nil,         -- steps between train/loss logs and plain progress lines; default
--                              -- total_steps // 20 (at least 20 points, every step for short runs)
--     progress = nil,          -- nil: a bar on a terminal, else a line every log_every steps;
--                              -- "bar" | "log" | false (moonbert.progress)
--     stop_after_epoch = nil,  -- stop (checkpoint written) after this epoch; res.stopped = true
--     device = nil,            -- "cuda" / "cpu": model:to(device, {precision = precision}) first;
--                              -- nil: where the model is (every step runs where its parameters live)
--     -- also: eval_batch_size (batch_size), eval_split_name ("validation"), max_length (the
--     -- tokenizer's), betas, eps (AdamW), progress_stream (io.stderr), log_predictions (true:
--     -- a store run gets the eval predictions of each epoch, the last epoch's kept),
--     -- mlm_probability (0.15, masked_lm)
--   }
--   res.history[e] = {epoch=, step=, train_loss=, eval_loss=, eval_accuracy=, eval_f1_weighted=,
--                     seconds=}
--   res.steps, res.seconds, res.train_tokens_per_s, res.stopped, res.pruned ({rung=, step=, epoch=}
--   when a sweep's pruner stopped the run after an evaluation, moonbert.asha; the run is then
--   marked pruned: a script should stop, e.g. `if res.pruned then return end`)
--
-- train: an mb.data split, or any table with split's batches{tokenizer=, batch_size=, shuffle=,
-- seed=, epoch=, bucket=, max_length=} (a plan: #plan batches, plan:get(k) an encoded batch, the
-- same for the same (seed, epoch)) and hash() (what a resume checks it trains on).
--
-- Objectives. "classification": the batches carry labels; eval loss, accuracy, weighted F1 and the
-- confusion matrix; store names train/loss, eval/loss, eval/accuracy, eval/f1_weighted.
-- "masked_lm": each train batch is masked by mb.mlm's collator (seeded with seed; its RNG state is
-- checkpointed; a batch that draws no mask is skipped, the step still counted); eval is a split or
-- {text = {...}}, masked once with seed + 7919 so that every evaluation scores the same tokens;
-- eval loss over the masked tokens and masked-token accuracy; store names train/mlm_loss,
-- eval/mlm_loss, eval/masked_accuracy.
--
--   local p = mb.trainer.predict(model, split, {tokenizer=tok, batch_size=64,
--                                               on_batch=function(rows) end})
--   p.predicted[i]  0-based label id for split row i      p.probs[i]  {C probabilities}
--   p.loss[i]       per-example cross-entropy             p.labels[i] the true id
--   p.accuracy, p.f1_weighted, p.loss_mean, p.confusion ({C rows of C counts}), p.n
--   mb.trainer.evaluate(model, split, opts) -> the same metrics without the per-example lists
--     (memory bounded by one batch: every batch is reduced to counts; rows go to on_batch only)
--   mb.trainer.step(model, opt, batch, labels, {lr=, max_grad_norm=, train=true, step=})
--     -> loss, grad_norm (before clipping), lr: one optimizer step (zero_grad, loss, backward,
--     clip, AdamW), each a single C call; fit and the parity tests share it.
--   mb.trainer.optimizer_params(model) -> the list mb.optim takes (HF's decay groups, frozen skipped)
--
-- on_batch rows: {index= (1-based split position), label=, predicted=, loss=, probs={...}}
-- (run:log_predictions takes them as they are).
--
-- Callback events (run = function(event, t)): "log" {step, epoch, loss, lr, grad_norm,
-- tokens_per_s}, "eval" {step, epoch, split, loss, accuracy, f1_weighted, confusion, labels, n},
-- "predictions" {split, epoch, rows}, "epoch" (the history entry), "checkpoint" {epoch, step,
-- path}, "interrupted" {signal, step, path}, "done" (the result). An error raised by the
-- callback stops the run (checkpoints already written stay).
--
-- Store logging (run has log_metric): train/loss (mean over the last log_every steps, logged at
-- steps log_every, 2*log_every, ...: one evenly spaced series; the window restarts each epoch),
-- train/lr, train/grad_norm with step and fractional epoch; eval/loss, eval/accuracy,
-- eval/f1_weighted with step, epoch and split; the eval confusion matrix per epoch; the eval
-- predictions (each epoch replaces the last); run:heartbeat() every ~10 s.
--
-- Checkpoints (moonbert.checkpoint, save_training/load_training): checkpoint_dir/checkpoint-<step>/
-- holds config.json + model.safetensors (model:save), optimizer.safetensors (moments and step
-- count), trainer_state.json (epoch, batches done in it, step, model RNG state, the objective's
-- state, the epoch's loss sum and the logging window as exact hex floats, settings, history) and
-- manifest.sha256; each is written to a temporary folder, fsynced and renamed. resume = true takes
-- the newest checkpoint whose manifest verifies, warning about each damaged one it skips. A data
-- order is a function of (seed, epoch), so a mid-epoch resume replays the epoch's batch list from
-- the next batch: same batches, dropout masks (the RNG state), masks (the collator's state) and
-- learning rates (the optimizer's step count), and the same final parameters, bit for bit.
--
-- Preemption: with handle_signals, the first SIGTERM or SIGINT lets the current step finish,
-- writes a checkpoint (when checkpoint_dir is set), marks a store run interrupted (run:interrupt
-- when the store has it, else run:fail with the message), emits "interrupted" {signal, step,
-- path} and exits with status 143 / 130 (exit_on_signal = false: returns with
-- res.interrupted = "SIGTERM" and res.exit_code). A second signal ends the process at once.
-- The previous handlers are restored when fit returns.
--
-- A resume first removes the store rows the killed run logged after its checkpoint
-- (run:truncate_after), so the resumed run's rows are the uninterrupted run's.
--
-- Data parallel: under mpirun/srun (moonbert.dist) batch_size is the global batch, each rank
-- trains on its contiguous share of every batch, gradients are summed across ranks before
-- clipping, rank 0 alone logs and writes checkpoints (docs/distributed.md); check_every = N: steps
-- between the ranks' weight checks (default 50).
--
-- Limits: classification is single-label; no gradient accumulation.
local optim = require "moonbert.optim"
local ckpt = require "moonbert.checkpoint"
local check = require "moonbert.check"
local progress_mod = require "moonbert.progress"

local M = {}

M.defaults = {
  epochs = 2, batch_size = 64, lr = 2e-5, weight_decay = 0.01, warmup = 0, max_grad_norm = 1.0,
  seed = 42, bucket = true, eval_every = "epoch", log_every = nil, eval_batch_size = nil,
}

local STATE_FILE = "trainer_state.json"
local HEARTBEAT_S = 10

local function now() return require("moonbert.store").now() end


local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

-- ---- one step ------------------------------------------------------------------------------

--- The parameter list for mb.optim: Hugging Face's groups (no decay for biases and LayerNorm
-- weights, as the model marks them) and the model's frozen tensors skipped.
function M.optimizer_params(model)
  local list = {}
  for i, p in ipairs(model:parameters()) do
    list[i] = { name = p.name, value = p.value, grad = p.grad, weight_decay = not p.no_decay,
                frozen = p.trainable == false }
  end
  return list
end

local function step_where(o)
  local where = string.format("step %d", o.step)
  if o.epoch then
    where = where .. string.format(" (epoch %d%s)", o.epoch,
      o.batch and string.format(", batch %d of %d", o.batch, o.batches or 0) or "")
  end
  return where
end

local function step_error(what, value, o)
  error(string.format("mb.trainer: %s is %s at %s; stopping (lower the learning rate, "
    .. "check the inputs, or clip gradients)", what, tostring(value), step_where(o)), 0)
end

-- A model error (it names a non-finite parameter, a bad batch) gains the step it happened at.
local function call_model(o, fn, ...)
  local ok, res = pcall(fn, ...)
  if not ok then error(string.format("mb.trainer: %s failed: %s", step_where(o), tostring(res)), 0) end
  return res
end

--- One training step: zero_grad, loss, backward, clip, optimizer step.
-- o: lr (default: the optimizer's schedule), max_grad_norm (nil/false/0: measure only),
-- train (dropout on, default true), step/epoch/batch (named in errors).
function M.step(model, opt, batch, labels, o)
  o = o or {}
  o.step = o.step or opt:steps() + 1
  model:zero_grad()
  local loss = 0
  if batch then -- nil: this rank's share of a global batch is empty (o.reduce, moonbert.dist)
    loss = call_model(o, model.loss, model, batch, labels, { train = o.train ~= false })
    if not o.reduce and not finite(loss) then step_error("the training loss", loss, o) end
    call_model(o, model.backward, model)
  end
  if o.reduce then -- data parallel: the global mean loss and gradients, the same on every rank
    loss = o.reduce(loss)
    if not finite(loss) then step_error("the training loss", loss, o) end
  end
  local max_norm = o.max_grad_norm
  if not max_norm or max_norm <= 0 then max_norm = math.huge end
  local norm = optim.clip_grad_norm(opt.params, max_norm)
  if not finite(norm) then step_error("the gradient norm", norm, o) end
  local lr = opt:step(o.lr)
  return loss, norm, lr
end

-- ---- evaluation -------------------------------------------------------------------------------

-- Metrics from a confusion matrix (rows: true label, columns: predicted; 1-based), with
-- scikit-learn's definitions: weighted F1 averages the per-label F1 by support, an undefined
-- precision or recall counts as 0 (labels with no support weigh nothing).
local function metrics_from_confusion(cm, loss_sum, n)
  local C = #cm
  local correct, f1w = 0, 0
  local colsum = {}
  for j = 1, C do colsum[j] = 0 end
  for i = 1, C do for j = 1, C do colsum[j] = colsum[j] + cm[i][j] end end
  for i = 1, C do
    local tp, support = cm[i][i], 0
    for j = 1, C do support = support + cm[i][j] end
    correct = correct + tp
    -- scikit-learn's zero_division: an undefined precision or recall counts as 0
    local p = colsum[i] > 0 and tp / colsum[i] or 0
    local r = support > 0 and tp / support or 0
    local f = (p + r) > 0 and 2 * p * r / (p + r) or 0
    f1w = f1w + f * support
  end
  return {
    n = n, loss = n > 0 and loss_sum / n or 0 / 0, accuracy = n > 0 and correct / n or 0 / 0,
    f1_weighted = n > 0 and f1w / n or 0 / 0, confusion = cm,
  }
end

--- mb.trainer.confusion_metrics(cm [, loss_sum, n]) -> {accuracy=, f1_weighted=, loss=, n=}
function M.confusion_metrics(cm, loss_sum, n)
  if n == nil then
    n = 0
    for _, row in ipairs(cm) do for _, v in ipairs(row) do n = n + v end end
  end
  return metrics_from_confusion(cm, loss_sum or 0, n)
end

local function num_labels(model) return model:config().num_labels end

-- Walk a split in eval mode, batch by batch: counts and loss sums only; rows (with
-- probabilities when want_rows) are handed to sink(rows) and dropped.
local function eval_pass(model, split, o, fname, sink)
  if type(split) ~= "table" or type(split.batches) ~= "function" then
    check.arg(2, fname, "split expected (mb.data), got " .. type(split), 2)
  end
  local tok = o.tokenizer
  if tok == nil then check.arg(3, fname, "field 'tokenizer' is required", 2) end
  local C = num_labels(model)
  local cm = {}
  for i = 1, C do
    cm[i] = {}
    for j = 1, C do cm[i][j] = 0 end
  end
  local batches = split:batches { tokenizer = tok, batch_size = o.batch_size or 64, shuffle = false,
                                  bucket = o.bucket ~= false, max_length = o.max_length }
  local loss_sum, n = 0, 0
  local dist = o.dist -- data parallel (moonbert.dist): each rank its share, rows gathered in order
  for k = 1, #batches do
    local b = batches:get(k)
    local sb = b
    if dist then sb = dist.share(b) end
    local pred, labels, losses, probs = {}, {}, {}, dist and {} or nil
    if sb then
      local _, logits, per = model:loss(sb, sb.labels, { train = false })
      pred = logits:argmax(2):totable() -- 1-based positions
      labels = sb.labels:totable()
      losses = per:totable()
      probs = (sink or dist) and logits:softmax(2):totable()
      logits:free(); per:free()
    end
    if dist then pred, labels, losses, probs = dist.gather_eval(pred, labels, losses, probs) end
    local rows = sink and {}
    for j = 1, #pred do
      local y = labels[j]
      if y < 0 or y >= C then
        error(string.format("mb.trainer.%s: label %d of row %d is outside the model's %d labels", fname, y,
          b.indices[j], C), 0)
      end
      cm[y + 1][pred[j]] = cm[y + 1][pred[j]] + 1
      loss_sum = loss_sum + losses[j]
      if rows then
        rows[j] = { index = b.indices[j], label = y, predicted = pred[j] - 1, loss = losses[j], probs = probs[j] }
      end
    end
    n = n + #pred
    if sink then sink(rows) end
    if o.on_tick then o.on_tick(k, #batches) end
  end
  return metrics_from_confusion(cm, loss_sum, n)
end

--- Loss, accuracy and weighted F1 over a split; memory bounded by one batch.
-- opts: tokenizer (required), batch_size (64), bucket (true), on_batch(rows).
function M.evaluate(model, split, opts)
  opts = check.opts(opts, 3, "evaluate")
  local sink = opts.on_batch
  return eval_pass(model, split, opts, "evaluate", sink)
end

--- Predictions for error analysis, in split order: predicted ids, probabilities, per-example
-- losses and labels, plus the metrics. opts as evaluate.
function M.predict(model, split, opts)
  opts = check.opts(opts, 3, "predict")
  local predicted, probs, loss, labels = {}, {}, {}, {}
  local m = eval_pass(model, split, opts, "predict", function(rows)
    for _, r in ipairs(rows) do
      predicted[r.index], probs[r.index], loss[r.index], labels[r.index] = r.predicted, r.probs, r.loss, r.label
    end
    if opts.on_batch then opts.on_batch(rows) end
  end)
  m.loss_mean = m.loss -- evaluate's mean; loss becomes the per-example list
  m.predicted, m.probs, m.loss, m.labels = predicted, probs, loss, labels
  return m
end

-- ---- objectives ------------------------------------------------------------------------------
-- What fit trains for: how a planned batch becomes a step's (batch, labels), what an evaluation
-- measures and under which metric names. Both run on any device: the model's methods do the work.

local function check_split(v, key)
  if type(v) ~= "table" or type(v.batches) ~= "function" then
    check.arg(1, "fit", "field '" .. key .. "' must be a split (mb.data), got " .. type(v), 2)
  end
end

local objectives = {}

-- Sequence classification: the batch's labels, the eval loss/accuracy/weighted F1 and confusion.
function objectives.classification(o, tok)
  local ob = { name = "classification", train_metric = "train/loss", per_epoch = true }
  function ob.prepare(b) return b, b.labels end
  function ob.check_eval(evalset) check_split(evalset, "eval") end
  function ob.evaluate(model, evalset, eo, sink) return eval_pass(model, evalset, eo, "fit", sink) end
  function ob.eval_metrics(t)
    return { ["eval/loss"] = t.loss, ["eval/accuracy"] = t.accuracy, ["eval/f1_weighted"] = t.f1_weighted }
  end
  function ob.describe(m)
    return string.format("loss %.4f accuracy %.4f f1_weighted %.4f", m.loss, m.accuracy, m.f1_weighted)
  end
  return ob
end

-- Masked-LM pretraining (mb.mlm): each train batch is masked by a collator seeded with the run's
-- seed (its RNG state goes into checkpoints; a batch that draws no mask is skipped); the eval
-- texts are masked once, with seed + 7919, so every evaluation scores the same tokens.
-- Eval: the loss over the masked tokens and the masked-token accuracy.
function objectives.masked_lm(o, tok, seed)
  local p = o.mlm_probability or 0.15
  if type(p) ~= "number" or p <= 0 or p >= 1 then
    check.arg(1, "fit", "field 'mlm_probability' must be a number in (0, 1), got " .. tostring(p), 2)
  end
  local mlm = require "moonbert.mlm"
  local col = mlm.collator(tok, { seed = seed, mlm_probability = p })
  local ob = { name = "masked_lm", train_metric = "train/mlm_loss", per_epoch = false }
  function ob.prepare(b)
    local m = col:mask(b)
    if m.n_masked == 0 then return nil end
    return m, m.labels
  end
  function ob.state() return col:state() end
  function ob.set_state(h) col:set_state(h) end
  function ob.check_eval(evalset)
    if type(evalset) ~= "table" or type(evalset.text) ~= "table" then
      check.arg(1, "fit", "field 'eval' must be a split or {text = {...}}, got " .. type(evalset), 2)
    end
  end
  local masked -- the eval batches, masked on first use
  function ob.evaluate(model, evalset, eo)
    if not masked then
      masked = {}
      local ecol = mlm.collator(tok, { seed = seed + 7919, mlm_probability = p })
      local texts, bs = evalset.text, eo.batch_size
      for s = 1, #texts, bs do
        local b = ecol:mask(tok:encode_batch(table.move(texts, s, math.min(s + bs - 1, #texts), 1, {}),
          { padding = "longest", truncation = true, max_length = eo.max_length }))
        if b.n_masked > 0 then masked[#masked + 1] = b end
      end
    end
    local loss_sum, n_sum, correct = 0, 0, 0
    for k, b in ipairs(masked) do
      local loss, n, logits = model:loss(b, b.labels, { train = false, logits = true })
      local pred = logits:argmax(2):totable()
      logits:free()
      local y = b.labels:totable()
      local j = 0
      for bi = 1, #y do
        for t = 1, #y[bi] do
          if y[bi][t] ~= -100 then
            j = j + 1
            if pred[j] - 1 == y[bi][t] then correct = correct + 1 end
          end
        end
      end
      loss_sum, n_sum = loss_sum + loss * n, n_sum + n
      if eo.on_tick then eo.on_tick(k, #masked) end
    end
    return { loss = loss_sum / n_sum, accuracy = correct / n_sum, n = n_sum }
  end
  function ob.eval_metrics(t) return { ["eval/mlm_loss"] = t.loss, ["eval/masked_accuracy"] = t.accuracy } end
  function ob.describe(m)
    return string.format("MLM loss %.4f masked-token accuracy %.4f (%d tokens)", m.loss, m.accuracy, m.n)
  end
  return ob
end

-- ---- logging -----------------------------------------------------------------------------------

local function make_logger(run, objective)
  if run == nil then return function() end, nil end
  if type(run) == "function" then return run, nil end
  local ok = (type(run) == "table" or type(run) == "userdata") and pcall(function() return run.log_metric end)
  if not ok or not run.log_metric then
    check.arg(1, "fit", "field 'run' must be a results-store run or a function(event, t), got " .. type(run), 2)
  end
  local function log(event, t)
    if event == "log" then
      run:log_metrics({ [objective.train_metric] = t.loss, ["train/lr"] = t.lr, ["train/grad_norm"] = t.grad_norm },
        { step = t.step, epoch = t.epoch, split = "train" })
    elseif event == "eval" then
      run:log_metrics(objective.eval_metrics(t), { step = t.step, epoch = t.epoch, split = t.split })
      if t.epoch_end and t.confusion then run:log_confusion(t.split, t.confusion, t.labels, { epoch = t.epoch }) end
    elseif event == "predictions" then
      run:log_predictions(t.split, t.rows)
    end
  end
  return log, run
end

-- ---- fit -----------------------------------------------------------------------------------------

-- dkjson writes numbers with 14 digits; the history must survive a resume exactly, so its
-- floats are stored as hex float strings.
local function history_out(history)
  local out = {}
  for i, e in ipairs(history) do
    out[i] = {}
    for k, v in pairs(e) do out[i][k] = ckpt.encode_float(v) end
  end
  return out
end

local function history_in(history)
  local out = {}
  for i, e in ipairs(history or {}) do
    out[i] = {}
    for k, v in pairs(e) do out[i][k] = type(v) == "string" and tonumber(v) or v end
    out[i].epoch, out[i].step = math.tointeger(out[i].epoch) or out[i].epoch, math.tointeger(out[i].step) or out[i].step
  end
  return out
end

local function opt_number(o, key, default, ok) return check.field_num(o, key, 1, "fit", default, ok, 2) end
local function opt_int(o, key, default, min) return check.field_int(o, key, 1, "fit", default, min, 2) end

--- Train (see the header for the options and the result).
function M.fit(o)
  check.type(o, "table", 1, "fit")
  local D = M.defaults
  local model, tok, train, evalset = o.model, o.tokenizer, o.train, o.eval
  if type(model) ~= "userdata" or not pcall(function() return model.loss end) then
    check.arg(1, "fit", "field 'model' must be an mb.distilbert model, got " .. type(model))
  end
  if tok == nil then check.arg(1, "fit", "field 'tokenizer' is required") end
  local kind = o.objective or "classification"
  if not objectives[kind] then
    check.arg(1, "fit", "field 'objective' must be \"classification\" or \"masked_lm\", got " .. tostring(kind))
  end
  if o.device ~= nil then model:to(o.device, { precision = o.precision }) end -- before the optimizer sees the parameters
  check_split(train, "train")
  local epochs = opt_int(o, "epochs", D.epochs, 1)
  local max_steps = opt_int(o, "max_steps", nil, 1)
  local bs = opt_int(o, "batch_size", D.batch_size, 1)
  local lr = opt_number(o, "lr", D.lr, function(v) return v >= 0 and finite(v) end)
  local wd = opt_number(o, "weight_decay", D.weight_decay, function(v) return v >= 0 end)
  local warmup = opt_number(o, "warmup", D.warmup, function(v) return v >= 0 end)
  local max_norm = o.max_grad_norm
  if max_norm == nil then max_norm = D.max_grad_norm end
  if max_norm ~= false and (type(max_norm) ~= "number" or max_norm < 0) then
    check.arg(1, "fit", "field 'max_grad_norm' must be a number >= 0 or false")
  end
  local seed = opt_int(o, "seed", D.seed, 0)
  local objective = objectives[kind](o, tok, seed)
  if evalset == false then evalset = nil end
  if evalset ~= nil then objective.check_eval(evalset) end
  local bucket = o.bucket
  if bucket == nil then bucket = D.bucket end
  local log_every = opt_int(o, "log_every", D.log_every, 1) -- nil: set from the run's length below
  local eval_every = o.eval_every or D.eval_every
  if eval_every ~= "epoch" and (math.type(eval_every) ~= "integer" or eval_every < 1) then
    check.arg(1, "fit", "field 'eval_every' must be \"epoch\" or an integer >= 1")
  end
  local stop_after = o.stop_after_epoch
  local eval_name = o.eval_split_name or "validation"
  -- data parallel (moonbert.dist, under mpirun/srun): rank 0 alone logs, prints and saves
  local dctx = require("moonbert.dist").fit_context(o)
  local log, store_run = make_logger((not dctx or dctx.main) and o.run or nil, objective)
  if o.callback ~= nil then -- called with every event too, after the run's logging
    if type(o.callback) ~= "function" then check.arg(1, "fit", "field 'callback' must be a function(event, t)") end
    local log_run = log
    log = function(event, t) log_run(event, t); o.callback(event, t) end
  end
  if o.progress ~= nil and o.progress ~= "bar" and o.progress ~= "log" and o.progress ~= false then
    check.arg(1, "fit", "field 'progress' must be nil, \"bar\", \"log\" or false, got " .. tostring(o.progress))
  end
  local pmode = o.progress
  if dctx and not dctx.main then pmode = false end
  local progress = progress_mod.training { mode = pmode, out = o.progress_stream, log_every = log_every }
  local labels = kind == "classification" and model:label_names() or nil

  local function plan(epoch)
    return train:batches { tokenizer = tok, batch_size = bs, shuffle = true, seed = seed, epoch = epoch,
                           bucket = bucket, max_length = o.max_length }
  end
  local steps_per_epoch = #plan(1)
  -- max_steps: a run counted in steps (the epochs it needs, the last one cut short), evaluated
  -- every eval_every steps and at its end, checkpointed every save_steps steps
  local by_steps = max_steps ~= nil
  if by_steps then epochs = (max_steps + steps_per_epoch - 1) // steps_per_epoch end
  local total = max_steps or steps_per_epoch * epochs
  if not log_every then -- at least 20 evenly spaced train/loss points, every step below 20 steps
    log_every = math.max(1, total // 20)
    progress.log_every = log_every
  end
  local warmup_steps = warmup
  if math.type(warmup) ~= "integer" then
    if warmup >= 1 then check.arg(1, "fit", "field 'warmup' must be an integer step count or a ratio < 1") end
    warmup_steps = math.ceil(total * warmup)
  end
  local schedule = optim.schedule.linear { warmup_steps = warmup_steps, total_steps = total }
  local opt <close> = optim.adamw(M.optimizer_params(model),
    { lr = lr, weight_decay = wd, betas = o.betas, eps = o.eps, schedule = schedule })

  -- what a resume must share with the checkpoint: the loop's settings, then the caller's (o.settings)
  local expect = { total_steps = total, batch_size = bs, seed = seed, epochs = epochs, train_hash = train:hash(),
                   bucket = bucket }
  local expect_keys = { "total_steps", "batch_size", "seed", "epochs", "train_hash", "bucket" }
  if o.settings ~= nil then
    check.type(o.settings, "table", 1, "fit")
    local extra = {}
    for k in pairs(o.settings) do extra[#extra + 1] = k end
    table.sort(extra)
    for _, k in ipairs(extra) do
      if expect[k] == nil then expect[k], expect_keys[#expect_keys + 1] = o.settings[k], k end
    end
  end
  local save_steps = opt_int(o, "save_steps", nil, 1)
  local keep = opt_int(o, "save_total_limit", nil, 1)
  if o.checkpoint_dir ~= nil and type(o.checkpoint_dir) ~= "string" then
    check.arg(1, "fit", "field 'checkpoint_dir' must be a folder path")
  end
  if o.checkpoint_dir and (not dctx or dctx.main) then ckpt.check_writable(o.checkpoint_dir) end -- before any step, not at the first save
  local warn_out = o.progress_stream or io.stderr
  local start_epoch, start_batch, step, history = 1, 1, 0, {}
  local resumed_loss, resumed_win_loss, resumed_win_n = 0, 0, 0
  local resume_dir = o.resume
  if resume_dir == true and dctx and not dctx.main then resume_dir = false end -- rank 0 picks it
  if resume_dir == true then
    resume_dir = ckpt.newest(o.checkpoint_dir, { warn = function(msg)
      progress:line("[train] warning: " .. msg)
      if progress.mode == false then warn_out:write("[train] warning: ", msg, "\n") end
    end })
    if not resume_dir then progress:line("[train] resume: no checkpoint in " .. tostring(o.checkpoint_dir) .. ", starting from scratch") end
  elseif resume_dir ~= nil and resume_dir ~= false and type(resume_dir) ~= "string" then
    check.arg(1, "fit", "field 'resume' must be true or a checkpoint folder")
  end
  if dctx and o.resume then resume_dir = dctx.agree(resume_dir or nil, "agreeing on the checkpoint to resume") end
  if resume_dir then
    local state = ckpt.load_training(resume_dir, { model = model, optimizer = opt, expect = expect, keys = expect_keys })
    if dctx then dctx.restore_rng(model, state, seed) end
    local e, done = math.tointeger(state.epoch), math.tointeger(state.batch) or steps_per_epoch
    step, history = math.tointeger(state.step), history_in(state.history)
    if objective.set_state then objective.set_state(state.objective_state) end
    if done >= steps_per_epoch then
      start_epoch, start_batch = e + 1, 1
    else
      start_epoch, start_batch = e, done + 1
      resumed_loss = ckpt.decode_float(state.epoch_loss) or 0
      resumed_win_loss, resumed_win_n = ckpt.decode_float(state.win_loss) or 0, math.tointeger(state.win_n) or 0
    end
    if store_run and store_run.truncate_after then -- rows after the checkpoint are logged again below
      store_run:truncate_after(step, done >= steps_per_epoch and e or e - 1 + done / steps_per_epoch)
    end
    progress:line(string.format("[train] resumed from %s (epoch %d, batch %d of %d, step %d)", resume_dir, e,
      done, steps_per_epoch, step))
  else
    model:seed(seed + (dctx and dctx.rank or 0)) -- dropout draws, as the Trainer's set_seed before training
  end
  if dctx then dctx.sync_start(model) end

  local signal = require("moonbert.core").signal
  local handle_signals = o.handle_signals ~= false
  if handle_signals then
    signal.clear()
    signal.watch()
  end
  -- the previous handlers come back however fit ends (an error included)
  local restore_signals <close> = handle_signals
    and setmetatable({}, { __close = function() signal.unwatch() end }) or nil
  -- A sweep's pruner (moonbert.asha) may stop the run after an evaluation: it is then
  -- marked pruned and fit returns with res.pruned = {rung=, step=, epoch=}.
  local pruned
  local function prune_check(m, epoch_pos, last)
    if not store_run or not store_run.should_prune then return end
    local rung = require("moonbert.asha").check_fit(store_run, { step = step, epoch = epoch_pos, eval = m, last = last })
    if rung then
      pruned = { rung = rung, step = step, epoch = epoch_pos }
      progress:line(string.format("[train] pruned at rung %d (epoch %g, step %d)", rung, epoch_pos, step))
    end
  end

  local t_start = now()
  local train_seconds, train_tokens = 0, 0
  local last_heartbeat = t_start
  local stopped = false

  local function evaluate(epoch_pos, epoch_end, epoch)
    local rows_sink
    if kind == "classification" and epoch_end and (store_run and o.log_predictions ~= false or type(o.run) == "function") then
      rows_sink = function(rows) log("predictions", { split = eval_name, epoch = epoch, rows = rows }) end
    end
    local m = objective.evaluate(model, evalset, { tokenizer = tok, batch_size = o.eval_batch_size or bs,
                                                   bucket = bucket, max_length = o.max_length, dist = dctx,
                                                   on_tick = function(k, n) progress:eval_tick(k, n) end }, rows_sink)
    log("eval", { step = step, epoch = epoch_pos, split = eval_name, loss = m.loss, accuracy = m.accuracy,
                  f1_weighted = m.f1_weighted, confusion = m.confusion, labels = labels, epoch_end = epoch_end, n = m.n })
    progress:line(string.format("[eval] epoch %g step %d %s %s", epoch_pos, step, eval_name, objective.describe(m)))
    return m
  end

  -- state: what a resume needs beyond the parameters, the moments and the RNG (epoch e, k of its
  -- batches done, with the epoch's running sums)
  local last_saved_step
  local function checkpoint(epoch, k, epoch_loss, win_loss, win_n)
    local state = { epoch = epoch, batch = k, step = step, model_rng = ckpt.to_hex(model:rng_state()),
                    history = history_out(history), epoch_loss = ckpt.encode_float(epoch_loss + 0.0),
                    win_loss = ckpt.encode_float(win_loss + 0.0), win_n = win_n, objective = kind,
                    objective_state = objective.state and objective.state() or nil,
                    data_order = { seed = seed, epoch = epoch, next_batch = k + 1 } }
    for key, v in pairs(expect) do state[key] = v end
    local dir = o.checkpoint_dir .. "/checkpoint-" .. step
    if dctx then state.world_size, state.model_rng_ranks = dctx.size, dctx.gather_rng(state.model_rng) end
    if not dctx or dctx.main then
      dir = ckpt.save_training(o.checkpoint_dir, { model = model, optimizer = opt, state = state, keep = keep })
    end
    last_saved_step = step
    log("checkpoint", { epoch = epoch, step = step, path = dir })
    return dir
  end

  if evalset and o.eval_on_start and step == 0 then evaluate(0, false, 0) end
  local interrupted, exit_code, interrupted_path
  for epoch = start_epoch, epochs do
    local batches = plan(epoch)
    local nb = #batches
    local first = epoch == start_epoch and start_batch or 1
    local epoch_loss, win_loss, win_n = 0, 0, 0
    if first > 1 then epoch_loss, win_loss, win_n = resumed_loss, resumed_win_loss, resumed_win_n end
    local t_epoch = now()
    local last_k = first - 1
    for k = first, nb do
      local t0 = now()
      local sb, sl = objective.prepare(batches:get(k))
      step = step + 1
      last_k = k
      -- more steps follow in this run (mid-epoch, or any step before max_steps)
      local more = by_steps and step < total or not by_steps and k < nb
      local gb, reduce = sb, nil -- the global batch; with dctx this rank trains on its share of it
      if dctx and gb then sb, sl, reduce = dctx.share_step(model, gb, sl, step) end
      if gb then
        local loss, norm, used_lr = M.step(model, opt, sb, sl,
          { max_grad_norm = max_norm, step = step, epoch = epoch, batch = k, batches = nb, reduce = reduce })
        if dctx then dctx.after_step(model, step) end
        local ntok = gb.attention_mask:sum()
        local t1 = now()
        train_seconds = train_seconds + (t1 - t0)
        train_tokens = train_tokens + ntok
        epoch_loss = epoch_loss + loss
        win_loss, win_n = win_loss + loss, win_n + 1
        local tps = train_seconds > 0 and train_tokens / train_seconds or 0
        local per_step = (t1 - t_start) / math.max(1, step - ((start_epoch - 1) * steps_per_epoch + start_batch - 1))
        progress:update { epoch = epoch, epochs = epochs, step = step, total = total, k = k, nbatches = nb, loss = loss,
                          lr = used_lr, grad_norm = norm, tokens_per_s = tps, eta = per_step * (total - step) }
        if step % log_every == 0 then
          log("log", { step = step, epoch = epoch - 1 + k / nb, loss = win_loss / win_n, lr = used_lr,
                       grad_norm = norm, tokens_per_s = tps })
          win_loss, win_n = 0, 0
        end
        if store_run and store_run.heartbeat and t1 - last_heartbeat >= HEARTBEAT_S then
          store_run:heartbeat()
          last_heartbeat = t1
        end
      end
      if evalset and eval_every ~= "epoch" and step % eval_every == 0 and more then
        prune_check(evaluate(epoch - 1 + k / nb, false, epoch), epoch - 1 + k / nb)
        if pruned then break end
      end
      if more and o.checkpoint_dir and save_steps and step % save_steps == 0 then
        checkpoint(epoch, k, epoch_loss, win_loss, win_n)
      end
      local sig, signo = nil, nil
      if handle_signals then sig, signo = signal.pending() end
      if dctx then sig, signo = dctx.signal() end -- what all ranks saw in this step's reduction
      if sig and more then
        interrupted, exit_code = sig, 128 + signo
        if o.checkpoint_dir then
          interrupted_path = last_saved_step == step and (o.checkpoint_dir .. "/checkpoint-" .. step)
            or checkpoint(epoch, k, epoch_loss, win_loss, win_n)
        end
        break
      end
      if by_steps and step >= total then break end
    end
    if interrupted then break end
    progress:end_epoch()
    if pruned then break end
    local finished = by_steps and step >= total
    local entry = { epoch = epoch, step = step, train_loss = epoch_loss / math.max(1, last_k),
                    seconds = now() - t_epoch }
    if evalset and (objective.per_epoch and not by_steps or finished) then
      local epoch_pos = by_steps and epoch - 1 + last_k / nb or epoch
      local m = evaluate(epoch_pos, true, epoch)
      entry.eval_loss, entry.eval_accuracy, entry.eval_f1_weighted = m.loss, m.accuracy, m.f1_weighted
      prune_check(m, epoch_pos, epoch == epochs)
    end
    history[#history + 1] = entry
    log("epoch", entry)
    if o.checkpoint_dir and not by_steps then interrupted_path = checkpoint(epoch, nb, epoch_loss, 0, 0) end
    local sig, signo = nil, nil
    if handle_signals and not by_steps then sig, signo = signal.pending() end
    if dctx and not by_steps then sig, signo = dctx.agree_signal(sig, signo) end
    if sig and epoch < epochs then
      interrupted, exit_code = sig, 128 + signo
      break
    end
    interrupted_path = nil
    if pruned or finished then break end
    if stop_after and epoch >= stop_after and epoch < epochs then
      stopped = true
      break
    end
  end
  if handle_signals then signal.unwatch() end
  if dctx and not interrupted then dctx.after_step(model, step, true) end -- the final weight check

  if interrupted then
    local msg = string.format("interrupted by %s at step %d of %d; %s", interrupted, step, total,
      interrupted_path and ("checkpoint " .. interrupted_path) or "no checkpoint_dir, nothing saved")
    progress:line("[train] " .. msg)
    if progress.mode == false then warn_out:write("[train] ", msg, "\n") end
    log("interrupted", { signal = interrupted, step = step, path = interrupted_path })
    if store_run then
      if store_run.interrupt then store_run:interrupt(msg) else store_run:fail(msg) end
    end
    if o.exit_on_signal ~= false then
      io.stdout:flush()
      os.exit(exit_code)
    end
  end

  local seconds = now() - t_start
  local result = { history = history, steps = step, seconds = seconds, stopped = stopped, pruned = pruned,
                   interrupted = interrupted, exit_code = exit_code,
                   train_tokens_per_s = train_seconds > 0 and train_tokens / train_seconds or 0 }
  log("done", result)
  return result
end

return M
