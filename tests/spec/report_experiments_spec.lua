-- report_experiments_spec.lua: every bundled experiment's report is complete.
--
-- Each experiment runs for real through build/bin/moonbert on the tiny DistilBERT fixture
-- (dim 64, 2 layers) and a few dozen texts, writes its report (mb.report.build on the store
-- it wrote), and the page is checked for every section that experiment should fill, for the
-- sections it must leave out, for the comparison table coming first with the best of each
-- column in bold, for confusion matrices in the comparison's order, for ranked examples that
-- carry their texts, and for no sentence addressed to developers. A two-trial sweep is
-- reported with `moonbert report --sweep NAME`.
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local lfs = require "lfs"
local have = lfs.attributes(BIN, "mode") == "file" and lfs.attributes(TINY .. "/model.safetensors", "mode") == "file"
  and lfs.attributes(SHARED .. "/data/emotion/train.txt", "mode") == "file"

if not have then
  describe("experiment reports", function()
    pending("needs build/bin/moonbert, " .. TINY .. " and " .. SHARED .. "/data/emotion (run make; ../shared absent?)")
  end)
  return
end

local mb = require "moonbert"
local support = require "tests.spec.support"
local q, sh, tmpdir, count, read, write = support.q, support.sh, support.tmpdir, support.count, support.read, support.write

local SMALL = "--quick --limit 48 --batch-size 16 --seed 7"

-- Sentences for developers that must never reach a report.
local DEVELOPER = { "(text not logged)", "mb.report.", "log_examples", "log_predictions", "carry no loss",
                    "run:log_", "were not logged" }

local function check_page(html)
  for _, s in ipairs(DEVELOPER) do assert.is_nil(html:find(s, 1, true), "a report says " .. s) end
  assert.is_nil(html:find('class="note"', 1, true), "a note in place of a section")
end

-- The report of the one run of `experiment` in the store at path.
local function report_of(path, experiment)
  local store = mb.store.open(path)
  local runs = store:runs { experiment = experiment }
  assert.are.equal(1, #runs)
  assert.are.equal("completed", runs[1].status)
  local html, info = mb.report.build(store, runs[1].id)
  assert.truthy(html, info)
  return html, info, store, runs[1].id
end

local function expect_sections(info, present, absent)
  for _, id in ipairs(present) do assert.is_true(info.sections[id], "section " .. id .. " missing") end
  for _, id in ipairs(absent) do assert.is_false(info.sections[id], "section " .. id .. " should be left out") end
end

local function section(html, id)
  return assert(html:match('<section id="' .. id .. '">(.-)</section>'), "section " .. id)
end

-- Every loss table has a text column and no empty text cell.
local function check_loss_tables(html)
  local losses = section(html, "losses")
  local tables = 0
  for t in losses:gmatch('<table class="losses">(.-)</table>') do
    tables = tables + 1
    assert.truthy(t:find("<th>text</th>", 1, true), "a ranked table without texts")
    assert.is_nil(t:find('<td class="text"></td>', 1, true), "an empty text cell")
  end
  assert.is_true(tables >= 2)
  return tables
end

-- The heading of each comparison row and the titles of the confusion matrices, in page order.
local function comparison_rows(html)
  local rows = {}
  for name in section(html, "comparison"):gmatch('<td class="model">(.-)</td>') do rows[#rows + 1] = name end
  return rows
end
local function matrix_titles(html)
  local titles = {}
  for svg in section(html, "confusion"):gmatch("<svg.-</svg>") do titles[#titles + 1] = svg:match("<title>(.-)</title>") end
  return titles
end

describe("experiment reports", function()
  local dir
  setup(function() dir = tmpdir() end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  it("baseline_vs_finetune: the comparison first, every section, matrices in the table's order", function()
    local db = dir .. "/b.db"
    local out, err, code = sh(q(BIN) .. " run experiments/baseline_vs_finetune.lua --model " .. q(TINY) .. " " .. SMALL ..
                              " --store " .. q(db))
    assert.are.equal(0, code, err)
    local html, info, store, id = report_of(db, "baseline_vs_finetune")
    assert.truthy(out:find("report: " .. dir .. "/runs/" .. id .. "/report/index.html", 1, true), out)
    check_page(html)
    expect_sections(info, { "comparison", "overview", "dataset", "curves", "confusion", "maps", "custom", "losses" }, {})
    assert.are.equal("comparison", info.order[1])
    -- The first table of the page is the comparison; the banner names init, model and device before it.
    assert.truthy(html:match("<table[^>]*>") == '<table class="comparison">')
    local banner = html:match('<div class="banner[^"]*">(.-)</div>')
    for _, k in ipairs { "init", "model", "device" } do assert.truthy(banner:find("<b>" .. k .. "</b>", 1, true), k) end
    local rows = comparison_rows(html)
    assert.are.same({ "dummy (most_frequent)", "dummy (uniform)", "logistic regression, TF-IDF",
                      "logistic regression, cls features", "fine-tuned distilbert-tiny" }, rows) -- the model as what it is
    -- Validation, test and out-of-domain accuracy and F1 and a time for every model.
    local comp = section(html, "comparison")
    assert.are.equal(5 * 7, count(comp, '<td class="num">'))
    assert.truthy(comp:find("out-of-domain, 48 texts", 1, true))
    -- The bold cell of each column is its largest value (ties all bold).
    local columns = {}
    for row in comp:gmatch('<tr><td class="model">.-</tr>') do
      local j = 0
      for cell in row:gmatch('<td class="num">(.-)</td>') do
        j = j + 1
        columns[j] = columns[j] or {}
        table.insert(columns[j], { v = tonumber((cell:gsub("</?b>", ""))), bold = cell:find("<b>", 1, true) ~= nil })
      end
    end
    for j = 1, 6 do
      local best = -1
      for _, c in ipairs(columns[j]) do best = math.max(best, c.v) end
      for _, c in ipairs(columns[j]) do assert.are.equal(c.v == best, c.bold, "column " .. j) end
    end
    -- Confusion matrices: the comparison's order, each titled with model and split.
    local titles = matrix_titles(html)
    assert.are.equal(15, #titles)
    local k = 0
    for _, name in ipairs(rows) do
      for _, split in ipairs { "validation", "test", "out-of-domain" } do
        k = k + 1
        assert.truthy(titles[k]:find(name .. " · " .. split, 1, true), titles[k] .. " is not " .. name .. " · " .. split)
      end
    end
    -- Curves: loss, then accuracy and F1, then lr and grad norm; train loss at every step of this
    -- 3-step run, the evaluation as markers on an axis from 0.
    local curves = section(html, "curves")
    local at = {}
    for _, t in ipairs { "loss by step", "accuracy by step", "f1_weighted by step", "lr by step", "grad_norm by step" } do
      at[#at + 1] = assert(curves:find(t, 1, true), t)
    end
    for i = 2, #at do assert.is_true(at[i] > at[i - 1]) end
    local steps = {}
    for i, m in ipairs(store:metrics(id, "train/loss")) do steps[i] = m.step end
    assert.are.same({ 1, 2, 3 }, steps)
    assert.truthy(curves:find('<g class="series markers"><title>eval</title>', 1, true))
    -- Error analysis: validation and test ranked, with texts.
    assert.are.equal(4, check_loss_tables(html))
    store:close()
  end)

  it("frozen_vs_unfrozen: both encoders compared, their curves, matrices and ranked texts", function()
    local db = dir .. "/f.db"
    local _, err, code = sh(q(BIN) .. " run experiments/frozen_vs_unfrozen.lua --model " .. q(TINY) .. " " .. SMALL ..
                            " --epochs 2 --store " .. q(db))
    assert.are.equal(0, code, err)
    local html, info, store = report_of(db, "frozen_vs_unfrozen")
    check_page(html)
    expect_sections(info, { "comparison", "overview", "dataset", "curves", "confusion", "losses" }, { "maps", "custom" })
    assert.truthy(html:match("<table[^>]*>") == '<table class="comparison">')
    local rows = comparison_rows(html)
    assert.are.equal(2, #rows)
    assert.truthy(rows[1]:find("^frozen encoder") and rows[2]:find("^unfrozen encoder"))
    local titles = matrix_titles(html)
    assert.are.equal(6, #titles)
    assert.truthy(titles[1]:find(rows[1] .. " · validation", 1, true), titles[1])
    assert.truthy(titles[4]:find(rows[2] .. " · validation", 1, true), titles[4])
    -- One loss chart with both encoders: train lines and evaluation markers.
    local loss = section(html, "curves"):match("<svg.-</svg>")
    assert.truthy(loss:find("loss by step", 1, true))
    assert.are.equal(2, count(loss, "<polyline"))
    assert.are.equal(2, count(loss, 'class="series markers"'))
    assert.are.equal(4, check_loss_tables(html))
    store:close()
  end)

  it("pretrain_mlm and pretraining_effect: masked-LM curves; random against pretrained", function()
    local corpus = dir .. "/corpus.txt"
    local lines = {}
    for line in io.lines(SHARED .. "/data/emotion/validation.txt") do
      lines[#lines + 1] = line:gsub(";%a+$", "")
      if #lines == 200 then break end
    end
    write(corpus, table.concat(lines, "\n") .. "\n")
    local db = dir .. "/m.db"
    local _, err, code = sh(q(BIN) .. " run experiments/pretrain_mlm.lua --config tiny --no-train-texts --corpus " .. q(corpus) ..
                            " --steps 24 --batch-size 8 --max-length 32 --eval-size 16 --eval-every 8 --checkpoint-every 100" ..
                            " --out " .. q(dir .. "/mlm") .. " --store " .. q(db))
    assert.are.equal(0, code, err)
    local html, info, store, id = report_of(db, "pretrain_mlm")
    check_page(html)
    expect_sections(info, { "overview", "curves" }, { "comparison", "confusion", "maps", "custom", "losses" })
    -- 24 steps: the loss logged at least 20 times (every step), loss chart first, masked accuracy next
    assert.is_true(#store:metrics(id, "train/mlm_loss") >= 20)
    local curves = section(html, "curves")
    local a, b = curves:find("mlm_loss by step", 1, true), curves:find("masked_accuracy by step", 1, true)
    assert.truthy(a and b and a < b)
    store:close()

    db = dir .. "/e.db"
    _, err, code = sh(q(BIN) .. " run experiments/pretraining_effect.lua --pretrained " .. q(dir .. "/mlm") ..
                      " --limit 48 --batch-size 16 --max-length 32 --feature-iters 30 --seeds 1 --store " .. q(db))
    assert.are.equal(0, code, err)
    html, info, store = report_of(db, "pretraining_effect")
    check_page(html)
    expect_sections(info, { "comparison", "overview", "dataset", "curves", "confusion", "losses" }, { "maps", "custom" })
    local comp = section(html, "comparison")
    assert.are.equal(3, count(comp, '<tr class="group">'))      -- no model, random, pretrained
    assert.are.equal(2 + 2 * 4, #comparison_rows(html))          -- 2 baselines, 3 poolings + 1 fine-tuning per init
    local titles = matrix_titles(html)
    assert.truthy(titles[1]:find("fine-tuned", 1, true), titles[1])
    check_loss_tables(html)
    store:close()
  end)

  it("a sweep: moonbert report --sweep ranks the trials and plots the metric against each parameter", function()
    local corpus = dir .. "/corpus2.txt"
    local lines = {}
    for line in io.lines(SHARED .. "/data/emotion/validation.txt") do
      lines[#lines + 1] = line:gsub(";%a+$", "")
      if #lines == 100 then break end
    end
    write(corpus, table.concat(lines, "\n") .. "\n")
    local spec = dir .. "/two.lua"
    write(spec, string.format([[
return { script = "experiments/pretrain_mlm.lua",
         args = { "--config", "tiny", "--no-train-texts", "--corpus", %q, "--steps", "4", "--batch-size", "8",
                  "--max-length", "32", "--eval-size", "16", "--eval-every", "4", "--checkpoint-every", "100",
                  "--out", %q },
         grid = { lr = { 1e-4, 1e-3 } }, metric = "eval/masked_accuracy", mode = "max", store = %q }
]], corpus, dir .. "/sweep-mlm", dir .. "/s.db"))
    local out, err, code = sh(q(BIN) .. " sweep " .. q(spec))
    assert.are.equal(0, code, out .. err)
    out, err, code = sh(q(BIN) .. " report --sweep two --store " .. q(dir .. "/s.db"))
    assert.are.equal(0, code, err)
    local path = out:gsub("%s+$", "")
    assert.are.equal(dir .. "/sweeps/two/report/index.html", path)
    local html = read(path)
    check_page(html)
    assert.truthy(html:match("<table[^>]*>") == '<table class="comparison">')
    local ranking = section(html, "ranking")
    assert.are.equal(2, count(ranking, "<tr><td"))
    assert.truthy(ranking:find("eval/masked_accuracy", 1, true))
    -- The bold value is the first (best) row's; the chart marks one best point.
    local first = ranking:match("<tr><td.-</tr>")
    assert.truthy(first:find("<b>", 1, true))
    local chart = section(html, "parameters")
    assert.truthy(chart:find("eval/masked_accuracy by lr", 1, true))
    assert.are.equal(2, count(chart, '<circle class="point"'))
    assert.are.equal(1, count(chart, '<circle class="best"'))
    -- Usage and missing sweeps.
    out, err, code = sh(q(BIN) .. " report --sweep nope --store " .. q(dir .. "/s.db"))
    assert.are.equal(1, code)
    assert.truthy(err:find("no runs of sweep 'nope'", 1, true), err)
    out, err, code = sh(q(BIN) .. " report 1 --metric x --store " .. q(dir .. "/s.db"))
    assert.are.equal(2, code)
  end)
end)
