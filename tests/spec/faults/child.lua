-- tests/spec/faults/child.lua: a tiny training process for tests/spec/faults_spec.lua (not a spec).
--
--   moonbert run tests/spec/faults/child.lua WORKDIR CKPT OUT [key=value...]
--
-- WORKDIR holds vocab.txt and train.txt (written by the spec: a made-up vocabulary and data,
-- so nothing from ../shared is needed). Trains a random one-layer DistilBERT (dim 16, dropout
-- on) for 2 epochs with checkpoints in CKPT and saves the final model to OUT (config.json +
-- model.safetensors). Options: save_steps=N, keep=K, resume=1, die_after_fit=1 (SIGKILL itself
-- after the rows it logs after fit, before it ends the run), sleep=SECONDS (a pause after
-- every step, so that a signal can land mid-run), store=PATH (log to a results store run; with
-- resume=1 the interrupted run of the same options continues, through moonbert.experiment),
-- threads are whatever MOONBERT_THREADS says (the spec fixes it for all processes).
-- Prints "[train] ... step S/T ..." lines on stderr after every step (progress = "log").
local mb = require "moonbert"
local workdir, ckpt_dir, out = arg[1], arg[2], arg[3]
local o = {}
for i = 4, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  o[k] = v
end

local tok = mb.tokenizer.load(workdir)
local split = mb.data.load_text(workdir .. "/train.txt", { sep = ";", names = { "text", "label" },
                                                           label_names = mb.data.EMOTION_LABELS })
local config = { dim = 16, n_layers = 1, n_heads = 2, hidden_dim = 32, vocab_size = tok.vocab_size,
                 max_position_embeddings = 32 }
local model = mb.distilbert.new(config, { seed = 7, id2label = mb.data.EMOTION_LABELS })

local sleep = tonumber(o.sleep or "0")
local function pause()
  if sleep > 0 then
    local p = io.popen("sleep " .. sleep) -- not os.execute: system() ignores SIGINT while it waits
    p:close()
  end
end

local base, store
if o.store then
  -- as the experiments do: a new run, or with resume=1 the interrupted one taken over (same id);
  -- CKPT "-" puts the checkpoints in the run's folder
  local ex = require "moonbert.experiment"
  store = mb.store.open(o.store)
  base = ex.start_run(store, { resume = o.resume == "1" },
    { experiment = "faults_child", git = false, params = { save_steps = o.save_steps } })
  print("run " .. base.id)
  io.stdout:flush()
  base:log_metric("data/train_examples", #split.label, { split = "train" }) -- a row outside the steps, before fit
  if ckpt_dir == "-" then ckpt_dir = ex.checkpoint_options(base, {}).checkpoint_dir end
end
-- a run that pauses after each logged step (log_every = 1), forwarding to the store run if any
local run = setmetatable({
  log_metrics = function(_, t, opts)
    if base then base:log_metrics(t, opts) end
    pause()
  end,
}, { __index = function(_, k)
  if base then
    local v = base[k]
    if type(v) == "function" then return function(_, ...) return v(base, ...) end end
    return v
  end
  return function() end
end })

mb.trainer.fit { model = model, tokenizer = tok, train = split, eval = false, epochs = 2, batch_size = 8,
                 lr = 1e-3, seed = 11, log_every = 1, progress = "log", run = run, checkpoint_dir = ckpt_dir,
                 save_steps = tonumber(o.save_steps), save_total_limit = tonumber(o.keep),
                 resume = o.resume == "1" }
model:save(out)
if base then
  -- rows after fit, outside the steps, as the experiments log their test scores and model
  local ex, names = require "moonbert.experiment", mb.data.EMOTION_LABELS
  local p = ex.predict(model, split, tok, { batch_size = 8 })
  base:log_metric("train/accuracy", p.accuracy, { split = "train", epoch = 2 })
  base:log_confusion("train", ex.confusion(split.label, p.predicted, names), names, { epoch = 2 })
  base:log_artifact("model", out .. "/model.safetensors")
  if o.die_after_fit == "1" then -- dies after its last checkpoint, before it ends the run
    io.stderr:write("[child] dying after fit\n")
    require("moonbert.core").signal.kill(require("moonbert.core").signal.pid(), "SIGKILL")
  end
  base:finish()
end
print("done")
