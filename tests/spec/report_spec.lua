-- report_spec.lua: `moonbert report` and mb.report on a synthetic run.
--
-- The run holds every piece the report shows (dataset stats, metric series,
-- confusion matrices, embeddings before/after, custom texts, predictions with
-- texts), and hostile strings in every place a user or the data can put one.
-- Checks: each section has its plot; nothing from the data reaches the page as
-- markup; the page references nothing on the network; a run without artifacts
-- leaves those sections out, with no sentence addressed to developers; and
-- headless Chromium renders it: the SVGs are in the live DOM with non-zero boxes
-- and shapes, the comparison is the first table, no hexagon's or point's box
-- leaves its panel, no script element exists but the probe the test adds, and
-- the screenshot is not blank.
-- MOONBERT_REPORT_SAMPLE=path keeps the screenshot there.
local mb = require "moonbert"
local lfs = require "lfs"
local support = require "tests.spec.support"
local shq, run_cmd, read, write, tmpdir, count = support.q, support.run, support.read, support.write, support.tmpdir, support.count

local BIN = os.getenv("MOONBERT_BIN") or (lfs.currentdir() .. "/build/bin/moonbert")

local LABELS = { "sadness", "joy", "love", "anger", "fear", "surprise" }
local EVIL = '<script>alert("x")</script></svg><img src=x onerror=alert(1)>&amp;'

-- A run with every report piece; returns store, run id.
local function synthetic_run(dir)
  local store = mb.store.open(dir .. "/moonbert.db")
  local run = store:start_run { experiment = "report <test>", name = "evil " .. EVIL, seed = 7, git = false,
                                params = { lr = 2e-5, note = EVIL, batch_size = 64 }, tags = { who = EVIL } }
  math.randomseed(7)
  -- Dataset: label i has about 8 + 2 i words; class counts proportional to (7 - i).
  local texts, labels = {}, {}
  for id = 0, 5 do
    for _ = 1, (6 - id) * 20 do
      local n = 6 + 2 * id + math.random(0, 6)
      local w = {}
      for k = 1, n do w[k] = "w" .. k end
      texts[#texts + 1] = table.concat(w, " ")
      labels[#labels + 1] = id
    end
  end
  texts[1] = EVIL .. " " .. texts[1]
  mb.report.log_dataset_stats(run, "train", { text = texts, label = labels }, LABELS)
  mb.report.log_dataset_stats(run, "validation", { text = texts, label = mb.tensor.from(labels, { dtype = "int32" }) }, LABELS)
  -- Curves: train/loss per step, val/loss and val/accuracy per epoch (with steps).
  for step = 1, 40 do run:log_metric("train/loss", 1.8 * math.exp(-step / 12) + 0.1, { step = step }) end
  for epoch = 1, 2 do
    run:log_metric("val/loss", 1.0 / epoch, { step = epoch * 20, epoch = epoch, split = "validation" })
    run:log_metric("val/accuracy", 0.6 + 0.15 * epoch, { step = epoch * 20, epoch = epoch, split = "validation" })
  end
  run:log_metric("test/accuracy", 0.91)
  local cm = {}
  for i = 1, 6 do cm[i] = {}; for j = 1, 6 do cm[i][j] = (i == j) and 50 + i or i % 3 end end
  run:log_confusion("validation", cm, { "sadness", "joy", "love", "anger", "fear", EVIL })
  -- Embeddings: label blobs, overlapping before fine-tuning, apart after; 600 points before
  -- (a scatter plot), 1200 after (hexagons).
  for _, stage in ipairs { "before", "after" } do
    local spread = stage == "before" and 0.3 or 3
    local xy, ls = {}, {}
    for i = 1, (stage == "before" and 600 or 1200) do
      local id = (i - 1) % 6
      local a = 2 * math.pi * id / 6
      xy[i] = { spread * math.cos(a) + (math.random() - 0.5) * 2, spread * math.sin(a) + (math.random() - 0.5) * 2 }
      ls[i] = id
    end
    if stage == "after" then xy = mb.tensor.from(xy) else xy[600] = { 0 / 0, 1 } end
    mb.report.log_embedding(run, stage, xy, ls, LABELS)
  end
  mb.report.log_custom_predictions(run, { "I saw a movie today and it was really good.", EVIL },
    { { 0.01, 0.9, 0.05, 0.01, 0.02, 0.01 }, { 0.5, 0.1, 0.1, 0.1, 0.1, 0.1 } }, LABELS)
  -- Predictions on validation: loss = index / 10 so the order is known.
  local rows, vtexts = {}, {}
  for i = 1, 30 do
    rows[i] = { label = (i - 1) % 6, predicted = (i * 7) % 6, loss = i / 10, probs = { 0.1, 0.1, 0.1, 0.1, 0.1, 0.5 } }
    vtexts[i] = "validation text number " .. i
  end
  vtexts[30] = "highest loss " .. EVIL
  run:log_predictions("validation", rows)
  mb.report.log_examples(run, "validation", vtexts, { label_names = LABELS })
  -- Custom texts carry no loss: nothing to rank, no table.
  run:log_predictions("custom", { { index = 1, predicted = 1, probs = { 0.1, 0.5, 0.1, 0.1, 0.1, 0.1 } } })
  mb.report.log_comparison(run, {
    { name = "dummy " .. EVIL, key = "dummy", validation = { accuracy = 0.35, f1 = 0.18 }, test = { accuracy = 0.34, f1 = 0.17 },
      seconds = 0.01 },
    { name = "fine-tuned", key = "", validation = { accuracy = 0.9, f1 = 0.89 }, test = { accuracy = 0.91, f1 = 0.9 },
      ood = { accuracy = 0.5, f1 = 0.45 }, seconds = 75 },
  }, { ood_name = "out-of-domain, 9 texts" })
  run:log_confusion("dummy/validation", cm, LABELS)
  run:finish()
  local id = run.id
  return store, id
end

local function chromium()
  for _, name in ipairs { "chromium", "chromium-browser", "google-chrome" } do
    local out = run_cmd("command -v " .. name)
    if out:match("%S") then return (out:gsub("%s+$", "")) end
  end
end

-- Chromium is not ours to sanitize: under `make sanitize` the preloaded ASan
-- runtime would break it, so it runs without that environment.
local function chrome_flags(profile)
  return "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking " ..
         "--disable-component-update --disable-sync --hide-scrollbars --user-data-dir=" .. shq(profile)
end

-- PNG width and height from the IHDR chunk.
local function png_size(data)
  assert.are.equal("\137PNG\r\n\26\n", data:sub(1, 8))
  return string.unpack(">I4I4", data, 17)
end

describe("mb.report", function()
  local dir, store, id, html
  setup(function()
    dir = tmpdir()
    store, id = synthetic_run(dir)
    local path, info = mb.report.write(store, id)
    assert.truthy(path, info)
    html = read(path)
  end)
  teardown(function()
    if store then store:close() end
    os.execute("rm -rf " .. shq(dir))
  end)

  it("writes index.html under runs/<id>/report beside the store", function()
    assert.truthy(lfs.attributes(dir .. "/runs/" .. id .. "/report/index.html", "mode") == "file")
    assert.truthy(html:match("^<!DOCTYPE html>"))
  end)

  it("draws each section's plots", function()
    local function section(name)
      local s = html:match('<section id="' .. name .. '">(.-)</section>')
      assert.truthy(s, "section " .. name)
      return s
    end
    local ds = section("dataset")
    assert.are.equal(2, count(ds, 'class="plot bar%-chart"'))  -- train, validation
    assert.are.equal(2, count(ds, 'class="plot box%-plot"'))
    assert.are.equal(12, count(ds, '<rect class="bar"'))       -- 6 classes x 2 splits
    assert.are.equal(12, count(ds, '<g class="box">'))
    local comparison = section("comparison")
    assert.are.equal('<table class="comparison">', html:match("<table[^>]*>"))   -- the first table of the page
    assert.are.equal(2, count(comparison, '<td class="model">'))
    -- the best of each column in bold: fine-tuned everywhere; out-of-domain only it has
    assert.are.equal(6, count(comparison, "<b>0%.%d+</b>"))
    assert.truthy(comparison:find("<td class=\"num\">–</td>", 1, true))     -- dummy has no out-of-domain score
    assert.truthy(comparison:find("1 min 15 s", 1, true))
    local curves = section("curves")
    -- "loss" (train/loss as a line, val/loss as markers) and "accuracy" (val/accuracy markers);
    -- test/accuracy has one point and no step: no chart of its own
    assert.are.equal(2, count(curves, 'class="plot line%-chart"'))
    assert.are.equal(1, count(curves, "<polyline"))            -- train/loss
    assert.are.equal(2, count(curves, 'class="series markers"')) -- val/loss, val/accuracy
    assert.are.equal(4, count(curves, '<polygon class="marker"'))
    local l, a = curves:find("loss by step", 1, true), curves:find("accuracy by step", 1, true)
    assert.truthy(l and a and l < a)
    assert.is_nil(curves:find("test/accuracy", 1, true))
    local conf = section("confusion")
    assert.are.equal(2, count(conf, 'class="plot heatmap"'))
    assert.are.equal(72, count(conf, '<rect class="cell"'))
    -- In the comparison's order, titled with model and split
    local t1, t2 = conf:find("dummy &lt;script", 1, true), conf:find("fine-tuned · validation", 1, true)
    assert.truthy(t1 and t2 and t1 < t2)
    -- Rows normalised: diagonal of row 1 is 51 / (51 + 5 * 1) = 0.91
    assert.truthy(conf:find(">0.91</text>", 1, true))
    local maps = section("maps")
    assert.are.equal(2, count(maps, 'class="plot hexbin%-grid"'))
    assert.are.equal(12, count(maps, '<g class="panel"'))
    local before, after = maps:match("(<svg.-</svg>).-(<svg.-</svg>)")
    -- 599 points before: a scatter, each point once in its own panel and in grey in the 5 others
    assert.are.equal(599, count(before, '<circle class="own"'))
    assert.are.equal(5 * 599, count(before, '<circle class="other"'))
    assert.are.equal(0, count(before, "<polygon"))
    -- 1200 after: hexagons whose counts sum to the points, one colour scale and its legend
    local n = 0
    for c in after:gmatch('data%-n="(%d+)"') do n = n + tonumber(c) end
    assert.are.equal(1200, n)
    assert.truthy(after:find("points per hexagon, one scale for every panel", 1, true))
    assert.truthy(maps:find("[CLS] features before fine-tuning (599 points", 1, true))
    assert.truthy(maps:find("1 points without finite coordinates were left out.", 1, true))
    local custom = section("custom")
    assert.are.equal(2, count(custom, 'class="plot prob%-bars"'))
    local losses = section("losses")
    assert.are.equal(2, count(losses, '<table class="losses">'))  -- validation; custom has no loss
    assert.is_nil(losses:find("custom", 1, true))
    -- Highest loss first: index 30 (loss 3.0) with its text, lowest last table starts at index 1.
    local first_row = losses:match('<table class="losses">.-</tr>%s*<tr>(.-)</tr>')
    assert.truthy(first_row:find("<td>30</td>", 1, true))
    assert.truthy(first_row:find("highest loss", 1, true))
    assert.truthy(first_row:find("3.0000", 1, true))
    local lowest = losses:match("Lowest losses.-<tr>.-</tr>%s*<tr>(.-)</tr>")
    assert.truthy(lowest:find("validation text number 1<", 1, true))
  end)

  it("escapes every string from data and users", function()
    assert.is_nil(html:lower():find("<script", 1, true))
    assert.is_nil(html:lower():find("<img", 1, true))
    assert.are.equal(count(html, "<svg"), count(html, "</svg>"))
    -- The hostile string is there, as text, in the run name, params, tags,
    -- dataset texts are not shown, confusion labels, custom texts and loss table.
    local escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;/svg&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;"
    assert.truthy(count(html, escaped:gsub("%p", "%%%0")) >= 5)
  end)

  it("loads nothing from the network", function()
    for attr, url in html:gmatch('(%w+)%s*=%s*["\']?%s*(%a[%w+.-]*:)') do
      -- the only URL is the SVG namespace name, which is never fetched
      assert.are.equal("xmlns", attr, attr .. "=" .. url)
    end
    assert.is_nil(html:find("url%([^#]", 1))       -- only url(#id): a clip path in the page itself
    assert.is_nil(html:find("=%s*[\"']?//"))       -- protocol-relative addresses
    assert.is_nil(html:find("@import", 1, true))
    assert.truthy(html:find("Content-Security-Policy", 1, true))
  end)

  it("leaves out the sections a bare run lacks, with no word to developers", function()
    local run = store:start_run { experiment = "bare", git = false }
    run:finish()
    local h, info = mb.report.build(store, run.id)
    assert.truthy(h)
    for _, id in ipairs { "comparison", "dataset", "curves", "confusion", "maps", "custom", "losses" } do
      assert.is_false(info.sections[id], id)
      assert.is_nil(h:find('id="' .. id .. '"', 1, true), id)
      assert.is_nil(h:find('href="#' .. id .. '"', 1, true), id)
    end
    assert.is_true(info.sections.overview)
    assert.are.same({ "overview" }, info.order)
    assert.is_nil(h:find("<svg", 1, true))
    assert.is_nil(h:find("mb.report", 1, true))
    assert.is_nil(h:find("log_", 1, true))
    local none, msg = mb.report.build(store, 9999)
    assert.is_nil(none)
    assert.truthy(msg:find("9999", 1, true))
  end)

  it("uses the latest of a piece logged twice and notes files changed after logging", function()
    local run = store:start_run { experiment = "twice", git = false }
    mb.report.log_dataset_stats(run, "train", { text = { "a b", "c" }, label = { 0, 1 } }, { "x", "y" })
    local path = mb.report.log_dataset_stats(run, "train", { text = { "a b c" }, label = { 1 } }, { "x", "y" })
    run:finish()
    local h, info = mb.report.build(store, run.id)
    assert.truthy(h:find("train (1 texts)", 1, true))
    assert.are.same({}, info.notes)
    write(path, read(path):gsub('"n":1', '"n":7'))
    h, info = mb.report.build(store, run.id)
    assert.truthy(h:find("train (7 texts)", 1, true))
    assert.are.equal(1, #info.notes)
    assert.truthy(info.notes[1]:find("changed after it was logged", 1, true))
    os.remove(path)
    h, info = mb.report.build(store, run.id)
    assert.truthy(info.notes[1]:find("is missing", 1, true))
    assert.is_false(info.sections.dataset)
  end)

  it("summarises the real emotion validation split as its README counts it", function()
    local shared = os.getenv("MOONBERT_SHARED") or "../shared"
    if not lfs.attributes(shared .. "/data/emotion/validation.txt", "mode") then
      pending(shared .. "/data/emotion is absent: real-data check skipped")
      return
    end
    local split = mb.data.load_text(shared .. "/data/emotion/validation.txt",
                                    { sep = ";", names = { "text", "label" }, label_names = LABELS })
    local run = store:start_run { experiment = "emotion stats", git = false }
    local path = mb.report.log_dataset_stats(run, "validation", split)   -- label names from the split
    run:finish()
    local d = require("dkjson").decode(read(path))
    assert.are.same({ 550, 704, 178, 275, 212, 81 }, d.class_counts)  -- README table
    assert.are.equal(2000, d.n)
    -- Medians against a plain sort of mb.data's own word counts.
    local words, by = split:words_per_text(), {}
    for i, id in ipairs(split.label) do by[id + 1] = by[id + 1] or {}; table.insert(by[id + 1], words[i]) end
    for k = 1, 6 do
      local v = by[k]
      table.sort(v)
      local n = #v
      local median = n % 2 == 1 and v[(n + 1) // 2] or (v[n // 2] + v[n // 2 + 1]) / 2
      assert.are.equal(median, d.words_per_text[k].median)
      assert.are.equal(v[1], d.words_per_text[k].min)
      assert.are.equal(v[n], d.words_per_text[k].max)
    end
  end)

  it("rejects bad artifact arguments by name", function()
    local run = store:start_run { experiment = "bad", git = false }
    assert.has_error(function() mb.report.log_embedding(run, "during", {}, {}, LABELS) end,
                     "bad argument #2 to 'log_embedding' (stage 'before' or 'after' expected, got during)")
    assert.has_error(function() mb.report.log_dataset_stats(run, "train", { text = { "a" }, label = { 9 } }, LABELS) end,
                     "bad argument #3 to 'log_dataset_stats' (label 9 of text 1 is not an id in 0..5)")
    assert.has_error(function() mb.report.log_custom_predictions(run, { "a" }, { { 1 } }, LABELS) end,
                     "bad argument #3 to 'log_custom_predictions' (row 1 must hold 6 probabilities)")
    run:finish()
  end)

  it("moonbert report RUN --store --out prints the path; errors exit 1 and 2", function()
    local out, code = run_cmd(shq(BIN) .. " report " .. id .. " --store " .. shq(dir .. "/moonbert.db") ..
                              " --out " .. shq(dir .. "/elsewhere"))
    assert.are.equal(0, code, out)
    assert.are.equal(dir .. "/elsewhere/index.html", (out:gsub("%s+$", "")))
    assert.are.equal(html:gsub("<footer>.-</footer>", ""), read(dir .. "/elsewhere/index.html"):gsub("<footer>.-</footer>", ""))
    out, code = run_cmd(shq(BIN) .. " report 424242 --store " .. shq(dir .. "/moonbert.db"))
    assert.are.equal(1, code)
    assert.truthy(out:find("no run 424242", 1, true), out)
    out, code = run_cmd(shq(BIN) .. " report --store " .. shq(dir .. "/moonbert.db"))
    assert.are.equal(2, code)
    out, code = run_cmd(shq(BIN) .. " report 1 --store " .. shq(dir .. "/absent.db"))
    assert.are.equal(1, code)
  end)

  it("maps a UMAP embedding of separated blobs to panels that barely overlap", function()
    if not require("moonbert.core").umap then
      pending("mb.umap is not built in this tree: UMAP-to-report check skipped")
      return
    end
    local X, y = mb.umap.make_blobs(600, 16, 6, { seed = 3, cluster_std = 0.05 })
    local Y = mb.umap.fit_transform(X, { n_neighbors = 15, seed = 1, n_epochs = 100 })
    local run = store:start_run { experiment = "umap map", git = false }
    mb.report.log_embedding(run, "after", Y, y, LABELS)
    -- Control: the same points with labels drawn at random must overlap.
    math.randomseed(1)
    local dealt = {}
    for i = 1, 600 do dealt[i] = math.random(0, 5) end
    mb.report.log_embedding(run, "before", Y, dealt, LABELS)
    run:finish()
    -- hexagons even for these 600 points (the page would draw a scatter plot)
    local svg = require "moonbert.svg"
    local below = svg.SCATTER_BELOW
    svg.SCATTER_BELOW = 0
    local okb, h = pcall(mb.report.build, store, run.id)
    svg.SCATTER_BELOW = below
    assert(okb, h)
    local maps = h:match('<section id="maps">(.-)</section>')
    -- Fraction of points in hexagons that hold more than one label. Hexagon
    -- positions are panel-relative: the same cell in two panels is overlap.
    local function shared_fraction(grid)
      local cells, total = {}, 0
      for panel in grid:gmatch('<g class="panel".-</g></g>') do
        for pts, n in panel:gmatch('<polygon points="([^"]+)" fill="[^"]+" data%-n="(%d+)"') do
          cells[pts] = cells[pts] or { panels = 0, n = 0 }
          cells[pts].panels = cells[pts].panels + 1
          cells[pts].n = cells[pts].n + tonumber(n)
          total = total + tonumber(n)
        end
      end
      assert.are.equal(600, total)
      local shared = 0
      for _, c in pairs(cells) do if c.panels > 1 then shared = shared + c.n end end
      return shared / total
    end
    local grids = {}
    for g in maps:gmatch('<svg.-</svg>') do grids[#grids + 1] = g end
    assert.are.equal(2, #grids)
    assert.truthy(grids[1]:find("before", 1, true) and grids[2]:find("after", 1, true))
    local before, after = shared_fraction(grids[1]), shared_fraction(grids[2])
    assert.is_true(after < 0.1, string.format("%.0f%% of points in hexagons shared by labels", 100 * after))
    assert.is_true(before > 0.5, string.format("control: only %.0f%% shared", 100 * before))
  end)

  describe("in headless Chromium", function()
    local browser = chromium()
    if not browser then
      pending("chromium is not installed (apt-get install chromium): browser checks skipped")
      return
    end

    it("renders every SVG with a non-zero box, runs no script from the data, and paints the page", function()
      local profile = tmpdir()
      -- A test copy with a probe script (the shipped page has none and its CSP forbids scripts).
      local probe = [[
<script>
(function () {
  var lines = ["SCRIPTS " + document.scripts.length];
  var svgs = document.querySelectorAll("svg");
  for (var i = 0; i < svgs.length; i++) {
    var b = svgs[i].getBoundingClientRect();
    var shapes = svgs[i].querySelectorAll("rect,polygon,polyline,line,circle,text").length;
    lines.push("SVG " + svgs[i].getAttribute("class").replace(/ /g, "_") + " " + Math.round(b.width) + " " + Math.round(b.height) + " " + shapes);
  }
  var first = document.querySelector("table");
  lines.push("FIRSTTABLE " + (first ? first.className : "none"));
  // Every hexagon and point inside its panel's frame (half a pixel for anti-aliasing).
  var panels = document.querySelectorAll("g.panel"), shapes = 0, outside = 0;
  for (var p = 0; p < panels.length; p++) {
    var f = panels[p].querySelector("rect.frame").getBoundingClientRect();
    var marks = panels[p].querySelectorAll("g.hexes polygon, g.points circle");
    for (var m = 0; m < marks.length; m++) {
      var r = marks[m].getBoundingClientRect();
      shapes++;
      if (r.left < f.left - 0.5 || r.right > f.right + 0.5 || r.top < f.top - 0.5 || r.bottom > f.bottom + 0.5) outside++;
    }
  }
  lines.push("PANELMARKS " + shapes + " OUTSIDE " + outside);
  var cells = document.querySelectorAll("td.text");
  for (var j = 0; j < cells.length; j++) if (cells[j].textContent.indexOf("<script>alert") >= 0) lines.push("EVILTEXT");
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = lines.join("\n");
  document.body.appendChild(pre);
})();
</script>
</body>]]
      local test_html = html:gsub("default%-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
                            :gsub("</body>", function() return probe end)
      write(dir .. "/probe.html", test_html)
      local dom, code = run_cmd("env -u LD_PRELOAD timeout 60 " .. shq(browser) .. " " .. chrome_flags(profile) ..
                                " --dump-dom " .. shq("file://" .. dir .. "/probe.html"))
      assert.are.equal(0, code, dom)
      local text = dom:match('<pre id="probe">(.-)</pre>')
      assert.truthy(text, "probe output missing from the DOM:\n" .. dom:sub(1, 2000))
      assert.truthy(text:find("SCRIPTS 1\n", 1, true), text)   -- only the probe
      assert.truthy(text:find("FIRSTTABLE comparison\n", 1, true), text)
      local marks, outside = text:match("PANELMARKS (%d+) OUTSIDE (%d+)")
      assert.truthy(tonumber(marks) > 599 + 5 * 599, text)    -- the scatter's points and the hexagons
      assert.are.equal("0", outside, "hexagons or points outside their panels")
      assert.truthy(text:find("EVILTEXT", 1, true), "the hostile text is shown as text")
      local n = 0
      for class, w, h, shapes in text:gmatch("SVG (%S+) (%d+) (%d+) (%d+)") do
        n = n + 1
        assert.truthy(tonumber(w) > 50 and tonumber(h) > 50, class .. " is " .. w .. "x" .. h)
        assert.truthy(tonumber(shapes) > 3, class .. " has " .. shapes .. " shapes")
      end
      assert.are.equal(count(html, "<svg"), n)
      assert.truthy(n >= 11)

      -- Screenshots: the report and, as the reference for "blank", an empty page.
      local png = dir .. "/report.png"
      local out
      out, code = run_cmd("cd " .. shq(dir) .. " && env -u LD_PRELOAD timeout 60 " .. shq(browser) .. " " .. chrome_flags(profile) ..
                          " --window-size=1200,3000 --screenshot=" .. shq(png) .. " " ..
                          shq("file://" .. dir .. "/runs/" .. id .. "/report/index.html"))
      assert.are.equal(0, code, out)
      local blank_html = dir .. "/blank.html"
      write(blank_html, "<!DOCTYPE html><html><body></body></html>")
      local blank_png = dir .. "/blank.png"
      out, code = run_cmd("cd " .. shq(dir) .. " && env -u LD_PRELOAD timeout 60 " .. shq(browser) .. " " .. chrome_flags(profile) ..
                          " --window-size=1200,3000 --screenshot=" .. shq(blank_png) .. " " .. shq("file://" .. blank_html))
      assert.are.equal(0, code, out)
      local data, blank = read(png), read(blank_png)
      local w, h = png_size(data)
      assert.are.equal(1200, w)
      assert.are.equal(3000, h)
      assert.truthy(#data > 5 * #blank, string.format("report png %d bytes, blank page %d bytes", #data, #blank))
      local keep = os.getenv("MOONBERT_REPORT_SAMPLE")
      if keep and keep ~= "" then -- the whole page, for people to look at
        out, code = run_cmd("cd " .. shq(dir) .. " && env -u LD_PRELOAD timeout 60 " .. shq(browser) .. " " .. chrome_flags(profile) ..
                            " --window-size=1200,5600 --screenshot=" .. shq(keep) .. " " ..
                            shq("file://" .. dir .. "/runs/" .. id .. "/report/index.html"))
        assert.are.equal(0, code, out)
      end
      os.execute("rm -rf " .. shq(profile))
    end)
  end)
end)
