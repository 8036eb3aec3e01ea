-- moonbert.report (mb.report): one self-contained HTML page per run, with SVG plots.
--
--   local path = mb.report.write(store, run_id)        -- results/runs/<id>/report/index.html
--   -- or: moonbert report RUN [--store PATH] [--out DIR]
--
-- The page is built from what the store holds for the run (provenance, params,
-- tags, metric series, confusion matrices, predictions) plus the JSON artifacts
-- below. It loads nothing: styles are inline, plots are inline SVG (moonbert.svg),
-- there is no script, and a Content-Security-Policy meta tag forbids any fetch.
-- Every string from data or users (texts, labels, run names, params, tags,
-- errors) is escaped, so a text holding "<script>" or "</svg>" shows as text.
-- A missing piece leaves its section with a note saying how to record it.
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
M.TABLE_ROWS = 10 -- rows of each loss table

local esc = svg.escape

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

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Split order as a reader expects it.
local SPLIT_ORDER = { train = 1, training = 1, validation = 2, val = 2, valid = 2, test = 3 }
local function split_sort(keys)
  table.sort(keys, function(a, b)
    local oa, ob = SPLIT_ORDER[a] or 9, SPLIT_ORDER[b] or 9
    if oa ~= ob then return oa < ob end
    return a < b
  end)
  return keys
end

local function fmt_value(v)
  if type(v) ~= "number" then return tostring(v) end
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "nan" end
  local s = string.format("%.6g", v)
  return s
end

local function fmt_time(t) return t and os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(t)) or "" end

-- ---- sections --------------------------------------------------------------------
-- Each section returns its HTML, or nil when the run recorded nothing for it:
-- a section without data is left out of the page (and out of the navigation).

local function note(text) return '<p class="note">' .. esc(text) .. "</p>" end

local function kv_table(rows, class)
  local out = { '<table class="' .. (class or "kv") .. '">' }
  for _, r in ipairs(rows) do
    out[#out + 1] = "<tr><th>" .. esc(r[1]) .. "</th><td>" .. esc(r[2]) .. "</td></tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

local function fmt_seconds(t)
  if type(t) ~= "number" or t ~= t then return "" end
  if t < 1 then return string.format("%.2f s", t) end
  if t < 60 then return string.format("%.1f s", t) end
  if t < 3600 then return string.format("%d min %02d s", t // 60, math.floor(t % 60 + 0.5)) end
  return string.format("%d h %02d min", t // 3600, math.floor(t % 3600 / 60 + 0.5))
end
M.format_seconds = fmt_seconds

-- What the run started from, where and how it ended: the line a reader checks
-- before believing any number below it.
local INIT_WARNING = {
  random = "RANDOM initial weights: these results are not those of a pretrained model.",
  ["moonbert-small-mlm"] = "moonbert-small-mlm weights (pretrained by moonbert), not pretrained DistilBERT.",
}
local function banner(store, r)
  local params, tags = store:params(r.id), store:tags(r.id)
  -- A run that fine-tunes records init as a parameter; pretraining (random by design) and
  -- comparisons of inits carry it as a tag only, and get no warning for it.
  local init = params.init or tags.init
  local warn_init = params.init ~= nil
  local model = params.model or params.pretrained
  local items = {}
  local function add(k, v) if v ~= nil and v ~= "" then items[#items + 1] = "<span><b>" .. esc(k) .. "</b> " .. esc(v) .. "</span>" end end
  add("init", init)
  add("model", model)
  add("device", r.device)
  add("status", r.status)
  add("seed", r.seed)
  add("started", fmt_time(r.start_time))
  if r.start_time and r.end_time then add("took", fmt_seconds(r.end_time - r.start_time)) end
  local warn = (warn_init and init ~= "pretrained" and init ~= "") or (r.status and r.status ~= "completed")
  local out = { '<div class="banner' .. (warn and " warn" or "") .. '">' }
  if warn_init and INIT_WARNING[init] then out[#out + 1] = "<p><strong>" .. esc(INIT_WARNING[init]) .. "</strong></p>"
  elseif warn_init and init ~= "pretrained" then
    out[#out + 1] = "<p><strong>" .. esc("init=" .. init .. ": not pretrained DistilBERT weights.") .. "</strong></p>"
  end
  if r.status and r.status ~= "completed" then
    out[#out + 1] = "<p><strong>" .. esc("This run is " .. r.status .. ": its results are incomplete.") .. "</strong></p>"
  end
  out[#out + 1] = '<p class="facts">' .. table.concat(items, " ") .. "</p></div>"
  return table.concat(out, "\n")
end

local SPLIT_TITLE = { validation = "validation", test = "test", ood = "out-of-domain" }

local function comparison_of(art)
  return art[M.KINDS.comparison] and art[M.KINDS.comparison].comparison
end

-- The answer first: every model of the run, validation/test/out-of-domain accuracy and
-- weighted F1 (the best of each column in bold), and the time each took.
local function section_comparison(art)
  local c = comparison_of(art)
  if not c or type(c.rows) ~= "table" or #c.rows == 0 then return nil end
  local rows = c.rows
  -- The columns: each split's accuracy and F1 that some row has.
  local splits, metrics_of = {}, {}
  for _, split in ipairs(M.COMPARISON_SPLITS) do
    local ms = {}
    for _, m in ipairs { "accuracy", "f1" } do
      for _, r in ipairs(rows) do
        if type(r[split]) == "table" and type(r[split][m]) == "number" then ms[#ms + 1] = m; break end
      end
    end
    if #ms > 0 then splits[#splits + 1] = split; metrics_of[split] = ms end
  end
  local has_time = false
  for _, r in ipairs(rows) do if type(r.seconds) == "number" then has_time = true end end
  local best = {}
  for _, split in ipairs(splits) do
    for _, m in ipairs { "accuracy", "f1" } do
      local b
      for _, r in ipairs(rows) do
        local v = r[split] and r[split][m]
        if type(v) == "number" and (not b or v > b) then b = v end
      end
      best[split .. m] = b
    end
  end
  local out = { '<table class="comparison">' }
  out[#out + 1] = "<caption>" .. esc(c.title or "Every model of the run: accuracy and weighted F1, the best of each column in bold") .. "</caption>"
  local h1 = { '<tr><th rowspan="2" class="model">model</th>' }
  for _, split in ipairs(splits) do
    local title = SPLIT_TITLE[split] or split
    if split == "ood" and c.ood_name then title = c.ood_name end
    h1[#h1 + 1] = '<th colspan="' .. #metrics_of[split] .. '">' .. esc(title) .. "</th>"
  end
  if has_time then h1[#h1 + 1] = '<th rowspan="2">time</th>' end
  out[#out + 1] = table.concat(h1) .. "</tr>"
  local h2 = { "<tr>" }
  for _, split in ipairs(splits) do
    for _, m in ipairs(metrics_of[split]) do h2[#h2 + 1] = m == "f1" and "<th>F1</th>" or "<th>accuracy</th>" end
  end
  out[#out + 1] = table.concat(h2) .. "</tr>"
  local ncols = 1 + (has_time and 1 or 0)
  for _, split in ipairs(splits) do ncols = ncols + #metrics_of[split] end
  local group
  for _, r in ipairs(rows) do
    if r.group and r.group ~= group then
      group = r.group
      out[#out + 1] = '<tr class="group"><th colspan="' .. ncols .. '">' .. esc(group) .. "</th></tr>"
    end
    local cells = { '<tr><td class="model">' .. esc(r.name) .. "</td>" }
    for _, split in ipairs(splits) do
      for _, m in ipairs(metrics_of[split]) do
        local v = r[split] and r[split][m]
        if type(v) == "number" then
          local txt = string.format("%.4f", v)
          if v == best[split .. m] then txt = "<b>" .. txt .. "</b>" end
          cells[#cells + 1] = '<td class="num">' .. txt .. "</td>"
        else
          cells[#cells + 1] = '<td class="num">–</td>'
        end
      end
    end
    if has_time then cells[#cells + 1] = '<td class="num">' .. esc(fmt_seconds(r.seconds)) .. "</td>" end
    out[#out + 1] = table.concat(cells) .. "</tr>"
  end
  out[#out + 1] = "</table>"
  if c.note then out[#out + 1] = '<p class="caption">' .. esc(c.note) .. "</p>" end
  return table.concat(out, "\n")
end

local function section_overview(store, r)
  local parts = { '<div class="row">' }
  local rows = {
    { "experiment", r.experiment }, { "name", r.name or "" }, { "status", r.status },
    { "started", fmt_time(r.start_time) }, { "ended", fmt_time(r.end_time) },
    { "seed", r.seed and tostring(r.seed) or "" }, { "host", r.host or "" },
    { "git", r.git_commit and (r.git_commit .. (r.git_dirty and " (dirty)" or "")) or "" },
    { "script", r.script_path or "" }, { "dataset hash", r.dataset_hash or "" },
    { "model hash", r.model_hash or "" }, { "device", r.device or "" },
  }
  local shown = {}
  for _, kv in ipairs(rows) do if kv[2] ~= "" then shown[#shown + 1] = kv end end
  parts[#parts + 1] = '<div class="block"><h3>Run</h3>' .. kv_table(shown) .. "</div>"
  local params = store:params(r.id)
  local prow = {}
  for _, k in ipairs(sorted_keys(params)) do prow[#prow + 1] = { k, fmt_value(params[k]) } end
  if #prow > 0 then parts[#parts + 1] = '<div class="block"><h3>Parameters</h3>' .. kv_table(prow) .. "</div>" end
  local tags = store:tags(r.id)
  local trow = {}
  for _, k in ipairs(sorted_keys(tags)) do trow[#trow + 1] = { k, tags[k] } end
  if #trow > 0 then parts[#parts + 1] = '<div class="block"><h3>Tags</h3>' .. kv_table(trow) .. "</div>" end
  local final = store:final_metrics(r.id)
  local mrow = {}
  for _, k in ipairs(sorted_keys(final)) do mrow[#mrow + 1] = { k, fmt_value(final[k].value) } end
  if #mrow > 0 then parts[#parts + 1] = '<div class="block"><h3>Final metrics</h3>' .. kv_table(mrow) .. "</div>" end
  parts[#parts + 1] = "</div>"
  if r.error then parts[#parts + 1] = '<h3>Error</h3><pre class="error">' .. esc(r.error) .. "</pre>" end
  return table.concat(parts, "\n")
end

local function section_dataset(art)
  local sets = art[M.KINDS.dataset]
  if not sets then return nil end
  local parts = {}
  for _, split in ipairs(split_sort(sorted_keys(sets))) do
    local d = sets[split]
    local names = d.label_names or {}
    parts[#parts + 1] = "<h3>" .. esc(split) .. " (" .. esc(tostring(d.n or "?")) .. " texts)</h3>"
    parts[#parts + 1] = '<div class="row">'
    parts[#parts + 1] = "<figure>" .. svg.bar_chart { labels = names, values = d.class_counts or {}, horizontal = true,
                                        title = "Frequency of classes (" .. split .. ")", xlabel = "texts",
                                        height = 60 + 30 * #names } .. "</figure>"
    local groups = {}
    for i, name in ipairs(names) do groups[i] = { label = name, stats = (d.words_per_text or {})[i] or { n = 0 } } end
    parts[#parts + 1] = "<figure>" .. svg.box_plot { groups = groups, title = "Words per text (" .. split .. ")", ylabel = "words" } .. "</figure>"
    parts[#parts + 1] = "</div>"
  end
  return table.concat(parts, "\n")
end

-- ---- training curves ----
-- A metric key "frozen/train/loss" is model "frozen", stage "train", name "loss". Charts are
-- by name (every model's train and eval loss on one "loss" chart), ordered loss, then
-- accuracy and F1, then learning rate, then gradient norm, then the rest. Training series
-- are lines; evaluation points (any other stage) are markers. Axes start at 0 for
-- non-negative metrics, and ratios (accuracy, F1, precision, recall) run to 1.
local function metric_rank(name)
  if name:find("loss", 1, true) then return 1 end
  if name:find("acc", 1, true) or name:find("f1", 1, true) or name:find("precision", 1, true) or name:find("recall", 1, true) then return 2 end
  if name == "lr" or name:find("learning_rate", 1, true) then return 3 end
  if name:find("grad", 1, true) then return 4 end
  return 5
end
local function is_ratio(name) return metric_rank(name) == 2 end
local TRAIN_STAGE = { train = true, training = true }
local function split_key(key)
  local parts = {}
  for piece in key:gmatch("[^/]+") do parts[#parts + 1] = piece end
  local name = parts[#parts] or key
  local stage = #parts >= 2 and parts[#parts - 1] or ""
  local model = #parts >= 3 and table.concat(parts, "/", 1, #parts - 2) or ""
  return model, stage, name
end
M.split_metric_key = split_key

local function section_curves(store, r)
  local groups, order = {}, {}
  local models, model_order = {}, {}
  for _, m in ipairs(store:metrics(r.id)) do
    local model, stage, name = split_key(m.key)
    local g = groups[name]
    if not g then g = { name = name, series = {}, order = {}, first = #order + 1 }; groups[name] = g; order[#order + 1] = name end
    local s = g.series[m.key]
    if not s then
      s = { key = m.key, model = model, stage = stage, points = {} }
      g.series[m.key] = s; g.order[#g.order + 1] = m.key
    end
    s.points[#s.points + 1] = m
  end
  local function has(pts, axis)
    for _, p in ipairs(pts) do if p[axis] == nil then return false end end
    return true
  end
  -- The run trained when some series has two or more points by step: then an
  -- evaluation point with a step is a point on its curves, even when it is alone.
  local trained, max_step = false, 0
  for _, name in ipairs(order) do
    for _, key in ipairs(groups[name].order) do
      local pts = groups[name].series[key].points
      if has(pts, "step") then
        for _, p in ipairs(pts) do max_step = math.max(max_step, p.step) end
        if #pts >= 2 then trained = true end
      end
    end
  end
  local charted = {}
  for _, name in ipairs(order) do
    local g = groups[name]
    local longest, all_step, all_epoch, any_step = 0, true, true, false
    for _, key in ipairs(g.order) do
      local pts = g.series[key].points
      longest = math.max(longest, #pts)
      if #pts >= 2 then
        all_step = all_step and has(pts, "step")
        all_epoch = all_epoch and has(pts, "epoch")
      end
      any_step = any_step or has(pts, "step")
    end
    if longest >= 2 or (trained and any_step) then
      g.axis = (longest >= 2 and not all_step) and (all_epoch and "epoch" or "point") or "step"
      charted[#charted + 1] = g
    end
  end
  if #charted == 0 then return nil end
  table.sort(charted, function(a, b)
    local ra, rb = metric_rank(a.name), metric_rank(b.name)
    if ra ~= rb then return ra < rb end
    return a.first < b.first
  end)
  -- The series drawn: two or more points, or points on the chart's axis.
  local function drawn(g, s) return #s.points >= 2 or (g.axis ~= "point" and has(s.points, g.axis)) end
  -- One colour per model across charts when there are several models; else by stage.
  for _, g in ipairs(charted) do
    for _, key in ipairs(g.order) do
      local s = g.series[key]
      if drawn(g, s) and not models[s.model] then model_order[#model_order + 1] = s.model; models[s.model] = #model_order end
    end
  end
  local by_model = #model_order > 1
  local stages, stage_order = {}, 0
  local charts = {}
  for _, g in ipairs(charted) do
    local series, lo, hi = {}, math.huge, -math.huge
    for _, key in ipairs(g.order) do
      local s = g.series[key]
      local pts = s.points
      if drawn(g, s) then
        local xs, ys = {}, {}
        for i, p in ipairs(pts) do
          xs[i] = (g.axis == "point") and i or p[g.axis]; ys[i] = p.value
          if svg.finite(p.value) then lo, hi = math.min(lo, p.value), math.max(hi, p.value) end
        end
        local train = TRAIN_STAGE[s.stage] or (s.stage == "" and s.model == "")
        if not stages[s.stage] then stage_order = stage_order + 1; stages[s.stage] = stage_order end
        local ci = by_model and models[s.model] or stages[s.stage]
        local label = key:sub(-#g.name - 1) == "/" .. g.name and key:sub(1, -#g.name - 2) or key
        series[#series + 1] = { name = label, x = xs, y = ys, style = train and "line" or "markers",
                                color = svg.palette[(ci - 1) % #svg.palette + 1] }
      end
    end
    local opts = { series = series, title = g.name .. " by " .. g.axis, xlabel = g.axis, ylabel = g.name }
    if lo >= 0 then opts.ymin = 0 end
    if is_ratio(g.name) and hi <= 1 then opts.ymax = 1 end
    if g.axis == "step" then opts.xmin, opts.xmax = 0, max_step end
    if g.axis == "epoch" then opts.xmin = 0 end
    charts[#charts + 1] = "<figure>" .. svg.line_chart(opts) .. "</figure>"
  end
  return '<p class="caption">Training series are lines (train loss: the mean over each logging interval); ' ..
         "evaluation points are diamonds. Axes start at 0; accuracy and F1 run from 0 to 1.</p>" ..
         '<div class="row">' .. table.concat(charts, "\n") .. "</div>"
end

-- ---- confusion matrices, in the comparison's order ----
-- Row r of the comparison with key k owns the matrices "k/validation", "k/test", "k/ood"
-- ("validation", ... when k is ""). The rest follow, in split order.
-- "model · split", and its two parts (model may be nil)
local function matrix_title(names_by_key, key)
  local prefix, split = key:match("^(.*)/([^/]+)$")
  if not prefix then prefix, split = "", key end
  local model = names_by_key[prefix] or (prefix ~= "" and prefix) or nil
  local split_title = SPLIT_TITLE[split] or split
  if model then return model .. " · " .. split_title, model, split_title end
  return split_title, nil, split_title
end

local function model_names(art)
  local names = {}
  local c = comparison_of(art)
  for _, r in ipairs(c and c.rows or {}) do
    if type(r.key) == "string" and not names[r.key] then names[r.key] = r.group and (r.group .. ": " .. r.name) or r.name end
  end
  return names
end

local function section_confusion(store, r, art)
  local last, keys = {}, {}
  for _, c in ipairs(store:confusion(r.id)) do
    local k = c.split or "(no split)"
    if not last[k] then keys[#keys + 1] = k end
    last[k] = c
  end
  if #keys == 0 then return nil end
  local ordered, used = {}, {}
  local c = comparison_of(art)
  for _, row in ipairs(c and c.rows or {}) do
    if type(row.key) == "string" then
      for _, split in ipairs(M.COMPARISON_SPLITS) do
        local k = (row.key ~= "" and (row.key .. "/") or "") .. split
        if last[k] and not used[k] then ordered[#ordered + 1] = k; used[k] = true end
      end
    end
  end
  -- The rest: models in the order they were logged, each model's splits train, validation, test, ood.
  local rest, first_seen = {}, {}
  for i, k in ipairs(keys) do
    if not used[k] then
      rest[#rest + 1] = k
      local prefix = k:match("^(.*)/[^/]+$") or ""
      first_seen[prefix] = first_seen[prefix] or i
    end
  end
  local SPLIT_RANK = { train = 1, training = 1, validation = 2, val = 2, valid = 2, test = 3, ood = 4 }
  table.sort(rest, function(a, b)
    local pa, sa = a:match("^(.*)/([^/]+)$")
    local pb, sb = b:match("^(.*)/([^/]+)$")
    pa, sa, pb, sb = pa or "", sa or a, pb or "", sb or b
    if pa ~= pb then return first_seen[pa] < first_seen[pb] end
    local ra, rb = SPLIT_RANK[sa] or 9, SPLIT_RANK[sb] or 9
    if ra ~= rb then return ra < rb end
    return sa < sb
  end)
  for _, k in ipairs(rest) do ordered[#ordered + 1] = k end
  local names = model_names(art)
  local parts = { '<div class="row">' }
  for _, key in ipairs(ordered) do
    local cm = last[key]
    local m = {}
    for i, row in ipairs(cm.matrix) do
      local sum = 0
      for _, v in ipairs(row) do sum = sum + v end
      m[i] = {}
      for j, v in ipairs(row) do m[i][j] = sum > 0 and v / sum or 0 / 0 end
    end
    local title, model, split = matrix_title(names, key)
    local epoch = cm.epoch and (", epoch " .. fmt_value(cm.epoch)) or ""
    parts[#parts + 1] = '<figure>' .. svg.heatmap { matrix = m, row_labels = cm.labels, col_labels = cm.labels,
      title = title .. epoch, heading = model or split, subtitle = model and (split .. epoch) or nil,
      vmin = 0, vmax = 1, fmt = "%.2f", cell = 40 } .. "</figure>"
  end
  parts[#parts + 1] = "</div>"
  return '<p class="caption">Rows are true labels, normalised to sum to 1' ..
         (c and "; in the order of the comparison table.</p>" or "; in the order the models were logged.</p>") ..
         table.concat(parts, "\n")
end

local function section_embeddings(art)
  local e = art[M.KINDS.embedding]
  if not e then return nil end
  local parts = {}
  for _, stage in ipairs { "before", "after" } do
    local d = e[stage]
    if d then
      local names = d.label_names or {}
      local panels = {}
      for k, name in ipairs(names) do panels[k] = { title = name, x = {}, y = {} } end
      for i, id in ipairs(d.labels or {}) do
        local p = panels[id + 1]
        if p then p.x[#p.x + 1] = d.x[i]; p.y[#p.y + 1] = d.y[i] end
      end
      local n = #(d.labels or {})
      parts[#parts + 1] = "<figure>" .. svg.hexbin_grid { panels = panels, columns = 3, gridsize = 20,
                                            title = "[CLS] features " .. stage .. " fine-tuning (" .. n .. " points, 2-D UMAP)" } .. "</figure>"
      if (d.dropped or 0) > 0 then
        parts[#parts + 1] = note(string.format("%d points without finite coordinates were left out.", d.dropped))
      end
    end
  end
  if #parts == 0 then return nil end
  return table.concat(parts, "\n")
end

local function section_custom(art)
  local c = art[M.KINDS.custom] and art[M.KINDS.custom].custom
  if not c or #(c.items or {}) == 0 then return nil end
  local parts = { '<div class="row">' }
  for _, item in ipairs(c.items or {}) do
    parts[#parts + 1] = "<figure>" .. svg.prob_bars { labels = c.label_names or {}, probs = item.probs or {}, title = item.text } .. "</figure>"
  end
  parts[#parts + 1] = "</div>"
  return table.concat(parts, "\n")
end

-- ---- error analysis ----
-- Every split whose predictions carry a loss: its highest and lowest losses, with texts
-- (the examples logged for the split, else for its last part: "frozen/validation" reads
-- the texts of "validation"). Splits without losses (custom texts) are left out.
local function section_losses(store, r, art)
  local by_split, keys = {}, {}
  for _, p in ipairs(store:predictions(r.id)) do
    local s = p.split or "(no split)"
    if not by_split[s] then by_split[s] = {}; keys[#keys + 1] = s end
    table.insert(by_split[s], p)
  end
  local conf_labels = {}
  local any_labels
  for _, c in ipairs(store:confusion(r.id)) do conf_labels[c.split or ""] = c.labels; any_labels = c.labels end
  local examples = art[M.KINDS.examples] or {}
  local names_by_key = model_names(art)
  local parts = {}
  for _, split in ipairs(split_sort(keys)) do
    local rows = {}
    for _, p in ipairs(by_split[split]) do if p.loss and p.loss == p.loss then rows[#rows + 1] = p end end
    if #rows > 0 then
      table.sort(rows, function(a, b) if a.loss ~= b.loss then return a.loss > b.loss end return a.index < b.index end)
      local ex = examples[split] or examples[split:match("([^/]+)$")]
      local names = (ex and ex.label_names) or conf_labels[split] or any_labels or {}
      local function name_of(id)
        if id == nil then return "" end
        return names[id + 1] or tostring(id)
      end
      local with_text = ex and ex.texts
      local function table_of(title, list)
        local out = { "<h3>" .. esc(title) .. "</h3>", '<table class="losses"><tr><th>index</th>' ..
                      (with_text and "<th>text</th>" or "") .. "<th>label</th><th>predicted</th><th>loss</th></tr>" }
        for _, p in ipairs(list) do
          local txt = with_text and ex.texts[p.index - (ex.first_index or 1) + 1]
          out[#out + 1] = string.format("<tr><td>%d</td>%s<td>%s</td><td>%s</td><td>%s</td></tr>", p.index,
            with_text and ('<td class="text">' .. esc(txt or "") .. "</td>") or "", esc(name_of(p.label)),
            esc(name_of(p.predicted)), esc(string.format("%.4f", p.loss)))
        end
        out[#out + 1] = "</table>"
        return table.concat(out, "\n")
      end
      local n = math.min(M.TABLE_ROWS, #rows)
      local top, bottom = {}, {}
      for i = 1, n do top[i] = rows[i]; bottom[i] = rows[#rows - i + 1] end
      local title = matrix_title(names_by_key, split)
      parts[#parts + 1] = '<div class="block">' .. table_of("Highest losses: " .. title .. " (" .. #rows .. " examples)", top) .. "</div>"
      parts[#parts + 1] = '<div class="block">' .. table_of("Lowest losses: " .. title, bottom) .. "</div>"
    end
  end
  if #parts == 0 then return nil end
  return table.concat(parts, "\n")
end

-- ---- the page ---------------------------------------------------------------------

local STYLE = [[
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
nav a { margin-right: 12px; }
table { border-collapse: collapse; font-size: 13px; }
table.kv th { text-align: left; padding: 2px 16px 2px 0; font-weight: normal; color: #555; vertical-align: top; }
table.kv td { padding: 2px 0; font-family: "DejaVu Sans Mono", monospace; white-space: pre-wrap; word-break: break-all; }
table.losses th, table.losses td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
table.losses td.text { max-width: 640px; white-space: pre-wrap; word-break: break-word; }
table.comparison { font-size: 14px; margin: 8px 0; }
table.comparison caption { caption-side: top; text-align: left; color: #555; padding-bottom: 6px; }
table.comparison th, table.comparison td { border: 1px solid #ddd; padding: 4px 10px; }
table.comparison th { background: #f4f6f8; }
table.comparison td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.comparison tr.group th { text-align: left; background: #e9eef4; }
table.comparison td.model { min-width: 260px; }
.banner { border: 1px solid #cfd8e3; background: #f4f8fc; padding: 6px 12px; margin: 12px 0; }
.banner.warn { border-color: #e0a0a0; background: #fff4f2; }
.banner.warn strong { color: #a01010; }
.banner p { margin: 4px 0; } .banner .facts { display: flex; flex-wrap: wrap; gap: 2px 18px; }
.banner .facts span { white-space: nowrap; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.block { display: inline-block; vertical-align: top; margin-right: 16px; }
figure { margin: 0; }
svg.plot { border: 1px solid #eee; max-width: 100%; height: auto; }
.note, .caption { color: #666; font-size: 13px; } .note { font-style: italic; }
pre.error { background: #fff3f3; border: 1px solid #f0c0c0; padding: 8px; white-space: pre-wrap; }
footer { margin-top: 40px; color: #888; font-size: 12px; }
@page { size: A4; margin: 12mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 11px; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; margin-top: 16px; }
  h3 { break-after: avoid; page-break-after: avoid; }
  figure, svg, .banner, table.comparison, table.kv, tr, .block { break-inside: avoid; page-break-inside: avoid; }
  svg.plot { max-width: 100%; height: auto; border: none; }
  .row { gap: 8px; }
  table.comparison { font-size: 11px; } table.comparison td.model { min-width: 0; }
  table.comparison th, table.comparison td { padding: 3px 6px; }
  .caption, .note { font-size: 10px; }
  .row figure { flex: 0 0 auto; max-width: 48%; }
  #confusion .row figure { max-width: 31%; }
  .row figure svg.plot { width: 100%; height: auto; }
  a { color: inherit; text-decoration: none; }
}
]]
M.STYLE = STYLE

local function page(title, head_html, sections, notes, store)
  local out = {
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    -- Nothing may be fetched or run: the page is data only.
    [[<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">]],
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>" .. esc(title) .. "</title>",
    "<style>" .. STYLE .. "</style>",
    "</head>",
    "<body>",
    "<h1>" .. esc(title) .. "</h1>",
    head_html or "",
    "<nav>",
  }
  for _, s in ipairs(sections) do
    if s.html then out[#out + 1] = '<a href="#' .. s.id .. '">' .. esc(s.title) .. "</a>" end
  end
  out[#out + 1] = "</nav>"
  for _, s in ipairs(sections) do
    if s.html then
      out[#out + 1] = '<section id="' .. s.id .. '"><h2>' .. esc(s.title) .. "</h2>"
      out[#out + 1] = s.html
      out[#out + 1] = "</section>"
    end
  end
  if notes and #notes > 0 then
    out[#out + 1] = '<section id="notes"><h2>Notes</h2><ul>'
    for _, n in ipairs(notes) do out[#out + 1] = "<li>" .. esc(n) .. "</li>" end
    out[#out + 1] = "</ul></section>"
  end
  local version = "moonbert"
  local okv, mb = pcall(require, "moonbert")
  if okv and type(mb) == "table" and mb._VERSION then version = mb._VERSION end
  out[#out + 1] = "<footer>Written by " .. esc(version) .. " on " .. esc(fmt_time(os.time())) ..
                  " from " .. esc(store:path()) .. ".</footer>"
  out[#out + 1] = "</body>"
  out[#out + 1] = "</html>"
  return table.concat(out, "\n") .. "\n"
end

--- mb.report.build(store, run_id) -> html, {sections = {id = true|false}, order = {ids shown}, notes = {...}}
-- sections[id] is true when the section is on the page, false when the run recorded
-- nothing for it (the section is then left out).
function M.build(store, run_id)
  if type(store) ~= "userdata" and type(store) ~= "table" then argerror(1, "build", "store expected, got " .. type(store)) end
  run_id = math.tointeger(run_id)
  if not run_id then argerror(2, "build", "run id (integer) expected") end
  local r, msg = store:get_run(run_id)
  if not r then return nil, msg end
  svg.reset_ids() -- the same run gives the same page
  local notes = {}
  local art = load_artifacts(store, run_id, notes)
  local sections = {
    { id = "comparison", title = "Comparison", html = section_comparison(art) },
    { id = "dataset", title = "Dataset", html = section_dataset(art) },
    { id = "curves", title = "Training curves", html = section_curves(store, r) },
    { id = "confusion", title = "Confusion matrices", html = section_confusion(store, r, art) },
    { id = "maps", title = "Feature maps", html = section_embeddings(art) },
    { id = "custom", title = "Custom texts", html = section_custom(art) },
    { id = "losses", title = "Error analysis: highest and lowest losses", html = section_losses(store, r, art) },
    { id = "overview", title = "Run details", html = section_overview(store, r) },
  }
  local info = { sections = {}, order = {}, notes = notes }
  for _, s in ipairs(sections) do
    info.sections[s.id] = s.html ~= nil
    if s.html then info.order[#info.order + 1] = s.id end
  end
  local title = string.format("moonbert run %d: %s%s", r.id, r.experiment, r.name and (" / " .. r.name) or "")
  return page(title, banner(store, r), sections, notes, store), info
end

-- ---- sweeps -------------------------------------------------------------------------
-- A sweep's runs carry the tags sweep=<name> and trial=<key> ("batch_size=64,lr=2e-05");
-- `moonbert sweep` also writes sweeps/<name>/sweep.json beside the store with the metric,
-- its mode, the parameter names and the pruner (moonbert.sweep), which the report reads
-- when present.
--
-- Parameter importance (mb.report.param_importance) is a first-order variance
-- decomposition over binned parameters, a simpler stand-in for fANOVA's main effects
-- without its random forest: for each parameter, the finished trials' values of the
-- metric are grouped by the parameter (each distinct value of a choice or a grid with at
-- most B values; otherwise B bins of about equal counts by rank, B = max(2, floor(sqrt(n)))
-- for n trials, so a log-uniform parameter is binned as its logarithm would be), and the
-- parameter's share is the correlation ratio eta^2 = (variance of the group means, weighted
-- by count) / (variance of all values). The bars show each eta^2 divided by their sum, so
-- they sum to 1. It ignores interactions between parameters, and with few trials or many
-- groups eta^2 is biased upwards; read small differences between bars as noise.

--- mb.report.param_importance(trials, names) -> {{name=, eta2=, share=}, ...} (largest share
-- first) | nil, reason. trials: {{values = {name = value or text}, value = number}, ...};
-- names: the parameters. Needs 3 trials with a finite value and some spread among them.
function M.param_importance(trials, names)
  local done = {}
  for _, t in ipairs(trials) do if svg.finite(t.value) then done[#done + 1] = t end end
  local n = #done
  if n < 3 then return nil, "fewer than 3 finished trials" end
  local mean = 0
  for _, t in ipairs(done) do mean = mean + t.value end
  mean = mean / n
  local total = 0
  for _, t in ipairs(done) do total = total + (t.value - mean) ^ 2 end
  if not (total > 0) then return nil, "every finished trial has the same value" end
  local nbins = math.max(2, math.floor(math.sqrt(n)))
  local out, sum = {}, 0
  for _, name in ipairs(names) do
    local numeric, distinct, seen = true, {}, {}
    for _, t in ipairs(done) do
      local v = t.values[name]
      if tonumber(v) == nil then numeric = false end
      if not seen[tostring(v)] then seen[tostring(v)] = true; distinct[#distinct + 1] = v end
    end
    local group_of = {}
    if numeric and #distinct > nbins then
      local order = {}
      for i = 1, n do order[i] = i end
      table.sort(order, function(a, b)
        local va, vb = tonumber(done[a].values[name]), tonumber(done[b].values[name])
        if va ~= vb then return va < vb end
        return a < b
      end)
      -- equal values share the bin of the first of them
      local first_rank = {}
      for r, i in ipairs(order) do
        local key = tonumber(done[i].values[name])
        if first_rank[key] == nil then first_rank[key] = r end
        group_of[i] = math.floor((first_rank[key] - 1) * nbins / n) + 1
      end
    else
      for i, t in ipairs(done) do group_of[i] = tostring(t.values[name]) end
    end
    local gsum, gcount = {}, {}
    for i, t in ipairs(done) do
      local g = group_of[i]
      gsum[g] = (gsum[g] or 0) + t.value
      gcount[g] = (gcount[g] or 0) + 1
    end
    local between = 0
    for g, c in pairs(gcount) do between = between + c * (gsum[g] / c - mean) ^ 2 end
    out[#out + 1] = { name = name, eta2 = between / total }
    sum = sum + between / total
  end
  for _, e in ipairs(out) do e.share = sum > 0 and e.eta2 / sum or 1 / #out end
  table.sort(out, function(a, b) if a.share ~= b.share then return a.share > b.share end return a.name < b.name end)
  return out
end

-- the folder the sweep wrote (sweep.log_dir: beside a store file, results/ for PostgreSQL)
local function sweep_dir(store, name)
  return require("moonbert.sweep").log_dir(name, store:path())
end
M.sweep_dir = sweep_dir

local function parse_trial_key(key)
  local t, names = {}, {}
  for pair in tostring(key):gmatch("[^,]+") do
    local k, v = pair:match("^([^=]+)=(.*)$")
    if k then t[k] = v; names[#names + 1] = k end
  end
  return t, names
end

--- mb.report.build_sweep(store, name [, {metric=, mode=}]) -> html, info | nil, message
-- info = {trials = n, best = {run_id=, key=, value=}, metric=, mode=}
function M.build_sweep(store, name, opts)
  if type(name) ~= "string" or name == "" then argerror(2, "build_sweep", "sweep name (string) expected") end
  opts = opts or {}
  local spec = {}
  local f = io.open(sweep_dir(store, name) .. "/sweep.json", "rb")
  if f then
    local v = json().decode(f:read("a") or "")
    f:close()
    if type(v) == "table" then spec = v end
  end
  local metric = opts.metric or spec.metric or "val/accuracy"
  local mode = opts.mode or spec.mode or "max"
  if mode ~= "max" and mode ~= "min" then argerror(3, "build_sweep", "mode must be max or min, got " .. tostring(mode)) end
  -- Every run of the sweep; a trial's value is the best among its completed runs.
  local trials, keys = {}, {}
  local param_names, seen_param = {}, {}
  for _, p in ipairs(spec.parameters or {}) do param_names[#param_names + 1] = p; seen_param[p] = true end
  for _, run in ipairs(store:runs {}) do
    local tags = store:tags(run.id)
    if tags.sweep == name and tags.trial then
      local t = trials[tags.trial]
      if not t then
        local values, names = parse_trial_key(tags.trial)
        t = { key = tags.trial, values = values, status = run.status, runs = {} }
        trials[tags.trial] = t; keys[#keys + 1] = tags.trial
        for _, n in ipairs(names) do if not seen_param[n] then seen_param[n] = true; param_names[#param_names + 1] = n end end
      end
      t.runs[#t.runs + 1] = run
      local m = store:final_metrics(run.id)[metric]
      local v = m and m.value
      if run.status == "completed" and svg.finite(v) then
        if t.value == nil or (mode == "max" and v > t.value) or (mode == "min" and v < t.value) then
          t.value, t.run_id, t.status, t.seconds = v, run.id, "completed", run.end_time and run.start_time and run.end_time - run.start_time
        end
      elseif t.value == nil then
        t.status, t.run_id = run.status, t.run_id or run.id
        if run.status == "pruned" then t.rung, t.run_id = run.pruned_rung, run.id end
      end
    end
  end
  if #keys == 0 then return nil, "no runs of sweep '" .. name .. "' in " .. store:path() end
  svg.reset_ids()
  local list = {}
  for _, k in ipairs(keys) do list[#list + 1] = trials[k] end
  table.sort(list, function(a, b)
    if (a.value ~= nil) ~= (b.value ~= nil) then return a.value ~= nil end
    if a.value ~= nil and a.value ~= b.value then
      if mode == "max" then return a.value > b.value end
      return a.value < b.value
    end
    return (a.run_id or math.huge) < (b.run_id or math.huge) -- ties: the trial that ran first, as moonbert sweep
  end)
  local best = list[1].value ~= nil and list[1] or nil
  -- The ranking table (the answer), then the metric against each parameter.
  local rows = { '<table class="comparison"><caption>' ..
                 esc(string.format("%d trials ranked by %s (%s is better); the best in bold", #list, metric,
                                   mode == "max" and "higher" or "lower")) .. "</caption><tr><th>rank</th>" }
  for _, p in ipairs(param_names) do rows[1] = rows[1] .. "<th>" .. esc(p) .. "</th>" end
  rows[1] = rows[1] .. "<th>" .. esc(metric) .. "</th><th>status</th><th>run</th><th>time</th></tr>"
  for i, t in ipairs(list) do
    local b = best ~= nil and t.value == best.value -- ties are all bold
    local cells = { "<tr><td class=\"num\">" .. (t.value ~= nil and i or "–") .. "</td>" }
    for _, p in ipairs(param_names) do cells[#cells + 1] = '<td class="num">' .. esc(t.values[p] or "") .. "</td>" end
    local v = t.value ~= nil and string.format("%.4f", t.value) or "–"
    cells[#cells + 1] = '<td class="num">' .. (b and ("<b>" .. v .. "</b>") or v) .. "</td>"
    cells[#cells + 1] = "<td>" .. esc((t.status or "") .. (t.status == "pruned" and t.rung and (" at rung " .. t.rung) or "")) .. "</td>"
    cells[#cells + 1] = '<td class="num">' .. (t.run_id and esc(t.run_id) or "–") .. "</td>"
    cells[#cells + 1] = '<td class="num">' .. esc(fmt_seconds(t.seconds)) .. "</td></tr>"
    rows[#rows + 1] = table.concat(cells)
  end
  rows[#rows + 1] = "</table>"
  local charts = {}
  for _, p in ipairs(param_names) do
    local cats, index = {}, {}
    local vals = {}
    for _, t in ipairs(list) do
      local v = t.values[p]
      if v ~= nil and not index[v] then index[v] = true; vals[#vals + 1] = v end
    end
    table.sort(vals, function(a, b)
      local na, nb = tonumber(a), tonumber(b)
      if na and nb then return na < nb end
      return tostring(a) < tostring(b)
    end)
    for i, v in ipairs(vals) do cats[i] = v; index[v] = i end
    local points = {}
    for _, t in ipairs(list) do
      if t.value ~= nil and t.values[p] ~= nil then
        points[#points + 1] = { category = index[t.values[p]], y = t.value, label = t.key, best = (t == best) }
      end
    end
    local lo = math.huge
    for _, q in ipairs(points) do lo = math.min(lo, q.y) end
    charts[#charts + 1] = "<figure>" .. svg.strip_chart { categories = cats, points = points, xlabel = p, ylabel = metric,
      title = metric .. " by " .. p, ymin = lo >= 0 and 0 or nil, ymax = (is_ratio(metric) and lo <= 1) and 1 or nil } .. "</figure>"
  end
  -- The metric of each trial against the resource (the pruner's metric and resource when the
  -- sweep has one), pruned trials faded; then what each parameter explains.
  local asha = type(spec.pruner) == "table" and type(spec.pruner.asha) == "table" and spec.pruner.asha or {}
  local curve_metric = asha.metric or metric
  local resource = asha.resource == "epoch" and "epoch" or "step"
  local series, n_pruned = {}, 0
  for _, t in ipairs(list) do
    if t.run_id then
      local xs, ys = {}, {}
      for _, m in ipairs(store:metrics(t.run_id, curve_metric)) do
        local x = m[resource]
        if svg.finite(x) and svg.finite(m.value) then xs[#xs + 1] = x; ys[#ys + 1] = m.value end
      end
      if #ys > 0 then
        local pruned = t.status == "pruned"
        if pruned then n_pruned = n_pruned + 1 end
        series[#series + 1] = { name = t.key .. (pruned and string.format(" (pruned at rung %s)", tostring(t.rung or "?")) or ""),
                                x = xs, y = ys, class = pruned and "trial pruned" or "trial",
                                opacity = pruned and 0.3 or nil, color = pruned and "#7f7f7f" or nil }
      end
    end
  end
  local curves_html
  if #series > 0 then
    curves_html = '<p class="caption">One line per trial (' .. #series .. "); " ..
      (n_pruned > 0 and (n_pruned .. " pruned trials are faded grey, stopped at the rung in their name. ") or "") ..
      "Hover a line for its trial.</p><figure>" ..
      svg.line_chart { series = series, legend = false, width = 760, height = 380, xlabel = resource, ylabel = curve_metric,
                       title = curve_metric .. " of each trial against " .. resource,
                       ymin = is_ratio(curve_metric) and 0 or nil, ymax = is_ratio(curve_metric) and 1 or nil,
                       xmin = 0 } .. "</figure>"
  end
  local importance = M.param_importance(list, param_names)
  local importance_html
  if importance and #param_names > 0 then
    local labels, values = {}, {}
    for i, e in ipairs(importance) do labels[i] = e.name; values[i] = e.share end
    importance_html = '<p class="caption">Share of the variance of ' .. esc(metric) .. " over the finished trials that " ..
      "each parameter explains alone (eta squared over binned values, the shares sum to 1; interactions are " ..
      "not counted, and with few trials small differences are noise).</p><figure class=\"importance\">" ..
      svg.bar_chart { labels = labels, values = values, horizontal = true, title = "Parameter importance",
                      xlabel = "share of explained variance", height = 80 + 36 * #labels, width = 520 } .. "</figure>"
  end -- else (fewer than 3 finished trials, or no spread) the section is left out
  local head = '<div class="banner"><p class="facts"><span><b>sweep</b> ' .. esc(name) .. "</span>" ..
               (spec.experiment and ("<span><b>experiment</b> " .. esc(spec.experiment) .. "</span>") or "") ..
               (spec.script and ("<span><b>script</b> " .. esc(spec.script) .. "</span>") or "") ..
               "<span><b>metric</b> " .. esc(metric) .. " (" .. esc(mode) .. ")</span>" ..
               (best and ("<span><b>best</b> " .. esc(best.key) .. " = " .. esc(string.format("%.4f", best.value)) ..
                          " (run " .. esc(best.run_id) .. ")</span>") or "") .. "</p></div>"
  local sections = {
    { id = "ranking", title = "Trials", html = table.concat(rows, "\n") },
    { id = "curves", title = "Each trial against " .. resource, html = curves_html },
    { id = "importance", title = "Parameter importance", html = importance_html },
    { id = "parameters", title = "Metric against each parameter",
      html = #charts > 0 and ('<p class="caption">Each dot is a trial; the ring marks the best.</p><div class="row">' ..
                              table.concat(charts, "\n") .. "</div>") or nil },
  }
  local info = { trials = #list, metric = metric, mode = mode, sections = {}, importance = importance,
                 curves = { metric = curve_metric, resource = resource, series = #series, pruned = n_pruned },
                 best = best and { key = best.key, run_id = best.run_id, value = best.value } or nil }
  for _, s in ipairs(sections) do info.sections[s.id] = s.html ~= nil end
  return page("moonbert sweep: " .. name, head, sections, nil, store), info
end

local function mkdir_p(dir)
  local ok, err = require("moonbert.fs").mkdir_p(dir)
  if not ok then return nil, err end
  return true
end

local function write_page(out_dir, html)
  local ok, err = mkdir_p(out_dir)
  if not ok then return nil, "cannot create folder " .. out_dir .. ": " .. tostring(err) end
  local path = out_dir .. "/index.html"
  local f, ferr = io.open(path, "wb")
  if not f then return nil, "cannot write " .. tostring(ferr) end
  f:write(html)
  f:close()
  return path
end

--- mb.report.default_dir(store, run_id) -> runs/<id>/report beside the store
function M.default_dir(store, run_id)
  local base = store:artifact_root()
  return base .. "/runs/" .. run_id .. "/report"
end

--- mb.report.write(store, run_id [, out_dir]) -> path, info | nil, message
-- Writes out_dir/index.html (default: runs/<id>/report beside the store).
function M.write(store, run_id, out_dir)
  local html, info = M.build(store, run_id)
  if not html then return nil, info end
  local path, err = write_page(out_dir or M.default_dir(store, run_id), html)
  if not path then return nil, err end
  return path, info
end

--- mb.report.write_sweep(store, name [, out_dir [, {metric=, mode=}]]) -> path, info | nil, message
-- Writes out_dir/index.html (default: sweeps/<name>/report beside the store).
function M.write_sweep(store, name, out_dir, opts)
  local html, info = M.build_sweep(store, name, opts)
  if not html then return nil, info end
  local path, err = write_page(out_dir or (sweep_dir(store, name) .. "/report"), html)
  if not path then return nil, err end
  return path, info
end

return M
