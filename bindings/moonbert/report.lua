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
}
M.TABLE_ROWS = 10 -- rows of each loss table

local esc = svg.escape

-- ---- small helpers -------------------------------------------------------------

local function json() return require "dkjson" end

local function argerror(n, fname, msg) error(string.format("bad argument #%d to '%s' (%s)", n, fname, msg), 3) end

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

-- ---- reading a run ---------------------------------------------------------------

-- The file behind an artifact path: as recorded (relative to where the run ran),
-- else the same name under runs/<id>/ beside the store (the store was moved).
local function resolve(store, run_id, path)
  local lfs = require "lfs"
  if lfs.attributes(path, "mode") == "file" then return path end
  local rel = path:match("runs/" .. run_id .. "/(.*)$")
  if rel then
    local base = store:path():match("^(.*)/[^/]*$") or "."
    local p = base .. "/runs/" .. run_id .. "/" .. rel
    if lfs.attributes(p, "mode") == "file" then return p end
  end
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

local function note(text) return '<p class="note">' .. esc(text) .. "</p>" end

local function kv_table(rows, class)
  local out = { '<table class="' .. (class or "kv") .. '">' }
  for _, r in ipairs(rows) do
    out[#out + 1] = "<tr><th>" .. esc(r[1]) .. "</th><td>" .. esc(r[2]) .. "</td></tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

local function section_overview(store, r)
  local parts = {}
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
  parts[#parts + 1] = kv_table(shown)
  if r.error then parts[#parts + 1] = '<h3>Error</h3><pre class="error">' .. esc(r.error) .. "</pre>" end
  local params = store:params(r.id)
  local prow = {}
  for _, k in ipairs(sorted_keys(params)) do prow[#prow + 1] = { k, fmt_value(params[k]) } end
  parts[#parts + 1] = "<h3>Parameters</h3>" .. (#prow > 0 and kv_table(prow) or note("No parameters were logged."))
  local tags = store:tags(r.id)
  local trow = {}
  for _, k in ipairs(sorted_keys(tags)) do trow[#trow + 1] = { k, tags[k] } end
  if #trow > 0 then parts[#parts + 1] = "<h3>Tags</h3>" .. kv_table(trow) end
  local final = store:final_metrics(r.id)
  local mrow = {}
  for _, k in ipairs(sorted_keys(final)) do mrow[#mrow + 1] = { k, fmt_value(final[k].value) } end
  parts[#parts + 1] = "<h3>Final metrics</h3>" .. (#mrow > 0 and kv_table(mrow) or note("No metrics were logged."))
  return table.concat(parts, "\n")
end

local function section_dataset(art)
  local sets = art[M.KINDS.dataset]
  if not sets then
    return note("No dataset statistics: log them with mb.report.log_dataset_stats(run, \"train\", data.train, data.label_names).")
  end
  local parts = {}
  for _, split in ipairs(split_sort(sorted_keys(sets))) do
    local d = sets[split]
    local names = d.label_names or {}
    parts[#parts + 1] = "<h3>" .. esc(split) .. " (" .. esc(tostring(d.n or "?")) .. " texts)</h3>"
    parts[#parts + 1] = '<div class="row">'
    parts[#parts + 1] = svg.bar_chart { labels = names, values = d.class_counts or {}, horizontal = true,
                                        title = "Frequency of classes (" .. split .. ")", xlabel = "texts",
                                        height = 60 + 30 * #names }
    local groups = {}
    for i, name in ipairs(names) do groups[i] = { label = name, stats = (d.words_per_text or {})[i] or { n = 0 } } end
    parts[#parts + 1] = svg.box_plot { groups = groups, title = "Words per text (" .. split .. ")", ylabel = "words" }
    parts[#parts + 1] = "</div>"
  end
  return table.concat(parts, "\n")
end

-- Metric series grouped into charts: "train/loss" and "val/loss" go on "loss".
local function section_curves(store, r)
  local groups, order = {}, {}
  for _, m in ipairs(store:metrics(r.id)) do
    local prefix, name = m.key:match("^(.*)/([^/]+)$")
    if not prefix then prefix, name = m.key, m.key end
    local g = groups[name]
    if not g then g = { name = name, series = {}, order = {} }; groups[name] = g; order[#order + 1] = name end
    local s = g.series[m.key]
    if not s then s = { name = m.key, points = {} }; g.series[m.key] = s; g.order[#g.order + 1] = m.key end
    s.points[#s.points + 1] = m
  end
  local charts = {}
  for _, name in ipairs(order) do
    local g = groups[name]
    -- The x axis is what every series of two or more points has: step, else
    -- epoch, else the point's position. A one-point series joins the chart
    -- only when it has that axis (a final test score stays in the table).
    local function has(pts, axis)
      for _, p in ipairs(pts) do if p[axis] == nil then return false end end
      return true
    end
    local longest, all_step, all_epoch = 0, true, true
    for _, key in ipairs(g.order) do
      local pts = g.series[key].points
      longest = math.max(longest, #pts)
      if #pts >= 2 then
        all_step = all_step and has(pts, "step")
        all_epoch = all_epoch and has(pts, "epoch")
      end
    end
    if longest >= 2 then
      local axis = all_step and "step" or all_epoch and "epoch" or "point"
      local series = {}
      for _, key in ipairs(g.order) do
        local pts = g.series[key].points
        if #pts >= 2 or (axis ~= "point" and has(pts, axis)) then
          local xs, ys = {}, {}
          for i, p in ipairs(pts) do xs[i] = (axis == "point") and i or p[axis]; ys[i] = p.value end
          series[#series + 1] = { name = key, x = xs, y = ys }
        end
      end
      charts[#charts + 1] = svg.line_chart { series = series, title = name .. " by " .. axis, xlabel = axis, ylabel = name }
    end
  end
  if #charts == 0 then
    return note("No metric was logged more than once: curves need run:log_metric(key, value, {step=}) during training.")
  end
  return '<div class="row">' .. table.concat(charts, "\n") .. "</div>"
end

local function section_confusion(store, r)
  local last = {}
  for _, c in ipairs(store:confusion(r.id)) do last[c.split or "(no split)"] = c end
  local splits = split_sort(sorted_keys(last))
  if #splits == 0 then return note("No confusion matrix: log one with run:log_confusion(split, matrix, label_names).") end
  local parts = { '<div class="row">' }
  for _, split in ipairs(splits) do
    local c = last[split]
    local m, totals = {}, {}
    for i, row in ipairs(c.matrix) do
      local sum = 0
      for _, v in ipairs(row) do sum = sum + v end
      totals[i] = sum
      m[i] = {}
      for j, v in ipairs(row) do m[i][j] = sum > 0 and v / sum or 0 / 0 end
    end
    local title = "Normalized confusion matrix (" .. split .. (c.epoch and (", epoch " .. fmt_value(c.epoch)) or "") .. ")"
    parts[#parts + 1] = '<figure>' .. svg.heatmap { matrix = m, row_labels = c.labels, col_labels = c.labels, title = title,
                                        vmin = 0, vmax = 1, fmt = "%.2f" } .. "</figure>"
  end
  parts[#parts + 1] = "</div>"
  return table.concat(parts, "\n")
end

local function section_embeddings(art)
  local e = art[M.KINDS.embedding]
  if not e then
    return note("No feature maps: log 2-D coordinates with mb.report.log_embedding(run, \"before\", xy, labels, label_names).")
  end
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
      parts[#parts + 1] = svg.hexbin_grid { panels = panels, columns = 3, gridsize = 20,
                                            title = "[CLS] features " .. stage .. " fine-tuning (" .. #(d.labels or {}) .. " points)" }
      if (d.dropped or 0) > 0 then
        parts[#parts + 1] = note(string.format("%d points without finite coordinates were left out.", d.dropped))
      end
    else
      parts[#parts + 1] = note("No map " .. stage .. " fine-tuning was logged.")
    end
  end
  return table.concat(parts, "\n")
end

local function section_custom(art)
  local c = art[M.KINDS.custom] and art[M.KINDS.custom].custom
  if not c then
    return note("No custom texts: log them with mb.report.log_custom_predictions(run, texts, probs, label_names).")
  end
  local parts = { '<div class="row">' }
  for _, item in ipairs(c.items or {}) do
    parts[#parts + 1] = svg.prob_bars { labels = c.label_names or {}, probs = item.probs or {}, title = item.text }
  end
  parts[#parts + 1] = "</div>"
  return table.concat(parts, "\n")
end

local function section_losses(store, r, art)
  local by_split = {}
  for _, p in ipairs(store:predictions(r.id)) do
    local s = p.split or "(no split)"
    by_split[s] = by_split[s] or {}
    table.insert(by_split[s], p)
  end
  local splits = split_sort(sorted_keys(by_split))
  if #splits == 0 then return note("No predictions: log them with run:log_predictions(split, rows).") end
  local label_names
  for _, c in ipairs(store:confusion(r.id)) do label_names = c.labels end
  local examples = art[M.KINDS.examples] or {}
  local parts = {}
  for _, split in ipairs(splits) do
    local rows = {}
    for _, p in ipairs(by_split[split]) do if p.loss and p.loss == p.loss then rows[#rows + 1] = p end end
    table.sort(rows, function(a, b) if a.loss ~= b.loss then return a.loss > b.loss end return a.index < b.index end)
    local ex = examples[split]
    local names = (ex and ex.label_names) or label_names or {}
    local function name_of(id)
      if id == nil then return "" end
      return names[id + 1] or tostring(id)
    end
    local function table_of(title, list)
      local out = { "<h3>" .. esc(title) .. "</h3>", '<table class="losses"><tr><th>index</th><th>text</th><th>label</th><th>predicted</th><th>loss</th></tr>' }
      for _, p in ipairs(list) do
        local txt = ex and ex.texts and ex.texts[p.index - (ex.first_index or 1) + 1]
        out[#out + 1] = string.format("<tr><td>%d</td><td class=\"text\">%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
          p.index, txt and esc(txt) or '<span class="note">(text not logged)</span>', esc(name_of(p.label)),
          esc(name_of(p.predicted)), esc(string.format("%.4f", p.loss)))
      end
      out[#out + 1] = "</table>"
      return table.concat(out, "\n")
    end
    local n = math.min(M.TABLE_ROWS, #rows)
    if n == 0 then
      parts[#parts + 1] = note("Predictions of " .. split .. " carry no loss.")
    else
      local top, bottom = {}, {}
      for i = 1, n do top[i] = rows[i]; bottom[i] = rows[#rows - i + 1] end
      parts[#parts + 1] = table_of("Highest losses (" .. split .. ", " .. #rows .. " examples)", top)
      parts[#parts + 1] = table_of("Lowest losses (" .. split .. ")", bottom)
      if not ex then
        parts[#parts + 1] = note("Texts of " .. split .. " were not logged: mb.report.log_examples(run, \"" .. split .. "\", texts).")
      end
    end
  end
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
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; }
svg.plot { border: 1px solid #eee; }
.note { color: #777; font-style: italic; }
pre.error { background: #fff3f3; border: 1px solid #f0c0c0; padding: 8px; white-space: pre-wrap; }
footer { margin-top: 40px; color: #888; font-size: 12px; }
]]

--- mb.report.build(store, run_id) -> html, {sections = {name = true|false}, notes = {...}}
-- sections[name] is true when the section has content, false when it is only a note.
function M.build(store, run_id)
  if type(store) ~= "userdata" and type(store) ~= "table" then argerror(1, "build", "store expected, got " .. type(store)) end
  run_id = math.tointeger(run_id)
  if not run_id then argerror(2, "build", "run id (integer) expected") end
  local r, msg = store:get_run(run_id)
  if not r then return nil, msg end
  local notes = {}
  local art = load_artifacts(store, run_id, notes)
  local sections = {
    { id = "overview", title = "Run", html = section_overview(store, r) },
    { id = "dataset", title = "Dataset", html = section_dataset(art) },
    { id = "curves", title = "Training curves", html = section_curves(store, r) },
    { id = "confusion", title = "Confusion matrices", html = section_confusion(store, r) },
    { id = "maps", title = "Feature maps", html = section_embeddings(art) },
    { id = "custom", title = "Custom texts", html = section_custom(art) },
    { id = "losses", title = "Top and bottom losses", html = section_losses(store, r, art) },
  }
  local info = { sections = {}, notes = notes }
  local title = string.format("moonbert run %d: %s%s", r.id, r.experiment, r.name and (" / " .. r.name) or "")
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
    "<nav>",
  }
  for _, s in ipairs(sections) do out[#out + 1] = '<a href="#' .. s.id .. '">' .. esc(s.title) .. "</a>" end
  out[#out + 1] = "</nav>"
  for _, s in ipairs(sections) do
    info.sections[s.id] = s.html:find("<svg", 1, true) ~= nil or (s.id == "overview") or s.html:find("<table", 1, true) ~= nil
    out[#out + 1] = '<section id="' .. s.id .. '"><h2>' .. esc(s.title) .. "</h2>"
    out[#out + 1] = s.html
    out[#out + 1] = "</section>"
  end
  if #notes > 0 then
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
  return table.concat(out, "\n") .. "\n", info
end

--- mb.report.default_path(store, run_id) -> runs/<id>/report/index.html beside the store
function M.default_dir(store, run_id)
  local base = store:path():match("^(.*)/[^/]*$") or "."
  return base .. "/runs/" .. run_id .. "/report"
end

--- mb.report.write(store, run_id [, out_dir]) -> path, info | nil, message
-- Writes out_dir/index.html (default: runs/<id>/report beside the store).
function M.write(store, run_id, out_dir)
  local html, info = M.build(store, run_id)
  if not html then return nil, info end
  out_dir = out_dir or M.default_dir(store, run_id)
  local lfs = require "lfs"
  local prefix = out_dir:sub(1, 1) == "/" and "/" or ""
  for part in out_dir:gmatch("[^/]+") do
    prefix = prefix .. part
    if not lfs.attributes(prefix, "mode") then lfs.mkdir(prefix) end
    prefix = prefix .. "/"
  end
  if lfs.attributes(out_dir, "mode") ~= "directory" then return nil, "cannot create folder " .. out_dir end
  local path = out_dir .. "/index.html"
  local f, err = io.open(path, "wb")
  if not f then return nil, "cannot write " .. tostring(err) end
  f:write(html)
  f:close()
  return path, info
end

return M
