-- finetune_qa.lua: fine-tune a BERT or DistilBERT model for extractive question answering on
-- SQuAD v1.1 JSON, as the course notebook's question-answering chapter and Hugging Face's run_qa
-- do, and report exact match and F1 as the official SQuAD v1.1 evaluation script computes them.
--
--   moonbert run experiments/finetune_qa.lua --train data/squad/train-v1.1.json \
--       --validation data/squad/dev-v1.1.json --model models/bert-base-uncased [--epochs 2] [--lr 3e-5]
--
-- Training windows: question + context truncated only_second to --max-seq-len with --doc-stride
-- tokens shared between windows (mb.squad.features); answers are predicted with the
-- question-answering pipeline's algorithm over every window (mb.pipeline_qa.postprocess, top 1,
-- max_answer_len 30 as run_qa). The validation set is scored before training (epoch 0) and after
-- every epoch; the store run holds val/exact_match and val/f1 per epoch, train/loss per step and the
-- final predictions (for error analysis); `moonbert report` renders it.
local mb = require "moonbert"
local args = require "moonbert.args"
local squad = require "moonbert.squad"
local qa = require "moonbert.pipeline_qa"
local progress = require "moonbert.progress"

local SPEC = {
  { "--train", "FILE", "training data (SQuAD v1.1 JSON)" },
  { "--validation", "FILE", "validation data (SQuAD v1.1 JSON)" },
  { "--model", "DIR", "BERT or DistilBERT folder (a pretrained encoder; qa_outputs is added)" },
  { "--store", "PATH", "results store", default = "results/moonbert.db" },
  { "--epochs", "N", "epochs", type = "number", default = 2 },
  { "--batch-size", "N", "windows per batch", type = "number", default = 12 },
  { "--lr", "X", "peak learning rate (linear decay, no warmup)", type = "number", default = 3e-5 },
  { "--weight-decay", "X", "AdamW weight decay", type = "number", default = 0.01 },
  { "--max-seq-len", "N", "tokens per window", type = "number", default = 384 },
  { "--doc-stride", "N", "tokens shared by consecutive windows", type = "number", default = 128 },
  { "--max-answer-len", "N", "longest predicted answer in tokens", type = "number", default = 30 },
  { "--seed", "N", "seed (head init, dropout, shuffling)", type = "number", default = 42 },
  { "--name", "NAME", "run name" },
  { "--help", nil, "show this help" },
}
local USAGE = args.usage(SPEC, "usage: moonbert run experiments/finetune_qa.lua --train FILE --validation FILE "
  .. "--model DIR [options]\n\noptions:")

local ok, opts = pcall(args.parse, arg or {}, SPEC)
if not ok then io.stderr:write("finetune_qa: ", args.message(opts), "\n", USAGE, "\n") os.exit(2) end
if opts.help then print(USAGE) os.exit(0) end
for _, k in ipairs { "train", "validation", "model" } do
  if not opts[k] then io.stderr:write("finetune_qa: --", k, " is required\n", USAGE, "\n") os.exit(2) end
end
local okp = pcall(function()
  for _, k in ipairs { "epochs", "batch_size", "max_seq_len", "max_answer_len", "seed" } do
    opts[k] = args.integer(opts, k, k == "seed" and 0 or 1)
  end
  opts.doc_stride = args.integer(opts, "doc_stride", 0)
end)
if not okp then io.stderr:write("finetune_qa: integer options take whole numbers\n") os.exit(2) end

-- ---- data and model --------------------------------------------------------------------------------
local train = squad.read(opts.train)
local valid = squad.read(opts.validation)
local tok = mb.tokenizer.load(opts.model)
local feats = squad.features(tok, train, { max_seq_len = opts.max_seq_len, doc_stride = opts.doc_stride })
print(string.format("data: %d training questions (%d windows), %d validation questions", #train, #feats, #valid))
local model = mb.auto.load(opts.model, { task = "question-answering", seed = opts.seed, quiet = true })
print(tostring(model))

local store = require("moonbert.experiment").open_store(opts)
local run <close> = store:start_run {
  experiment = "finetune_qa", name = opts.name, seed = opts.seed,
  params = { model = opts.model, train = opts.train, validation = opts.validation, epochs = opts.epochs,
             batch_size = opts.batch_size, lr = opts.lr, weight_decay = opts.weight_decay,
             max_seq_len = opts.max_seq_len, doc_stride = opts.doc_stride, max_answer_len = opts.max_answer_len,
             n_train = #train, n_windows = #feats, n_validation = #valid },
}
print(string.format("run %d (store %s)", run.id, opts.store))

-- ---- evaluation: the pipeline's span selection over each question's windows --------------------------
local function predict(examples)
  local o = { max_seq_len = opts.max_seq_len, doc_stride = opts.doc_stride, batch_size = opts.batch_size,
              top_k = 1, max_answer_len = opts.max_answer_len }
  local preds = {}
  for _, ex in ipairs(examples) do
    local windows = qa.windows_of(model, tok, ex.question, ex.context, o)
    preds[ex.id] = qa.postprocess(windows, ex.context, o).answer
  end
  return preds
end

local function evaluate(epoch)
  local preds = predict(valid)
  local sc = squad.evaluate(valid, preds)
  run:log_metrics({ ["val/exact_match"] = sc.exact_match, ["val/f1"] = sc.f1 }, { epoch = epoch, split = "validation" })
  print(string.format("epoch %d: validation exact match %.2f, F1 %.2f", epoch, sc.exact_match, sc.f1))
  return sc, preds
end

-- ---- training -----------------------------------------------------------------------------------------
local steps_per_epoch = math.ceil(#feats / opts.batch_size)
local opt = mb.optim.adamw(mb.trainer.optimizer_params(model), { lr = opts.lr, weight_decay = opts.weight_decay,
  schedule = mb.optim.schedule.linear { warmup_steps = 0, total_steps = steps_per_epoch * opts.epochs } })
model:seed(opts.seed)
local rng_state = opts.seed
local function shuffle(t)
  for i = #t, 2, -1 do
    rng_state = (rng_state * 1103515245 + 12345) % 2147483648
    local j = rng_state % i + 1
    t[i], t[j] = t[j], t[i]
  end
end

local first_sc = evaluate(0)
local sc, preds = first_sc, nil
local step = 0
for epoch = 1, opts.epochs do
  shuffle(feats)
  local bar = progress.new { label = "epoch " .. epoch, total = #feats }
  for first = 1, #feats, opts.batch_size do
    local last = math.min(#feats, first + opts.batch_size - 1)
    local b = squad.batch(feats, first, last)
    step = step + 1
    local loss = mb.trainer.step(model, opt, b, nil, { max_grad_norm = 1.0, step = step, epoch = epoch })
    run:log_metric("train/loss", loss, { step = step, epoch = epoch, split = "train" })
    bar:advance(last - first + 1)
  end
  bar:done()
  sc, preds = evaluate(epoch)
end

-- ---- report --------------------------------------------------------------------------------------------
local rows = {}
for i, ex in ipairs(valid) do
  local pred = preds[ex.id] or ""
  local right = 0
  for _, a in ipairs(ex.answers) do if squad.exact_match(pred, a.text) then right = 1 end end
  rows[i] = { index = i - 1, label = right, predicted = 1, loss = 0 }
end
run:log_predictions("validation", rows)
print(string.format("\nvalidation exact match %.2f -> %.2f, F1 %.2f -> %.2f after %d epoch%s", first_sc.exact_match,
  sc.exact_match, first_sc.f1, sc.f1, opts.epochs, opts.epochs == 1 and "" or "s"))
for i = 1, math.min(5, #valid) do
  local ex = valid[i]
  print(string.format("  %-40s gold %-20s predicted %s", ex.question:sub(1, 40),
    string.format("%q", ex.answers[1] and ex.answers[1].text or ""), string.format("%q", preds[ex.id] or "")))
end
opt:free()
model:free()
