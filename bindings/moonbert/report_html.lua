-- moonbert.report_html: what the run page (moonbert.report_run) and the sweep page
-- (moonbert.report_sweep) share: the page frame with its inline style, small HTML pieces,
-- the formats of values, times and durations, and how metric names sort.
--
-- A page loads nothing: styles are inline, plots are inline SVG (moonbert.svg), there is
-- no script, and a Content-Security-Policy meta tag forbids any fetch. Every string from
-- data or users is escaped (esc).
local svg = require "moonbert.svg"

local M = {}

local esc = svg.escape

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

-- Metric names: how charts are ordered, and which metrics are ratios (axes up to 1).
local function metric_rank(name)
  if name:find("loss", 1, true) then return 1 end
  if name:find("acc", 1, true) or name:find("f1", 1, true) or name:find("precision", 1, true) or name:find("recall", 1, true) then return 2 end
  if name == "lr" or name:find("learning_rate", 1, true) then return 3 end
  if name:find("grad", 1, true) then return 4 end
  return 5
end
local function is_ratio(name) return metric_rank(name) == 2 end
-- A metric key "frozen/train/loss" is model "frozen", stage "train", name "loss".
local function split_key(key)
  local parts = {}
  for piece in key:gmatch("[^/]+") do parts[#parts + 1] = piece end
  local name = parts[#parts] or key
  local stage = #parts >= 2 and parts[#parts - 1] or ""
  local model = #parts >= 3 and table.concat(parts, "/", 1, #parts - 2) or ""
  return model, stage, name
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

M.esc = esc
M.sorted_keys, M.split_sort = sorted_keys, split_sort
M.fmt_value, M.fmt_time, M.fmt_seconds = fmt_value, fmt_time, fmt_seconds
M.note, M.kv_table = note, kv_table
M.metric_rank, M.is_ratio, M.split_key = metric_rank, is_ratio, split_key
M.STYLE, M.page = STYLE, page

return M
