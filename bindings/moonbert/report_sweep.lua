-- moonbert.report_sweep: the HTML page of a sweep's trials (mb.report.build_sweep;
-- mb.report.write_sweep writes it) and parameter importance (mb.report.param_importance).
local svg = require "moonbert.svg"
local html = require "moonbert.report_html"
local argerror = require("moonbert.check").arg

local M = {}

local function json() return require "dkjson" end
local esc, fmt_seconds, is_ratio, page = html.esc, html.fmt_seconds, html.is_ratio, html.page

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

return M
