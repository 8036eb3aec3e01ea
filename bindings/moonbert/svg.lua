-- moonbert.svg (mb.svg): a small SVG plotting library for the run reports.
--
--   local svg = require "moonbert.svg"
--   svg.bar_chart{ labels = {"joy", "anger"}, values = {5362, 2159}, title = "Class distribution" }
--   svg.box_plot{ groups = { {label = "joy", stats = {lo=, q1=, median=, q3=, hi=}} }, ylabel = "words" }
--   svg.heatmap{ matrix = {{0.9, 0.1}, {0.2, 0.8}}, row_labels = ..., col_labels = ..., fmt = "%.2f" }
--   svg.line_chart{ series = { {name = "train", x = {...}, y = {...}} }, xlabel = "step" }
--   svg.hexbin_grid{ panels = { {title = "joy", x = {...}, y = {...}} }, gridsize = 20 }
--   svg.strip_chart{ categories = {"1e-05", "5e-05"}, points = { {category = 1, y = 0.91, best = true} } }
--   svg.prob_bars{ labels = {...}, probs = {...}, title = "i feel great" }
--
-- Every function returns one standalone <svg> element as a string (with xmlns,
-- width, height and viewBox), fit to be written to a .svg file or inlined in
-- HTML. Every string that reaches the output (titles, labels, series names) goes
-- through svg.escape, which escapes the XML specials, drops control characters
-- XML forbids and replaces invalid UTF-8, so a label holding "</svg><script>"
-- is shown as text. Non-finite numbers (nan, inf) are skipped, never written.
-- Limits: linear axes only; long labels are
-- shortened on screen (the full text stays in a <title> tooltip).
local M = {}

-- ---- strings ------------------------------------------------------------------

local XML_SPECIAL = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- Valid UTF-8 with the characters XML 1.0 forbids removed (C0 controls except
-- tab, newline, carriage return); each invalid byte becomes U+FFFD.
local function clean_utf8(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local ok, c = pcall(utf8.codepoint, s, i)
    if ok then
      local len = #utf8.char(c)
      if c < 0x20 and c ~= 9 and c ~= 10 and c ~= 13 then
        -- forbidden in XML: drop
      elseif c == 0xFFFE or c == 0xFFFF or (c >= 0xD800 and c <= 0xDFFF) then
        out[#out + 1] = "\u{FFFD}"
      else
        out[#out + 1] = s:sub(i, i + len - 1)
      end
      i = i + len
    else
      out[#out + 1] = "\u{FFFD}"
      i = i + 1
    end
  end
  return table.concat(out)
end

--- svg.escape(value) -> string safe in XML/HTML text and quoted attribute values.
function M.escape(v)
  local s = tostring(v == nil and "" or v)
  if not utf8.len(s) or s:find("[%z\1-\8\11\12\14-\31]") then s = clean_utf8(s) end
  return (s:gsub("[&<>\"']", XML_SPECIAL))
end
local esc = M.escape

--- svg.shorten(s, max_chars) -> s cut to max_chars characters in all, the last "…" (UTF-8 aware).
function M.shorten(s, max)
  s = tostring(s)
  local n = utf8.len(s)
  if not n then s = clean_utf8(s); n = utf8.len(s) end
  if n <= max then return s end
  return s:sub(1, utf8.offset(s, max) - 1) .. "…"
end

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end
M.finite = finite

-- Coordinates with two decimals: enough for screens, short files.
local function num(x)
  local s = string.format("%.2f", x)
  s = s:gsub("%.?0+$", "")
  if s == "-0" or s == "" then s = "0" end
  return s
end

-- ---- numbers and ticks ---------------------------------------------------------

-- Heckbert's nice numbers: 1, 2, 5 or 10 times a power of ten.
local function nice(x, round)
  if x <= 0 then return 1 end
  local e = math.floor(math.log(x, 10))
  local f = x / 10 ^ e
  local nf
  if round then
    nf = f < 1.5 and 1 or f < 3 and 2 or f < 7 and 5 or 10
  else
    nf = f <= 1 and 1 or f <= 2 and 2 or f <= 5 and 5 or 10
  end
  return nf * 10 ^ e
end

--- svg.nice_ticks(lo, hi [, n = 5]) -> ticks, axis_lo, axis_hi
-- Tick values at a 1/2/5 x 10^k spacing covering [lo, hi]; the axis range is
-- widened to whole ticks.
function M.nice_ticks(lo, hi, n)
  n = n or 5
  if not finite(lo) or not finite(hi) then lo, hi = 0, 1 end
  if lo > hi then lo, hi = hi, lo end
  if hi - lo < 1e-12 * math.max(1, math.abs(lo)) then
    local pad = lo == 0 and 1 or math.abs(lo) * 0.1
    lo, hi = lo - pad, hi + pad
  end
  local step = nice(nice(hi - lo, false) / math.max(1, n - 1), true)
  local a, b = math.floor(lo / step) * step, math.ceil(hi / step) * step
  local ticks = {}
  for i = 0, math.floor((b - a) / step + 0.5) do
    local t = a + i * step
    if math.abs(t) < step * 1e-9 then t = 0 end
    ticks[#ticks + 1] = t
  end
  return ticks, a, b, step
end

--- svg.format_tick(v, step) -> short label ("0.25", "2k", "1e-05")
function M.format_tick(v, step)
  if v == 0 then return "0" end
  local av = math.abs(v)
  if av >= 1e5 or av < 1e-3 then return (string.format("%.2g", v):gsub("e%+?(%-?)0*(%d)", "e%1%2")) end
  -- As many decimals as the tick spacing needs (0.25 -> 2, 0.2 -> 1).
  local decimals = 0
  if step and step < 1 then
    while decimals < 10 and math.abs(step * 10 ^ decimals - math.floor(step * 10 ^ decimals + 0.5)) > 1e-6 do
      decimals = decimals + 1
    end
  end
  if av >= 1000 and (not step or step >= 1) and v % 1 == 0 then
    if av % 1000 == 0 then return string.format("%dk", v // 1000) end
    return string.format("%d", v)
  end
  return string.format("%." .. decimals .. "f", v)
end

-- ---- colours -------------------------------------------------------------------

-- Tableau 10, the matplotlib default cycle.
M.palette = { "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
              "#ff9da7", "#9c755f", "#bab0ac" }

local function hex_rgb(h) return tonumber(h:sub(2, 3), 16), tonumber(h:sub(4, 5), 16), tonumber(h:sub(6, 7), 16) end

-- Colour between white (t = 0) and `to` (t = 1).
local function ramp(to, t)
  t = math.max(0, math.min(1, t))
  local r, g, b = hex_rgb(to)
  local function mix(c) return math.floor(255 + (c - 255) * t + 0.5) end
  return string.format("#%02x%02x%02x", mix(r), mix(g), mix(b))
end
M.ramp = ramp

-- Matplotlib's "Blues" end points, for heatmaps.
local BLUE_DARK = "#08306b"
local function blues(t)
  t = math.max(0, math.min(1, t))
  -- white -> #6baed6 -> #08306b
  if t < 0.5 then return ramp("#6baed6", t * 2) end
  local r1, g1, b1 = hex_rgb("#6baed6")
  local r2, g2, b2 = hex_rgb(BLUE_DARK)
  local u = (t - 0.5) * 2
  return string.format("#%02x%02x%02x", math.floor(r1 + (r2 - r1) * u + 0.5), math.floor(g1 + (g2 - g1) * u + 0.5),
                       math.floor(b1 + (b2 - b1) * u + 0.5))
end

-- ---- the SVG frame ---------------------------------------------------------------

local FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'

local function open_svg(out, w, h, title, class)
  out[#out + 1] = string.format(
    '<svg xmlns="http://www.w3.org/2000/svg" class="%s" width="%d" height="%d" viewBox="0 0 %d %d" role="img" %s font-size="12">',
    esc(class or "plot"), w, h, w, h, FONT)
  out[#out + 1] = "<title>" .. esc(title or "") .. "</title>"
  out[#out + 1] = string.format('<rect class="background" x="0" y="0" width="%d" height="%d" fill="#ffffff"/>', w, h)
end

local function text(out, x, y, s, attrs)
  out[#out + 1] = string.format('<text x="%s" y="%s"%s>%s</text>', num(x), num(y), attrs and (" " .. attrs) or "", esc(s))
end

-- Text shortened on screen, the full string in a tooltip.
local function label_text(out, x, y, s, max, attrs)
  s = tostring(s)
  local short = M.shorten(s, max)
  if short == s then return text(out, x, y, s, attrs) end
  out[#out + 1] = string.format('<text x="%s" y="%s"%s><title>%s</title>%s</text>', num(x), num(y),
                                attrs and (" " .. attrs) or "", esc(s), esc(short))
end

local function plot_title(out, w, title)
  if title and title ~= "" then text(out, w / 2, 20, M.shorten(title, 90), 'text-anchor="middle" font-size="14" font-weight="bold"') end
end

-- A numeric y axis with grid lines; returns the mapping value -> pixel.
local function y_axis(out, ticks, lo, hi, step, left, top, plot_w, plot_h, label)
  local function py(v) return top + plot_h - (v - lo) / (hi - lo) * plot_h end
  for _, t in ipairs(ticks) do
    local y = py(t)
    out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e0e0e0"/>', num(left), num(y), num(left + plot_w), num(y))
    text(out, left - 6, y + 4, M.format_tick(t, step), 'text-anchor="end" fill="#333"')
  end
  out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', num(left), num(top), num(left), num(top + plot_h))
  if label then
    text(out, 14, top + plot_h / 2, M.shorten(label, 40),
         string.format('text-anchor="middle" transform="rotate(-90 14 %s)"', num(top + plot_h / 2)))
  end
  return py
end

local function x_axis(out, ticks, lo, hi, step, left, top, plot_w, plot_h, label)
  local function px(v) return left + (v - lo) / (hi - lo) * plot_w end
  local base = top + plot_h
  for _, t in ipairs(ticks) do
    local x = px(t)
    out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e0e0e0"/>', num(x), num(top), num(x), num(base))
    text(out, x, base + 16, M.format_tick(t, step), 'text-anchor="middle" fill="#333"')
  end
  out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', num(left), num(base), num(left + plot_w), num(base))
  if label then text(out, left + plot_w / 2, base + 34, M.shorten(label, 60), 'text-anchor="middle"') end
  return px
end

local function check_table(v, name, fname)
  if type(v) ~= "table" then
    error(string.format("bad argument #1 to '%s' (field '%s' must be a table, got %s)", fname, name, type(v)), 3)
  end
end

-- Numbers of a table or tensor as a plain table.
local function values_of(v)
  if type(v) == "userdata" and v.totable then v = v:totable() end
  return v
end

-- ---- bar chart -------------------------------------------------------------------

--- svg.bar_chart{labels=, values=, title=, xlabel=, ylabel=, width=560, height=360, color=}
-- Vertical bars, one per label (the notebook's class distribution is horizontal;
-- horizontal=true draws it that way).
function M.bar_chart(o)
  check_table(o, "opts", "bar_chart")
  local labels, values = o.labels, values_of(o.values)
  check_table(labels, "labels", "bar_chart"); check_table(values, "values", "bar_chart")
  local w, h = o.width or 560, o.height or 360
  local out = {}
  open_svg(out, w, h, o.title, "plot bar-chart")
  plot_title(out, w, o.title)
  local vmax = 0
  for i = 1, #labels do if finite(values[i]) then vmax = math.max(vmax, values[i]) end end
  local ticks, lo, hi, step = M.nice_ticks(0, vmax > 0 and vmax or 1, 5)
  local color = o.color or M.palette[1]
  if o.horizontal then
    local left, top, right, bottom = 110, 34, 20, 44
    local pw, ph = w - left - right, h - top - bottom
    local px = x_axis(out, ticks, lo, hi, step, left, top, pw, ph, o.xlabel)
    local band = ph / math.max(1, #labels)
    for i, lab in ipairs(labels) do
      local y = top + (i - 1) * band
      label_text(out, left - 6, y + band / 2 + 4, lab, 14, 'text-anchor="end"')
      local v = values[i]
      if finite(v) then
        out[#out + 1] = string.format('<rect class="bar" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s: %s</title></rect>',
          num(left), num(y + band * 0.15), num(math.max(0, px(v) - left)), num(band * 0.7), color, esc(lab), esc(M.format_tick(v)))
      end
    end
  else
    local left, top, right, bottom = 60, 34, 16, 64
    local pw, ph = w - left - right, h - top - bottom
    local py = y_axis(out, ticks, lo, hi, step, left, top, pw, ph, o.ylabel)
    local band = pw / math.max(1, #labels)
    for i, lab in ipairs(labels) do
      local x = left + (i - 1) * band
      local v = values[i]
      if finite(v) then
        local y = py(v)
        out[#out + 1] = string.format('<rect class="bar" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s: %s</title></rect>',
          num(x + band * 0.15), num(y), num(band * 0.7), num(math.max(0, top + ph - y)), color, esc(lab), esc(tostring(v)))
      end
      label_text(out, x + band / 2, top + ph + 16, lab, math.max(4, math.floor(band / 7)), 'text-anchor="middle"')
    end
    if o.xlabel then text(out, left + pw / 2, h - 12, o.xlabel, 'text-anchor="middle"') end
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- ---- box plot ------------------------------------------------------------------

--- svg.box_stats(values) -> {n=, min=, q1=, median=, q3=, max=, lo=, hi=, mean=}
-- Quartiles by linear interpolation (numpy's default); whiskers lo/hi at the
-- furthest values within 1.5 IQR of the box (matplotlib's default).
function M.box_stats(values)
  local v = {}
  for _, x in ipairs(values_of(values)) do if finite(x) then v[#v + 1] = x end end
  table.sort(v)
  local n = #v
  if n == 0 then return { n = 0 } end
  local function q(p)
    local pos = (n - 1) * p + 1
    local i = math.floor(pos)
    local f = pos - i
    if i >= n then return v[n] end
    return v[i] + (v[i + 1] - v[i]) * f
  end
  local s = { n = n, min = v[1], max = v[n], q1 = q(0.25), median = q(0.5), q3 = q(0.75) }
  local sum = 0
  for _, x in ipairs(v) do sum = sum + x end
  s.mean = sum / n
  local iqr = s.q3 - s.q1
  s.lo, s.hi = s.q1, s.q3
  for _, x in ipairs(v) do if x >= s.q1 - 1.5 * iqr then s.lo = x; break end end
  for i = n, 1, -1 do if v[i] <= s.q3 + 1.5 * iqr then s.hi = v[i]; break end end
  return s
end

--- svg.box_plot{groups = {{label=, stats=box_stats(...)} or {label=, values={...}}}, title=, ylabel=, xlabel=}
-- Box from q1 to q3, the median line, whiskers to lo/hi; no outlier points
-- (the notebook's showfliers=False).
function M.box_plot(o)
  check_table(o, "opts", "box_plot")
  check_table(o.groups, "groups", "box_plot")
  local w, h = o.width or 560, o.height or 360
  local out = {}
  open_svg(out, w, h, o.title, "plot box-plot")
  plot_title(out, w, o.title)
  local stats, vmin, vmax = {}, math.huge, -math.huge
  for i, g in ipairs(o.groups) do
    local s = g.stats or M.box_stats(g.values or {})
    stats[i] = s
    if s.n and s.n > 0 then vmin = math.min(vmin, s.lo); vmax = math.max(vmax, s.hi) end
  end
  if vmin > vmax then vmin, vmax = 0, 1 end
  local ticks, lo, hi, step = M.nice_ticks(math.min(0, vmin), vmax, 6)
  local left, top, right, bottom = 60, 34, 16, 64
  local pw, ph = w - left - right, h - top - bottom
  local py = y_axis(out, ticks, lo, hi, step, left, top, pw, ph, o.ylabel)
  local band = pw / math.max(1, #o.groups)
  for i, g in ipairs(o.groups) do
    local s, cx = stats[i], left + (i - 0.5) * band
    local bw = band * 0.5
    if s.n and s.n > 0 then
      local color = M.palette[(i - 1) % #M.palette + 1]
      out[#out + 1] = string.format('<g class="box"><title>%s: median %s, quartiles %s to %s, whiskers %s to %s (n = %d)</title>',
        esc(g.label), esc(M.format_tick(s.median)), esc(M.format_tick(s.q1)), esc(M.format_tick(s.q3)),
        esc(M.format_tick(s.lo)), esc(M.format_tick(s.hi)), s.n)
      out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', num(cx), num(py(s.hi)), num(cx), num(py(s.q3)))
      out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', num(cx), num(py(s.q1)), num(cx), num(py(s.lo)))
      for _, v in ipairs { s.lo, s.hi } do
        out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', num(cx - bw / 4), num(py(v)), num(cx + bw / 4), num(py(v)))
      end
      out[#out + 1] = string.format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="0.6" stroke="#333"/>',
        num(cx - bw / 2), num(py(s.q3)), num(bw), num(math.max(0.5, py(s.q1) - py(s.q3))), color)
      out[#out + 1] = string.format('<line class="median" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#111" stroke-width="2"/>',
        num(cx - bw / 2), num(py(s.median)), num(cx + bw / 2), num(py(s.median)))
      out[#out + 1] = "</g>"
    end
    label_text(out, cx, top + ph + 16, g.label, math.max(4, math.floor(band / 7)), 'text-anchor="middle"')
  end
  if o.xlabel then text(out, left + pw / 2, h - 12, o.xlabel, 'text-anchor="middle"') end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- ---- heatmap (confusion matrix) -------------------------------------------------

--- svg.heatmap{matrix=, row_labels=, col_labels=, title=, heading=title, subtitle=, xlabel="Predicted label",
---             ylabel="True label", fmt="%.2f", vmin=, vmax=}
-- heading (default the title) and subtitle are the lines shown above the cells.
-- One annotated cell per entry, coloured on a white-to-blue scale; the text is
-- white on dark cells.
function M.heatmap(o)
  check_table(o, "opts", "heatmap")
  local m = values_of(o.matrix)
  check_table(m, "matrix", "heatmap")
  local nr, nc = #m, #(m[1] or {})
  local rl, cl = o.row_labels or {}, o.col_labels or o.row_labels or {}
  local cell = o.cell or math.max(34, math.min(70, math.floor(420 / math.max(1, nc))))
  local left, top = 110, o.subtitle and 56 or 40
  -- wide enough for the heading too (bold 14 px: about 8.5 px a character), up to 480 px;
  -- a longer heading is shortened on screen (the full title stays in the tooltip)
  local heading = o.heading or o.title
  local w = o.width or math.max(left + nc * cell + 24,
                                math.min(480, math.floor((utf8.len(tostring(heading or "")) or 0) * 8.5 + 20)))
  local h = o.height or (top + nr * cell + 84)
  local out = {}
  open_svg(out, w, h, o.title, "plot heatmap")
  if heading and heading ~= "" then
    text(out, w / 2, 20, M.shorten(heading, math.floor((w - 20) / 8.5)), 'text-anchor="middle" font-size="14" font-weight="bold"')
  end
  if o.subtitle then text(out, w / 2, 38, M.shorten(o.subtitle, math.floor((w - 20) / 7)), 'text-anchor="middle" font-size="13" fill="#444"') end
  local vmin, vmax = o.vmin, o.vmax
  if not vmin or not vmax then
    local a, b = math.huge, -math.huge
    for i = 1, nr do for j = 1, nc do local v = m[i][j]; if finite(v) then a = math.min(a, v); b = math.max(b, v) end end end
    if a > b then a, b = 0, 1 end
    vmin, vmax = vmin or math.min(0, a), vmax or b
  end
  if vmax <= vmin then vmax = vmin + 1 end
  local fmt = o.fmt or "%.2f"
  for i = 1, nr do
    for j = 1, nc do
      local v = m[i][j]
      local x, y = left + (j - 1) * cell, top + (i - 1) * cell
      local t = finite(v) and (v - vmin) / (vmax - vmin) or 0
      out[#out + 1] = string.format('<rect class="cell" x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="#fff"><title>%s → %s: %s</title></rect>',
        x, y, cell, cell, finite(v) and blues(t) or "#eeeeee", esc(rl[i] or i - 1), esc(cl[j] or j - 1),
        esc(finite(v) and string.format(fmt, v) or "n/a"))
      text(out, x + cell / 2, y + cell / 2 + 4, finite(v) and string.format(fmt, v) or "",
           string.format('text-anchor="middle" font-size="11" fill="%s"', t > 0.55 and "#ffffff" or "#111111"))
    end
    label_text(out, left - 6, top + (i - 0.5) * cell + 4, rl[i] or tostring(i - 1), 14, 'text-anchor="end"')
  end
  for j = 1, nc do
    local x, y = left + (j - 0.5) * cell, top + nr * cell + 10
    label_text(out, x, y, cl[j] or tostring(j - 1), 12,
               string.format('text-anchor="end" transform="rotate(-45 %s %s)"', num(x), num(y)))
  end
  text(out, left + nc * cell / 2, h - 6, o.xlabel or "Predicted label", 'text-anchor="middle"')
  text(out, 12, top + nr * cell / 2, o.ylabel or "True label",
       string.format('text-anchor="middle" transform="rotate(-90 12 %s)"', num(top + nr * cell / 2)))
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- ---- line chart ----------------------------------------------------------------

-- A marker for an evaluation point: a diamond, white-edged so that it stands
-- out from a line of the same colour.
local function diamond(cx, cy, r)
  return string.format("%s,%s %s,%s %s,%s %s,%s", num(cx), num(cy - r), num(cx + r), num(cy), num(cx), num(cy + r),
                       num(cx - r), num(cy))
end

--- svg.line_chart{series = {{name=, x={}, y={}, style="line"|"markers", color=, class=, opacity=}, ...},
---                title=, xlabel=, ylabel=, width=560, height=340, ymin=, ymax=, xmin=, xmax=, legend=true}
-- style "line" (the default): one polyline per series, with a dot on each point
-- when there are at most 40 (a series of one point is a dot). style "markers":
-- diamonds, no line (evaluation points beside a training curve). ymin/ymax
-- (xmin/xmax) are the least range the axis covers (a floor at 0, accuracy up to
-- 1), widened when the data goes beyond. A legend names every series. Points
-- with a non-finite x or y are skipped. A series' class is added to its group's
-- ("series CLASS") and opacity (0..1) fades it; legend = false leaves the legend out
-- (many series, described by the caption instead) and gives the plot the legend's width.
function M.line_chart(o)
  check_table(o, "opts", "line_chart")
  check_table(o.series, "series", "line_chart")
  local w, h = o.width or 560, o.height or 340
  local out = {}
  open_svg(out, w, h, o.title, "plot line-chart")
  plot_title(out, w, o.title)
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  local pts = {}
  for s, ser in ipairs(o.series) do
    local xs, ys = values_of(ser.x), values_of(ser.y)
    pts[s] = {}
    for i = 1, #ys do
      local x, y = xs and xs[i] or i, ys[i]
      if finite(x) and finite(y) then
        pts[s][#pts[s] + 1] = { x, y }
        xmin, xmax = math.min(xmin, x), math.max(xmax, x)
        ymin, ymax = math.min(ymin, y), math.max(ymax, y)
      end
    end
  end
  if xmin > xmax then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  if finite(o.ymin) then ymin = math.min(ymin, o.ymin) end
  if finite(o.ymax) then ymax = math.max(ymax, o.ymax) end
  if finite(o.xmin) then xmin = math.min(xmin, o.xmin) end
  if finite(o.xmax) then xmax = math.max(xmax, o.xmax) end
  local left, top, right = 64, 34, o.legend == false and 16 or 176
  local bottom = 52
  local pw, ph = w - left - right, h - top - bottom
  local yt, ylo, yhi, ystep = M.nice_ticks(ymin, ymax, 5)
  local xt, xlo, xhi, xstep = M.nice_ticks(xmin, xmax, 6)
  local py = y_axis(out, yt, ylo, yhi, ystep, left, top, pw, ph, o.ylabel)
  local px = x_axis(out, xt, xlo, xhi, xstep, left, top, pw, ph, o.xlabel)
  for s, ser in ipairs(o.series) do
    local color = ser.color or M.palette[(s - 1) % #M.palette + 1]
    local p = pts[s]
    local markers = ser.style == "markers"
    out[#out + 1] = string.format('<g class="series%s%s"%s><title>%s</title>', markers and " markers" or "",
                                  ser.class and (" " .. esc(ser.class)) or "",
                                  finite(ser.opacity) and string.format(' opacity="%.2f"', ser.opacity) or "",
                                  esc(ser.name or ("series " .. s)))
    if markers then
      for _, q in ipairs(p) do
        out[#out + 1] = string.format('<polygon class="marker" points="%s" fill="%s" stroke="#ffffff" stroke-width="1.5"/>',
                                      diamond(px(q[1]), py(q[2]), 6), color)
      end
    else
      if #p >= 2 then
        local coords = {}
        for i, q in ipairs(p) do coords[i] = num(px(q[1])) .. "," .. num(py(q[2])) end
        out[#out + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>', color, table.concat(coords, " "))
      end
      if #p <= 40 then
        for _, q in ipairs(p) do
          out[#out + 1] = string.format('<circle cx="%s" cy="%s" r="2.5" fill="%s"/>', num(px(q[1])), num(py(q[2])), color)
        end
      end
    end
    out[#out + 1] = "</g>"
    local ly = top + 8 + (s - 1) * 18
    if o.legend == false then -- luacheck: ignore (no legend)
    elseif markers then
      out[#out + 1] = string.format('<polygon points="%s" fill="%s" stroke="#ffffff"/>', diamond(left + pw + 21, ly, 6), color)
    else
      out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="3"/>',
        num(left + pw + 12), num(ly), num(left + pw + 30), num(ly), color)
    end
    if o.legend ~= false then label_text(out, left + pw + 36, ly + 4, ser.name or ("series " .. s), 21, nil) end
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- ---- strip chart (one value per trial, by category) ----------------------------------

--- svg.strip_chart{categories = {"1e-05", "2e-05"}, points = {{category = 1, y = 0.9, label =, best = true}},
---                 title=, xlabel=, ylabel=, ymin=, ymax=, width=420, height=320}
-- One column per category (a parameter's values, in the order given), a dot per
-- point; points sharing a column are spread sideways. The best point is a larger
-- ring labelled "best". Used for a sweep's metric against each parameter.
function M.strip_chart(o)
  check_table(o, "opts", "strip_chart")
  check_table(o.categories, "categories", "strip_chart")
  check_table(o.points, "points", "strip_chart")
  local w, h = o.width or 420, o.height or 320
  local out = {}
  open_svg(out, w, h, o.title, "plot strip-chart")
  plot_title(out, w, o.title)
  local ymin, ymax = math.huge, -math.huge
  for _, p in ipairs(o.points) do
    if finite(p.y) then ymin, ymax = math.min(ymin, p.y), math.max(ymax, p.y) end
  end
  if ymin > ymax then ymin, ymax = 0, 1 end
  if finite(o.ymin) then ymin = math.min(ymin, o.ymin) end
  if finite(o.ymax) then ymax = math.max(ymax, o.ymax) end
  local left, top, right, bottom = 64, 34, 16, 56
  local pw, ph = w - left - right, h - top - bottom
  local yt, ylo, yhi, ystep = M.nice_ticks(ymin, ymax, 5)
  local py = y_axis(out, yt, ylo, yhi, ystep, left, top, pw, ph, o.ylabel)
  out[#out + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', num(left), num(top + ph),
                                num(left + pw), num(top + ph))
  local nc = math.max(1, #o.categories)
  local band = pw / nc
  for c, name in ipairs(o.categories) do
    label_text(out, left + (c - 0.5) * band, top + ph + 16, name, math.max(4, math.floor(band / 7)), 'text-anchor="middle"')
  end
  if o.xlabel then text(out, left + pw / 2, h - 12, M.shorten(o.xlabel, 60), 'text-anchor="middle"') end
  local in_column, seen = {}, {}
  for _, p in ipairs(o.points) do
    if finite(p.y) and o.categories[p.category] then in_column[p.category] = (in_column[p.category] or 0) + 1 end
  end
  local best
  for _, p in ipairs(o.points) do
    local c = p.category
    if finite(p.y) and o.categories[c] then
      seen[c] = (seen[c] or 0) + 1
      local n = in_column[c]
      local spread = math.min(band * 0.6, 14 * (n - 1))
      local cx = left + (c - 0.5) * band + (n > 1 and (-spread / 2 + spread * (seen[c] - 1) / (n - 1)) or 0)
      local cy = py(p.y)
      out[#out + 1] = string.format('<circle class="point" cx="%s" cy="%s" r="5" fill="%s" fill-opacity="0.8"><title>%s: %s</title></circle>',
        num(cx), num(cy), M.palette[1], esc(p.label or ""), esc(M.format_tick(p.y, ystep / 100)))
      if p.best then best = { cx, cy } end
    end
  end
  if best then
    out[#out + 1] = string.format('<circle class="best" cx="%s" cy="%s" r="10" fill="none" stroke="%s" stroke-width="2.5"/>',
                                  num(best[1]), num(best[2]), M.palette[3])
    text(out, best[1] + 13, best[2] - 8, "best", string.format('fill="%s" font-weight="bold"', M.palette[3]))
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- ---- hexbin panels ---------------------------------------------------------------

-- Pointy-top hexagon centres on an axial grid (Red Blob Games' hex guide):
-- point (x, y) in pixels -> rounded axial (q, r) for hexagons of radius `size`.
local function hex_of(x, y, size)
  local q = (math.sqrt(3) / 3 * x - y / 3) / size
  local r = (2 / 3 * y) / size
  local cx, cz = q, r
  local cy = -cx - cz
  local rx, ry, rz = math.floor(cx + 0.5), math.floor(cy + 0.5), math.floor(cz + 0.5)
  local dx, dy, dz = math.abs(rx - cx), math.abs(ry - cy), math.abs(rz - cz)
  if dx > dy and dx > dz then rx = -ry - rz elseif dy > dz then ry = -rx - rz else rz = -rx - ry end
  return rx, rz
end

local function hex_points(cx, cy, size)
  local p = {}
  for k = 0, 5 do
    local a = math.rad(60 * k - 30)
    p[#p + 1] = num(cx + size * math.cos(a)) .. "," .. num(cy + size * math.sin(a))
  end
  return table.concat(p, " ")
end

-- Ids for clip paths, unique within a page: a page built from the start of
-- svg.reset_ids() numbers them the same way every time.
local clip_serial = 0
local function next_clip_id()
  clip_serial = clip_serial + 1
  return "mb-clip-" .. clip_serial
end
function M.reset_ids() clip_serial = 0 end

M.SCATTER_BELOW = 1000 -- hexbin_grid draws points, not hexagons, below this many points in all

--- svg.hexbin_grid{panels = {{title=, x={}, y={}, color=}}, columns=3, gridsize=20, title=,
---                 panel_width=260, panel_height=240, scatter=nil}
-- One panel per entry (the notebook's one-hexbin-per-label figure), all on the
-- same data range so that panels compare. Hexagons: one colour scale shared by
-- every panel (white to dark blue by count, log scale when the largest count is
-- over 20), shown in a legend; each hexagon lies inside its panel (the data is
-- inset by two hexagon radii and the panel clips as well). With fewer than
-- svg.SCATTER_BELOW points in all (or scatter = true) each panel is a scatter
-- plot instead: its own points in the panel's colour over every other panel's
-- points in grey, with a legend saying so.
function M.hexbin_grid(o)
  check_table(o, "opts", "hexbin_grid")
  check_table(o.panels, "panels", "hexbin_grid")
  local cols = math.max(1, math.min(o.columns or 3, #o.panels))
  local rows = math.max(1, math.ceil(#o.panels / cols))
  local pw, ph = o.panel_width or 260, o.panel_height or 240
  local head = (o.title and o.title ~= "") and 30 or 6
  local legend_h = 44
  local w, h = cols * pw, head + rows * ph + legend_h
  local out = {}
  open_svg(out, w, h, o.title, "plot hexbin-grid")
  plot_title(out, w, o.title)
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  local total = 0
  for _, p in ipairs(o.panels) do
    local xs, ys = values_of(p.x), values_of(p.y)
    for i = 1, #xs do
      local x, y = xs[i], ys[i]
      if finite(x) and finite(y) then
        total = total + 1
        xmin, xmax = math.min(xmin, x), math.max(xmax, x)
        ymin, ymax = math.min(ymin, y), math.max(ymax, y)
      end
    end
  end
  if xmin > xmax then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  if xmax - xmin < 1e-12 then xmin, xmax = xmin - 0.5, xmax + 0.5 end
  if ymax - ymin < 1e-12 then ymin, ymax = ymin - 0.5, ymax + 0.5 end
  local scatter = o.scatter
  if scatter == nil then scatter = total < M.SCATTER_BELOW end
  local gridsize = o.gridsize or 20
  local inner_l, inner_t, inner_w, inner_h = 10, 24, pw - 20, ph - 34
  local size = inner_w / (gridsize * math.sqrt(3))
  -- Hexagon centres lie within one radius of their points and reach one more:
  -- points inset by two radii keep every hexagon inside the panel.
  local pad = scatter and 4 or 2 * size + 0.5
  local function to_px(x, y)
    return pad + (x - xmin) / (xmax - xmin) * (inner_w - 2 * pad), pad + (1 - (y - ymin) / (ymax - ymin)) * (inner_h - 2 * pad)
  end
  -- Counts first: the colour scale is shared by every panel.
  local binned, cmax = {}, 0
  if not scatter then
    for k, p in ipairs(o.panels) do
      local counts, order = {}, {}
      local xs, ys = values_of(p.x), values_of(p.y)
      for i = 1, #xs do
        local x, y = xs[i], ys[i]
        if finite(x) and finite(y) then
          local sx, sy = to_px(x, y)
          local q, r = hex_of(sx, sy, size)
          local key = q .. ":" .. r
          if not counts[key] then counts[key] = 0; order[#order + 1] = { q, r, key } end
          counts[key] = counts[key] + 1
          cmax = math.max(cmax, counts[key])
        end
      end
      table.sort(order, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
      binned[k] = { counts = counts, order = order }
    end
  end
  local logscale = cmax > 20
  local function shade(c)
    local t = logscale and math.log(c) / math.log(cmax) or (cmax > 1 and (c - 1) / (cmax - 1) or 1)
    return blues(0.15 + 0.85 * t)
  end
  for k, p in ipairs(o.panels) do
    local ox = ((k - 1) % cols) * pw
    local oy = head + ((k - 1) // cols) * ph
    local color = p.color or M.palette[(k - 1) % #M.palette + 1]
    local xs, ys = values_of(p.x), values_of(p.y)
    local clip = next_clip_id()
    out[#out + 1] = string.format('<g class="panel" transform="translate(%d %d)">', ox, oy)
    label_text(out, pw / 2, 16, p.title or ("panel " .. k), 30, 'text-anchor="middle" font-weight="bold"')
    out[#out + 1] = string.format('<clipPath id="%s"><rect x="%d" y="%d" width="%d" height="%d"/></clipPath>', clip,
                                  inner_l, inner_t, inner_w, inner_h)
    out[#out + 1] = string.format('<rect class="frame" x="%d" y="%d" width="%d" height="%d" fill="#fafafa" stroke="#ccc"/>',
                                  inner_l, inner_t, inner_w, inner_h)
    if scatter then
      out[#out + 1] = string.format('<g class="points" clip-path="url(#%s)"><title>%s: %d points</title>',
                                    clip, esc(p.title or ""), #xs)
      for j, other in ipairs(o.panels) do
        if j ~= k then
          local ox2, oy2 = values_of(other.x), values_of(other.y)
          for i = 1, #ox2 do
            if finite(ox2[i]) and finite(oy2[i]) then
              local sx, sy = to_px(ox2[i], oy2[i])
              out[#out + 1] = string.format('<circle class="other" cx="%s" cy="%s" r="1.6" fill="#cfcfcf"/>',
                                            num(inner_l + sx), num(inner_t + sy))
            end
          end
        end
      end
      for i = 1, #xs do
        if finite(xs[i]) and finite(ys[i]) then
          local sx, sy = to_px(xs[i], ys[i])
          out[#out + 1] = string.format('<circle class="own" cx="%s" cy="%s" r="2.4" fill="%s" fill-opacity="0.85"/>',
                                        num(inner_l + sx), num(inner_t + sy), color)
        end
      end
      out[#out + 1] = "</g></g>"
    else
      out[#out + 1] = string.format('<g class="hexes" clip-path="url(#%s)"><title>%s: %d points</title>', clip,
                                    esc(p.title or ""), #xs)
      local b = binned[k]
      for _, e in ipairs(b.order) do
        local q, r = e[1], e[2]
        local cx = inner_l + size * math.sqrt(3) * (q + r / 2)
        local cy = inner_t + size * 1.5 * r
        local c = b.counts[e[3]]
        out[#out + 1] = string.format('<polygon points="%s" fill="%s" data-n="%d"/>', hex_points(cx, cy, size), shade(c), c)
      end
      out[#out + 1] = "</g></g>"
    end
  end
  -- The legend, under the panels.
  local ly = head + rows * ph + 14
  out[#out + 1] = '<g class="legend">'
  if scatter then
    out[#out + 1] = string.format('<circle cx="20" cy="%d" r="4" fill="%s"/>', ly + 4, M.palette[1])
    text(out, 30, ly + 8, "the panel's label (colour per panel)")
    out[#out + 1] = string.format('<circle cx="270" cy="%d" r="4" fill="#cfcfcf"/>', ly + 4)
    text(out, 280, ly + 8, "every other label, for reference")
  elseif cmax > 0 then
    local bar_x, bar_w, steps = 20, math.min(260, w - 200), 40
    for i = 0, steps - 1 do
      local t = i / (steps - 1)
      out[#out + 1] = string.format('<rect x="%s" y="%d" width="%s" height="10" fill="%s"/>', num(bar_x + i * bar_w / steps),
                                    ly, num(bar_w / steps + 0.5), blues(0.15 + 0.85 * t))
    end
    text(out, bar_x, ly + 24, "1", 'text-anchor="start" font-size="11"')
    if logscale then
      local mid = math.floor(math.sqrt(cmax) + 0.5)
      text(out, bar_x + bar_w * math.log(mid) / math.log(cmax), ly + 24, tostring(mid), 'text-anchor="middle" font-size="11"')
    end
    text(out, bar_x + bar_w, ly + 24, tostring(cmax), 'text-anchor="end" font-size="11"')
    text(out, bar_x + bar_w + 12, ly + 9, "points per hexagon, one scale for every panel" .. (logscale and " (log)" or ""))
  end
  out[#out + 1] = "</g>"
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- ---- probability bars -------------------------------------------------------------

--- svg.prob_bars{labels=, probs=, title=, width=420}
-- Horizontal bars of class probabilities on [0, 1] with the value printed; the
-- most probable class is drawn darker.
function M.prob_bars(o)
  check_table(o, "opts", "prob_bars")
  local labels, probs = o.labels, values_of(o.probs)
  check_table(labels, "labels", "prob_bars"); check_table(probs, "probs", "prob_bars")
  local bar_h = 20
  local w = o.width or 420
  local head = (o.title and o.title ~= "") and 30 or 8
  local h = head + #labels * (bar_h + 6) + 28
  local out = {}
  open_svg(out, w, h, o.title, "plot prob-bars")
  if o.title and o.title ~= "" then label_text(out, 8, 20, o.title, 60, 'font-size="13" font-style="italic"') end
  local best = 1
  for i = 1, #labels do if finite(probs[i]) and (not finite(probs[best]) or probs[i] > probs[best]) then best = i end end
  local left, right = 100, 50
  local pw = w - left - right
  for i, lab in ipairs(labels) do
    local y = head + (i - 1) * (bar_h + 6)
    local p = probs[i]
    label_text(out, left - 6, y + bar_h / 2 + 4, lab, 13, 'text-anchor="end"')
    out[#out + 1] = string.format('<rect x="%d" y="%s" width="%d" height="%d" fill="#f0f0f0"/>', left, num(y), pw, bar_h)
    if finite(p) then
      local pc = math.max(0, math.min(1, p))
      out[#out + 1] = string.format('<rect class="bar" x="%d" y="%s" width="%s" height="%d" fill="%s"><title>%s: %.3f</title></rect>',
        left, num(y), num(pc * pw), bar_h, i == best and M.palette[1] or "#a0bcd8", esc(lab), p)
      text(out, left + pw + 4, y + bar_h / 2 + 4, string.format("%.2f", p), 'font-size="11"')
    end
  end
  local ty = head + #labels * (bar_h + 6) + 14
  for _, t in ipairs { 0, 0.25, 0.5, 0.75, 1 } do
    text(out, left + t * pw, ty, M.format_tick(t, 0.25), 'text-anchor="middle" font-size="10" fill="#555"')
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

return M
