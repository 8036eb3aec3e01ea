-- finetune_token_classification.lua: fine-tune a BERT or DistilBERT model for named-entity
-- recognition on CoNLL-2003-format data, as the course notebook's token-classification chapter
-- and Hugging Face's run_ner do, and report entity-level precision, recall and F1 (seqeval) and the
-- confusion of tags over words.
--
--   moonbert run experiments/finetune_token_classification.lua --train data/conll2003/train.txt \
--       --validation data/conll2003/valid.txt --model models/bert-base-cased [--epochs 3] [--lr 5e-5]
--
-- Files hold one token per line with its tag in the last column and a blank line between
-- sentences (mb.conll). The label set is the training file's tags (O first). Each word's first
-- piece is labelled, the others ignored (-100); predictions are read at first pieces. Before
-- training (epoch 0) and after every epoch the validation set is scored; the store run holds
-- val/precision, val/recall, val/f1, val/accuracy per epoch, train/loss per step, the final tag
-- confusion matrix and per-type F1 (val/f1/<TYPE>); `moonbert report` renders it.
local mb = require "moonbert"
local args = require "moonbert.args"
local conll = require "moonbert.conll"
local progress = require "moonbert.progress"

local SPEC = {
  { "--train", "FILE", "training data (CoNLL columns)" },
  { "--validation", "FILE", "validation data (CoNLL columns)" },
  { "--model", "DIR", "BERT or DistilBERT folder (a pretrained encoder; a new classifier is added)" },
  { "--store", "PATH", "results store", default = "results/moonbert.db" },
  { "--epochs", "N", "epochs", type = "number", default = 3 },
  { "--batch-size", "N", "sentences per batch", type = "number", default = 16 },
  { "--lr", "X", "peak learning rate (linear decay, no warmup)", type = "number", default = 5e-5 },
  { "--weight-decay", "X", "AdamW weight decay", type = "number", default = 0.01 },
  { "--max-length", "N", "pieces per sentence", type = "number", default = 128 },
  { "--seed", "N", "seed (head init, dropout, shuffling)", type = "number", default = 42 },
  { "--name", "NAME", "run name" },
  { "--help", nil, "show this help" },
}
local USAGE = args.usage(SPEC, "usage: moonbert run experiments/finetune_token_classification.lua --train FILE "
  .. "--validation FILE --model DIR [options]\n\noptions:")

local ok, opts = pcall(args.parse, arg or {}, SPEC)
if not ok then io.stderr:write("finetune_token_classification: ", args.message(opts), "\n", USAGE, "\n") os.exit(2) end
if opts.help then print(USAGE) os.exit(0) end
for _, k in ipairs { "train", "validation", "model" } do
  if not opts[k] then io.stderr:write("finetune_token_classification: --", k, " is required\n", USAGE, "\n") os.exit(2) end
end
local okp = pcall(function()
  for _, k in ipairs { "epochs", "batch_size", "max_length", "seed" } do opts[k] = args.integer(opts, k, k == "seed" and 0 or 1) end
end)
if not okp then io.stderr:write("finetune_token_classification: --epochs, --batch-size, --max-length and --seed take integers\n") os.exit(2) end

-- ---- data and model ----------------------------------------------------------------------------
local train = conll.read(opts.train)
local valid = conll.read(opts.validation)
local tags = train.tags
local tag_ids = {}
for i, t in ipairs(tags) do tag_ids[t] = i - 1 end
for _, s in ipairs(valid.sentences) do
  for _, t in ipairs(s.tags) do
    if not tag_ids[t] then io.stderr:write("finetune_token_classification: validation tag '", t, "' is not in the training data\n") os.exit(1) end
  end
end
print(string.format("data: %d training sentences, %d validation sentences, %d tags (%s)", #train.sentences,
  #valid.sentences, #tags, table.concat(tags, " ")))
local tok = mb.tokenizer.load(opts.model)
local model = mb.auto.load(opts.model, { task = "token-classification", id2label = tags, seed = opts.seed, quiet = true })
print(tostring(model))

local store = require("moonbert.experiment").open_store(opts)
local run <close> = store:start_run {
  experiment = "finetune_token_classification", name = opts.name, seed = opts.seed,
  params = { model = opts.model, train = opts.train, validation = opts.validation, epochs = opts.epochs,
             batch_size = opts.batch_size, lr = opts.lr, weight_decay = opts.weight_decay,
             max_length = opts.max_length, n_train = #train.sentences, n_validation = #valid.sentences,
             tags = table.concat(tags, " ") },
}
print(string.format("run %d (store %s)", run.id, opts.store))

-- ---- evaluation ------------------------------------------------------------------------------
-- word-level tag sequences of the validation sentences as the model predicts them
local function predict(sentences)
  local pred = {}
  for first = 1, #sentences, opts.batch_size do
    local chunk = table.move(sentences, first, math.min(#sentences, first + opts.batch_size - 1), 1, {})
    local b = conll.encode(tok, chunk, tag_ids, { max_length = opts.max_length })
    local logits = model:forward(b).logits
    local best = logits:argmax(3):totable()
    logits:free()
    for i, s in ipairs(chunk) do
      local seq = {}
      for w = 1, #s.words do seq[w] = "O" end -- words cut by max_length count as O
      for t, w in ipairs(b.word_of[i]) do if w then seq[w] = tags[best[i][t]] end end
      pred[#pred + 1] = seq
    end
  end
  return pred
end

local function evaluate(epoch)
  local pred = predict(valid.sentences)
  local gold = {}
  for i, s in ipairs(valid.sentences) do gold[i] = s.tags end
  local sc = conll.seqeval(gold, pred)
  run:log_metrics({ ["val/precision"] = sc.precision, ["val/recall"] = sc.recall, ["val/f1"] = sc.f1,
                    ["val/accuracy"] = sc.accuracy }, { epoch = epoch, split = "validation" })
  print(string.format("epoch %d: validation entity precision %.3f recall %.3f F1 %.3f, tag accuracy %.3f", epoch,
    sc.precision, sc.recall, sc.f1, sc.accuracy))
  return sc, gold, pred
end

-- ---- training ------------------------------------------------------------------------------------
local steps_per_epoch = math.ceil(#train.sentences / opts.batch_size)
local opt = mb.optim.adamw(mb.trainer.optimizer_params(model), { lr = opts.lr, weight_decay = opts.weight_decay,
  schedule = mb.optim.schedule.linear { warmup_steps = 0, total_steps = steps_per_epoch * opts.epochs } })
model:seed(opts.seed)
local rng_state = opts.seed
local function shuffled(n)
  local idx = {}
  for i = 1, n do idx[i] = i end
  for i = n, 2, -1 do
    rng_state = (rng_state * 1103515245 + 12345) % 2147483648
    local j = rng_state % i + 1
    idx[i], idx[j] = idx[j], idx[i]
  end
  return idx
end

local first_sc = evaluate(0)
local sc, gold, pred = first_sc, nil, nil
local step = 0
for epoch = 1, opts.epochs do
  local order = shuffled(#train.sentences)
  local bar = progress.new { label = "epoch " .. epoch, total = #order }
  for first = 1, #order, opts.batch_size do
    local chunk = {}
    for k = first, math.min(#order, first + opts.batch_size - 1) do chunk[#chunk + 1] = train.sentences[order[k]] end
    local b = conll.encode(tok, chunk, tag_ids, { max_length = opts.max_length })
    step = step + 1
    local loss = mb.trainer.step(model, opt, b, b.labels, { max_grad_norm = 1.0, step = step, epoch = epoch })
    run:log_metric("train/loss", loss, { step = step, epoch = epoch, split = "train" })
    bar:advance(#chunk)
  end
  bar:done()
  sc, gold, pred = evaluate(epoch)
end

-- ---- report ----------------------------------------------------------------------------------------
local index = {}
for i, t in ipairs(tags) do index[t] = i end
local cm = {}
for i = 1, #tags do cm[i] = {} for j = 1, #tags do cm[i][j] = 0 end end
for s = 1, #gold do
  for w = 1, #gold[s] do cm[index[gold[s][w]]][index[pred[s][w]]] = cm[index[gold[s][w]]][index[pred[s][w]]] + 1 end
end
run:log_confusion("validation", cm, tags, { epoch = opts.epochs })
local types = {}
for t in pairs(sc.per_type) do types[#types + 1] = t end
table.sort(types)
print("\nentity type   precision  recall  F1     support")
for _, t in ipairs(types) do
  local r = sc.per_type[t]
  run:log_metric("val/f1/" .. t, r.f1, { epoch = opts.epochs, split = "validation" })
  print(string.format("%-12s  %-9.3f  %-6.3f  %-5.3f  %d", t, r.precision, r.recall, r.f1, r.support))
end
print("\ntag confusion over validation words (rows: true, columns: predicted)")
io.write(string.format("%-8s", ""))
for _, t in ipairs(tags) do io.write(string.format("%8s", t)) end
io.write("\n")
for i, t in ipairs(tags) do
  io.write(string.format("%-8s", t))
  for j = 1, #tags do io.write(string.format("%8d", cm[i][j])) end
  io.write("\n")
end
print(string.format("\nvalidation entity F1: %.3f before training, %.3f after %d epoch%s", first_sc.f1, sc.f1,
  opts.epochs, opts.epochs == 1 and "" or "s"))
opt:free()
model:free()
