-- data_spec.lua: mb.data loaders, splits and batches.
--
-- The emotion files are checked against the counts in ../shared/data/emotion/README.md.
-- Bad-input files are written to a temporary folder here. Batching is tested with a small
-- whitespace tokenizer defined below (same interface as mb.tokenizer: encode_batch returning
-- int32 tensors, lengths) so that padding can be counted independently, and with the real
-- DistilBERT tokenizer where mb.tokenizer and the model folder exist.
local mb = require "moonbert"
local T = require "moonbert.tensor"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local EMOTION = SHARED .. "/data/emotion"
local function exists(p) local f = io.open(p, "rb") if f then f:close() return true end return false end
local HAVE_EMOTION = exists(EMOTION .. "/train.txt")

local TMP = os.tmpname()
os.remove(TMP)
os.execute("mkdir -p '" .. TMP .. "'")
local function write(name, content)
  local path = TMP .. "/" .. name
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- The README's table: sadness joy love anger fear surprise.
local README_COUNTS = {
  train = { 4666, 5362, 1304, 2159, 1937, 572 },
  validation = { 550, 704, 178, 275, 212, 81 },
  test = { 581, 695, 159, 275, 224, 66 },
}

-- A whitespace tokenizer with mb.tokenizer's batch interface: [CLS]=101 words... [SEP]=102, [PAD]=0.
local function fake_tokenizer()
  local tok = { vocab = {}, next_id = 1000, model_max_length = 512 }
  local function ids_of(self, text, max_length)
    local ids = { 101 }
    for w in text:gmatch("%S+") do
      if not self.vocab[w] then self.vocab[w] = self.next_id self.next_id = self.next_id + 1 end
      ids[#ids + 1] = self.vocab[w]
    end
    ids[#ids + 1] = 102
    if max_length and #ids > max_length then
      local cut = {}
      for i = 1, max_length - 1 do cut[i] = ids[i] end
      cut[max_length] = 102
      ids = cut
    end
    return ids
  end
  function tok:lengths(texts, opts)
    local out = {}
    for i, t in ipairs(texts) do out[i] = #ids_of(self, t, opts and opts.truncation and opts.max_length) end
    return out
  end
  function tok:encode_batch(texts, opts)
    self.calls = (self.calls or 0) + 1
    local rows, width = {}, 0
    for i, t in ipairs(texts) do
      rows[i] = ids_of(self, t, opts.truncation and opts.max_length)
      width = math.max(width, #rows[i])
    end
    if opts.padding == "max_length" then width = opts.max_length end
    local ids, mask = {}, {}
    for i, r in ipairs(rows) do
      ids[i], mask[i] = {}, {}
      for j = 1, width do
        ids[i][j] = r[j] or 0
        mask[i][j] = r[j] and 1 or 0
      end
    end
    return { input_ids = T.from(ids, { dtype = "int32" }), attention_mask = T.from(mask, { dtype = "int32" }) }
  end
  return tok
end

describe("mb.data loaders", function()
  it("loads the emotion data with the README's line and class counts", function()
    if not HAVE_EMOTION then pending("../shared/data/emotion is absent") return end
    local d = mb.data.load_emotion(EMOTION)
    assert.same({ "sadness", "joy", "love", "anger", "fear", "surprise" }, d.label_names)
    for name, want in pairs(README_COUNTS) do
      local s = d[name]
      local total = 0
      for _, c in ipairs(want) do total = total + c end
      assert.equal(total, #s)
      assert.same(want, (s:class_counts()))
      assert.same(d.label_names, s.label_names)
      assert.equal(0, s.skipped)
    end
    -- first line of train.txt: "i didnt feel humiliated;sadness"; label 0 is sadness
    assert.equal("i didnt feel humiliated", d.train.text[1])
    assert.equal(0, d.train.label[1])
    assert.equal("sadness", d.train[1].label_name)
    local _, by_name = d.train:class_counts()
    assert.equal(5362, by_name.joy)
  end)

  it("reads val.txt when validation.txt is absent", function()
    os.execute("mkdir -p '" .. TMP .. "/emo'")
    write("emo/train.txt", "i feel happy;joy\ni feel sad;sadness\n")
    write("emo/val.txt", "so scared;fear\n")
    write("emo/test.txt", "what a surprise;surprise\n")
    local d = mb.data.load_emotion(TMP .. "/emo")
    assert.equal(1, #d.validation)
    assert.equal(4, d.validation.label[1])
    assert.equal(5, d.test.label[1])
  end)

  it("load_text splits on the last separator and accepts label-first lines", function()
    local p = write("semi.txt", "a;b;c;joy\r\nplain;sadness\n")
    local s = mb.data.load_text(p, { sep = ";", names = { "text", "label" } })
    assert.equal("a;b;c", s.text[1])
    assert.equal("plain", s.text[2])
    assert.same({ "joy", "sadness" }, s.label_names) -- inferred: sorted
    assert.same({ 0, 1 }, s.label)
    local q = write("labelfirst.tsv", "joy\tx\ty\nsadness\tz\n")
    local s2 = mb.data.load_text(q, { sep = "\t", names = { "label", "text" } })
    assert.same({ "x\ty", "z" }, s2.text)
    assert.matches("names", errmsg(mb.data.load_text, p, { names = { "a", "b" } }))
  end)

  it("infers names for integer labels and accepts ids with label_names", function()
    local p = write("ids.txt", "a;2\nb;0\nc;2\n")
    local s = mb.data.load_text(p)
    assert.same({ "0", "1", "2" }, s.label_names)
    assert.same({ 2, 0, 2 }, s.label)
    local s2 = mb.data.load_text(p, { label_names = { "x", "y", "z" } })
    assert.same({ 2, 0, 2 }, s2.label)
    assert.equal("z", s2[1].label_name)
  end)

  it("load_csv handles RFC 4180 quoting, CRLF and embedded newlines", function()
    local p = write("q.csv", 'id,text,label\r\n1,"hello, world",joy\r\n2,"she said ""hi""\r\nthen left",sadness\r\n'
                               .. '3,plain,"joy"\r\n')
    local s = mb.data.load_csv(p, { header = true, text_column = "text", label_column = "label" })
    assert.equal(3, #s)
    assert.equal("hello, world", s.text[1])
    assert.equal('she said "hi"\r\nthen left', s.text[2])
    assert.same({ 0, 1, 0 }, s.label)
    local n = write("noheader.csv", "joy,first text\nfear,second\n")
    local s2 = mb.data.load_csv(n, { header = false, text_column = 2, label_column = 1 })
    assert.same({ "first text", "second" }, s2.text)
    assert.same({ "fear", "joy" }, s2.label_names)
    local d = write("semi.csv", "text;label\n\"a;b\";joy\n")
    assert.equal("a;b", mb.data.load_csv(d, { delimiter = ";" }).text[1])
  end)

  it("load_jsonl reads string and integer labels and other field names", function()
    local p = write("d.jsonl", '{"sentence": "caf\\u00e9 time", "y": 1, "extra": [1]}\n{"y": 0, "sentence": "b"}\n')
    local s = mb.data.load_jsonl(p, { text_field = "sentence", label_field = "y",
                                      label_names = { "neg", "pos" } })
    assert.same({ "café time", "b" }, s.text)
    assert.same({ 1, 0 }, s.label)
  end)

  it("from_table builds a split from ids or names", function()
    local s = mb.data.from_table { text = { "a", "b" }, label = { "joy", "fear" }, label_names = mb.data.EMOTION_LABELS }
    assert.same({ 1, 4 }, s.label)
    assert.matches("unknown label 'calm'", errmsg(mb.data.from_table, { text = { "a" }, label = { "calm" },
                                                                     label_names = { "joy" } }))
  end)
end)

describe("mb.data bad input", function()
  it("names file and line for a line without separator", function()
    local p = write("nosep.txt", "good;joy\nno separator here\n")
    local e = errmsg(mb.data.load_text, p)
    assert.truthy(e:find(p .. ":2: no ';' separator", 1, true), e)
  end)

  it("names file and line for an empty text", function()
    local p = write("empty.txt", "good;joy\n;joy\n")
    local e = errmsg(mb.data.load_text, p)
    assert.truthy(e:find(p .. ":2: empty text", 1, true), e)
  end)

  it("lists the known labels for an unknown label", function()
    local p = write("unknown.txt", "good;joy\nbad;happiness\n")
    local e = errmsg(mb.data.load_text, p, { label_names = mb.data.EMOTION_LABELS })
    assert.truthy(e:find(p .. ":2: unknown label 'happiness' (known labels: sadness, joy, love, anger, fear, surprise)",
                         1, true), e)
    -- an id beyond the names is unknown too
    local q = write("badid.txt", "x;6\n")
    assert.matches("unknown label '6'", errmsg(mb.data.load_text, q, { label_names = mb.data.EMOTION_LABELS }))
  end)

  it("names a missing file", function()
    local e = errmsg(mb.data.load_text, TMP .. "/does-not-exist.txt")
    assert.truthy(e:find("does-not-exist.txt: cannot open: No such file or directory", 1, true), e)
    assert.matches("train.txt: cannot open", errmsg(mb.data.load_emotion, TMP .. "/nowhere"))
  end)

  it("names a missing CSV column and lists the header", function()
    local p = write("cols.csv", "sentence,label\nx,joy\n")
    local e = errmsg(mb.data.load_csv, p, { text_column = "text" })
    assert.truthy(e:find(p .. ":1: no column 'text' in the header (columns: 'sentence', 'label')", 1, true), e)
  end)

  it("names a broken JSON line", function()
    local p = write("broken.jsonl", '{"text": "a", "label": "joy"}\n{"text": "b", "label": \n')
    local e = errmsg(mb.data.load_jsonl, p)
    assert.truthy(e:find(p .. ":2: invalid JSON", 1, true), e)
    local q = write("nofield.jsonl", '{"txt": "a", "label": "joy"}\n')
    assert.truthy(errmsg(mb.data.load_jsonl, q):find("no field 'text' (fields: 'txt', 'label')", 1, true))
  end)

  it("on_error='skip' skips bad lines and counts them", function()
    local p = write("mixed.txt", "good one;joy\nno separator\n;joy\ngood two;fear\nbad label;happiness\n")
    local s = mb.data.load_text(p, { on_error = "skip", quiet = true, label_names = mb.data.EMOTION_LABELS })
    assert.same({ "good one", "good two" }, s.text)
    assert.same({ 1, 4 }, s.label)
    assert.equal(3, s.skipped)
    assert.equal(3, #s.skip_messages)
    assert.truthy(s.skip_messages[1]:find(p .. ":2:", 1, true))
    assert.truthy(s.skip_messages[3]:find("unknown label 'happiness'", 1, true))
    local c = write("mixed.csv", 'text,label\nok,joy\n"bad"x,joy\na,b,c\nfine,fear\n')
    local s2 = mb.data.load_csv(c, { on_error = "skip", quiet = true })
    assert.equal(2, #s2)
    assert.equal(2, s2.skipped)
    local j = write("mixed.jsonl", '{"text":"a","label":"joy"}\n{oops\n{"text":"b","label":"joy"}\n')
    local s3 = mb.data.load_jsonl(j, { on_error = "skip", quiet = true })
    assert.equal(2, #s3)
    assert.equal(1, s3.skipped)
    assert.matches("on_error", errmsg(mb.data.load_text, p, { on_error = "ignore" }))
  end)

  it("an empty file is an error, not an empty data set", function()
    local p = write("empty-file.txt", "")
    assert.matches("no examples", errmsg(mb.data.load_text, p))
  end)

  it("argument errors name the function and argument", function()
    assert.matches("bad argument #1 to 'load_text' %(string expected, got nil%)", errmsg(mb.data.load_text))
    assert.matches("bad argument #2 to 'load_csv'", errmsg(mb.data.load_csv, "x.csv", 5))
  end)
end)

describe("mb.data splits", function()
  local function toy()
    return mb.data.from_table {
      text = { "a b", "c", "d e f", "g", "h i", "j", "k l m n", "o", "p q", "r" },
      label = { 0, 1, 0, 1, 0, 2, 1, 0, 2, 0 },
      label_names = { "x", "y", "z" },
    }
  end

  it("is columnar with 1-based positions and 0-based label ids", function()
    local s = toy()
    assert.equal(10, #s)
    assert.equal("d e f", s.text[3])
    assert.same({ text = "c", label = 1, label_name = "y" }, s[2])
    assert.is_nil(s[11])
    assert.matches("10 examples", tostring(s))
  end)

  it("select, filter and map keep label names and make new splits", function()
    local s = toy()
    local sel = s:select { 3, 1, 3 }
    assert.same({ "d e f", "a b", "d e f" }, sel.text)
    assert.same(s.label_names, sel.label_names)
    assert.matches("not a position in 1..10", errmsg(s.select, s, { 11 }))
    local f = s:filter(function(r) return r.label_name == "x" end)
    assert.same({ 0, 0, 0, 0, 0 }, f.label)
    local m = s:map(function(r) return { text = r.text:upper(), label = "z", n = #r.text } end)
    assert.equal("D E F", m.text[3])
    assert.equal(2, m.label[1])
    assert.equal(5, m.n[3])
    assert.equal(5, m[3].n)
    assert.equal("a b", s.text[1]) -- the original is unchanged
    assert.matches("label 7 is not an id", errmsg(s.map, s, function(r) return { text = r.text, label = 7 } end))
  end)

  it("shuffle is a seeded permutation", function()
    local s = toy()
    local a, b, c = s:shuffle(1), s:shuffle(1), s:shuffle(2)
    assert.same(a.text, b.text)
    assert.are_not.same(a.text, c.text)
    local seen = {}
    for i = 1, #a do seen[a.text[i]] = (seen[a.text[i]] or 0) + 1 end
    for _, t in ipairs(s.text) do assert.equal(1, seen[t]) end
    -- text and label travel together
    for i = 1, #a do
      for j = 1, #s do if s.text[j] == a.text[i] then assert.equal(s.label[j], a.label[i]) end end
    end
  end)

  it("train_test_split partitions, stratifies and is seeded", function()
    if not HAVE_EMOTION then pending("../shared/data/emotion is absent") return end
    local train = mb.data.load_emotion(EMOTION).train
    local parts = train:train_test_split { test_size = 0.2, seed = 42, stratify = true }
    assert.equal(3200, #parts.test)
    assert.equal(12800, #parts.train)
    -- each class's test share is within one example of 20%
    local all, te = train:class_counts(), parts.test:class_counts()
    for k = 1, 6 do assert.is_true(math.abs(te[k] - 0.2 * all[k]) < 1, k) end
    -- a partition: every text of train appears as often in train+test as in the source
    local count = {}
    for _, t in ipairs(train.text) do count[t] = (count[t] or 0) + 1 end
    for _, p in ipairs { parts.train, parts.test } do
      for _, t in ipairs(p.text) do count[t] = count[t] - 1 end
    end
    for _, v in pairs(count) do assert.equal(0, v) end
    local again = train:train_test_split { test_size = 0.2, seed = 42, stratify = true }
    assert.same(parts.test.text, again.test.text)
    local other = train:train_test_split { test_size = 0.2, seed = 7, stratify = true }
    assert.are_not.same(parts.test.text, other.test.text)
    local plain = train:select { 1, 2, 3, 4, 5 }:train_test_split { test_size = 2, shuffle = false }
    assert.same({ train.text[4], train.text[5] }, plain.test.text)
    assert.matches("test_size", errmsg(train.train_test_split, train, { test_size = 1.5 }))
  end)

  it("words_per_text counts whitespace-separated words", function()
    local s = mb.data.from_table { text = { "one", "two  words", " three\tword  text " }, label = { 0, 0, 0 } }
    assert.same({ 1, 2, 3 }, s:words_per_text())
    if HAVE_EMOTION then
      -- the emotion texts are single-spaced: words = spaces + 1
      local train = mb.data.load_emotion(EMOTION).train
      local w = train:words_per_text()
      for i = 1, #train, 97 do
        local _, spaces = train.text[i]:gsub(" ", "")
        assert.equal(spaces + 1, w[i])
      end
    end
  end)

  it("hash changes with content and order, not with how the split was built", function()
    local s = toy()
    local h = s:hash()
    assert.matches("^%x+$", h)
    assert.equal(16, #h)
    assert.equal(h, toy():hash())
    assert.equal(h, s:select { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }:hash())
    assert.are_not.equal(h, s:shuffle(3):hash())
    local relabel = s:map(function(r, i) return { text = r.text, label = i == 4 and 2 or r.label } end)
    assert.are_not.equal(h, relabel:hash())
    local retext = s:map(function(r, i) return { text = i == 4 and "G" or r.text, label = r.label } end)
    assert.are_not.equal(h, retext:hash())
  end)
end)

describe("mb.data batches", function()
  local function corpus(n)
    local text, label = {}, {}
    local state = 12345
    for i = 1, n do
      state = (state * 1103515245 + 12345) % 2147483648
      local words = {}
      for w = 1, 1 + state % 40 do words[w] = "w" .. ((state + w * 7) % 50) end
      text[i], label[i] = table.concat(words, " "), i % 3
    end
    return mb.data.from_table { text = text, label = label, label_names = { "a", "b", "c" } }
  end

  -- Count padding in the tensors themselves.
  local function measure(s, opts)
    local tok = opts.tokenizer
    local seen, tokens, slots, nb = {}, 0, 0, 0
    local lengths = s:lengths(tok, { max_length = opts.max_length })
    for b in s:batches(opts) do
      nb = nb + 1
      local shape = b.input_ids:shape()
      assert.equal(#b.indices, shape[1])
      assert.same(shape, b.attention_mask:shape())
      assert.equal("int32", b.input_ids:dtype())
      assert.equal("int32", b.labels:dtype())
      local mask = b.attention_mask:totable()
      local labels = b.labels:totable()
      for r, i in ipairs(b.indices) do
        assert.is_nil(seen[i], "example seen twice")
        seen[i] = true
        assert.equal(s.label[i], labels[r])
        local real = 0
        for _, m in ipairs(mask[r]) do real = real + m end
        assert.equal(lengths[i], real)
        tokens = tokens + real
      end
      slots = slots + shape[1] * shape[2]
    end
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    return { count = count, tokens = tokens, slots = slots, fraction = (slots - tokens) / slots, batches = nb }
  end

  it("every example once, labels aligned, stats equal the padding in the tensors", function()
    local s = corpus(300)
    for _, opts in ipairs {
      { batch_size = 16, shuffle = true, seed = 42, bucket = true },
      { batch_size = 16, shuffle = true, seed = 42 },
      { batch_size = 16, padding = "global" },
      { batch_size = 7, shuffle = true, seed = 1, bucket = true, bucket_chunks = 3 },
    } do
      opts.tokenizer = fake_tokenizer()
      local m = measure(s, opts)
      assert.equal(300, m.count)
      local st = s:batches(opts):stats()
      assert.equal(m.tokens, st.tokens)
      assert.equal(m.slots, st.slots)
      assert.equal(m.batches, st.batches)
      assert.is_true(math.abs(st.padding_fraction - m.fraction) < 1e-12)
    end
  end)

  it("bucketing pads less than random batches, which pad less than global padding", function()
    local s = corpus(2000)
    local tok = fake_tokenizer()
    local bucket = mb.data.padding_fraction(s, tok, { batch_size = 64, shuffle = true, seed = 42, bucket = true })
    local random = mb.data.padding_fraction(s, tok, { batch_size = 64, shuffle = true, seed = 42 })
    local global = mb.data.padding_fraction(s, tok, { batch_size = 64, shuffle = true, seed = 42, padding = "global" })
    assert.is_true(bucket < 0.05, bucket)
    assert.is_true(bucket < random / 4, bucket .. " vs " .. random)
    assert.is_true(random < global)
    local b = s:batches { tokenizer = tok, batch_size = 64, padding = "global" }
    assert.equal(b:stats().longest, b:get(1).input_ids:size(2))
  end)

  it("is deterministic in seed and epoch; drop_last drops the short batch", function()
    local s = corpus(100)
    local tok = fake_tokenizer()
    local function order(o)
      o.tokenizer = tok
      local out = {}
      for b in s:batches(o) do for _, i in ipairs(b.indices) do out[#out + 1] = i end end
      return out
    end
    local o = { batch_size = 8, shuffle = true, seed = 5, bucket = true }
    assert.same(order(o), order { batch_size = 8, shuffle = true, seed = 5, bucket = true })
    assert.are_not.same(order(o), order { batch_size = 8, shuffle = true, seed = 5, bucket = true, epoch = 2 })
    local plain = order { batch_size = 8 }
    for i = 1, 100 do assert.equal(i, plain[i]) end
    local b = s:batches { tokenizer = tok, batch_size = 8, drop_last = true }
    assert.equal(12, #b)
    -- the iterator starts over after the end
    local n1, n2 = 0, 0
    for _ in b do n1 = n1 + 1 end
    for _ in b do n2 = n2 + 1 end
    assert.equal(12, n1)
    assert.equal(12, n2)
  end)

  it("padding='max_length' pads and truncates every batch to max_length", function()
    local s = corpus(50)
    local tok = fake_tokenizer()
    local lengths = s:lengths(tok, { max_length = 8 })
    for _, n in ipairs(lengths) do assert.is_true(n <= 8) end
    local m = measure(s, { tokenizer = tok, batch_size = 16, padding = "max_length", max_length = 8 })
    assert.equal(50, m.count)
    assert.equal(50 * 8, m.slots)
    assert.matches("max_length", errmsg(s.batches, s, { tokenizer = tok, padding = "max_length" }))
  end)

  it("checks its options", function()
    local s = corpus(10)
    assert.matches("tokenizer", errmsg(s.batches, s, { batch_size = 4 }))
    assert.matches("padding", errmsg(s.batches, s, { tokenizer = fake_tokenizer(), padding = "most" }))
    assert.matches("batch_size", errmsg(s.batches, s, { tokenizer = fake_tokenizer(), batch_size = 0 }))
  end)

  it("emotion train with the DistilBERT tokenizer: bucketing keeps padding small", function()
    local model = SHARED .. "/models/distilbert-base-uncased"
    local ok, tokmod = pcall(function() return mb.tokenizer end)
    if not (HAVE_EMOTION and ok and tokmod and tokmod.load and exists(model .. "/vocab.txt")) then
      pending("needs mb.tokenizer, ../shared/models/distilbert-base-uncased and the emotion data")
      return
    end
    local tok = tokmod.load(model)
    local train = mb.data.load_emotion(EMOTION).train
    local o = { batch_size = 64, shuffle = true, seed = 42 }
    local random = mb.data.padding_fraction(train, tok, o)
    o.bucket = true
    local bucket = mb.data.padding_fraction(train, tok, o)
    o.bucket, o.padding = nil, "global"
    local global = mb.data.padding_fraction(train, tok, o)
    print(string.format("\n# emotion train padded-token fraction: bucket %.4f, longest %.4f, global %.4f",
                        bucket, random, global))
    assert.is_true(bucket < 0.05) -- measured 0.037 with 50-batch chunks
    assert.is_true(bucket < random and random < global)
    -- lengths agree with encoding one text at a time
    local lengths = train:lengths(tok)
    for i = 1, #train, 1601 do
      assert.equal(#tok:encode(train.text[i]).input_ids, lengths[i])
    end
    local b = train:batches { tokenizer = tok, batch_size = 64, shuffle = true, seed = 42, bucket = true }:get(1)
    assert.equal(64, b.input_ids:size(1))
    assert.equal(101, b.input_ids[1][1]) -- [CLS]
  end)
end)
