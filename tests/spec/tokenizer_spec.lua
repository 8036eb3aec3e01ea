-- tokenizer_spec.lua: mb.tokenizer against Hugging Face's output (../shared/fixtures/tokenizer):
-- all 20,000 emotion examples, every edge case (ids, tokens, truncation to 16), plus batches,
-- decoding, pairs, invalid UTF-8, argument errors, the tokenize CLI and the bench.
local mb = require "moonbert"
local json = require "dkjson"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local MODEL = SHARED .. "/models/distilbert-base-uncased"
local FIX = SHARED .. "/fixtures/tokenizer"
local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local have_model = exists(MODEL .. "/vocab.txt")
local tok = have_model and mb.tokenizer.load(MODEL) or nil

-- First 1-based position where two id lists differ, or nil.
local function first_diff(a, b)
  for i = 1, math.max(#a, #b) do
    if a[i] ~= b[i] then return i end
  end
  return nil
end

local function split_ids(s)
  local t = {}
  for v in s:gmatch("%d+") do t[#t + 1] = tonumber(v) end
  return t
end

local function read_emotion()
  local texts, want = {}, {}
  local ref = assert(io.open(FIX .. "/emotion_ids.tsv"))
  for _, split in ipairs { "train", "validation", "test" } do
    for line in io.lines(SHARED .. "/data/emotion/" .. split .. ".txt") do
      texts[#texts + 1] = line:match("^(.*);[^;]*$")
      local r = ref:read("l")
      local sp, idx, ids = r:match("^(%w+)\t(%d+)\t(.*)$")
      assert(sp == split, "fixture order: " .. tostring(sp) .. " vs " .. split)
      want[#want + 1] = split_ids(ids)
    end
  end
  ref:close()
  return texts, want
end

local function read_edge_cases()
  local cases = {}
  for line in io.lines(FIX .. "/edge_cases.jsonl") do
    cases[#cases + 1] = assert(json.decode(line))
  end
  return cases
end

describe("mb.tokenizer", function()
  -- Specs that need the real vocabulary skip (pending, with the reason) when ../shared is absent.
  local NO_MODEL = "distilbert-base-uncased not found under " .. SHARED .. "/models (../shared absent?)"

  it("loads distilbert-base-uncased with HF's attributes", function()
    if not tok then pending(NO_MODEL) return end
    assert.are.equal(30522, tok.vocab_size)
    assert.are.equal(512, tok.model_max_length)
    assert.are.same({ "input_ids", "attention_mask" }, tok.model_input_names)
    local s = tok:special_tokens()
    assert.are.equal("[CLS]", s.cls_token)
    assert.are.same({ 0, 100, 101, 102, 103 }, { s.pad_token_id, s.unk_token_id, s.cls_token_id, s.sep_token_id, s.mask_token_id })
    assert.are.equal(5, #s.all)
    assert.matches("moonbert.Tokenizer%(vocab_size=30522", tostring(tok))
  end)

  it("matches Hugging Face on all 20,000 emotion examples", function()
    if not tok then pending(NO_MODEL) return end
    if not exists(FIX .. "/emotion_ids.tsv") then pending("fixtures absent") return end
    local texts, want = read_emotion()
    assert.are.equal(20000, #texts)
    local got = tok:encode_batch(texts, { padding = false }).input_ids
    local bad, msg = 0, nil
    for i = 1, #texts do
      local d = first_diff(got[i], want[i])
      if d then
        bad = bad + 1
        msg = msg or string.format("example %d differs at position %d (got %s, want %s): %q", i, d,
          tostring(got[i][d]), tostring(want[i][d]), texts[i])
      end
    end
    assert(bad == 0, (msg or "") .. string.format(" [%d of %d differ]", bad, #texts))
    -- the same through the padded tensor path
    local b = tok:encode_batch(texts, { padding = "longest" })
    assert.are.same({ 20000, 87 }, b.input_ids:shape())
    local row = b.input_ids[12345]:totable()
    for t = 1, #want[12345] do assert.are.equal(want[12345][t], row[t]) end
    for t = #want[12345] + 1, 87 do assert.are.equal(0, row[t]) end
  end)

  it("matches every edge case: ids, tokens and the 16-token truncation", function()
    if not tok then pending(NO_MODEL) return end
    if not exists(FIX .. "/edge_cases.jsonl") then pending("fixtures absent") return end
    local cases = read_edge_cases()
    assert.are.equal(156, #cases)
    for _, c in ipairs(cases) do
      local e = tok:encode(c.text)
      local d = first_diff(e.input_ids, c.ids)
      assert(not d, string.format("ids differ at position %s for %q", tostring(d), c.text))
      local dt = first_diff(e.tokens, c.tokens)
      assert(not dt, string.format("tokens differ at position %s for %q", tostring(dt), c.text))
      local t16 = tok:encode(c.text, { max_length = 16 }).input_ids
      local d16 = first_diff(t16, c.truncated_ids_16)
      assert(not d16, string.format("truncated ids differ at position %s for %q", tostring(d16), c.text))
      for i = 1, #e.input_ids do assert.are.equal(1, e.attention_mask[i]) end
    end
  end)

  it("truncates at model_max_length by default and pads batches", function()
    if not tok then pending(NO_MODEL) return end
    local long = string.rep("hello ", 600)
    local e = tok:encode(long)
    assert.are.equal(512, #e.input_ids)
    assert.are.equal(102, e.input_ids[512])
    assert.are.equal(602, #tok:encode(long, { truncation = false }).input_ids)
    local b = tok:encode_batch({ "hello world", long, "" })
    assert.are.same({ 3, 512 }, b.input_ids:shape())
    assert.are.equal("int32", b.input_ids:dtype())
    assert.are.same({ 4, 512, 2 }, b.lengths:totable())
    assert.are.same({ 101, 7592, 2088, 102, 0 }, b.input_ids[1]:narrow(1, 1, 5):totable())
    assert.are.same({ 1, 1, 1, 1, 0 }, b.attention_mask[1]:narrow(1, 1, 5):totable())
    local m = tok:encode_batch({ "hello world", "i am so excited today!" }, { padding = "max_length", max_length = 6 })
    assert.are.same({ { 101, 7592, 2088, 102, 0, 0 }, { 101, 1045, 2572, 2061, 7568, 102 } }, m.input_ids:totable())
    assert.are.same({ 4, 6 }, tok:lengths({ "hello world", "i am so excited today!" }, { max_length = 6 }))
    assert.are.same({ 4, 8 }, tok:lengths({ "hello world", "i am so excited today!" }))
    local ragged = tok:encode_batch({ "hello world", "hi" }, { padding = false })
    assert.are.same({ { 101, 7592, 2088, 102 }, { 101, 7632, 102 } }, ragged.input_ids)
    assert.are.same({ 4, 3 }, ragged.lengths)
    assert.has_error(function() tok:encode_batch({ "a" }, { max_length = 1 }) end)
  end)

  it("encodes pairs with [SEP] between and longest_first truncation", function()
    if not tok then pending(NO_MODEL) return end
    local e = tok:encode("hello world", "good morning to you")
    assert.are.same({ 101, 7592, 2088, 102, 2204, 2851, 2000, 2017, 102 }, e.input_ids)
    local t = tok:encode("good morning to you", "hello world", { max_length = 6 })
    assert.are.same({ 101, 2204, 2851, 102, 7592, 102 }, t.input_ids)
    local b = tok:encode_batch({ "hello world" }, { "good morning to you" })
    assert.are.same({ 101, 7592, 2088, 102, 2204, 2851, 2000, 2017, 102 }, b.input_ids[1]:totable())
  end)

  it("decodes and converts like Hugging Face", function()
    if not tok then pending(NO_MODEL) return end
    local ids = tok:encode("Hello, world! I don't like tokenizing.").input_ids
    assert.are.equal("hello, world! i don't like tokenizing.", tok:decode(ids, { skip_special_tokens = true }))
    assert.are.equal("[CLS] hello, world! i don't like tokenizing. [SEP]", tok:decode(ids))
    local b = tok:encode_batch({ "hello world" })
    assert.are.equal("hello world", tok:decode(b.input_ids[1], { skip_special_tokens = true }))
    assert.are.same({ "[CLS]", "token", "##izing", "[SEP]" }, tok:convert_ids_to_tokens({ 101, 19204, 6026, 102 }))
    assert.are.equal("hello", tok:convert_ids_to_tokens(7592))
    assert.are.same({ 19204, 6026, 100 }, tok:convert_tokens_to_ids({ "token", "##izing", "no-such" }))
    assert.are.equal("tokenizing is fun", tok:convert_tokens_to_string({ "token", "##izing", "is", "fun" }))
    assert.are.equal(7592, tok:token_to_id("hello"))
    assert.is_nil(tok:token_to_id("Hello"))
    assert.are.equal("[MASK]", tok:id_to_token(103))
    assert.is_nil(tok:id_to_token(30522))
    assert.has_error(function() tok:decode({ 7592, 99999 }) end)
  end)

  it("gives byte offsets into the text", function()
    if not tok then pending(NO_MODEL) return end
    local text = "Héllo, tokenizing [MASK]!"
    local e = tok:encode(text, { return_offsets = true })
    assert.are.same({ "[CLS]", "hello", ",", "token", "##izing", "[MASK]", "!", "[SEP]" }, e.tokens)
    assert.are.equal("Héllo", text:sub(e.offsets[2][1], e.offsets[2][2]))
    assert.are.equal("izing", text:sub(e.offsets[5][1], e.offsets[5][2]))
    assert.are.equal("[MASK]", text:sub(e.offsets[6][1], e.offsets[6][2]))
    assert.are.same({ 0, 0 }, e.offsets[1])
  end)

  it("reads invalid UTF-8 as U+FFFD, which clean_text drops, and never crashes", function()
    if not tok then pending(NO_MODEL) return end
    local clean = tok:encode("hello world").input_ids
    for _, s in ipairs { "hello\128 world", "hel\192\175lo world", "hello \237\160\128world", "\255\254hello world\226\130" } do
      assert.are.same(clean, tok:encode(s).input_ids)
    end
    -- random bytes
    local rng = 12345
    for _ = 1, 300 do
      local bytes = {}
      for i = 1, 40 do
        rng = (rng * 1103515245 + 12345) % 2147483648
        bytes[i] = string.char(rng % 256)
      end
      local e = tok:encode(table.concat(bytes))
      assert.are.equal(101, e.input_ids[1])
      assert.are.equal(102, e.input_ids[#e.input_ids])
    end
  end)

  it("raises errors that name the function and argument", function()
    if not tok then pending(NO_MODEL) return end
    local ok, err = pcall(function() return tok:encode(nil) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'encode' %(string expected, got nil%)", err)
    ok, err = pcall(function() return tok:encode_batch({ "a", 3 }) end)
    assert.matches("texts%[2%] must be a string, got number", err)
    ok, err = pcall(function() return tok:encode_batch({ "a" }, { padding = "nope" }) end)
    assert.matches("padding must be", err)
    local t2 = mb.tokenizer.load(MODEL)
    t2:free()
    t2:free() -- idempotent
    ok, err = pcall(function() return t2:encode("x") end)
    assert.matches("tokenizer is freed", err)
  end)

  it("refuses a folder that does not exist", function()
    local missing = require("tests.spec.support").tmppath("no_tokenizer")
    local ok, err = pcall(mb.tokenizer.load, missing)
    assert.is_false(ok)
    assert.matches("not a directory", err)
  end)

  it("falls back to vocab.txt and honours a cased vocabulary", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(require("lfs").mkdir(dir))
    local f = assert(io.open(dir .. "/vocab.txt", "w"))
    f:write("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nHello\nhello\nWorld\n##s\ncafé\n!\n")
    f:close()
    f = assert(io.open(dir .. "/tokenizer_config.json", "w"))
    f:write('{"do_lower_case": false, "model_max_length": 128}')
    f:close()
    local t = mb.tokenizer.load(dir)
    assert.are.equal(11, t.vocab_size)
    assert.are.equal(128, t.model_max_length)
    assert.is_false(t.do_lower_case)
    assert.are.same({ "input_ids", "token_type_ids", "attention_mask" }, t.model_input_names)
    local e = t:encode("Hello hello Worlds! café HELLO")
    assert.are.same({ 2, 5, 6, 7, 8, 10, 9, 1, 3 }, e.input_ids)
    assert.are.same({ 0, 0, 0, 0, 0, 0, 0, 0, 0 }, e.token_type_ids)
    t:free()
    os.remove(dir .. "/vocab.txt")
    os.remove(dir .. "/tokenizer_config.json")
    os.remove(dir)
  end)

  it("moonbert tokenize prints one line of ids per input line", function()
    if not tok then pending(NO_MODEL) return end
    if not exists(BIN) then pending("no " .. BIN) return end
    local input = os.tmpname()
    local f = assert(io.open(input, "w"))
    f:write("i didnt feel humiliated\nHello, World!\n\n", string.rep("word ", 30), "\n")
    f:close()
    local p = assert(io.popen(BIN .. " tokenize --model '" .. MODEL .. "' --max-length 16 < " .. input))
    local out = {}
    for line in p:lines() do out[#out + 1] = line end
    assert.is_true(p:close())
    os.remove(input)
    assert.are.same({ "101 1045 2134 2102 2514 26608 102", "101 7592 1010 2088 999 102", "101 102",
      "101 " .. string.rep("2773 ", 14) .. "102" }, out)
  end)

  it("moonbert bench tokenize reports tokens/s", function()
    if not tok then pending(NO_MODEL) return end
    if not exists(BIN) or not exists(SHARED .. "/data/emotion/train.txt") then pending("no binary or data") return end
    local p = assert(io.popen(BIN .. " bench tokenize --quick 2>/dev/null"))
    local text = p:read("a")
    p:close()
    local r = assert(json.decode(text)).tokenize
    assert.are.equal(2000, r.texts)
    assert.is_true(r.tokens_per_s_1_thread > 0 and r.tokens_per_s_all_threads > 0)
  end)

  -- ---- pairs, strategies, offsets and overflowing windows (issue 25) --------------------------

  -- The fixture's pieces of a text: its ids without [CLS] and [SEP] (texts short enough not to be cut).
  local function pieces_of(c)
    local p = {}
    for i = 2, #c.ids - 1 do p[#p + 1] = c.ids[i] end
    return p
  end

  -- HF's rules for a pair truncated to max_length ([CLS] A [SEP] B [SEP]): how many pieces of A and B.
  local function keep_counts(na, nb, max_length, strategy)
    local total = max_length - 3
    if na + nb <= total then return na, nb end
    if strategy == "only_first" then return na - (na + nb - total), nb end
    if strategy == "only_second" then return na, nb - (na + nb - total) end
    -- longest_first as the Rust tokenizers (AutoTokenizer's fast tokenizer): the shorter keeps
    -- min(its length, total // 2), the longer (the second on ties) the rest
    local short = math.min(na, nb)
    local keep_short = math.min(short, total // 2)
    local keep_long = short > total // 2 and keep_short + total % 2 or total - keep_short
    if na > nb then return keep_long, keep_short end
    return keep_short, keep_long
  end

  it("encodes pairs of the fixture texts as HF's template, under each truncation strategy", function()
    if not tok then return end
    if not exists(FIX .. "/edge_cases.jsonl") then pending("fixtures absent") return end
    local cases = {}
    for _, c in ipairs(read_edge_cases()) do if #c.ids < 512 and #c.ids > 3 then cases[#cases + 1] = c end end
    local checked = 0
    for i = 1, #cases - 1 do
      local a, b = cases[i], cases[i + 1]
      local pa, pb = pieces_of(a), pieces_of(b)
      for _, strategy in ipairs { "longest_first", "only_first", "only_second" } do
        for _, max_length in ipairs { 512, 24 } do
          local ka, kb = keep_counts(#pa, #pb, max_length, strategy)
          if ka >= 1 and kb >= 1 then
            local e = tok:encode(a.text, b.text, { truncation = strategy, max_length = max_length })
            local want, types, seq = { 101 }, { 0 }, { -1 }
            for j = 1, ka do want[#want + 1] = pa[j]; types[#types + 1] = 0; seq[#seq + 1] = 0 end
            want[#want + 1] = 102; types[#types + 1] = 0; seq[#seq + 1] = -1
            for j = 1, kb do want[#want + 1] = pb[j]; types[#types + 1] = 1; seq[#seq + 1] = 1 end
            want[#want + 1] = 102; types[#types + 1] = 1; seq[#seq + 1] = -1
            local d = first_diff(e.input_ids, want)
            assert(not d, string.format("%s/%d: ids differ at %s for %q + %q", strategy, max_length, tostring(d), a.text, b.text))
            assert.are.same(seq, e.sequence_ids)
            checked = checked + 1
          else
            local ok, err = pcall(tok.encode, tok, a.text, b.text, { truncation = strategy, max_length = max_length })
            assert(not ok and err:find("too short", 1, true), strategy .. ": " .. tostring(err))
          end
        end
      end
    end
    assert.is_true(checked > 600, "only " .. checked .. " pairs checked")
  end)

  it("maps every word piece back to its bytes of the text (return_offsets_mapping)", function()
    if not tok then return end
    if not exists(FIX .. "/edge_cases.jsonl") then pending("fixtures absent") return end
    local n = 0
    for _, c in ipairs(read_edge_cases()) do
      if not c.text:find("[\128-\255]") and not c.text:find("%[%u+%]") then -- ASCII: lowercase is the normalizer
        local e = tok:encode(c.text, { return_offsets_mapping = true, truncation = false })
        for i, t in ipairs(e.tokens) do
          if e.sequence_ids[i] == 0 and t ~= "[UNK]" then
            local piece = t:gsub("^##", "")
            -- characters clean_text drops (controls) may sit inside a piece's span
            assert.are.equal(piece, (c.text:sub(e.offsets[i][1], e.offsets[i][2]):lower():gsub("%c", "")), c.text)
            n = n + 1
          end
        end
      end
    end
    assert.is_true(n > 1000, n .. " pieces")
  end)

  it("splits a long context into overflowing windows with stride", function()
    if not tok then return end
    local q = "what did the fox jump over?"
    local words = {}
    for i = 1, 90 do words[i] = ({ "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs" })[i % 8 + 1] end
    local ctx = table.concat(words, " ") .. "."
    local full = tok:encode(ctx, { truncation = false })
    local ctx_ids = {}
    for i = 2, #full.input_ids - 1 do ctx_ids[#ctx_ids + 1] = full.input_ids[i] end
    local nq = #tok:encode(q).input_ids - 2
    local max_length, stride = 40, 8
    local wins = tok:encode(q, ctx, { truncation = "only_second", max_length = max_length, stride = stride,
                                      return_overflowing_tokens = true, return_offsets_mapping = true })
    local m = max_length - 3 - nq -- context tokens per window
    local step = m - stride
    assert.are.equal(math.ceil((#ctx_ids - m) / step) + 1, #wins)
    local first = tok:encode(q, ctx, { truncation = "only_second", max_length = max_length })
    assert.are.same(first.input_ids, wins[1].input_ids)
    for w, e in ipairs(wins) do
      assert.is_true(#e.input_ids <= max_length)
      -- the question whole in every window, then the window's context tokens
      local got = {}
      for i, s in ipairs(e.sequence_ids) do
        if s == 1 then
          got[#got + 1] = e.input_ids[i]
        end
      end
      local start = (w - 1) * step
      for j = 1, #got do assert.are.equal(ctx_ids[start + j], got[j], "window " .. w .. " token " .. j) end
      if w < #wins then assert.are.equal(m, #got) else assert.are.equal(#ctx_ids, start + #got) end
      -- offsets of context tokens point into the context
      for i, s in ipairs(e.sequence_ids) do
        if s == 1 then
          local piece = e.tokens[i]:gsub("^##", "")
          assert.are.equal(piece, ctx:sub(e.offsets[i][1], e.offsets[i][2]))
        end
      end
    end
    -- a short context: one window
    assert.are.equal(1, #tok:encode(q, "the fox.", { truncation = "only_second", max_length = 40, stride = 8,
                                                  return_overflowing_tokens = true }))
    -- single sequences overflow too; pairs need only_first / only_second; the stride must fit
    local single = tok:encode(ctx, { max_length = 20, stride = 4, return_overflowing_tokens = true })
    assert.are.equal(math.ceil((#ctx_ids - 18) / 14) + 1, #single)
    assert.has_error(function() tok:encode(q, ctx, { max_length = 40, stride = 8, return_overflowing_tokens = true }) end)
    local ok, err = pcall(tok.encode, tok, q, ctx, { truncation = "only_second", max_length = 40, stride = 40,
                                                     return_overflowing_tokens = true })
    assert.is_false(ok)
    assert.matches("stride 40 must be smaller", err)
    ok, err = pcall(tok.encode, tok, ctx, q, { truncation = "only_second", max_length = 40 })
    assert.is_false(ok)
    assert.matches("only_second: the second sequence", err)
    assert.has_error(function() tok:encode(ctx, { truncation = "only_second", max_length = 40 }) end)
    -- batches take the strategy too
    local b = tok:encode_batch({ q }, { ctx }, { truncation = "only_second", max_length = 40 })
    assert.are.same(first.input_ids, b.input_ids[1]:totable())
    ok, err = pcall(tok.encode_batch, tok, { "x", ctx }, { "y", q }, { truncation = "only_second", max_length = 40 })
    assert.is_false(ok)
    assert.matches("text 2: truncation only_second", err)
  end)

  it("cased vocabularies: accents kept unless strip_accents, as the config says", function()
    local lfs = require "lfs"
    local function vocab_dir(config, tokenizer_json)
      local dir = os.tmpname()
      os.remove(dir)
      assert(lfs.mkdir(dir))
      local f = assert(io.open(dir .. "/vocab.txt", "w"))
      f:write("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nCafé\nCafe\ncafé\ncafe\nNaïve\nNaive\n##s\n.\n")
      f:close()
      f = assert(io.open(dir .. "/tokenizer_config.json", "w"))
      f:write(config)
      f:close()
      return dir
    end
    local cases = {
      -- do_lower_case false: strip_accents follows it (off): case and accents kept
      { '{"do_lower_case": false}', { 2, 5, 6, 7, 8, 9, 12, 3 } },
      -- strip_accents true without lowercasing: case kept, accents gone
      { '{"do_lower_case": false, "strip_accents": true}', { 2, 6, 6, 8, 8, 10, 12, 3 } },
      -- do_lower_case true: lowercased and (strip_accents null) accents stripped
      { '{"do_lower_case": true}', { 2, 8, 8, 8, 8, 1, 12, 3 } },
      -- lowercased but accents kept explicitly
      { '{"do_lower_case": true, "strip_accents": false}', { 2, 7, 8, 7, 8, 1, 12, 3 } },
    }
    for _, c in ipairs(cases) do
      local dir = vocab_dir(c[1])
      local t = mb.tokenizer.load(dir)
      local e = t:encode("Café Cafe café cafe Naïve.")
      assert.are.same(c[2], e.input_ids, c[1])
      t:free()
      for file in lfs.dir(dir) do if file ~= "." and file ~= ".." then os.remove(dir .. "/" .. file) end end
      os.remove(dir)
    end
  end)
end)
