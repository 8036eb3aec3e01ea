-- moonbert bench bow_logreg: the bag-of-WordPiece-ids baseline on the emotion data.
--
-- count_vectorizer{tokenizer=distilbert-base-uncased} over the train split (CSR, 16,000 x 30,522),
-- LogisticRegression(max_iter=3000) to moonbert's stopping rule, accuracy on the validation split.
-- scikit-learn reaches about 0.89 validation accuracy with the same features. Needs
-- ../shared/data/emotion and ../shared/models/distilbert-base-uncased (MOONBERT_SHARED).
-- --quick uses the first 2,000 training texts.
local M = { summary = "bag-of-WordPiece logistic regression on the emotion data (vectorize + fit seconds, val accuracy)" }

function M.run(opts)
  local mb = require "moonbert"
  local shared = os.getenv("MOONBERT_SHARED") or ((MOONBERT_ROOT or ".") .. "/../shared")
  local ok, data = pcall(mb.data.load_emotion, shared .. "/data/emotion")
  if not ok then return { skipped = "emotion data not found under " .. shared .. "/data/emotion" } end
  local tok = mb.tokenizer.load(shared .. "/models/distilbert-base-uncased")
  local clock = mb.tokenizer.wall_clock
  local train = data.train
  if opts and opts.quick then
    local idx = {}
    for i = 1, 2000 do idx[i] = i end
    train = train:select(idx)
  end
  local res = {}
  for _, tfidf in ipairs { false, true } do
    local t0 = clock()
    local cv = mb.learners.count_vectorizer{ tokenizer = tok, tfidf = tfidf }
    local Xtr = cv:fit_transform(train.text)
    local Xva = cv:transform(data.validation.text)
    local t1 = clock()
    local lr = mb.learners.logistic_regression{ max_iter = 3000 }:fit(Xtr, train.label)
    local t2 = clock()
    res[tfidf and "tfidf" or "counts"] = {
      shape = Xtr:shape(), csr_kb = Xtr:nbytes() // 1024, vectorize_s = t1 - t0, fit_s = t2 - t1,
      iterations = lr.n_iter, converged = lr.converged, val_acc = lr:score(Xva, data.validation.label),
      val_macro_f1 = mb.metrics.f1(data.validation.label, lr:predict(Xva), { average = "macro", zero_division = 0 }),
    }
    Xtr:free(); Xva:free(); lr:free()
  end
  return res
end

return M
