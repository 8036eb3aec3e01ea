-- moonbert.metrics (mb.metrics): classification metrics with scikit-learn's definitions.
--
--   mb.metrics.accuracy(y_true, y_pred)                                  -> number
--   mb.metrics.precision(y, p, {average="macro"})  recall(...)  f1(...)  fbeta(y, p, beta, {...})
--       average = nil (one value per label, a table aligned with the labels) | "binary" | "micro" |
--                 "macro" | "weighted"; labels = {...}; pos_label = 1; zero_division = "warn" | 0 | 1
--   mb.metrics.precision_recall_fscore_support(y, p, {...})              -> p, r, f, support
--   mb.metrics.confusion_matrix(y, p, {labels=, normalize=nil|"true"|"pred"|"all"}) -> tensor [L, L], labels
--   mb.metrics.classification_report(y, p, {target_names=, labels=, digits=2, zero_division="warn"}) -> string
--   mb.metrics.cross_entropy(logits [n, K], y, {from="logits"|"probs"}) -> float32 tensor [n] (per example)
--
-- y_true / y_pred are Lua lists of integers or int32 tensors of 0-based label ids. As in
-- scikit-learn the labels reported are, unless given, the sorted union of both lists; ratios that
-- are ill-defined (a label never predicted, or never true) take zero_division and, for "warn",
-- print scikit-learn's UndefinedMetricWarning through mb.metrics.warn (stderr; replaceable).
local core = require("moonbert.core").metrics
local check = require "moonbert.check"

local M = {}

M.warn = function(msg) io.stderr:write(msg, "\n") end

local AVERAGES = { binary = true, micro = true, macro = true, weighted = true }

local function opts_of(o, fn, n)
  if o == nil then return {} end
  if type(o) ~= "table" then check.arg(n, fn, "options table expected, got " .. type(o), 2) end
  if o.average ~= nil and not AVERAGES[o.average] then
    check.arg(n, fn, ("average must be nil, \"binary\", \"micro\", \"macro\" or \"weighted\", got %q"):format(
      tostring(o.average)), 2)
  end
  local zd = o.zero_division
  if zd ~= nil and zd ~= "warn" and zd ~= 0 and zd ~= 1 then
    check.arg(n, fn, "zero_division must be \"warn\", 0 or 1", 2)
  end
  return o
end

local function warn_ill(o, ill_p, ill_r, warn_for)
  if o.zero_division ~= nil and o.zero_division ~= "warn" then return end
  local avg = o.average
  local function msg(what_p, metric, cause)
    local tail = (avg == "micro" or avg == "binary") and (" due to no %s samples."):format(cause)
      or (" in labels with no %s samples."):format(cause)
    M.warn(("UndefinedMetricWarning: %s ill-defined and being set to 0.0%s Use `zero_division` parameter to control this behavior.")
      :format(what_p, tail))
  end
  local f = warn_for.fscore
  if ill_p then
    if warn_for.precision then msg(f and "Precision and F-score are" or "Precision is", "precision", "predicted")
    elseif f then msg("F-score is", "f", "predicted") end
  end
  if ill_r then
    if warn_for.recall then msg(f and "Recall and F-score are" or "Recall is", "recall", "true")
    elseif f then msg("F-score is", "f", "true") end
  end
end

local function prf(fn, y_true, y_pred, beta, o, warn_for)
  o = opts_of(o, fn, 3)
  local zd = o.zero_division
  if zd == nil or zd == "warn" then zd = 0 end
  local p, r, f, s, ill_p, ill_r = core.prf(y_true, y_pred, o.labels, o.average or "none", beta, o.pos_label or 1, zd)
  warn_ill(o, ill_p, ill_r, warn_for)
  return p, r, f, s
end

function M.accuracy(y_true, y_pred) return core.accuracy(y_true, y_pred) end

function M.precision(y_true, y_pred, o)
  local p = prf("precision", y_true, y_pred, 1.0, o, { precision = true })
  return p
end

function M.recall(y_true, y_pred, o)
  local _, r = prf("recall", y_true, y_pred, 1.0, o, { recall = true })
  return r
end

function M.f1(y_true, y_pred, o)
  local _, _, f = prf("f1", y_true, y_pred, 1.0, o, { fscore = true })
  return f
end

function M.fbeta(y_true, y_pred, beta, o)
  if type(beta) ~= "number" or beta < 0 then
    check.arg(3, "fbeta", "beta must be a number >= 0, got " .. tostring(beta))
  end
  local _, _, f = prf("fbeta", y_true, y_pred, beta, o, { fscore = true })
  return f
end

-- precision, recall, F-beta (o.beta, default 1) and support (nil when averaged, as scikit-learn)
function M.precision_recall_fscore_support(y_true, y_pred, o)
  local p, r, f, s = prf("precision_recall_fscore_support", y_true, y_pred, (o and o.beta) or 1.0, o,
    { precision = true, recall = true, fscore = true })
  if o and o.average then s = nil end
  return p, r, f, s
end

-- scikit-learn's names too
M.precision_score, M.recall_score, M.f1_score, M.accuracy_score = M.precision, M.recall, M.f1, M.accuracy

function M.confusion_matrix(y_true, y_pred, o)
  o = o or {}
  if type(o) ~= "table" then check.arg(3, "confusion_matrix", "options table expected, got " .. type(o)) end
  return core.confusion_matrix(y_true, y_pred, o.labels, o.normalize)
end

function M.cross_entropy(scores, y, o)
  o = o or {}
  local from = o.from or "logits"
  if from ~= "logits" and from ~= "probs" then
    check.arg(3, "cross_entropy", ("from must be \"logits\" or \"probs\", got %q"):format(tostring(from)))
  end
  return core.cross_entropy(scores, y, from == "probs")
end

-- sklearn.metrics.classification_report, same layout (text only).
function M.classification_report(y_true, y_pred, o)
  o = o or {}
  if type(o) ~= "table" then check.arg(3, "classification_report", "options table expected, got " .. type(o)) end
  local digits = o.digits or 2
  local present = core.unique_labels(y_true, y_pred)
  local labels = o.labels or present
  local names = {}
  if o.target_names then
    if #o.target_names ~= #labels then
      error(("classification_report: number of classes, %d, does not match size of target_names, %d. Try specifying the labels parameter")
        :format(#labels, #o.target_names), 2)
    end
    for i, n in ipairs(o.target_names) do names[i] = tostring(n) end
  else
    for i, l in ipairs(labels) do names[i] = tostring(l) end
  end
  local micro_is_accuracy = true
  if o.labels then
    local given = {}
    for _, l in ipairs(labels) do given[l] = true end
    for _, l in ipairs(present) do if not given[l] then micro_is_accuracy = false end end
  end
  local zo = { labels = labels, zero_division = o.zero_division }
  local wf = { precision = true, recall = true, fscore = true }
  local p, r, f, s = prf("classification_report", y_true, y_pred, 1.0, zo, wf)
  local heading = "weighted avg"
  local width = #heading
  for _, n in ipairs(names) do if #n > width then width = #n end end
  if digits > width then width = digits end
  local out = {}
  out[#out + 1] = (" "):rep(width + 1) .. (" %9s"):format("precision") .. (" %9s"):format("recall") ..
    (" %9s"):format("f1-score") .. (" %9s"):format("support") .. "\n\n"
  local fmt = "%" .. width .. "s " .. (" %9." .. digits .. "f"):rep(3) .. " %9d\n"
  local total = 0
  for i = 1, #labels do
    out[#out + 1] = fmt:format(names[i], p[i], r[i], f[i], s[i])
    total = total + s[i]
  end
  out[#out + 1] = "\n"
  for _, avg in ipairs { "micro", "macro", "weighted" } do
    local ap, ar, af = prf("classification_report", y_true, y_pred, 1.0,
      { labels = labels, average = avg, zero_division = o.zero_division ~= nil and o.zero_division or 0 }, {})
    if avg == "micro" and micro_is_accuracy then
      out[#out + 1] = ("%" .. width .. "s ") :format("accuracy") .. (" %9s"):format("") .. (" %9s"):format("") ..
        (" %9." .. digits .. "f"):format(af) .. (" %9d\n"):format(total)
    else
      out[#out + 1] = fmt:format(avg .. " avg", ap, ar, af, total)
    end
  end
  return table.concat(out)
end

return M
