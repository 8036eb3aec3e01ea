-- fill_mask_spec.lua: mb.pipeline("fill-mask", dir) and `moonbert fill-mask` on the tiny masked-LM
-- fixture (../shared/fixtures/distilbert-mlm-tiny). The scores must be the softmax (over the whole
-- vocabulary, computed here in double) of the model's logits at the [MASK] position, best first;
-- the model's logits themselves are checked against PyTorch in mlm_spec.lua.
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local DIR = SHARED .. "/fixtures/distilbert-mlm-tiny"
local lfs = require "lfs"
local have = lfs.attributes(DIR .. "/model.safetensors", "mode") == "file"

local support = require "tests.spec.support"
local q = support.q

local sh = support.sh

if not have then
  describe("fill-mask", function() pending("needs " .. DIR .. " (../shared absent?)") end)
  return
end

local mb = require "moonbert"
local json = require "dkjson"

-- reference probabilities at the single [MASK] of text: softmax in double of model logits
local function reference(text)
  local tok = mb.tokenizer.load(DIR)
  local model = mb.distilbert.load_masked_lm(DIR, { quiet = true })
  local ids = tok:encode(text).input_ids
  ids = type(ids) == "table" and ids or ids:totable()
  local pos
  for t, id in ipairs(ids) do if id == 103 then pos = t - 1 end end
  local z = model:forward({ input_ids = { ids } })[1][pos + 1]:totable()
  local mx = -math.huge
  for _, v in ipairs(z) do mx = math.max(mx, v) end
  local s = 0
  for _, v in ipairs(z) do s = s + math.exp(v - mx) end
  local p = {}
  for i, v in ipairs(z) do p[i] = math.exp(v - mx) / s end
  return p, ids, pos
end

describe("fill-mask pipeline", function()
  local text = "i feel so [MASK] today"

  it("returns the top-k tokens, best first, with softmax probabilities of the model's logits", function()
    local fill = mb.pipeline("fill-mask", DIR)
    local res = fill(text, { top_k = 10 })
    assert.are.equal(10, #res)
    local p = reference(text)
    -- the true top 10 by brute force
    local order = {}
    for i = 1, #p do order[i] = i end
    table.sort(order, function(a, b) if p[a] ~= p[b] then return p[a] > p[b] end return a < b end)
    for r = 1, 10 do
      assert.are.equal(order[r] - 1, res[r].token)
      assert.is_true(math.abs(res[r].score - p[order[r]]) <= 1e-6 * p[order[r]], "score " .. r)
      if r > 1 then assert.is_true(res[r].score <= res[r - 1].score) end
      assert.are.equal(fill.tokenizer:decode({ res[r].token }), res[r].token_str)
      assert.truthy(res[r].sequence:find("i feel so", 1, true))
    end
    assert.are.equal(5, #fill(text)) -- HF's default top_k
    fill:free()
  end)

  it("gives one list per [MASK] for several masks, and one result per text for a list", function()
    local fill = mb.pipeline("fill-mask", DIR, { top_k = 3 })
    local res = fill("[MASK] and [MASK]")
    assert.are.equal(2, #res)
    assert.are.equal(3, #res[1])
    local many = fill({ text, "you are [MASK]" })
    assert.are.equal(2, #many)
    assert.are.equal(3, #many[2])
    fill:free()
  end)

  it("raises an error for a text without [MASK] and for a missing folder", function()
    local fill = mb.pipeline("fill-mask", DIR)
    local ok, err = pcall(fill, "no mask here")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("no mask token", 1, true))
    fill:free()
    ok, err = pcall(mb.pipeline, "fill-mask", support.tmppath("nomodel"))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("not found", 1, true))
  end)
end)

describe("moonbert fill-mask", function()
  it("prints the top-k tokens with their probabilities (text and --json)", function()
    local out, err, code = sh(q(BIN) .. " fill-mask --model " .. q(DIR) .. " --top-k 3 'i feel so [MASK] today'")
    assert.are.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(4, #lines)
    assert.are.equal("i feel so [MASK] today", lines[1])
    local p = reference("i feel so [MASK] today")
    local jout = sh(q(BIN) .. " fill-mask --json --top-k 3 --model " .. q(DIR) .. " 'i feel so [MASK] today'")
    local res = json.decode(jout)
    assert.are.equal(3, #res)
    for r = 1, 3 do
      assert.is_true(math.abs(res[r].score - p[res[r].token + 1]) <= 1e-6 * res[r].score)
      assert.truthy(lines[r + 1]:find(res[r].token_str, 1, true))
      local printed = tonumber(lines[r + 1]:match("^%s*(%S+)"))
      assert.is_true(math.abs(printed - res[r].score) <= 1e-3 * res[r].score)
      if r > 1 then assert.is_true(res[r].score <= res[r - 1].score) end
    end
  end)

  it("reads texts from stdin when none are given", function()
    local out, err, code = sh("printf 'a [MASK] day\\n\\nyou are [MASK]\\n' | " .. q(BIN) .. " fill-mask --model " .. q(DIR))
    assert.are.equal(0, code, err)
    assert.truthy(out:find("a [MASK] day", 1, true))
    assert.truthy(out:find("you are [MASK]", 1, true))
  end)

  it("has --help and clear errors", function()
    local out, _, code = sh(q(BIN) .. " fill-mask --help")
    assert.are.equal(0, code)
    assert.truthy(out:find("usage: moonbert fill-mask", 1, true))
    local _, err
    _, err, code = sh(q(BIN) .. " fill-mask --model " .. q(DIR) .. " 'no mask here'")
    assert.are.equal(1, code)
    assert.truthy(err:find("no mask token", 1, true))
    _, err, code = sh(q(BIN) .. " fill-mask --model " .. q(support.tmppath("nomodel")) .. " 'a [MASK]'")
    assert.are.equal(1, code)
    assert.truthy(err:find("not found", 1, true))
    _, err, code = sh(q(BIN) .. " fill-mask 'a [MASK]'")
    assert.are.equal(2, code)
    assert.truthy(err:find("--model", 1, true))
    _, err, code = sh(q(BIN) .. " fill-mask --model " .. q(DIR) .. " --top-k 0 'a [MASK]'")
    assert.are.equal(2, code)
    assert.truthy(err:find("--top-k must be an integer >= 1, got 0", 1, true), err)
    _, err, code = sh(q(BIN) .. " fill-mask --model " .. q(DIR) .. " --max-length 1.5 'a [MASK]'")
    assert.are.equal(2, code)
    assert.truthy(err:find("--max-length must be an integer >= 2, got 1.5", 1, true), err)
    _, err, code = sh(q(BIN) .. " fill-mask --model " .. q(DIR), "\n  \n") -- only blank lines on stdin
    assert.are.equal(2, code)
    assert.truthy(err:find("no texts", 1, true), err)
  end)
end)
