-- learners_spec.lua: mb.learners against scikit-learn's fixture (../shared/fixtures/logreg),
-- hand-computed tf-idf, and properties of the dummy strategies and scalers.
local mb = require "moonbert"
local T = mb.tensor
local L = mb.learners
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"

-- A minimal safetensors reader (F32 / I32 to Lua tables), so this spec needs no other part.
local function read_safetensors(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local buf = f:read("a")
  f:close()
  local n = string.unpack("<I8", buf)
  local header = require("dkjson").decode(buf:sub(9, 8 + n))
  local base = 9 + n
  local out = {}
  for name, info in pairs(header) do
    if name ~= "__metadata__" then
      local a, b = info.data_offsets[1], info.data_offsets[2]
      local fmt = info.dtype == "F32" and "<f" or "<i4"
      local flat = {}
      for p = base + a, base + b - 1, 4 do flat[#flat + 1] = string.unpack(fmt, buf, p) end
      local shape = info.shape
      if #shape == 2 then
        local rows = {}
        for i = 1, shape[1] do
          local r = {}
          for j = 1, shape[2] do r[j] = flat[(i - 1) * shape[2] + j] end
          rows[i] = r
        end
        out[name] = rows
      else
        out[name] = flat
      end
    end
  end
  return out
end

local data = read_safetensors(SHARED .. "/fixtures/logreg/data.safetensors")
local ref = read_safetensors(SHARED .. "/fixtures/logreg/results.safetensors")
local function need_fixture()
  if not (data and ref) then pending("../shared/fixtures/logreg is absent") return false end
  return true
end

describe("mb.learners.logistic_regression", function()
  it("reaches scikit-learn's exact optimum on the fixture (proba 1e-4, coef 1e-3 rel, same argmax)", function()
    if not need_fixture() then return end
    local lr = L.logistic_regression{ C = 1.0, max_iter = 3000 }
    lr:fit(T.from(data.X_train), data.y_train)
    assert.is_true(lr.converged)
    local proba = lr:predict_proba(T.from(data.X_val)):totable()
    local worst = 0
    for i, row in ipairs(proba) do
      for k, p in ipairs(row) do worst = math.max(worst, math.abs(p - ref.proba_val_opt[i][k])) end
    end
    assert.is_true(worst <= 1e-4, "max |proba - proba_val_opt| = " .. worst)
    local coef, cmax, scale = lr.coef:totable(), 0, 0
    for k = 1, 6 do
      for j = 1, 64 do
        cmax = math.max(cmax, math.abs(coef[k][j] - ref.coef_opt[k][j]))
        scale = math.max(scale, math.abs(ref.coef_opt[k][j]))
      end
    end
    assert.is_true(cmax / scale <= 1e-3, "coef rel err " .. cmax / scale)
    local pred = lr:predict(T.from(data.X_val)):totable()
    for i, row in ipairs(ref.proba_val_opt) do
      local best = 1
      for k = 2, 6 do if row[k] > row[best] then best = k end end
      assert.are.equal(best - 1, pred[i])
    end
    assert.are.same({ 0, 1, 2, 3, 4, 5 }, lr.classes)
    assert.is_true(math.abs(lr:score(T.from(data.X_val), data.y_val) - ref.accuracy_val[1]) <= 0.01)
    local J = lr:loss(T.from(data.X_train), data.y_train)
    assert.is_true(math.abs(J - 619.610388) < 1e-4, "objective " .. J)
  end)

  it("warns like scikit-learn when max_iter is reached", function()
    if not need_fixture() then return end
    local got = {}
    local saved = L.warn
    L.warn = function(m) got[#got + 1] = m end
    local lr = L.logistic_regression{ max_iter = 3, precondition = false }
    lr:fit(T.from(data.X_train), data.y_train)
    L.warn = saved
    assert.is_false(lr.converged)
    assert.are.equal(3, lr.n_iter)
    assert.are.equal(1, #got)
    assert.truthy(got[1]:find("ConvergenceWarning: lbfgs failed to converge", 1, true))
    assert.truthy(got[1]:find("max_iter=3", 1, true))
  end)

  it("keeps label values: classes are the sorted distinct labels", function()
    local X = T.from({ { 0, 1 }, { 1, 0 }, { 0, 2 }, { 2, 0 }, { 1, 1 }, { 3, 0 } })
    local y = { 7, 3, 7, 3, 9, 3 }
    local lr = L.logistic_regression{ C = 100, max_iter = 500 }:fit(X, y)
    assert.are.same({ 3, 7, 9 }, lr.classes)
    assert.are.same({ 3, 9, 7 }, lr:predict(T.from({ { 4, 0 }, { 1, 1 }, { 0, 4 } })):totable())
  end)

  it("accepts a 16,000 x 30,522 CSR matrix without densifying it", function()
    local docs, y = {}, {}
    local s = 12345
    local function rnd(n) s = (s * 1103515245 + 12345) % 2147483648; return s % n end
    for i = 1, 16000 do
      local d, c = {}, rnd(6)
      for _ = 1, 20 do d[#d + 1] = (rnd(5) == 0) and (1000 + c) or rnd(30522) end
      docs[i], y[i] = d, c
    end
    local X = mb.core.learners.csr_from_docs(docs, 30522, false)
    assert.are.same({ 16000, 30522 }, X:shape())
    assert.is_true(X:nbytes() < 4 * 1024 * 1024, "CSR holds " .. X:nbytes() .. " bytes")
    local lr = L.logistic_regression{ max_iter = 20, warn = false }:fit(X, y)
    assert.is_true(lr:score(X:rows({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }), { y[1], y[2], y[3], y[4], y[5], y[6], y[7], y[8], y[9], y[10] }) >= 0.5)
  end)

  it("raises errors that name the function and argument", function()
    local lr = L.logistic_regression()
    local ok, err = pcall(lr.fit, lr, T.from({ { 1 }, { 2 } }), { 0, 0 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("one class", 1, true), err)
    ok, err = pcall(lr.fit, lr, T.from({ { 1 }, { 2 } }), { 0 })
    assert.truthy(tostring(err):find("1 labels for 2 rows", 1, true), err)
    ok, err = pcall(lr.predict, lr, T.from({ { 1 } }))
    assert.truthy(tostring(err):find("not fitted", 1, true), err)
    ok, err = pcall(L.logistic_regression, { C = -1 })
    assert.truthy(tostring(err):find("C must be a positive number", 1, true), err)
    ok, err = pcall(lr.fit, lr, "X", { 0, 1 })
    assert.truthy(tostring(err):find("moonbert.CSR expected, got string", 1, true), err)
  end)
end)

describe("mb.learners.dummy", function()
  it("most_frequent and prior match scikit-learn's fixture", function()
    if not need_fixture() then return end
    local d = L.dummy{ strategy = "most_frequent" }:fit(T.from(data.X_train), data.y_train)
    assert.are.same(ref.dummy_pred_val, d:predict(#data.X_val):totable())
    local p = L.dummy{ strategy = "prior" }:fit(#data.X_train, data.y_train):predict_proba(2):totable()
    for k = 1, 6 do assert.is_true(math.abs(p[2][k] - ref.dummy_prior[k]) < 1e-6) end
  end)

  it("stratified follows the class prior and is reproducible by seed; uniform covers the classes", function()
    local y = {}
    for i = 1, 1000 do y[i] = i <= 800 and 4 or 9 end
    local d = L.dummy{ strategy = "stratified", seed = 5 }:fit(1000, y)
    local a, b = d:predict(5000):totable(), d:predict(5000):totable()
    assert.are.same(a, b)
    local fours = 0
    for _, v in ipairs(a) do fours = fours + (v == 4 and 1 or 0); assert.is_true(v == 4 or v == 9) end
    assert.is_true(math.abs(fours / 5000 - 0.8) < 0.03, fours)
    local u = L.dummy{ strategy = "uniform", seed = 1 }:fit(1000, y)
    local pu = u:predict_proba(1):totable()[1]
    assert.are.same({ 0.5, 0.5 }, pu)
    local ok, err = pcall(L.dummy, { strategy = "constant" })
    assert.truthy(tostring(err):find("strategy must be", 1, true))
  end)
end)

describe("mb.learners.count_vectorizer", function()
  local texts = { "The cat sat on the mat", "the dog ate my homework", "a cat and a dog" }

  it("counts words like CountVectorizer (sorted vocabulary, 2+ letter tokens)", function()
    local cv = L.count_vectorizer{ tokenizer = false }
    local X = cv:fit_transform(texts)
    assert.are.same({ "and", "ate", "cat", "dog", "homework", "mat", "my", "on", "sat", "the" }, cv:get_feature_names_out())
    assert.are.same({ 3, 10 }, X:shape())
    local r1 = X:row(1)
    assert.are.equal(2, r1[cv.vocabulary.the])
    assert.are.equal(1, r1[cv.vocabulary.cat])
    local Xt = cv:transform({ "unknown cat cat" }):row(1)
    assert.are.same({ [cv.vocabulary.cat] = 2 }, Xt)
    local bin = L.count_vectorizer{ tokenizer = false, binary = true }:fit_transform(texts)
    assert.are.equal(1, bin:row(1)[9])
  end)

  it("tf-idf equals TfidfTransformer's smooth idf with l2 rows (hand-computed)", function()
    local cv = L.count_vectorizer{ tokenizer = false, tfidf = true }
    local r = cv:fit_transform(texts):row(1)
    local idf_the, idf_sat = math.log(4 / 3) + 1, math.log(4 / 2) + 1
    local w = { the = 2 * idf_the, cat = idf_the, sat = idf_sat, on = idf_sat, mat = idf_sat }
    local norm = 0
    for _, v in pairs(w) do norm = norm + v * v end
    norm = math.sqrt(norm)
    for word, v in pairs(w) do
      assert.is_true(math.abs(r[cv.vocabulary[word]] - v / norm) < 1e-6, word)
    end
  end)

  it("min_df drops rare terms from the vocabulary", function()
    local cv = L.count_vectorizer{ tokenizer = false, min_df = 2 }
    local X = cv:fit_transform(texts)
    assert.are.same({ "cat", "dog", "the" }, cv:get_feature_names_out())
    assert.are.same({ 3, 3 }, X:shape())
  end)

  it("uses WordPiece ids with a tokenizer", function()
    local ok, tokmod = pcall(function() return mb.tokenizer end)
    local dir = SHARED .. "/models/distilbert-base-uncased"
    if not (ok and tokmod and io.open(dir .. "/vocab.txt")) then
      pending("mb.tokenizer or " .. dir .. " is absent") return
    end
    local tok = tokmod.load(dir)
    local cv = L.count_vectorizer{ tokenizer = tok }
    local X = cv:fit_transform({ "i feel happy happy", "i feel sad" })
    assert.are.same({ 2, tok.vocab_size }, X:shape())
    local ids = tok:encode("happy").input_ids
    local happy = ids[2]
    assert.are.equal(2, X:row(1)[happy])
    assert.is_nil(X:row(1)[101]) -- [CLS] is not a word
  end)
end)

describe("mb.learners scalers", function()
  local X = T.from({ { 1, 10, 5 }, { 3, 20, 5 }, { 5, 60, 5 } })
  it("standard_scaler centres and divides by the population std (constant feature: scale 1)", function()
    local sc = L.standard_scaler()
    local Z = sc:fit_transform(X):totable()
    local sd = math.sqrt(8 / 3)
    assert.is_true(math.abs(Z[1][1] - (-2 / sd)) < 1e-6)
    assert.are.equal(0, Z[2][3])
    assert.is_true(math.abs(sc.mean:totable()[2] - 30) < 1e-5)
    local col = 0
    for i = 1, 3 do col = col + Z[i][2] end
    assert.is_true(math.abs(col) < 1e-5)
  end)
  it("minmax_scaler maps each feature to feature_range", function()
    local Z = L.minmax_scaler{ feature_range = { -1, 1 } }:fit_transform(X):totable()
    assert.are.same({ -1, -1, -1 }, Z[1])
    assert.is_true(math.abs(Z[2][2] - (-0.6)) < 1e-6)
    assert.are.equal(1, Z[3][1])
    local ok, err = pcall(L.minmax_scaler, { feature_range = { 1, 0 } })
    assert.truthy(tostring(err):find("feature_range", 1, true))
  end)
end)

describe("moonbert bench logreg", function()
  it("prints seconds and iterations as JSON (--quick)", function()
    local bin = os.getenv("MOONBERT_BIN")
    if not bin then pending("MOONBERT_BIN is not set (run through scripts/run-tests)") return end
    local p = io.popen(bin .. " bench logreg --quick 2>/dev/null")
    local out = p:read("a")
    p:close()
    local res = require("dkjson").decode(out)
    assert.is_table(res, out)
    local r = res.logreg
    assert.is_true(r.converged)
    assert.is_true(r.iterations > 0 and r.seconds > 0)
    assert.is_true(r.max_abs_grad <= 1e-4)
    assert.are.same({ 2000, 768 }, r.train_shape)
  end)
end)
