-- moonbert.report_run: one self-contained HTML page per run (mb.report.build; mb.report.write
-- writes it). The page is built from what the store holds for the run (provenance, params,
-- tags, metric series, confusion matrices, predictions) plus the report artifacts the run
-- logged (moonbert.report_artifacts). A missing piece leaves its section out, or a note
-- saying how to record it.
local svg = require "moonbert.svg"
local artifacts = require "moonbert.report_artifacts"
local html = require "moonbert.report_html"
local argerror = require("moonbert.check").arg

local M = {}

M.TABLE_ROWS = 10 -- rows of each loss table

local esc, note, kv_table = html.esc, html.note, html.kv_table
local sorted_keys, split_sort = html.sorted_keys, html.split_sort
local fmt_value, fmt_time, fmt_seconds = html.fmt_value, html.fmt_time, html.fmt_seconds
local metric_rank, is_ratio, split_key = html.metric_rank, html.is_ratio, html.split_key
local page = html.page

-- ---- sections --------------------------------------------------------------------
-- Each section returns its HTML, or nil when the run recorded nothing for it:
-- a section without data is left out of the page (and out of the navigation).

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
  return art[artifacts.KINDS.comparison] and art[artifacts.KINDS.comparison].comparison
end

-- The answer first: every model of the run, validation/test/out-of-domain accuracy and
-- weighted F1 (the best of each column in bold), and the time each took.
local function section_comparison(art)
  local c = comparison_of(art)
  if not c or type(c.rows) ~= "table" or #c.rows == 0 then return nil end
  local rows = c.rows
  -- The columns: each split's accuracy and F1 that some row has.
  local splits, metrics_of = {}, {}
  for _, split in ipairs(artifacts.COMPARISON_SPLITS) do
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
  local sets = art[artifacts.KINDS.dataset]
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
local TRAIN_STAGE = { train = true, training = true }

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
      for _, split in ipairs(artifacts.COMPARISON_SPLITS) do
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
  local e = art[artifacts.KINDS.embedding]
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
  local c = art[artifacts.KINDS.custom] and art[artifacts.KINDS.custom].custom
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
  local examples = art[artifacts.KINDS.examples] or {}
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
  local art = artifacts.load(store, run_id, notes)
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

return M
