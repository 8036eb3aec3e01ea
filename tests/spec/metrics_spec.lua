-- metrics_spec.lua: mb.metrics against scikit-learn's documented examples and hand counts.
local mb = require "moonbert"
local M = mb.metrics
local T = mb.tensor

local function near(a, b, tol) assert.is_true(math.abs(a - b) <= (tol or 1e-12), ("%.12g vs %.12g"):format(a, b)) end

local yt, yp = { 0, 1, 2, 0, 1, 2 }, { 0, 2, 1, 0, 0, 1 }

describe("mb.metrics", function()
  it("precision / recall / f1 as in scikit-learn's docstrings", function()
    near(M.precision(yt, yp, { average = "macro" }), 2 / 9)
    near(M.precision(yt, yp, { average = "micro" }), 1 / 3)
    near(M.precision(yt, yp, { average = "weighted" }), 2 / 9)
    local per = M.precision(yt, yp)
    near(per[1], 2 / 3); near(per[2], 0); near(per[3], 0)
    near(M.recall(yt, yp, { average = "macro" }), 1 / 3)
    near(M.f1(yt, yp, { average = "macro" }), 0.8 / 3)
    near(M.f1(yt, yp, { average = "weighted" }), 0.8 / 3)
    near(M.f1(T.from(yt, { dtype = "int32" }), T.from(yp, { dtype = "int32" }), { average = "micro" }), 1 / 3)
    near(M.accuracy(yt, yp), 1 / 3)
  end)

  it("zero_division: 'warn' gives 0 and warns, 1 gives 1 silently", function()
    local got, saved = {}, M.warn
    M.warn = function(m) got[#got + 1] = m end
    local zeros = { 0, 0, 0, 0, 0, 0 }
    local p = M.precision(yt, zeros)
    near(p[1], 1 / 3); near(p[2], 0); near(p[3], 0)
    assert.are.equal(1, #got)
    assert.truthy(got[1]:find("Precision is ill-defined and being set to 0.0 in labels with no predicted samples", 1, true))
    p = M.precision(yt, zeros, { zero_division = 1 })
    near(p[2], 1); near(p[3], 1)
    assert.are.equal(1, #got)
    M.warn = saved
    local ok, err = pcall(M.precision, yt, zeros, { zero_division = 2 })
    assert.truthy(tostring(err):find("zero_division", 1, true))
  end)

  it("binary average uses pos_label; multiclass input is refused", function()
    local a, b = { 0, 1, 1, 1, 0 }, { 0, 1, 0, 1, 1 }
    near(M.precision(a, b, { average = "binary" }), 2 / 3)
    near(M.recall(a, b, { average = "binary", pos_label = 0 }), 1 / 2)
    local ok, err = pcall(M.f1, yt, yp, { average = "binary" })
    assert.truthy(tostring(err):find("multiclass", 1, true), err)
  end)

  it("confusion_matrix as scikit-learn's docstring, with normalize", function()
    local cm, labels = M.confusion_matrix({ 2, 0, 2, 2, 0, 1 }, { 0, 0, 2, 2, 0, 2 })
    assert.are.same({ { 2, 0, 0 }, { 0, 0, 1 }, { 1, 0, 2 } }, cm:totable())
    assert.are.same({ 0, 1, 2 }, labels)
    local nt = M.confusion_matrix({ 2, 0, 2, 2, 0, 1 }, { 0, 0, 2, 2, 0, 2 }, { normalize = "true" }):totable()
    near(nt[3][3], 2 / 3, 1e-7)
    local npred = M.confusion_matrix({ 2, 0, 2, 2, 0, 1 }, { 0, 0, 2, 2, 0, 2 }, { normalize = "pred" }):totable()
    near(npred[1][1], 2 / 3, 1e-7); near(npred[1][2], 0)
    local all = M.confusion_matrix({ 2, 0, 2, 2, 0, 1 }, { 0, 0, 2, 2, 0, 2 }, { normalize = "all" }):totable()
    near(all[1][1], 1 / 3, 1e-7)
    local ok, err = pcall(M.confusion_matrix, { 1 }, { 1 }, { normalize = "rows" })
    assert.truthy(tostring(err):find("normalize must be", 1, true), err)
    ok, err = pcall(M.confusion_matrix, { 1, 2 }, { 1 })
    assert.truthy(tostring(err):find("inconsistent numbers of samples", 1, true), err)
  end)

  it("classification_report reproduces scikit-learn's docstring output", function()
    local want = table.concat({
      "              precision    recall  f1-score   support",
      "",
      "     class 0       0.50      1.00      0.67         1",
      "     class 1       0.00      0.00      0.00         1",
      "     class 2       1.00      0.67      0.80         3",
      "",
      "    accuracy                           0.60         5",
      "   macro avg       0.50      0.56      0.49         5",
      "weighted avg       0.70      0.60      0.61         5",
      "" }, "\n")
    local got = M.classification_report({ 0, 1, 2, 2, 2 }, { 0, 0, 2, 2, 1 },
      { target_names = { "class 0", "class 1", "class 2" } })
    assert.are.equal(want, got)
    -- labels that leave one out: the micro average is no longer accuracy
    local sub = M.classification_report({ 0, 1, 2, 2, 2 }, { 0, 0, 2, 2, 1 }, { labels = { 0, 2 }, digits = 3 })
    assert.truthy(sub:find("   micro avg      0.750     0.750     0.750         4", 1, true), sub)
  end)

  it("cross_entropy per example from logits or probabilities", function()
    local ce = M.cross_entropy(T.from({ { 1, 2, 3 }, { 0, 0, 0 } }), { 2, 1 }):totable()
    near(ce[1], math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3, 1e-6)
    near(ce[2], math.log(3), 1e-6)
    local pe = M.cross_entropy(T.from({ { 0.25, 0.75 } }), { 1 }, { from = "probs" }):totable()
    near(pe[1], -math.log(0.75), 1e-6)
    local ok, err = pcall(M.cross_entropy, T.from({ { 1, 2 } }), { 2 })
    assert.truthy(tostring(err):find("label 2", 1, true), err)
  end)
end)
