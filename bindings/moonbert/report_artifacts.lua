-- moonbert.report_artifacts: what an experiment saves for its report (the mb.report.log_*
-- functions), and reading it back for the run page (moonbert.report_run). The public
-- surface is mb.report (moonbert.report), which re-exports the writers and the kinds.
--
-- ARTIFACT CONTRACT (what an experiment saves for the report)
-- -------------------------------------------------------------
-- The store already holds metrics, confusion matrices and predictions. The rest
-- is saved with the functions below while the run is open. Each writes one JSON
-- file under run:artifact_dir() .. "/report/" and registers it with
-- run:log_artifact(kind, path); logging the same piece again replaces it (the
-- latest artifact of a kind and key wins). Label ids are the 0-based ids of the
-- data (label 0 is label_names[1]).
--
--   mb.report.log_dataset_stats(run, split_name, split [, label_names])
--       split = {text = {...}, label = {...}} (tables or int32 tensors), e.g. data.train;
--       label_names defaults to split.label_names (an mb.data split has them).
--       kind "report/dataset": class counts and words-per-text quartiles by label
--       (words = whitespace-separated tokens, as str.split() in the notebook).
--       -> "Dataset" section: class distribution bars, words-per-text box plot.
--   mb.report.log_embedding(run, stage, xy, labels, label_names)
--       stage "before" | "after" (fine-tuning); xy a float32 tensor [N,2] (from
--       mb.umap.fit_transform) or a table of {x, y}; labels N 0-based ids.
--       kind "report/embedding" -> "Feature maps": one hexbin panel per label.
--   mb.report.log_custom_predictions(run, texts, probs, label_names)
--       probs a tensor [N,K] or table of N tables of K probabilities.
--       kind "report/custom_predictions" -> "Custom texts": probability bars.
--   mb.report.log_examples(run, split_name, texts [, {label_names=, first_index=1}])
--       texts[k] is the text of the prediction row with index first_index + k - 1
--       (run:log_predictions numbers rows 1, 2, ... by default, so first_index = 1;
--       pass first_index = 0 when the predictions used 0-based indices).
--       kind "report/examples" -> the loss tables show text beside label,
--       prediction and loss. Without it the tables show the index only.
--
-- In an experiment (data = mb.data.load_emotion(...), run open):
--   mb.report.log_dataset_stats(run, "train", data.train)
--   mb.report.log_embedding(run, "before", mb.umap.fit_transform(X_pretrained, {seed = 42}),
--                           data.train.label, data.label_names)
--   ... fine-tune ...
--   mb.report.log_embedding(run, "after", mb.umap.fit_transform(X_finetuned, {seed = 42}),
--                           data.train.label, data.label_names)
--   run:log_predictions("validation", {label = y, predicted = pred, loss = losses, probs = P})
--   mb.report.log_examples(run, "validation", data.validation.text, {label_names = data.label_names})
--   mb.report.log_custom_predictions(run, {"I saw a movie today and it was really good."}, P_custom,
--                                    data.label_names)
--   run:finish(); print(mb.report.write(store, run.id))   -- or: moonbert report <id>
--
-- The report also uses, when present: run:log_metric series (curves by step,
-- or by epoch when points carry no step; keys "train/loss" and "val/loss" share
-- a "loss" chart), run:log_confusion (the last matrix of each split, rows
-- normalised) and run:log_predictions (the top and bottom losses of each split).
local svg = require "moonbert.svg"

local M = {}

M.KINDS = {
  dataset = "report/dataset",
  embedding = "report/embedding",
  custom = "report/custom_predictions",
  examples = "report/examples",
  comparison = "report/comparison",
}
M.COMPARISON_SPLITS = { "validation", "test", "ood" }

-- ---- small helpers -------------------------------------------------------------

local function json() return require "dkjson" end

local argerror = require("moonbert.check").arg

local function is_tensor(v) return type(v) == "userdata" and type(v.totable) == "function" end
local function plain(v) if is_tensor(v) then return v:totable() end return v end

local function check_run(run, fname)
  if type(run) ~= "userdata" and type(run) ~= "table" or not pcall(function() return run.id end) or not run.id then
    argerror(1, fname, "moonbert run expected, got " .. type(run))
  end
end

local function check_label_names(v, n, fname)
  if type(v) ~= "table" or #v == 0 then argerror(n, fname, "label_names (a non-empty table of strings) expected, got " .. type(v)) end
  local out = {}
  for i, s in ipairs(v) do out[i] = tostring(s) end
  return out
end

-- File-name-safe piece of a user string (split names, stages).
local function safe_name(s)
  s = tostring(s):gsub("[^%w_%-]", "_")
  if #s > 60 then s = s:sub(1, 60) end
  return s
end

-- Write JSON next to the run and register it (write to a temporary then rename,
-- so a reader never sees half a file).
local function save_artifact(run, kind, key, value)
  local dir = run:artifact_dir() .. "/report"
  local lfs = require "lfs"
  if not lfs.attributes(dir, "mode") then
    local ok, err = lfs.mkdir(dir)
    if not ok and not lfs.attributes(dir, "mode") then error("cannot create " .. dir .. ": " .. tostring(err), 3) end
  end
  local path = dir .. "/" .. kind:gsub("^report/", "") .. "-" .. safe_name(key) .. ".json"
  local text = json().encode(value)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("cannot write " .. tostring(err), 3) end
  f:write(text)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then error("cannot write " .. path .. ": " .. tostring(rerr), 3) end
  run:log_artifact(kind, path)
  return path
end

local function words(s)
  local n = 0
  for _ in tostring(s):gmatch("%S+") do n = n + 1 end
  return n
end

local function round5(x) return tonumber(string.format("%.5g", x)) end

-- ---- the artifact writers ----------------------------------------------------------

--- mb.report.log_dataset_stats(run, split_name, split [, label_names]) -> path
function M.log_dataset_stats(run, split_name, split, label_names)
  check_run(run, "log_dataset_stats")
  if type(split_name) ~= "string" then argerror(2, "log_dataset_stats", "split name (string) expected, got " .. type(split_name)) end
  if type(split) ~= "table" or split.text == nil or split.label == nil then
    argerror(3, "log_dataset_stats", "split with fields text and label expected")
  end
  label_names = check_label_names(label_names or split.label_names, 4, "log_dataset_stats")
  local texts, labels = plain(split.text), plain(split.label)
  if #texts ~= #labels then
    argerror(3, "log_dataset_stats", string.format("%d texts but %d labels", #texts, #labels))
  end
  local counts, by_label = {}, {}
  for i = 1, #label_names do counts[i] = 0; by_label[i] = {} end
  for i = 1, #texts do
    local id = math.tointeger(labels[i])
    if not id or id < 0 or id >= #label_names then
      argerror(3, "log_dataset_stats", string.format("label %s of text %d is not an id in 0..%d", tostring(labels[i]), i, #label_names - 1))
    end
    counts[id + 1] = counts[id + 1] + 1
    local w = by_label[id + 1]
    w[#w + 1] = words(texts[i])
  end
  local stats = {}
  for i = 1, #label_names do stats[i] = svg.box_stats(by_label[i]) end
  return save_artifact(run, M.KINDS.dataset, split_name, {
    split = split_name, label_names = label_names, n = #texts, class_counts = counts, words_per_text = stats,
  })
end

--- mb.report.log_embedding(run, stage, xy, labels, label_names) -> path
function M.log_embedding(run, stage, xy, labels, label_names)
  check_run(run, "log_embedding")
  if stage ~= "before" and stage ~= "after" then
    argerror(2, "log_embedding", "stage 'before' or 'after' expected, got " .. tostring(stage))
  end
  label_names = check_label_names(label_names, 5, "log_embedding")
  xy, labels = plain(xy), plain(labels)
  if type(xy) ~= "table" then argerror(3, "log_embedding", "tensor [N,2] or table of {x, y} expected, got " .. type(xy)) end
  if type(labels) ~= "table" then argerror(4, "log_embedding", "labels (table or tensor) expected, got " .. type(labels)) end
  if #xy ~= #labels then argerror(4, "log_embedding", string.format("%d points but %d labels", #xy, #labels)) end
  local xs, ys, ls = {}, {}, {}
  for i = 1, #xy do
    local p = xy[i]
    if type(p) ~= "table" or type(p[1]) ~= "number" or type(p[2]) ~= "number" then
      argerror(3, "log_embedding", "point " .. i .. " is not a pair of numbers")
    end
    local id = math.tointeger(labels[i])
    if not id or id < 0 or id >= #label_names then
      argerror(4, "log_embedding", string.format("label %s of point %d is not an id in 0..%d", tostring(labels[i]), i, #label_names - 1))
    end
    -- JSON has no nan or inf: a point without finite coordinates is left out (and counted).
    if svg.finite(p[1]) and svg.finite(p[2]) then
      xs[#xs + 1], ys[#ys + 1], ls[#ls + 1] = round5(p[1]), round5(p[2]), id
    end
  end
  return save_artifact(run, M.KINDS.embedding, stage, { stage = stage, label_names = label_names, x = xs, y = ys,
                                                        labels = ls, dropped = #xy - #xs })
end

--- mb.report.log_custom_predictions(run, texts, probs, label_names) -> path
function M.log_custom_predictions(run, texts, probs, label_names)
  check_run(run, "log_custom_predictions")
  texts, probs = plain(texts), plain(probs)
  if type(texts) ~= "table" then argerror(2, "log_custom_predictions", "texts (table of strings) expected, got " .. type(texts)) end
  if type(probs) ~= "table" or #probs ~= #texts then
    argerror(3, "log_custom_predictions", "probs with one row per text expected")
  end
  label_names = check_label_names(label_names, 4, "log_custom_predictions")
  local items = {}
  for i, t in ipairs(texts) do
    local row = probs[i]
    if type(row) ~= "table" or #row ~= #label_names then
      argerror(3, "log_custom_predictions", string.format("row %d must hold %d probabilities", i, #label_names))
    end
    local p = {}
    for k, v in ipairs(row) do p[k] = round5(v) end
    items[i] = { text = tostring(t), probs = p }
  end
  return save_artifact(run, M.KINDS.custom, "custom", { label_names = label_names, items = items })
end

--- mb.report.log_examples(run, split_name, texts [, {label_names=, first_index=1}]) -> path
function M.log_examples(run, split_name, texts, opts)
  check_run(run, "log_examples")
  if type(split_name) ~= "string" then argerror(2, "log_examples", "split name (string) expected, got " .. type(split_name)) end
  texts = plain(texts)
  if type(texts) ~= "table" then argerror(3, "log_examples", "texts (table of strings) expected, got " .. type(texts)) end
  opts = opts or {}
  local t = {}
  for i, s in ipairs(texts) do t[i] = tostring(s) end
  local first = opts.first_index or 1
  if math.type(first) ~= "integer" then argerror(4, "log_examples", "first_index must be an integer") end
  return save_artifact(run, M.KINDS.examples, split_name, {
    split = split_name, first_index = first, texts = t,
    label_names = opts.label_names and check_label_names(opts.label_names, 4, "log_examples") or nil,
  })
end

--- mb.report.log_comparison(run, rows [, {title=, ood_name=, note=}]) -> path
-- rows[i] = {name = "dummy (most_frequent)", key = "dummy_most_frequent", group = nil,
--            validation = {accuracy=, f1=}, test = {...}, ood = {...}, seconds = 0.02}
-- in the order the reader should see them. key is the prefix of the model's confusion
-- matrices ("<key>/validation"; "" for unprefixed ones, nil for none); group, when set, heads a
-- block of rows ("random weights"). Any split may be missing; f1 is the weighted F1.
function M.log_comparison(run, rows, opts)
  check_run(run, "log_comparison")
  if type(rows) ~= "table" or #rows == 0 then argerror(2, "log_comparison", "rows (a non-empty table) expected, got " .. type(rows)) end
  opts = opts or {}
  local out = {}
  for i, r in ipairs(rows) do
    if type(r) ~= "table" or type(r.name) ~= "string" then argerror(2, "log_comparison", "row " .. i .. " needs a name (string)") end
    local o = { name = r.name, key = r.key, group = r.group, seconds = svg.finite(r.seconds) and round5(r.seconds) or nil }
    for _, split in ipairs(M.COMPARISON_SPLITS) do
      local m = r[split]
      if m ~= nil then
        if type(m) ~= "table" then argerror(2, "log_comparison", "row " .. i .. " field " .. split .. " must be {accuracy=, f1=}") end
        o[split] = { accuracy = svg.finite(m.accuracy) and m.accuracy or nil, f1 = svg.finite(m.f1) and m.f1 or nil }
      end
    end
    out[i] = o
  end
  return save_artifact(run, M.KINDS.comparison, "comparison", { rows = out, title = opts.title, ood_name = opts.ood_name,
                                                               note = opts.note, split = "comparison" })
end

-- ---- reading a run ---------------------------------------------------------------

-- The file behind an artifact path: the same name under runs/<id>/ beside the
-- store (which is where the run wrote it, wherever the store now lies), else the
-- path as recorded (relative to where the run ran). The store's folder comes
-- first: a recorded relative path may name another store's run of the same id.
local function resolve(store, run_id, path)
  local lfs = require "lfs"
  local rel = path:match("runs/" .. run_id .. "/(.*)$")
  if rel then
    local base = store:artifact_root()
    local p = base .. "/runs/" .. run_id .. "/" .. rel
    if lfs.attributes(p, "mode") == "file" then return p end
  end
  if lfs.attributes(path, "mode") == "file" then return path end
  return nil
end

-- {kind = {key = decoded}} with the latest artifact of each kind and key; notes for unreadable ones.
local function load_artifacts(store, run_id, notes)
  local found = {}
  local rows = store:artifacts(run_id)
  -- Logging a piece again rewrites its file and adds a row: only the last row
  -- of a path describes the file (and its hash) as it is now.
  local last_row = {}
  for i, a in ipairs(rows) do last_row[a.path] = i end
  for i, a in ipairs(rows) do
    if a.kind:match("^report/") and last_row[a.path] == i then
      local p = resolve(store, run_id, a.path)
      if not p then
        notes[#notes + 1] = "artifact " .. a.kind .. " (" .. a.path .. ") is missing"
      else
        local f = io.open(p, "rb")
        local text = f and f:read("a")
        if f then f:close() end
        local value, _, err = json().decode(text or "", 1, nil)
        if type(value) ~= "table" then
          notes[#notes + 1] = "artifact " .. a.path .. " is not valid JSON: " .. tostring(err)
        else
          if a.hash and require("moonbert.store").hash_file(p) ~= a.hash then
            notes[#notes + 1] = "artifact " .. a.path .. " changed after it was logged"
          end
          local key = value.split or value.stage or "custom"
          found[a.kind] = found[a.kind] or {}
          found[a.kind][key] = value
        end
      end
    end
  end
  return found
end

--- report_artifacts.load(store, run_id, notes) -> {kind = {key = decoded}}: the latest report
-- artifact of each kind and key of the run; a line in notes for each one that cannot be read.
M.load = load_artifacts

return M
