-- moonbert.learners (mb.learners): classical learners with scikit-learn's names and semantics.
--
--   local lr = mb.learners.logistic_regression{C=1.0, max_iter=3000, tol=1e-4}
--   lr:fit(X_train, y_train)            -- X: float32 tensor [n, d] or a CSR matrix; y: list or int32 tensor
--   lr:predict(X), lr:predict_proba(X), lr:score(X, y), lr.coef, lr.intercept, lr.classes, lr.n_iter
--   local dm = mb.learners.dummy{strategy="most_frequent"}   -- "prior", "stratified", "uniform" (seed=)
--   local bow = mb.learners.count_vectorizer{tokenizer=tok, tfidf=true, binary=false, min_df=1}
--   local Xb = bow:fit_transform(texts)  -- CSR [n, vocab_size]; bow:transform(more_texts)
--   local sc = mb.learners.standard_scaler(); local Z = sc:fit_transform(X)   -- also minmax_scaler()
--
-- Labels are 0-based ids stored as values (any non-negative integers); predictions are label values.
-- Logistic regression is runtime/logreg.c (L-BFGS in float64, threaded, CSR input never densified);
-- its stopping rule is max|gradient| <= tol on scikit-learn's objective (see runtime/logreg.h), which
-- reaches the exact optimum where scikit-learn stops a little short. Reaching max_iter warns on
-- stderr like scikit-learn's ConvergenceWarning (warn=false silences it; lr.converged tells).
local core = require("moonbert.core").learners
local check = require "moonbert.check"
local cmetrics = require("moonbert.core").metrics

local M = {}

-- Where warnings go (a function of one string); specs replace it.
M.warn = function(msg) io.stderr:write(msg, "\n") end


local function check_opts(o, fn)
  if o == nil then return {} end
  if type(o) ~= "table" then check.arg(1, fn, "options table expected, got " .. type(o)) end
  return o
end

local function nrows(X)
  if type(X) == "table" then return #X end
  if type(X) == "number" then return X end
  local ok, shape = pcall(function() return X:shape() end)
  if ok and type(shape) == "table" then return shape[1] end
  return nil
end

local function labels_table(y)
  if type(y) == "table" then return y end
  return y:totable()
end

-- ---- logistic regression -----------------------------------------------------------------------
local LogisticRegression = {}
LogisticRegression.__index = LogisticRegression
LogisticRegression.__name = "moonbert.learners.LogisticRegression"

function M.logistic_regression(o)
  o = check_opts(o, "logistic_regression")
  local self = setmetatable({
    C = o.C or 1.0, max_iter = o.max_iter or 100, tol = o.tol or 1e-4, ftol = o.ftol or 0,
    fit_intercept = o.fit_intercept ~= false, precondition = o.precondition ~= false, warn = o.warn ~= false,
  }, LogisticRegression)
  if type(self.C) ~= "number" or self.C <= 0 then check.arg(1, "logistic_regression", "C must be a positive number") end
  if math.type(self.max_iter) ~= "integer" or self.max_iter < 0 then
    check.arg(1, "logistic_regression", "max_iter must be a non-negative integer")
  end
  return self
end

function LogisticRegression:fit(X, y)
  if X == nil then check.arg(1, "fit", "float32 tensor [n, d] or moonbert.CSR expected, got nil") end
  if y == nil then check.arg(2, "fit", "labels expected, got nil") end
  local model = core.logreg_fit(X, y, { C = self.C, max_iter = self.max_iter, tol = self.tol, ftol = self.ftol,
                                        fit_intercept = self.fit_intercept, precondition = self.precondition })
  if self.model then self.model:free() end
  self.model = model
  local info = model:info()
  self.coef, self.intercept, self.classes = info.coef, info.intercept, info.classes
  self.n_iter, self.n_eval, self.converged, self.stop = info.n_iter, info.n_eval, info.converged, info.stop
  self.objective, self.grad_max = info.objective, info.grad_max
  self.n_features = info.coef:shape()[2]
  if not info.converged and self.warn then
    if info.stop == "max_iter reached" then
      M.warn(("ConvergenceWarning: lbfgs failed to converge (status=1):\nSTOP: TOTAL NO. of ITERATIONS REACHED LIMIT.\n\n" ..
        "Increase the number of iterations (max_iter=%d) or scale the data (max|gradient| %.3g > tol %g)."):format(
          self.max_iter, info.grad_max, self.tol))
    else
      M.warn(("ConvergenceWarning: lbfgs stopped before tol (%s): max|gradient| %.3g > tol %g; the objective " ..
        "cannot decrease further in float64 (try a larger tol)."):format(info.stop, info.grad_max, self.tol))
    end
  end
  return self
end

local function fitted(self, fn)
  if not self.model then error(("'%s': this LogisticRegression is not fitted yet; call fit first"):format(fn), 3) end
  return self.model
end

function LogisticRegression:predict_proba(X) return fitted(self, "predict_proba"):predict_proba(X) end
function LogisticRegression:predict(X) return fitted(self, "predict"):predict(X) end
-- decision values are the logits; the probabilities' log is one up to a per-row constant
function LogisticRegression:score(X, y) return cmetrics.accuracy(y, fitted(self, "score"):predict(X)) end
-- J (scikit-learn's objective, the fitted model's C) and max|grad J| at the fitted coefficients, on (X, y).
function LogisticRegression:loss(X, y) return fitted(self, "loss"):objective(X, y, self.C) end
function LogisticRegression:free()
  if self.model then self.model:free() end
  self.model = nil
end
LogisticRegression.__close = LogisticRegression.free

-- ---- dummy classifier ---------------------------------------------------------------------------
local Dummy = {}
Dummy.__index = Dummy
Dummy.__name = "moonbert.learners.Dummy"
local STRATEGIES = { most_frequent = true, prior = true, stratified = true, uniform = true }

function M.dummy(o)
  o = check_opts(o, "dummy")
  local strategy = o.strategy or "prior"
  if not STRATEGIES[strategy] then
    check.arg(1, "dummy", ("strategy must be \"most_frequent\", \"prior\", \"stratified\" or \"uniform\", got %q"):format(
      tostring(strategy)))
  end
  return setmetatable({ strategy = strategy, seed = o.seed or 0 }, Dummy)
end

-- X is only counted (a tensor, a CSR matrix, a list, or a number of rows); y gives the classes.
function Dummy:fit(X, y)
  local labels = labels_table(y)
  if #labels == 0 then check.arg(2, "fit", "at least one label expected") end
  local counts = {}
  for i, v in ipairs(labels) do
    if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
      check.arg(2, "fit", ("label %d is not an integer"):format(i))
    end
    v = math.tointeger(v)
    counts[v] = (counts[v] or 0) + 1
  end
  local classes = {}
  for c in pairs(counts) do classes[#classes + 1] = c end
  table.sort(classes)
  local prior, best = {}, 1
  for k, c in ipairs(classes) do
    prior[k] = counts[c] / #labels
    if counts[c] > counts[classes[best]] then best = k end
  end
  self.classes, self.class_prior, self.majority = classes, prior, best
  return self
end

local function dummy_rows(self, X, fn)
  if not self.classes then error(("'%s': this Dummy is not fitted yet; call fit first"):format(fn), 3) end
  local n = nrows(X)
  if not n then check.arg(1, fn, "a tensor, a CSR matrix, a list or a number of rows expected") end
  return n
end

function Dummy:predict_proba(X)
  local n, K = dummy_rows(self, X, "predict_proba"), #self.classes
  local T = require("moonbert.tensor")
  local rows = {}
  local draws = (self.strategy == "stratified") and core.sample_classes(self.seed, n, self.class_prior):totable()
  for i = 1, n do
    local r = {}
    for k = 1, K do
      if self.strategy == "most_frequent" then r[k] = (k == self.majority) and 1 or 0
      elseif self.strategy == "prior" then r[k] = self.class_prior[k]
      elseif self.strategy == "uniform" then r[k] = 1 / K
      else r[k] = (k == draws[i] + 1) and 1 or 0 end
    end
    rows[i] = r
  end
  if n == 0 then return T.zeros({ 0, K }) end
  return T.from(rows)
end

function Dummy:predict(X)
  local n, K = dummy_rows(self, X, "predict"), #self.classes
  local T = require("moonbert.tensor")
  local out = {}
  if self.strategy == "most_frequent" or self.strategy == "prior" then
    for i = 1, n do out[i] = self.classes[self.majority] end
  else
    local probs = {}
    for k = 1, K do probs[k] = self.strategy == "uniform" and 1 / K or self.class_prior[k] end
    local draws = core.sample_classes(self.seed, n, probs):totable()
    for i = 1, n do out[i] = self.classes[draws[i] + 1] end
  end
  if n == 0 then return T.zeros({ 0 }, { dtype = "int32" }) end
  return T.from(out, { dtype = "int32" })
end

function Dummy:score(X, y) return cmetrics.accuracy(y, self:predict(X)) end

-- ---- bag of words ---------------------------------------------------------------------------------
-- CountVectorizer (+ TfidfTransformer with tfidf=true: smooth idf, l2 rows) over WordPiece ids
-- (tokenizer=tok: column j is token id j, [CLS]/[SEP]/[PAD] dropped; ids not seen in fit are
-- dropped at transform, so the matrix equals scikit-learn's up to all-zero columns) or over words
-- (tokenizer=false: lowercased, scikit-learn's default token pattern \b\w\w+\b on ASCII word
-- characters; columns are the fitted vocabulary in sorted order, as scikit-learn's).
-- min_df / max_df: an integer is a document count, a float in [0, 1] a proportion.
local CountVectorizer = {}
CountVectorizer.__index = CountVectorizer
CountVectorizer.__name = "moonbert.learners.CountVectorizer"

function M.count_vectorizer(o)
  o = check_opts(o, "count_vectorizer")
  if o.tokenizer == nil then check.arg(1, "count_vectorizer", "tokenizer expected (a moonbert tokenizer, or false for words)") end
  return setmetatable({ tokenizer = o.tokenizer or nil, tfidf = o.tfidf and true or false, binary = o.binary and true or false,
                        min_df = o.min_df or 1, max_df = o.max_df or 1.0, smooth_idf = o.smooth_idf ~= false,
                        norm = o.norm == nil and "l2" or o.norm, lowercase = o.lowercase ~= false }, CountVectorizer)
end

local function words(self, text)
  if self.lowercase then text = text:lower() end
  local out = {}
  for w in text:gmatch("[%w_][%w_]+") do out[#out + 1] = w end
  return out
end

-- Lists of 0-based column ids per text (vocabulary lookups for words; unseen words skipped).
function CountVectorizer:_docs(texts, learn)
  if type(texts) ~= "table" then check.arg(1, learn and "fit" or "transform", "list of strings expected, got " .. type(texts)) end
  local docs = {}
  if self.tokenizer then
    local tok = self.tokenizer
    if not self.special then
      self.special = {}
      local sp = tok:special_tokens()
      for k, v in pairs(sp) do
        if type(k) == "string" and k:match("_id$") and math.type(v) == "integer" then self.special[v] = true end
      end
    end
    local enc = tok:encode_batch(texts, { padding = false, truncation = false })
    local ids = enc.input_ids
    for i = 1, #texts do
      local d, row = {}, ids[i]
      for _, id in ipairs(row) do if not self.special[id] then d[#d + 1] = id end end
      docs[i] = d
    end
    self.n_columns = tok.vocab_size
  else
    if learn then
      local seen = {}
      for i, t in ipairs(texts) do
        for _, w in ipairs(words(self, t)) do seen[w] = true end
      end
      local vocab = {}
      for w in pairs(seen) do vocab[#vocab + 1] = w end
      table.sort(vocab)
      self.feature_names, self.vocabulary = vocab, {}
      for j, w in ipairs(vocab) do self.vocabulary[w] = j - 1 end
      self.n_columns = #vocab
    end
    for i, t in ipairs(texts) do
      local d = {}
      for _, w in ipairs(words(self, t)) do
        local j = self.vocabulary[w]
        if j then d[#d + 1] = j end
      end
      docs[i] = d
    end
  end
  return docs
end

local function df_limit(v, n, name)
  if math.type(v) == "integer" then return v end
  if type(v) == "number" and v >= 0 and v <= 1 then return v * n end
  check.arg(1, "count_vectorizer", name .. " must be an integer count or a proportion in [0, 1]", 3)
end

function CountVectorizer:fit_transform(texts)
  local docs = self:_docs(texts, true)
  local X = core.csr_from_docs(docs, self.n_columns, self.binary)
  local n = #docs
  local df = X:column_counts():totable()
  local lo, hi = df_limit(self.min_df, n, "min_df"), df_limit(self.max_df, n, "max_df")
  local keep, idf, kept, dropped = {}, {}, 0, 0
  for j = 1, self.n_columns do
    local d = df[j]
    keep[j] = (d > 0 and d >= lo and d <= hi) and 1 or 0
    kept = kept + keep[j]
    if d > 0 and keep[j] == 0 then dropped = dropped + 1 end
    if self.smooth_idf then idf[j] = math.log((1 + n) / (1 + d)) + 1
    else idf[j] = d > 0 and (math.log(n / d) + 1) or 1 end
  end
  if kept == 0 then error("fit: after pruning, no terms remain; try a lower min_df or a higher max_df", 2) end
  self.keep, self.idf, self.n_docs, self.n_features = keep, idf, n, kept
  if self.tokenizer and dropped > 0 then
    local pruned = X:keep_columns(keep)
    X:free()
    X = pruned
  end
  if not self.tokenizer and kept < self.n_columns then
    -- words: re-index to the kept vocabulary (scikit-learn drops pruned terms from vocabulary_)
    local names, vocab, remap = {}, {}, {}
    for j, w in ipairs(self.feature_names) do
      if keep[j] == 1 then names[#names + 1] = w; vocab[w] = #names - 1; remap[j] = #names end
    end
    local kidf = {}
    for j, r in pairs(remap) do kidf[r] = idf[j] end
    self.feature_names, self.vocabulary, self.idf = names, vocab, kidf
    self.n_columns = #names
    self.keep = nil
    X:free()
    X = core.csr_from_docs(self:_docs(texts, false), self.n_columns, self.binary)
  end
  return self:_weight(X)
end

function CountVectorizer:_weight(X)
  if self.tfidf then X:scale_columns(self.idf, self.norm == "l2") end
  return X
end

function CountVectorizer:fit(texts)
  local X = self:fit_transform(texts)
  X:free()
  return self
end

function CountVectorizer:transform(texts)
  if not self.idf then error("'transform': this CountVectorizer is not fitted yet; call fit first", 2) end
  local X = core.csr_from_docs(self:_docs(texts, false), self.n_columns, self.binary)
  if self.keep then
    local pruned = X:keep_columns(self.keep)
    X:free()
    X = pruned
  end
  return self:_weight(X)
end

function CountVectorizer:get_feature_names_out()
  if self.feature_names then return self.feature_names end
  if self.tokenizer then
    local ids = {}
    for j = 1, self.n_columns do ids[j] = j - 1 end
    return self.tokenizer:convert_ids_to_tokens(ids)
  end
  return {}
end

-- ---- scalers ----------------------------------------------------------------------------------------
local Scaler = {}
Scaler.__index = Scaler
Scaler.__name = "moonbert.learners.Scaler"

-- StandardScaler: (x - mean) / std (population std; a constant feature keeps scale 1).
function M.standard_scaler(o)
  o = check_opts(o, "standard_scaler")
  return setmetatable({ kind = "standard", with_mean = o.with_mean ~= false, with_std = o.with_std ~= false }, Scaler)
end

-- MinMaxScaler: maps [min, max] of each feature to feature_range (default {0, 1}).
function M.minmax_scaler(o)
  o = check_opts(o, "minmax_scaler")
  local r = o.feature_range or { 0, 1 }
  if not (type(r) == "table" and type(r[1]) == "number" and type(r[2]) == "number" and r[1] < r[2]) then
    check.arg(1, "minmax_scaler", "feature_range must be {min, max} with min < max")
  end
  return setmetatable({ kind = "minmax", feature_range = r }, Scaler)
end

function Scaler:fit(X)
  local mean, std, mn, mx = core.column_stats(X)
  local T = require("moonbert.tensor")
  local d = mean:numel()
  local m, s, lo, hi = mean:totable(), std:totable(), mn:totable(), mx:totable()
  local shift, scale = {}, {}
  if self.kind == "standard" then
    self.mean, self.var = mean, std * std
    for j = 1, d do
      local sd = s[j]
      if sd == 0 then sd = 1 end
      shift[j] = self.with_mean and m[j] or 0
      scale[j] = self.with_std and 1 / sd or 1
      s[j] = self.with_std and sd or 1
    end
    self.scale = T.from(s)
  else
    local a, b = self.feature_range[1], self.feature_range[2]
    local sc = {}
    for j = 1, d do
      local range = hi[j] - lo[j]
      if range == 0 then range = 1 end
      sc[j] = (b - a) / range
      scale[j] = sc[j]
      shift[j] = lo[j] - a / sc[j]
    end
    self.data_min, self.data_max, self.scale = mn, mx, T.from(sc)
  end
  self.n_features = d
  self.shift_, self.mul_ = T.from(shift), T.from(scale)
  return self
end

function Scaler:transform(X)
  if not self.shift_ then error("'transform': this scaler is not fitted yet; call fit first", 2) end
  return core.affine_columns(X, self.shift_, self.mul_)
end

function Scaler:fit_transform(X) return self:fit(X):transform(X) end

return M
