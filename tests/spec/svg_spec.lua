-- svg_spec.lua: moonbert.svg, checked by properties.
--
-- Every plot is parsed by a strict little XML reader written here (balanced
-- tags, quoted attributes, no raw '<' or stray '&' in text, valid UTF-8), fed
-- hostile strings, and its geometry is checked against its data: bar heights
-- proportional to values, hexagon counts summing to the points, line points
-- inside the plot and ordered as the values, annotated cells, nice ticks.
local svg = require "moonbert.svg"

local EVIL = '</svg><script>alert("x")</script><img src=x onerror=alert(1)>&amp; \0\1 \255\254 done'

-- Parse an XML fragment: returns the list of elements {name=, attrs=, text=}
-- or raises on anything malformed.
local function parse_xml(s)
  assert(utf8.len(s), "output is not valid UTF-8")
  local elements, stack, i = {}, {}, 1
  local function check_text(t)
    assert(not t:find("<", 1, true), "raw '<' in text")
    for amp in t:gmatch("&[^;]*;?") do
      assert(amp:match("^&[%a]+;$") or amp:match("^&#%d+;$"), "stray '&' in text: " .. amp)
    end
    assert(not t:find("[%z\1-\8\11\12\14-\31]"), "control character in text")
  end
  while i <= #s do
    local lt = s:find("<", i, true)
    if not lt then check_text(s:sub(i)); break end
    check_text(s:sub(i, lt - 1))
    local gt = s:find(">", lt, true)
    assert(gt, "unterminated tag")
    local tag = s:sub(lt + 1, gt - 1)
    if tag:sub(1, 1) == "/" then
      local name = tag:sub(2)
      assert(#stack > 0 and stack[#stack].name == name, "unbalanced </" .. name .. ">")
      table.remove(stack)
    else
      local self_closing = tag:sub(-1) == "/"
      if self_closing then tag = tag:sub(1, -2) end
      local name, rest = tag:match("^([%a][%w:-]*)(.*)$")
      assert(name, "bad tag <" .. tag .. ">")
      local attrs = {}
      rest = rest:gsub('%s+([%a][%w:-]*)="([^"<]*)"', function(k, v)
        check_text(v)
        assert(not v:find('"', 1, true))
        attrs[k] = v
        return ""
      end)
      assert(rest:match("^%s*$"), "unquoted or malformed attributes in <" .. tag .. ">")
      local el = { name = name, attrs = attrs, children = {} }
      if stack[#stack] then table.insert(stack[#stack].children, el) end
      elements[#elements + 1] = el
      if not self_closing then stack[#stack + 1] = el end
    end
    i = gt + 1
  end
  assert(#stack == 0, "unclosed <" .. (stack[1] and stack[1].name or "?") .. ">")
  assert(elements[1] and elements[1].name == "svg", "does not start with <svg>")
  return elements
end

local function of(elements, name, pred)
  local out = {}
  for _, e in ipairs(elements) do if e.name == name and (not pred or pred(e)) then out[#out + 1] = e end end
  return out
end

local function check_safe(s)
  local els = parse_xml(s)
  assert.are.equal(0, #of(els, "script"))
  assert.are.equal(0, #of(els, "img"))
  assert.are.equal(1, #of(els, "svg"))
  assert.is_nil(s:find("nan", 1, true))
  assert.is_nil(s:find("inf", 1, true))
  return els
end

describe("svg.escape", function()
  it("escapes XML specials and keeps valid text readable", function()
    assert.are.equal("a &lt;b&gt; &amp; &quot;c&quot; &#39;d&#39; é 😀", svg.escape("a <b> & \"c\" 'd' é 😀"))
    assert.are.equal("42", svg.escape(42))
    assert.are.equal("", svg.escape(nil))
  end)
  it("drops control characters XML forbids and replaces invalid UTF-8", function()
    local e = svg.escape("x\0y\1z\tw\255")
    assert.truthy(utf8.len(e))
    assert.are.equal("xyz\tw\u{FFFD}", e)
  end)
  it("round-trips random printable strings", function()
    math.randomseed(3)
    local unescape = { ["&lt;"] = "<", ["&gt;"] = ">", ["&amp;"] = "&", ["&quot;"] = '"', ["&#39;"] = "'" }
    for _ = 1, 200 do
      local t = {}
      for k = 1, math.random(0, 30) do t[k] = string.char(math.random(32, 126)) end
      local s = table.concat(t)
      local e = svg.escape(s)
      assert.is_nil(e:find("[<>\"']"))
      assert.are.equal(s, (e:gsub("&[#%w]+;", unescape)))
    end
  end)
  it("shortens by characters, not bytes", function()
    assert.are.equal("éé…", svg.shorten("éééééé", 3))  -- 3 characters in all
    assert.are.equal("abc", svg.shorten("abc", 3))
  end)
end)

describe("svg.nice_ticks", function()
  it("covers the range with evenly spaced 1-2-5 steps", function()
    math.randomseed(11)
    for _ = 1, 300 do
      local a = (math.random() - 0.5) * 10 ^ math.random(-6, 6)
      local b = a + math.random() * 10 ^ math.random(-6, 6)
      local ticks, lo, hi, step = svg.nice_ticks(a, b, 5)
      assert.truthy(lo <= a and hi >= b, ("%g..%g not covered by %g..%g"):format(a, b, lo, hi))
      assert.truthy(#ticks >= 2 and #ticks <= 12, #ticks .. " ticks")
      local mant = step / 10 ^ math.floor(math.log(step, 10) + 1e-9)
      assert.truthy(math.abs(mant - 1) < 1e-6 or math.abs(mant - 2) < 1e-6 or math.abs(mant - 5) < 1e-6, "step " .. step)
      for k = 2, #ticks do assert.is_true(math.abs(ticks[k] - ticks[k - 1] - step) <= 1e-9 * math.max(1, math.abs(step))) end
    end
    local t = svg.nice_ticks(0, 5362)
    assert.are.same({ 0, 2000, 4000, 6000 }, t)
  end)
  it("survives empty and non-finite ranges", function()
    local t, lo, hi = svg.nice_ticks(3, 3)
    assert.truthy(lo < 3 and hi > 3 and #t >= 2)
    t, lo, hi = svg.nice_ticks(0 / 0, 1 / 0)
    assert.truthy(lo == 0 and hi == 1)
  end)
end)

describe("svg.box_stats", function()
  it("matches numpy's linear percentiles and matplotlib's 1.5 IQR whiskers", function()
    -- numpy.percentile([1, 2, 3, 4, 100], [25, 50, 75]) = 2, 3, 4; whiskers 1 and 4 (100 is a flier).
    local s = svg.box_stats { 4, 100, 2, 1, 3 }
    assert.are.same({ 2, 3, 4, 1, 4, 1, 100, 5 }, { s.q1, s.median, s.q3, s.lo, s.hi, s.min, s.max, s.n })
    -- numpy.percentile([1, 2, 3, 4], [25, 50, 75]) = 1.75, 2.5, 3.25
    s = svg.box_stats { 1, 2, 3, 4, 0 / 0 }
    assert.are.same({ 1.75, 2.5, 3.25, 4 }, { s.q1, s.median, s.q3, s.n })
    assert.are.equal(0, svg.box_stats({}).n)
  end)
end)

describe("plots", function()
  it("bar_chart: bar lengths proportional to values, hostile labels as text", function()
    for _, horizontal in ipairs { false, true } do
      local values = { 5362, 2159, 1304, 0, 0 / 0 }
      local s = svg.bar_chart { labels = { "joy", EVIL, "love", "none", "missing" }, values = values, title = EVIL,
                                horizontal = horizontal }
      local els = check_safe(s)
      local bars = of(els, "rect", function(e) return e.attrs.class == "bar" end)
      assert.are.equal(4, #bars)                    -- the nan bar is skipped
      local dim = horizontal and "width" or "height"
      local unit = tonumber(bars[1].attrs[dim]) / values[1]
      for k = 1, 4 do
        assert.is_true(math.abs(tonumber(bars[k].attrs[dim]) - unit * values[k]) < 0.02, dim .. " of bar " .. k)
      end
      assert.truthy(s:find("&lt;/svg&gt;&lt;script&gt;", 1, true))
    end
  end)

  it("box_plot: one box per group, ordered medians where the data are ordered", function()
    local groups = {}
    for g = 1, 4 do
      local v = {}
      for k = 1, 50 do v[k] = g * 10 + k % 7 end
      groups[g] = { label = g == 2 and EVIL or ("g" .. g), values = v }
    end
    local els = check_safe(svg.box_plot { groups = groups, title = "words", ylabel = EVIL })
    local medians = of(els, "line", function(e) return e.attrs.class == "median" end)
    assert.are.equal(4, #medians)
    for k = 2, 4 do assert.is_true(tonumber(medians[k].attrs.y1) < tonumber(medians[k - 1].attrs.y1)) end
  end)

  it("heatmap: a cell and an annotation per entry, darker for larger values", function()
    local m = { { 0.9, 0.1, 0 }, { 0.2, 0.7, 0.1 }, { 0, 0.5, 0.5 } }
    local s = svg.heatmap { matrix = m, row_labels = { "a", EVIL, "c" }, vmin = 0, vmax = 1, title = EVIL }
    local els = check_safe(s)
    local cells = of(els, "rect", function(e) return e.attrs.class == "cell" end)
    assert.are.equal(9, #cells)
    local function lum(e)
      local r, g, b = e.attrs.fill:match("#(%x%x)(%x%x)(%x%x)")
      return tonumber(r, 16) + tonumber(g, 16) + tonumber(b, 16)
    end
    assert.is_true(lum(cells[1]) < lum(cells[5]))   -- 0.9 darker than 0.7
    assert.is_true(lum(cells[5]) < lum(cells[6]))   -- 0.7 darker than 0.5
    assert.is_true(lum(cells[2]) > lum(cells[5]))
    for _, v in ipairs { "0.90", "0.10", "0.70", "0.50" } do assert.truthy(s:find(">" .. v .. "</text>", 1, true)) end
  end)

  it("line_chart: one polyline per series, points inside the plot, y ordered as the values", function()
    local x, y = {}, {}
    for k = 1, 30 do x[k] = k * 10; y[k] = 2 / k end
    y[15] = 0 / 0
    local s = svg.line_chart { series = { { name = "train/loss", x = x, y = y }, { name = EVIL, x = { 100, 300 }, y = { 1, 0.5 } } },
                               xlabel = "step", ylabel = "loss", title = EVIL }
    local els = check_safe(s)
    local lines = of(els, "polyline")
    assert.are.equal(2, #lines)
    local pts = {}
    for px, py in lines[1].attrs.points:gmatch("([%d.-]+),([%d.-]+)") do pts[#pts + 1] = { tonumber(px), tonumber(py) } end
    assert.are.equal(29, #pts)                      -- the nan point is skipped
    for k = 2, #pts do
      assert.is_true(pts[k][1] > pts[k - 1][1])     -- x increases
      assert.is_true(pts[k][2] >= pts[k - 1][2])    -- loss falls: pixel y grows
    end
    local w, h = tonumber(els[1].attrs.width), tonumber(els[1].attrs.height)
    for _, p in ipairs(pts) do assert.truthy(p[1] > 0 and p[1] < w and p[2] > 0 and p[2] < h) end
  end)

  it("hexbin_grid: a panel per label whose hexagon counts sum to its points", function()
    math.randomseed(5)
    local panels = {}
    for k = 1, 6 do
      local px, py = {}, {}
      for i = 1, 100 * k do px[i] = math.cos(k) * 3 + math.random(); py[i] = math.sin(k) * 3 + math.random() end
      px[1] = 0 / 0
      panels[k] = { title = k == 3 and EVIL or ("label " .. k), x = px, y = py }
    end
    panels[7] = { title = "one spot", x = { 1, 1, 1 }, y = { 2, 2, 2 } }
    local s = svg.hexbin_grid { panels = panels, columns = 3, title = EVIL }
    local els = check_safe(s)
    local groups = of(els, "g", function(e) return e.attrs.class == "panel" end)
    assert.are.equal(7, #groups)
    for k, g in ipairs(groups) do
      local total, hexes = 0, 0
      for _, child in ipairs(g.children) do
        if child.attrs.class == "hexes" then
          for _, poly in ipairs(child.children) do
            if poly.name == "polygon" then hexes = hexes + 1; total = total + tonumber(poly.attrs["data-n"]) end
          end
        end
      end
      if k <= 6 then
        assert.are.equal(100 * k - 1, total)        -- every finite point in one hexagon
        assert.truthy(hexes > 1 and hexes < 100 * k)
      else
        assert.are.same({ 3, 1 }, { total, hexes })
      end
    end
  end)

  it("hexbin_grid: every hexagon inside its panel's frame, clipped, on one colour scale", function()
    math.randomseed(9)
    local panels = {}
    for k = 1, 3 do
      local px, py = {}, {}
      -- points out to the corners of the data range, where unpadded hexagons would spill over
      for i = 1, 600 do px[i] = (math.random() - 0.5) * 10; py[i] = (math.random() - 0.5) * 10 end
      px[1], py[1], px[2], py[2] = -5, -5, 5, 5
      panels[k] = { title = "p" .. k, x = px, y = py }
    end
    local s = svg.hexbin_grid { panels = panels, columns = 3, gridsize = 20 }
    local els = check_safe(s)
    local clips = {}
    for _, c in ipairs(of(els, "clipPath")) do clips[c.attrs.id] = true end
    local fills = {}
    for _, g in ipairs(of(els, "g", function(e) return e.attrs.class == "panel" end)) do
      local frame
      for _, child in ipairs(g.children) do if child.attrs.class == "frame" then frame = child.attrs end end
      local x0, y0 = tonumber(frame.x), tonumber(frame.y)
      local x1, y1 = x0 + tonumber(frame.width), y0 + tonumber(frame.height)
      for _, child in ipairs(g.children) do
        if child.attrs.class == "hexes" then
          assert.truthy(clips[child.attrs["clip-path"]:match("^url%(#(.-)%)$")])
          for _, poly in ipairs(child.children) do
            if poly.name == "polygon" then
              for x, y in poly.attrs.points:gmatch("([%d.-]+),([%d.-]+)") do
                x, y = tonumber(x), tonumber(y)
                assert.is_true(x >= x0 and x <= x1 and y >= y0 and y <= y1, x .. "," .. y .. " outside the frame")
              end
              -- one scale: the same count, the same colour, in every panel
              local n = poly.attrs["data-n"]
              assert.is_true(fills[n] == nil or fills[n] == poly.attrs.fill, "count " .. n .. " in two colours")
              fills[n] = poly.attrs.fill
            end
          end
        end
      end
    end
    assert.truthy(s:find("points per hexagon, one scale for every panel", 1, true))
  end)

  it("hexbin_grid: a scatter plot under svg.SCATTER_BELOW points", function()
    local panels = { { title = "a", x = { 1, 2, 3 }, y = { 1, 2, 3 } }, { title = "b", x = { 4, 5 }, y = { 1, 0 } } }
    local els = check_safe(svg.hexbin_grid { panels = panels })
    assert.are.equal(0, #of(els, "polygon"))
    assert.are.equal(5, #of(els, "circle", function(e) return e.attrs.class == "own" end))
    -- each panel shows the other panel's points in grey: 2 in a, 3 in b
    assert.are.equal(5, #of(els, "circle", function(e) return e.attrs.class == "other" end))
  end)

  it("line_chart: markers without a line, and an axis floor at ymin", function()
    local s = svg.line_chart { series = { { name = "train", x = { 1, 2, 3 }, y = { 0.9, 0.92, 0.93 } },
                                          { name = "eval", x = { 3 }, y = { 0.91 }, style = "markers" } },
                               ymin = 0, ymax = 1 }
    local els = check_safe(s)
    assert.are.equal(1, #of(els, "polyline"))
    assert.are.equal(1, #of(els, "polygon", function(e) return e.attrs.class == "marker" end))
    -- the axis runs from 0 to 1: the tick labels include both
    assert.truthy(s:find(">0</text>", 1, true) and s:find(">1.0</text>", 1, true), s)
  end)

  it("strip_chart: a dot per trial in its category and one best ring", function()
    local s = svg.strip_chart { categories = { "1e-05", "5e-05" }, ylabel = "val/accuracy", title = EVIL,
                                points = { { category = 1, y = 0.5 }, { category = 2, y = 0.7, best = true },
                                           { category = 2, y = 0.6 }, { category = 3, y = 0.9 } } }
    local els = check_safe(s)
    local pts = of(els, "circle", function(e) return e.attrs.class == "point" end)
    assert.are.equal(3, #pts)                       -- category 3 does not exist: left out
    local best = of(els, "circle", function(e) return e.attrs.class == "best" end)
    assert.are.equal(1, #best)
    assert.are.equal(pts[2].attrs.cy, best[1].attrs.cy)
    assert.is_true(tonumber(pts[2].attrs.cy) < tonumber(pts[1].attrs.cy)) -- higher value, higher on the page
  end)

  it("prob_bars: bar widths proportional to the probabilities", function()
    local probs = { 0.05, 0.8, 0.1, 0.05 }
    local els = check_safe(svg.prob_bars { labels = { "a", "b", EVIL, "d" }, probs = probs, title = EVIL })
    local bars = of(els, "rect", function(e) return e.attrs.class == "bar" end)
    assert.are.equal(4, #bars)
    local unit = tonumber(bars[2].attrs.width) / 0.8
    for k = 1, 4 do assert.is_true(math.abs(tonumber(bars[k].attrs.width) - unit * probs[k]) < 0.02) end
    assert.are_not.equal(bars[1].attrs.fill, bars[2].attrs.fill) -- the most probable class stands out
  end)

  it("name the argument that is wrong", function()
    assert.has_error(function() svg.bar_chart { labels = { "a" } } end,
                     "bad argument #1 to 'bar_chart' (field 'values' must be a table, got nil)")
    assert.has_error(function() svg.hexbin_grid {} end,
                     "bad argument #1 to 'hexbin_grid' (field 'panels' must be a table, got nil)")
  end)
end)
