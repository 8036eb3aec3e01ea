-- search_finetune.lua: one fine-tune of a small random-init DistilBERT on the emotion data,
-- made to be a trial of a hyperparameter sweep (experiments/search_*.lua): the sweep sets
-- --lr, --warmup and --weight-decay; the trainer evaluates every --eval-every steps and at
-- each epoch's end, and a sweep's pruner (moonbert.asha) may stop it after any evaluation.
--
--   moonbert run experiments/search_finetune.lua [--lr 5e-4] [--warmup 0.1] [--weight-decay 0.01]
--       [--limit 4000] [--val-limit 500] [--epochs 2] [--eval-every 20] [--dim 64] [--layers 2]
--       [--max-grad-norm 0] [--threads 1]
--   moonbert sweep experiments/search_tpe_asha.lua
--
-- The model: the tokenizer of distilbert-base-uncased (the --model folder, else
-- ../shared/models/distilbert-base-uncased) and a config cut down to --dim, --layers, 2 heads
-- and max length 64, random weights from --seed: minutes of CPU for a sweep, not a study of
-- the real model. Logs eval/accuracy (validation) per evaluation; the final val/accuracy.
local mb = require "moonbert"
local ex = require "moonbert.experiment"

local opts = ex.parse_options("search_finetune", ex.common_options({
  { "--warmup", "X", "warmup: a ratio of all steps (< 1) or a step count", type = "number", default = 0 },
  { "--eval-every", "N", "evaluate every N steps as well as at each epoch's end", type = "number", default = 20 },
  { "--dim", "N", "hidden size of the small model", type = "number", default = 64 },
  { "--layers", "N", "transformer layers", type = "number", default = 2 },
  { "--threads", "N", "threads for this trial (a sweep runs several)", type = "number", default = 1 },
  { "--val-limit", "N", "validation examples evaluated", type = "number", default = 500 },
  { "--max-grad-norm", "X", "gradient clipping, 0 = none (random weights learn faster without, see "
    .. "pretraining_effect.lua)", type = "number", default = 0 },
}, { epochs = 2, lr = 5e-4, ["max-length"] = 64, ["batch-size"] = 32, limit = 4000 }), arg)
opts.no_ood = true
mb.set_threads(math.tointeger(opts.threads) or 1)
if opts.warmup >= 1 then opts.warmup = math.tointeger(opts.warmup) or math.floor(opts.warmup) end

local data = ex.load_splits(opts)
data.validation = ex.subset(data.validation, math.tointeger(opts.val_limit), opts.seed)
local dir = opts.model or ex.shared_dir() .. "/models/distilbert-base-uncased"
local tok = mb.tokenizer.load(dir)
local config = require("dkjson").decode(require("moonbert.fs").read_file(dir .. "/config.json"))
config.dim, config.n_layers, config.n_heads = math.tointeger(opts.dim), math.tointeger(opts.layers), 2
config.hidden_dim, config.max_position_embeddings = 4 * config.dim, 64
local model = mb.distilbert.new(config, { num_labels = #data.label_names, id2label = data.label_names,
                                          seed = math.tointeger(opts.seed) })

local store = ex.open_store(opts)
local run <close> = store:start_run {
  experiment = "search_finetune", name = opts.name, seed = math.tointeger(opts.seed),
  params = { lr = opts.lr, warmup = opts.warmup, weight_decay = opts.weight_decay, epochs = opts.epochs,
             batch_size = opts.batch_size, limit = opts.limit, dim = opts.dim, layers = opts.layers, init = "random" },
}
local res = mb.trainer.fit {
  model = model, tokenizer = tok, train = data.train, eval = data.validation, run = run,
  epochs = math.tointeger(opts.epochs), batch_size = math.tointeger(opts.batch_size), lr = opts.lr,
  weight_decay = opts.weight_decay, warmup = opts.warmup, seed = math.tointeger(opts.seed),
  max_length = math.tointeger(opts.max_length), eval_every = math.tointeger(opts.eval_every),
  max_grad_norm = opts.max_grad_norm, log_predictions = false, progress = "log", log_every = 1000,
}
-- CPU seconds of this process (one thread): what a sweep's budget is compared in
run:log_metric("time/cpu_seconds", os.clock())
if res.pruned then return end -- the pruner ended the run (status pruned)
local last = res.history[#res.history]
run:log_metric("val/accuracy", last.eval_accuracy, { epoch = last.epoch, split = "validation" })
print(string.format("val/accuracy %.4f after %d steps (%.1f s)", last.eval_accuracy, res.steps, res.seconds))
run:finish()
