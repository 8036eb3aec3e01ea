-- baseline_vs_finetune.lua: the seed notebook, "fine-tune DistilBERT on the emotion dataset",
-- end to end. Read it top to bottom as the notebook:
--   1. dataset statistics          5. fine-tuning (Hugging Face Trainer defaults), eval each epoch
--   2. tokenization                6. final metrics, confusion matrix, out-of-domain set
--   3. frozen-model features       7. error analysis (highest- and lowest-loss examples)
--   4. baselines                   8. saved model, custom texts   9. everything in the store
--
--   moonbert run experiments/baseline_vs_finetune.lua [--quick] [--model DIR] [--data DIR] ...
--   make run ARGS="--quick"
--
-- Without pretrained weights the run continues from random weights, says so in a banner and
-- records init=random (see moonbert.experiment for the lookup order). Every number is logged to
-- the store (--store, default results/moonbert.db); the run's folder holds the model and report.
local mb = require "moonbert"
local ex = require "moonbert.experiment"

-- ---- options ----------------------------------------------------------------------------------
local opts = ex.parse_options("baseline_vs_finetune", ex.common_options {
  { "--pooling", "P", "frozen features: cls, mean or layers-mean", default = "cls",
    choices = { "cls", "mean", "layers-mean" } },
  { "--ood", "PATH", "out-of-domain set (text;label); default ../shared/data/goemotions-ood/emotion_ood.txt" },
  { "--no-ood", nil, "skip the out-of-domain evaluation" },
  { "--no-cache", nil, "recompute the frozen-model features" },
  { "--no-report", nil, "skip the report artifacts (the 2-D maps take a while on large splits)" },
  table.unpack(ex.CHECKPOINT_OPTIONS),
}, arg)
local device, max_length, epochs, bs, seed = opts.device, opts.max_length, opts.epochs, opts.batch_size, opts.seed
local t_start = mb.store.now()

-- ---- 1. the data ------------------------------------------------------------------------------
local data = ex.load_splits(opts)
local names = data.label_names
local train, val, test, ood, ood_path = data.train, data.validation, data.test, data.ood, data.ood_path

print("== 1. Dataset")
local rows = {}
for _, s in ipairs { { "train", train }, { "validation", val }, { "test", test }, { "ood", ood } } do
  if s[2] then
    local counts = s[2]:class_counts()
    local wpt = s[2]:words_per_text()
    local sum = 0
    for _, w in ipairs(wpt) do sum = sum + w end
    local r = { s[1], #s[2].text }
    for i = 1, #names do r[#r + 1] = counts[i] or 0 end
    r[#r + 1] = sum / math.max(#wpt, 1)
    rows[#rows + 1] = r
  end
end
local headers = { "split", "examples" }
for _, n in ipairs(names) do headers[#headers + 1] = n end
headers[#headers + 1] = "words/text"
ex.print_table(headers, rows)

-- ---- the model and the run --------------------------------------------------------------------
local info = ex.resolve_model { model = opts.model }
ex.print_banner(info)
local tok = ex.load_tokenizer(info)
local model = ex.place(ex.load_model(info, { num_labels = #names, id2label = names, seed = seed }), opts)
local model_hash = ex.model_hash(info, seed)
local data_hash = mb.store.sha256(train:hash() .. val:hash() .. test:hash())

local store = ex.open_store(opts)
local run <close> = ex.start_run(store, opts, {
  experiment = "baseline_vs_finetune", name = opts.name, seed = seed, device = device,
  dataset_hash = data_hash, model_hash = model_hash,
  params = ex.with_device({ model = info.dir, init = info.init, data = opts.data, epochs = epochs, batch_size = bs,
             lr = opts.lr, weight_decay = opts.weight_decay, max_length = max_length, pooling = opts.pooling,
             quick = opts.quick, limit = opts.limit, ood = ood_path or "none",
             n_train = #train.text, n_validation = #val.text, n_test = #test.text }, opts),
  tags = { init = info.init },
})
print(string.format("run %d (store %s, init=%s)", run.id, opts.store, info.init))
local report = not opts.no_report and ex.optional("report") or nil
if report then
  ex.try("dataset statistics for the report", function()
    report.log_dataset_stats(run, "train", train, names)
  end)
end

-- ---- 2. tokenization --------------------------------------------------------------------------
print("\n== 2. Tokenization")
local sample = tok:encode(train.text[1])
print("text:   " .. train.text[1])
print("ids:    " .. table.concat(sample.input_ids, " "))
print("tokens: " .. table.concat(tok:convert_ids_to_tokens(sample.input_ids), " "))
local lengths = train:lengths(tok, { max_length = max_length })
local longest, total = 0, 0
for _, l in ipairs(lengths) do longest = math.max(longest, l); total = total + l end
print(string.format("train: %d texts, %.1f tokens on average, longest %d (max_length %d)",
                    #lengths, total / #lengths, longest, max_length))
run:log_metric("data/train_tokens_mean", total / #lengths, { split = "train" })

-- ---- 3. features from the frozen model --------------------------------------------------------
print("\n== 3. Features from the frozen model (" .. opts.pooling .. " pooling)")
local cache_dir = (opts.store:match("^(.*)/[^/]*$") or ".") .. "/cache"
local fopts = { pooling = opts.pooling, max_length = max_length, batch_size = bs, model_hash = model_hash,
                cache_dir = not opts.no_cache and cache_dir or nil }
local X, hits = {}, 0
local t_features = mb.store.now()
for _, s in ipairs { { "train", train }, { "validation", val }, { "test", test }, { "ood", ood } } do
  if not s[2] then goto next_split end
  local t0 = mb.store.now()
  fopts.label = s[1]
  local Xs, hit, path = ex.features(model, s[2], tok, fopts)
  X[s[1]] = Xs
  if hit then hits = hits + 1 end
  print(string.format("%-10s [%d, %d] %s (%.1f s)", s[1], Xs:shape()[1], Xs:shape()[2],
                      hit and ("from cache " .. path) or "computed", mb.store.now() - t0))
  ::next_split::
end
local features_seconds = mb.store.now() - t_features
run:log_metric("features/cache_hits", hits)
run:log_metric("time/features_seconds", features_seconds)

-- ---- 4. baselines -----------------------------------------------------------------------------
print("\n== 4. Baselines")
local results = {} -- rows of the summary table
local comparison = {} -- the same rows for the report (mb.report.log_comparison), with times and out-of-domain
-- Logged after the baselines and again with the fine-tuned model: a run stopped while it
-- fine-tunes still reports its baselines.
local function log_comparison()
  if not report then return end
  ex.try("the comparison table for the report", function()
    report.log_comparison(run, comparison, { ood_name = ood and ("out-of-domain, " .. #ood.text .. " texts") or nil,
      note = "time: fitting and predicting; the features model includes extracting the frozen features " ..
             "(read from the cache when this model and data were seen before); fine-tuning excludes evaluation" })
  end)
end
-- t0: when this model's work began (fit included); extra_seconds: shared work it needs (features)
local function evaluate_baseline(key, title, clf, Xv, Xt, Xo, t0, extra_seconds)
  local row = { title }
  local crow = { name = title, key = key }
  for _, s in ipairs { { "val", val, Xv, "validation" }, { "test", test, Xt, "test" }, { "ood", ood, Xo, "ood" } } do
    if s[2] and s[3] then
      local p = clf:predict(s[3])
      p = type(p) == "table" and p or p:totable()
      local sc = ex.scores(s[2].label, p)
      run:log_metric(key .. "/" .. s[1] .. "/accuracy", sc.accuracy, { split = s[4] })
      run:log_metric(key .. "/" .. s[1] .. "/f1", sc.f1, { split = s[4] })
      run:log_confusion(key .. "/" .. s[4], ex.confusion(s[2].label, p, names), names)
      if s[1] ~= "ood" then row[#row + 1], row[#row + 2] = sc.accuracy, sc.f1 end
      crow[s[4]] = { accuracy = sc.accuracy, f1 = sc.f1 }
    end
  end
  crow.seconds = mb.store.now() - t0 + (extra_seconds or 0)
  run:log_metric("time/" .. key .. "_seconds", crow.seconds)
  comparison[#comparison + 1] = crow
  results[#results + 1] = row
  print(string.format("%-40s val accuracy %.4f  F1 %.4f   test accuracy %.4f  F1 %.4f", title, row[2], row[3], row[4], row[5]))
end

for _, strategy in ipairs { "most_frequent", "uniform" } do
  local t0 = mb.store.now()
  local d = mb.learners.dummy { strategy = strategy, seed = seed }
  d:fit(#train.text, train.label)
  evaluate_baseline("dummy_" .. strategy, "dummy (" .. strategy .. ")", d, #val.text, #test.text, ood and #ood.text, t0)
end

local t_bow = mb.store.now()
local bow = mb.learners.count_vectorizer { tokenizer = false, tfidf = true }
local Xb_train = bow:fit_transform(train.text)
local tfidf_lr = mb.learners.logistic_regression { max_iter = 1000 }
tfidf_lr:fit(Xb_train, train.label)
evaluate_baseline("tfidf_logreg", "logistic regression, TF-IDF", tfidf_lr, bow:transform(val.text),
                  bow:transform(test.text), ood and bow:transform(ood.text), t_bow)

local t_feat = mb.store.now()
local feat_lr = mb.learners.logistic_regression { max_iter = 3000 }
feat_lr:fit(X.train, train.label)
evaluate_baseline("features_logreg", "logistic regression, " .. opts.pooling .. " features", feat_lr, X.validation,
                  X.test, X.ood, t_feat, features_seconds)
log_comparison()

if report and mb.umap then
  ex.try("2-D map of the frozen features", function()
    local xy = mb.umap.fit_transform(X.validation, { seed = seed })
    report.log_embedding(run, "before", xy, val.label, names)
  end)
end

-- ---- 5. fine-tuning ---------------------------------------------------------------------------
-- the frozen features and the baselines' matrices are done with: give their memory back before
-- the fine-tune (the run's peak is the fine-tune's, with the optimizer state)
X, Xb_train, bow, tfidf_lr, feat_lr = nil, nil, nil, nil, nil
collectgarbage()
print(string.format("\n== 5. Fine-tuning (%d epoch%s, batch size %d, lr %g, weight decay %g, max length %d)",
                    epochs, epochs == 1 and "" or "s", bs, opts.lr, opts.weight_decay, max_length))
local t_fit = mb.store.now()
local fit_opts = ex.checkpoint_options(run, opts)
for k, v in pairs { model = model, train = train, eval = val, tokenizer = tok, epochs = epochs, batch_size = bs,
                    lr = opts.lr, weight_decay = opts.weight_decay, seed = seed, run = run, max_length = max_length } do
  fit_opts[k] = v
end
ex.fit(fit_opts)
local fine_tune_seconds = mb.store.now() - t_fit
run:log_metric("time/fine_tune_seconds", fine_tune_seconds)

-- ---- 6. final metrics -------------------------------------------------------------------------
print("\n== 6. Final metrics")
local preds = {}
local final = { "fine-tuned " .. ex.model_name(info) }
local crow = { name = "fine-tuned " .. ex.model_name(info), key = "", seconds = fine_tune_seconds }
for _, s in ipairs { { "val", val, "validation" }, { "test", test, "test" }, { "ood", ood, "ood" } } do
  if s[2] then
    local p = ex.predict(model, s[2], tok, { batch_size = bs, max_length = max_length })
    preds[s[1]] = p
    local sc = ex.scores(s[2].label, p.predicted)
    run:log_metric(s[1] .. "/accuracy", sc.accuracy, { split = s[3], epoch = epochs })
    run:log_metric(s[1] .. "/f1", sc.f1, { split = s[3], epoch = epochs })
    run:log_confusion(s[3], ex.confusion(s[2].label, p.predicted, names), names, { epoch = epochs })
    p.scores = sc
    crow[s[3]] = { accuracy = sc.accuracy, f1 = sc.f1 }
    if s[1] ~= "ood" then final[#final + 1], final[#final + 2] = sc.accuracy, sc.f1 end
  end
end
results[#results + 1] = final
comparison[#comparison + 1] = crow
log_comparison()
local label_ids = {}
for i = 1, #names do label_ids[i] = i - 1 end
print(mb.metrics.classification_report(val.label, preds.val.predicted,
                                       { target_names = names, labels = label_ids, zero_division = 0 }))
local cm = ex.confusion(val.label, preds.val.predicted, names)
local cm_rows = {}
for i, r in ipairs(cm) do cm_rows[i] = { names[i], table.unpack(r) } end
local cm_head = { "true \\ predicted" }
for _, n in ipairs(names) do cm_head[#cm_head + 1] = n end
print("confusion matrix (validation, counts):")
ex.print_table(cm_head, cm_rows)
if preds.ood then
  print(string.format("out-of-domain (%s, %d texts): accuracy %.4f  F1 %.4f", ood_path, #ood.text,
                      preds.ood.scores.accuracy, preds.ood.scores.f1))
end

-- ---- 7. error analysis ------------------------------------------------------------------------
print("\n== 7. Error analysis: validation examples by loss")
local pv = preds.val
local probs = pv.probs
local prow = { index = {}, label = {}, predicted = {}, loss = {}, probs = {} }
for i = 1, #val.text do
  prow.index[i], prow.label[i], prow.predicted[i], prow.loss[i], prow.probs[i] =
    i, val.label[i], pv.predicted[i], pv.loss[i], probs[i]
end
run:log_predictions("validation", prow)
if preds.test then
  local pt = preds.test
  local tp = pt.probs
  local trow = { index = {}, label = {}, predicted = {}, loss = {}, probs = {} }
  for i = 1, #test.text do
    trow.index[i], trow.label[i], trow.predicted[i], trow.loss[i], trow.probs[i] =
      i, test.label[i], pt.predicted[i], pt.loss[i], tp[i]
  end
  run:log_predictions("test", trow)
end
if report then
  ex.try("example texts for the report", function()
    report.log_examples(run, "validation", val.text)
    report.log_examples(run, "test", test.text)
  end)
end
local order = {}
for i = 1, #val.text do order[i] = i end
table.sort(order, function(a, b) return pv.loss[a] > pv.loss[b] end)
local function show(title, from, to, step)
  print(title)
  local r = {}
  for k = from, to, step do
    local i = order[k]
    if i then
      local text = val.text[i]
      if utf8.len(text) and utf8.len(text) > 70 then text = text:sub(1, utf8.offset(text, 68) - 1) .. "..." end
      r[#r + 1] = { text, names[val.label[i] + 1], names[pv.predicted[i] + 1], pv.loss[i] }
    end
  end
  ex.print_table({ "text", "label", "predicted", "loss" }, r)
end
local n_show = math.min(10, #order)
show("highest loss:", 1, n_show, 1)
show("lowest loss:", #order, math.max(#order - n_show + 1, 1), -1)

-- ---- 8. the saved model and custom texts ------------------------------------------------------
print("\n== 8. Saved model and custom texts")
local model_dir = run:artifact_dir() .. "/model"
ex.mkdir_p(model_dir)
model:save(model_dir)
ex.copy_tokenizer(info.tokenizer_dir, model_dir)
run:log_artifact("model", model_dir)
ex.after_fit(run, opts)
print("model saved to " .. model_dir)

local custom = { "I saw a movie today and it was really good.",
                 "I am so scared of what tomorrow brings.",
                 "He forgot my birthday again and I am furious." }
local clf = mb.pipeline("text-classification", model_dir, { top_k = #names, max_length = max_length })
local custom_probs, custom_rows = {}, {}
for i, scores in ipairs(clf(custom)) do
  local by = {}
  for _, s in ipairs(scores) do by[s.label] = s.score end
  custom_probs[i] = {}
  for k, n in ipairs(names) do custom_probs[i][k] = by[n] end
  local r = { custom[i], scores[1].label }
  for k = 1, #names do r[#r + 1] = custom_probs[i][k] end
  custom_rows[i] = r
end
clf:free()
-- the custom texts in the store too: predictions of split "custom" (no true label) and their texts
local crow = {}
for i = 1, #custom do
  local best = 1
  for k = 2, #names do if custom_probs[i][k] > custom_probs[i][best] then best = k end end
  crow[i] = { index = i, predicted = best - 1, probs = custom_probs[i] }
end
run:log_predictions("custom", crow)
local texts_path = run:artifact_dir() .. "/custom_texts.json"
local f = assert(io.open(texts_path, "w"))
f:write(require("dkjson").encode(custom), "\n")
f:close()
run:log_artifact("custom_texts", texts_path)
local ch = { "text", "label" }
for _, n in ipairs(names) do ch[#ch + 1] = n end
ex.print_table(ch, custom_rows)
if report then
  ex.try("custom predictions for the report", function() report.log_custom_predictions(run, custom, custom_probs, names) end)
  if mb.umap then
    ex.try("2-D map of the fine-tuned features", function()
      local Xa = ex.features(model, val, tok, { pooling = opts.pooling, max_length = max_length, batch_size = bs })
      report.log_embedding(run, "after", mb.umap.fit_transform(Xa, { seed = seed }), val.label, names)
    end)
  end
end

-- ---- 9. summary -------------------------------------------------------------------------------
run:log_metric("time/total_seconds", mb.store.now() - t_start)
ex.log_device_memory(run, opts)
run:finish()
print(string.format("\n== Summary: baseline_vs_finetune, run %d (init=%s%s)", run.id, info.init,
                    opts.quick and ", quick" or ""))
ex.print_table({ "model", "val accuracy", "val F1", "test accuracy", "test F1" }, results)
if preds.ood then
  print(string.format("out-of-domain: accuracy %.4f  F1 %.4f (%d texts)", preds.ood.scores.accuracy,
                      preds.ood.scores.f1, #ood.text))
end
if info.init ~= "pretrained" then print("(init=" .. info.init .. ": not pretrained " .. ex.model_family(info) .. " weights)") end
print("run folder: " .. run:artifact_dir())
if report then ex.write_report(store, run) end
