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
-- every epoch; the store run holds val/exact_match and val/f1 per epoch, the trainer's train/loss and the
-- final predictions (for error analysis); `moonbert report` renders it.
local mb = require "moonbert"
local finetune = require "moonbert.finetune"
local squad = require "moonbert.squad"
local qa = require "moonbert.pipeline_qa"

local opts = finetune.parse("finetune_qa", {
  format = "SQuAD v1.1 JSON", head = "qa_outputs is added", batch_unit = "windows", epochs = 2, batch_size = 12,
  lr = 3e-5,
  rows = {
    { "--max-seq-len", "N", "tokens per window", type = "number", default = 384 },
    { "--doc-stride", "N", "tokens shared by consecutive windows", type = "number", default = 128 },
    { "--max-answer-len", "N", "longest predicted answer in tokens", type = "number", default = 30 },
  },
  integers = { "max_seq_len", "max_answer_len" }, naturals = { "doc_stride" } })

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

-- ---- training: mb.trainer.fit over the windows (moonbert.finetune) --------------------------------------
local first_sc = evaluate(0)
local sc, preds = first_sc, nil
finetune.train { model = model, tokenizer = tok, items = feats, hash = opts.train .. ":" .. #feats, opts = opts, run = run,
                 encode = function(list) return squad.batch(list, 1, #list) end,
                 evaluate = function(epoch) sc, preds = evaluate(epoch) end }

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
model:free()
