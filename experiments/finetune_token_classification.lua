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
-- val/precision, val/recall, val/f1, val/accuracy per epoch, the trainer's train/loss, the final tag
-- confusion matrix and per-type F1 (val/f1/<TYPE>); `moonbert report` renders it.
local mb = require "moonbert"
local finetune = require "moonbert.finetune"
local conll = require "moonbert.conll"

local opts = finetune.parse("finetune_token_classification", {
  format = "CoNLL columns", head = "a new classifier is added", batch_unit = "sentences", epochs = 3, batch_size = 16,
  lr = 5e-5, rows = { { "--max-length", "N", "pieces per sentence", type = "number", default = 128 } },
  integers = { "max_length" } })

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

-- ---- training: mb.trainer.fit over the sentences (moonbert.finetune) -----------------------------
local first_sc = evaluate(0)
local sc, gold, pred = first_sc, nil, nil
finetune.train { model = model, tokenizer = tok, items = train.sentences, hash = opts.train .. ":" .. #train.sentences,
                 opts = opts, run = run,
                 encode = function(list) return conll.encode(tok, list, tag_ids, { max_length = opts.max_length }) end,
                 evaluate = function(epoch) sc, gold, pred = evaluate(epoch) end }

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
model:free()
