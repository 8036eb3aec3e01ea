-- moonbert.trainer (mb.trainer): fine-tuning loop for mb.distilbert models, with the
-- semantics of Hugging Face's Trainer (AdamW, linear decay, gradient clipping, per-epoch eval).
--
--   local res = mb.trainer.fit{
--     model = model, tokenizer = tok, train = data.train, eval = data.validation,
--     epochs = 2, batch_size = 64, lr = 2e-5, weight_decay = 0.01,  -- the notebook's Trainer run
--     warmup = 0,              -- steps (integer >= 1) or a ratio of all steps (0 <= x < 1)
--     max_grad_norm = 1.0,     -- false/0: no clipping (the norm is still measured and logged)
--     seed = 42,               -- dropout RNG and the shuffling of every epoch
--     bucket = true,           -- length-bucketed batches (less padding)
--     eval_every = "epoch",    -- or N: also evaluate every N steps
--     checkpoint_dir = "results/runs/7/checkpoints",  -- checkpoint-<step>/ after each epoch
--     save_steps = nil,        -- N: also a checkpoint every N steps, mid-epoch included
--     save_total_limit = nil,  -- K: keep the newest K checkpoints
--     resume = true,           -- or a checkpoint folder: continue a killed run, bit for bit
--     handle_signals = true,   -- SIGTERM/SIGINT: finish the step, checkpoint, stop (see below)
--     exit_on_signal = true,   -- ... then exit with 128 + the signal (143, 130); false: return
--     run = run,               -- a results-store run (metrics are logged) or function(event, t)
--     log_every = nil,         -- steps between train/loss logs and plain progress lines; default
--                              -- total_steps // 20 (at least 20 points, every step for short runs)
--     progress = nil,          -- nil: a bar on a terminal, else a line every log_every steps;
--                              -- "bar" | "log" | false
--     stop_after_epoch = nil,  -- stop (checkpoint written) after this epoch; res.stopped = true
--     device = nil,            -- "cuda" / "cpu": model:to(device, {precision = precision}) first;
--                              -- nil: where the model is (every step runs where its parameters live)
--     -- also: eval_batch_size (batch_size), eval_split_name ("validation"), max_length (the
--     -- tokenizer's), betas, eps (AdamW), progress_stream (io.stderr), log_predictions (true:
--     -- a store run gets the eval predictions of each epoch, the last epoch's kept)
--   }
--   res.history[e] = {epoch=, step=, train_loss=, eval_loss=, eval_accuracy=, eval_f1_weighted=,
--                     seconds=}
--   res.steps, res.seconds, res.train_tokens_per_s, res.stopped, res.pruned ({rung=, step=, epoch=}
--   when a sweep's pruner stopped the run after an evaluation, moonbert.asha; the run is then
--   marked pruned: a script should stop, e.g. `if res.pruned then return end`)
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
-- tokens_per_s}, "eval" {step, epoch, split, loss, accuracy, f1_weighted, confusion, labels},
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
-- Checkpoints (moonbert.checkpoint): checkpoint_dir/checkpoint-<step>/ holds config.json +
-- model.safetensors (model:save), optimizer.safetensors (moments and step count),
-- trainer_state.json (epoch, batches done in it, step, model RNG state, the epoch's loss sum and
-- the logging window as exact hex floats, settings, history) and manifest.sha256; each is written
-- to a temporary folder, fsynced and renamed. resume = true takes the newest checkpoint whose
-- manifest verifies, warning about each damaged one it skips. A data order is a function of
-- (seed, epoch), so a mid-epoch resume replays the epoch's batch list from the next batch: same
-- batches, dropout masks (the RNG state) and learning rates (the optimizer's step count), and
-- the same final parameters, bit for bit.
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
-- Limits: single-label classification; one process; no gradient accumulation or mixed
-- precision.
local optim = require "moonbert.optim"

local M = {}

M.defaults = {
  epochs = 2, batch_size = 64, lr = 2e-5, weight_decay = 0.01, warmup = 0, max_grad_norm = 1.0,
  seed = 42, bucket = true, eval_every = "epoch", log_every = nil, eval_batch_size = nil,
}

local STATE_FILE = "trainer_state.json"
local HEARTBEAT_S = 10

local function now() return require("moonbert.store").now() end

local function argerror(fname, n, msg)
  error(string.format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

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
  local loss = call_model(o, model.loss, model, batch, labels, { train = o.train ~= false })
  if not finite(loss) then step_error("the training loss", loss, o) end
  call_model(o, model.backward, model)
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
    argerror(fname, 2, "split expected (mb.data), got " .. type(split))
  end
  local tok = o.tokenizer
  if tok == nil then argerror(fname, 3, "field 'tokenizer' is required") end
  local C = num_labels(model)
  local cm = {}
  for i = 1, C do
    cm[i] = {}
    for j = 1, C do cm[i][j] = 0 end
  end
  local batches = split:batches { tokenizer = tok, batch_size = o.batch_size or 64, shuffle = false,
                                  bucket = o.bucket ~= false, max_length = o.max_length }
  local loss_sum, n = 0, 0
  for k = 1, #batches do
    local b = batches:get(k)
    local _, logits, per = model:loss(b, b.labels, { train = false })
    local pred = logits:argmax(2):totable() -- 1-based positions
    local labels = b.labels:totable()
    local losses = per:totable()
    local probs = sink and logits:softmax(2):totable()
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
    logits:free(); per:free()
    if sink then sink(rows) end
    if o.on_tick then o.on_tick(k, #batches) end
  end
  return metrics_from_confusion(cm, loss_sum, n)
end

local function check_opts(fname, o)
  if o == nil then return {} end
  if type(o) ~= "table" then argerror(fname, 3, "options table expected, got " .. type(o)) end
  return o
end

--- Loss, accuracy and weighted F1 over a split; memory bounded by one batch.
-- opts: tokenizer (required), batch_size (64), bucket (true), on_batch(rows).
function M.evaluate(model, split, opts)
  opts = check_opts("evaluate", opts)
  local sink = opts.on_batch
  return eval_pass(model, split, opts, "evaluate", sink)
end

--- Predictions for error analysis, in split order: predicted ids, probabilities, per-example
-- losses and labels, plus the metrics. opts as evaluate.
function M.predict(model, split, opts)
  opts = check_opts("predict", opts)
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

-- ---- progress ---------------------------------------------------------------------------------

-- stderr is a terminal: TERM set (not "dumb") and `test -t 2` in a shell that inherits our stderr.
local function stderr_is_terminal()
  local term = os.getenv("TERM")
  if not term or term == "" or term == "dumb" then return false end
  return os.execute("test -t 2") == true
end

local function fmt_time(s)
  if not finite(s) or s < 0 then return "--:--" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return string.format("%02d:%02d", s // 60, s % 60)
end

local Progress = {}
Progress.__index = Progress

local function new_progress(mode, out, log_every)
  if mode == nil then mode = stderr_is_terminal() and "bar" or "log" end
  if mode ~= "bar" and mode ~= "log" and mode ~= false then
    argerror("fit", 1, "field 'progress' must be nil, \"bar\", \"log\" or false, got " .. tostring(mode))
  end
  return setmetatable({ mode = mode, out = out or io.stderr, log_every = log_every, last = 0, smooth = nil,
                        beta = 0.98, updates = 0 }, Progress)
end

-- s: epoch, epochs, step, total, k, nbatches, loss, lr, grad_norm, tokens_per_s, eta
function Progress:update(s)
  -- bias-corrected exponential moving average of the loss
  self.updates = self.updates + 1
  self.smooth = (self.smooth or 0) * self.beta + (1 - self.beta) * s.loss
  local smooth = self.smooth / (1 - self.beta ^ self.updates)
  if self.mode == "bar" then
    local t = now()
    if t - self.last < 0.1 and s.k < s.nbatches then return end
    self.last = t
    local width = 24
    local filled = math.floor(width * s.k / s.nbatches)
    self.out:write(string.format("\repoch %d/%d [%s%s] %d/%d loss %.4f %.0f tok/s ETA %s  ", s.epoch, s.epochs,
      string.rep("=", filled), string.rep(" ", width - filled), s.step, s.total, smooth, s.tokens_per_s,
      fmt_time(s.eta)))
    self.out:flush()
    self.open = true
  elseif self.mode == "log" and (s.step % self.log_every == 0 or s.k == s.nbatches) then
    self.out:write(string.format("[train] epoch %d/%d step %d/%d loss %.4f lr %.3g grad_norm %.3g %.0f tok/s ETA %s\n",
      s.epoch, s.epochs, s.step, s.total, smooth, s.lr, s.grad_norm, s.tokens_per_s, fmt_time(s.eta)))
    self.out:flush()
  end
end

-- "evaluating k/n" on the bar's line while an evaluation runs (terminal only)
function Progress:eval_tick(k, n)
  if self.mode ~= "bar" then return end
  local t = now()
  if t - self.last < 0.1 and k < n then return end
  self.last = t
  self.out:write(string.format("\r[eval] batch %d/%d%s", k, n, string.rep(" ", 40)))
  self.out:flush()
  self.open = true
end

-- The epoch's last bar stays on screen.
function Progress:end_epoch()
  if self.open then self.out:write("\n"); self.open = false end
end

-- A message line; it replaces a transient line (eval batches) on a terminal.
function Progress:line(text)
  if self.mode == false then return end
  if self.open then self.out:write("\r", string.rep(" ", 79), "\r"); self.open = false end
  self.out:write(text, "\n")
  self.out:flush()
end

-- ---- checkpoints ------------------------------------------------------------------------------

local ckpt = require "moonbert.checkpoint"

local function to_hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function from_hex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

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

local function save_checkpoint(root, model, opt, state, keep)
  return ckpt.save(root, state.step, function(dir)
    model:save(dir)
    opt:save(dir .. "/optimizer.safetensors")
    ckpt.write_json(dir .. "/" .. STATE_FILE, state)
  end, { keep = keep })
end

local function load_checkpoint(dir, model, opt, expect)
  local ok, verr = ckpt.verify(dir)
  if not ok then error("mb.trainer.fit: resume: " .. dir .. " does not verify: " .. tostring(verr), 0) end
  local state, jerr = ckpt.read_json(dir .. "/" .. STATE_FILE)
  if not state then error("mb.trainer.fit: resume: " .. tostring(jerr), 0) end
  for _, k in ipairs { "total_steps", "batch_size", "seed", "epochs", "train_hash", "bucket" } do
    if state[k] ~= expect[k] then
      error(string.format("mb.trainer.fit: resume: checkpoint %s was made with %s = %s, this run has %s; "
        .. "resume with the same settings (or start without resume)", dir, k, tostring(state[k]), tostring(expect[k])), 0)
    end
  end
  local st = require("moonbert.safetensors").load(dir .. "/model.safetensors")
  for _, p in ipairs(model:parameters()) do
    local t = st[p.name]
    if not t then error("mb.trainer.fit: resume: " .. dir .. "/model.safetensors has no tensor " .. p.name, 0) end
    p.value:copy(t)
  end
  opt:load(dir .. "/optimizer.safetensors")
  model:set_rng_state(from_hex(state.model_rng))
  return state
end

-- ---- logging -----------------------------------------------------------------------------------

local function make_logger(run)
  if run == nil then return function() end, nil end
  if type(run) == "function" then return run, nil end
  local ok = (type(run) == "table" or type(run) == "userdata") and pcall(function() return run.log_metric end)
  if not ok or not run.log_metric then
    argerror("fit", 1, "field 'run' must be a results-store run or a function(event, t), got " .. type(run))
  end
  local function log(event, t)
    if event == "log" then
      run:log_metrics({ ["train/loss"] = t.loss, ["train/lr"] = t.lr, ["train/grad_norm"] = t.grad_norm },
        { step = t.step, epoch = t.epoch, split = "train" })
    elseif event == "eval" then
      run:log_metrics({ ["eval/loss"] = t.loss, ["eval/accuracy"] = t.accuracy, ["eval/f1_weighted"] = t.f1_weighted },
        { step = t.step, epoch = t.epoch, split = t.split })
      if t.epoch_end then run:log_confusion(t.split, t.confusion, t.labels, { epoch = t.epoch }) end
    elseif event == "predictions" then
      run:log_predictions(t.split, t.rows)
    end
  end
  return log, run
end

-- ---- fit -----------------------------------------------------------------------------------------

local function opt_number(o, key, default, check)
  local v = o[key]
  if v == nil then return default end
  if type(v) ~= "number" or (check and not check(v)) then
    argerror("fit", 1, string.format("field '%s' is invalid (%s)", key, tostring(v)))
  end
  return v
end

local function opt_int(o, key, default, min)
  local v = o[key]
  if v == nil then return default end
  if math.type(v) ~= "integer" or v < min then
    argerror("fit", 1, string.format("field '%s' must be an integer >= %d, got %s", key, min, tostring(v)))
  end
  return v
end

--- Fine-tune (see the header for the options and the result).
function M.fit(o)
  if type(o) ~= "table" then argerror("fit", 1, "options table expected, got " .. type(o)) end
  local D = M.defaults
  local model, tok, train, evalset = o.model, o.tokenizer, o.train, o.eval
  if type(model) ~= "userdata" or not pcall(function() return model.loss end) then
    argerror("fit", 1, "field 'model' must be an mb.distilbert model, got " .. type(model))
  end
  if tok == nil then argerror("fit", 1, "field 'tokenizer' is required") end
  if o.device ~= nil then model:to(o.device, { precision = o.precision }) end -- before the optimizer sees the parameters
  if type(train) ~= "table" or type(train.batches) ~= "function" then
    argerror("fit", 1, "field 'train' must be a split (mb.data), got " .. type(train))
  end
  if evalset == false then evalset = nil end
  if evalset ~= nil and (type(evalset) ~= "table" or type(evalset.batches) ~= "function") then
    argerror("fit", 1, "field 'eval' must be a split (mb.data), got " .. type(evalset))
  end
  local epochs = opt_int(o, "epochs", D.epochs, 1)
  local bs = opt_int(o, "batch_size", D.batch_size, 1)
  local lr = opt_number(o, "lr", D.lr, function(v) return v >= 0 and finite(v) end)
  local wd = opt_number(o, "weight_decay", D.weight_decay, function(v) return v >= 0 end)
  local warmup = opt_number(o, "warmup", D.warmup, function(v) return v >= 0 end)
  local max_norm = o.max_grad_norm
  if max_norm == nil then max_norm = D.max_grad_norm end
  if max_norm ~= false and (type(max_norm) ~= "number" or max_norm < 0) then
    argerror("fit", 1, "field 'max_grad_norm' must be a number >= 0 or false")
  end
  local seed = opt_int(o, "seed", D.seed, 0)
  local bucket = o.bucket
  if bucket == nil then bucket = D.bucket end
  local log_every = opt_int(o, "log_every", D.log_every, 1) -- nil: set from the run's length below
  local eval_every = o.eval_every or D.eval_every
  if eval_every ~= "epoch" and (math.type(eval_every) ~= "integer" or eval_every < 1) then
    argerror("fit", 1, "field 'eval_every' must be \"epoch\" or an integer >= 1")
  end
  local stop_after = o.stop_after_epoch
  local eval_name = o.eval_split_name or "validation"
  local log, store_run = make_logger(o.run)
  local progress = new_progress(o.progress, o.progress_stream, log_every)
  local labels = model:label_names()

  local function plan(epoch)
    return train:batches { tokenizer = tok, batch_size = bs, shuffle = true, seed = seed, epoch = epoch,
                           bucket = bucket, max_length = o.max_length }
  end
  local steps_per_epoch = #plan(1)
  local total = steps_per_epoch * epochs
  if not log_every then -- at least 20 evenly spaced train/loss points, every step below 20 steps
    log_every = math.max(1, total // 20)
    progress.log_every = log_every
  end
  local warmup_steps = warmup
  if math.type(warmup) ~= "integer" then
    if warmup >= 1 then argerror("fit", 1, "field 'warmup' must be an integer step count or a ratio < 1") end
    warmup_steps = math.ceil(total * warmup)
  end
  local schedule = optim.schedule.linear { warmup_steps = warmup_steps, total_steps = total }
  local opt <close> = optim.adamw(M.optimizer_params(model),
    { lr = lr, weight_decay = wd, betas = o.betas, eps = o.eps, schedule = schedule })

  local expect = { total_steps = total, batch_size = bs, seed = seed, epochs = epochs, train_hash = train:hash(),
                   bucket = bucket }
  local save_steps = opt_int(o, "save_steps", nil, 1)
  local keep = opt_int(o, "save_total_limit", nil, 1)
  if o.checkpoint_dir ~= nil and type(o.checkpoint_dir) ~= "string" then
    argerror("fit", 1, "field 'checkpoint_dir' must be a folder path")
  end
  if o.checkpoint_dir then ckpt.check_writable(o.checkpoint_dir) end -- before any step, not at the first save
  local warn_out = o.progress_stream or io.stderr
  local start_epoch, start_batch, step, history = 1, 1, 0, {}
  local resumed_loss, resumed_win_loss, resumed_win_n = 0, 0, 0
  local resume_dir = o.resume
  if resume_dir == true then
    resume_dir = ckpt.newest(o.checkpoint_dir, { warn = function(msg)
      progress:line("[train] warning: " .. msg)
      if progress.mode == false then warn_out:write("[train] warning: ", msg, "\n") end
    end })
    if not resume_dir then progress:line("[train] resume: no checkpoint in " .. tostring(o.checkpoint_dir) .. ", starting from scratch") end
  elseif resume_dir ~= nil and resume_dir ~= false and type(resume_dir) ~= "string" then
    argerror("fit", 1, "field 'resume' must be true or a checkpoint folder")
  end
  if resume_dir then
    local state = load_checkpoint(resume_dir, model, opt, expect)
    local e, done = math.tointeger(state.epoch), math.tointeger(state.batch) or steps_per_epoch
    step, history = math.tointeger(state.step), history_in(state.history)
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
    model:seed(seed) -- dropout draws, as the Trainer's set_seed before training
  end

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
    if store_run and epoch_end and o.log_predictions ~= false then
      rows_sink = function(rows) log("predictions", { split = eval_name, epoch = epoch, rows = rows }) end
    elseif type(o.run) == "function" and epoch_end then
      rows_sink = function(rows) log("predictions", { split = eval_name, epoch = epoch, rows = rows }) end
    end
    local m = eval_pass(model, evalset, { tokenizer = tok, batch_size = o.eval_batch_size or bs, bucket = bucket,
                                          max_length = o.max_length,
                                          on_tick = function(k, n) progress:eval_tick(k, n) end }, "fit", rows_sink)
    log("eval", { step = step, epoch = epoch_pos, split = eval_name, loss = m.loss, accuracy = m.accuracy,
                  f1_weighted = m.f1_weighted, confusion = m.confusion, labels = labels, epoch_end = epoch_end })
    progress:line(string.format("[eval] epoch %g step %d %s loss %.4f accuracy %.4f f1_weighted %.4f",
      epoch_pos, step, eval_name, m.loss, m.accuracy, m.f1_weighted))
    return m
  end

  -- state: what a resume needs beyond the parameters, the moments and the RNG (epoch e, k of its
  -- batches done, with the epoch's running sums)
  local last_saved_step
  local function checkpoint(epoch, k, epoch_loss, win_loss, win_n)
    local state = { epoch = epoch, batch = k, step = step, model_rng = to_hex(model:rng_state()),
                    history = history_out(history), epoch_loss = ckpt.encode_float(epoch_loss + 0.0),
                    win_loss = ckpt.encode_float(win_loss + 0.0), win_n = win_n,
                    data_order = { seed = seed, epoch = epoch, next_batch = k + 1 } }
    for key, v in pairs(expect) do state[key] = v end
    local dir = save_checkpoint(o.checkpoint_dir, model, opt, state, keep)
    last_saved_step = step
    log("checkpoint", { epoch = epoch, step = step, path = dir })
    return dir
  end

  local interrupted, exit_code, interrupted_path
  for epoch = start_epoch, epochs do
    local batches = plan(epoch)
    local nb = #batches
    local first = epoch == start_epoch and start_batch or 1
    local epoch_loss, win_loss, win_n = 0, 0, 0
    if first > 1 then epoch_loss, win_loss, win_n = resumed_loss, resumed_win_loss, resumed_win_n end
    local t_epoch = now()
    for k = first, nb do
      local t0 = now()
      local b = batches:get(k)
      step = step + 1
      local loss, norm, used_lr = M.step(model, opt, b, b.labels,
        { max_grad_norm = max_norm, step = step, epoch = epoch, batch = k, batches = nb })
      local ntok = b.attention_mask:sum()
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
      if evalset and eval_every ~= "epoch" and step % eval_every == 0 and k < nb then
        prune_check(evaluate(epoch - 1 + k / nb, false, epoch), epoch - 1 + k / nb)
        if pruned then break end
      end
      if k < nb and o.checkpoint_dir and save_steps and step % save_steps == 0 then
        checkpoint(epoch, k, epoch_loss, win_loss, win_n)
      end
      local sig, signo = nil, nil
      if handle_signals then sig, signo = signal.pending() end
      if sig and k < nb then
        interrupted, exit_code = sig, 128 + signo
        if o.checkpoint_dir then
          interrupted_path = last_saved_step == step and (o.checkpoint_dir .. "/checkpoint-" .. step)
            or checkpoint(epoch, k, epoch_loss, win_loss, win_n)
        end
        break
      end
    end
    if interrupted then break end
    progress:end_epoch()
    if pruned then break end
    local entry = { epoch = epoch, step = step, train_loss = epoch_loss / nb, seconds = now() - t_epoch }
    if evalset then
      local m = evaluate(epoch, true, epoch)
      entry.eval_loss, entry.eval_accuracy, entry.eval_f1_weighted = m.loss, m.accuracy, m.f1_weighted
      prune_check(m, epoch, epoch == epochs)
    end
    history[#history + 1] = entry
    log("epoch", entry)
    if o.checkpoint_dir then interrupted_path = checkpoint(epoch, nb, epoch_loss, 0, 0) end
    local sig, signo = nil, nil
    if handle_signals then sig, signo = signal.pending() end
    if sig and epoch < epochs then
      interrupted, exit_code = sig, 128 + signo
      break
    end
    interrupted_path = nil
    if pruned then break end
    if stop_after and epoch >= stop_after and epoch < epochs then
      stopped = true
      break
    end
  end
  if handle_signals then signal.unwatch() end

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
