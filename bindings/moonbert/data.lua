-- moonbert.data (mb.data): labelled text data sets, splits and padded batches.
--
--   local data = mb.data.load_emotion("../shared/data/emotion")   -- {train=, validation=, test=, label_names=}
--   local s = mb.data.load_text(path, {sep=";", names={"text","label"}})
--   local s = mb.data.load_csv(path, {header=true, text_column="text", label_column="label"})
--   local s = mb.data.load_jsonl(path, {text_field="text", label_field="label"})
--   s.text[1], s.label[1], #s, s[1] --> {text=, label=, label_name=}
--   s:map(fn) s:filter(fn) s:select{1, 5, 9} s:shuffle(seed) s:train_test_split{test_size=0.2, seed=42, stratify=true}
--   s:class_counts() s:lengths(tok) s:words_per_text() s:hash()
--   for b in s:batches{tokenizer=tok, batch_size=64, shuffle=true, seed=42, bucket=true} do
--     -- b.input_ids, b.attention_mask: int32 [B,T]; b.labels: int32 [B]; b.indices: 1-based positions
--   end
--
-- A split is columnar: split.text and split.label are Lua arrays (positions 1-based), labels are
-- 0-based ids into split.label_names (label 0 of the emotion data is "sadness"). Splits are values:
-- every method returns a new split and leaves the old one as it was; do not edit split.text in place.
--
-- Labels in files are names or ids. With {label_names=...} a label must be one of the names or an
-- id 0..#names-1. Without it: if every label is a non-negative integer the ids are kept and the
-- names are "0".."max"; otherwise the names are the distinct labels in sorted (byte) order.
--
-- Bad input raises "PATH:LINE: what is wrong" (a missing separator, an empty text, an unknown
-- label with the known ones listed, a missing CSV column, a broken JSON line, a missing file).
-- {on_error="skip"} skips bad lines instead; split.skipped counts them, split.skip_messages keeps
-- the first few, and a one-line note goes to stderr (unless {quiet=true}).
--
-- Parsing is C (runtime/textdata.c through bindings/data.c); this file is the rest.
local core = require("moonbert.core").data
local check = require "moonbert.check"

local M = {}

M.EMOTION_LABELS = { "sadness", "joy", "love", "anger", "fear", "surprise" }

-- ---- argument checks ---------------------------------------------------------

-- Errors point at the user's code: the first Lua frame outside this file.
local THIS_FILE = debug.getinfo(1, "S").source

local function raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return error(msg, 0) end
    if info.source ~= THIS_FILE and info.what ~= "C" then break end
    level = level + 1
  end
  error(msg, level)
end

-- argument errors: moonbert.check, blaming the first frame outside this file
local function argerror(n, fname, msg) check.arg(n, fname, msg, THIS_FILE) end

local function check_type(fname, n, v, want, optional)
  if v == nil and optional then return end
  if type(v) ~= want then
    argerror(n, fname, string.format("%s expected, got %s", want, type(v)))
  end
end

-- Call a core function; its errors are re-raised at the user's call site.
local function call_core(fn, ...)
  local ok, res = pcall(fn, ...)
  if not ok then
    raise((tostring(res):gsub("^[^\n]-data%.lua:%d+: ", "")))
  end
  return res
end

local function check_opts(fname, n, opts)
  if opts == nil then return {} end
  check_type(fname, n, opts, "table")
  return opts
end

-- ---- labels --------------------------------------------------------------------

local function is_id_string(s) return s:match("^%d+$") ~= nil and #s < 16 end

local function copy_names(names)
  local out = {}
  for i, v in ipairs(names) do out[i] = v end
  return out
end

local function check_label_names(fname, n, names)
  if type(names) ~= "table" or #names == 0 then
    argerror(n, fname, "field 'label_names' must be a non-empty array of strings")
  end
  local seen = {}
  for i, v in ipairs(names) do
    if type(v) ~= "string" then
      argerror(n, fname, string.format("label_names[%d] must be a string, got %s", i, type(v)))
    end
    if seen[v] then argerror(n, fname, string.format("label_names has '%s' twice", v)) end
    seen[v] = true
  end
end

-- Raw labels (strings from a file, or strings/integers from a table) to 0-based ids.
-- where(i) names the record in messages. Returns ids, label_names, kept positions
-- (nil when all kept), and the skip messages.
local function resolve_labels(raw, label_names, where, on_skip)
  local n = #raw
  local ids, keep, msgs = {}, nil, {}
  if not label_names then
    local all_ids, max_id = true, -1
    for i = 1, n do
      local v = raw[i]
      if math.type(v) == "integer" then v = tostring(v) end
      if not (type(v) == "string" and is_id_string(v)) then all_ids = false break end
      max_id = math.max(max_id, tonumber(v))
    end
    if all_ids and n > 0 then
      label_names = {}
      for id = 0, max_id do label_names[id + 1] = tostring(id) end
    else
      local seen, names = {}, {}
      for i = 1, n do
        local v = tostring(raw[i])
        if not seen[v] then seen[v] = true names[#names + 1] = v end
      end
      table.sort(names)
      label_names = names
    end
  end
  local index = {}
  for i, name in ipairs(label_names) do index[name] = i - 1 end
  local K = #label_names
  for i = 1, n do
    local v = raw[i]
    local id = index[v]
    if id == nil then
      local s = math.type(v) == "integer" and tostring(v) or v
      if type(s) == "string" and is_id_string(s) and tonumber(s) < K then
        id = tonumber(s) // 1
      elseif type(s) == "string" then
        id = index[s]
      end
    end
    if id == nil then
      local msg = string.format("%s: unknown label '%s' (known labels: %s)", where(i), tostring(v),
                                table.concat(label_names, ", "))
      if not on_skip then raise(msg) end
      msgs[#msgs + 1] = msg
      if not keep then
        keep = {}
        for j = 1, i - 1 do keep[#keep + 1] = j end
      end
    else
      ids[#ids + 1] = id
      if keep then keep[#keep + 1] = i end
    end
  end
  return ids, label_names, keep, msgs
end

-- ---- the split object ------------------------------------------------------------

local Split = {}
M.Split = Split

-- Names that cannot be columns (they are methods or split metadata).
local RESERVED = { columns = true, label_names = true, skipped = true, skip_messages = true,
                   source = true, _cache = true, label_name = true }

local split_mt = {
  __name = "moonbert.Split",
  __len = function(s) return #s.text end,
  __index = function(s, k)
    if math.type(k) == "integer" then return Split.row(s, k) end
    return Split[k]
  end,
  __tostring = function(s)
    return string.format("moonbert.Split(%d examples; labels: %s)", #s.text, table.concat(s.label_names, ", "))
  end,
}

local function new_split(cols, columns, label_names, meta)
  local s = { columns = columns, label_names = label_names, skipped = 0, skip_messages = {} }
  for _, c in ipairs(columns) do s[c] = cols[c] end
  if meta then for k, v in pairs(meta) do s[k] = v end end
  s._cache = setmetatable({}, { __mode = "k" })
  return setmetatable(s, split_mt)
end

function M.is_split(x) return getmetatable(x) == split_mt end

local function check_split(fname, s)
  if getmetatable(s) ~= split_mt then
    argerror(1, fname, "moonbert.Split expected, got " .. type(s))
  end
end

-- split[i] / split:row(i): one example as a table, with the label's name.
function Split.row(s, i)
  local n = #s.text
  if i < 1 or i > n then return nil end
  local r = {}
  for _, c in ipairs(s.columns) do r[c] = s[c][i] end
  r.label_name = s.label_names[s.label[i] + 1]
  return r
end

-- A new split with the examples at the given 1-based positions, in that order (repeats allowed).
function Split:select(indices)
  check_split("select", self)
  check_type("select", 1, indices, "table")
  local n = #self.text
  local cols = {}
  for _, c in ipairs(self.columns) do cols[c] = {} end
  for k = 1, #indices do
    local i = indices[k]
    if math.type(i) ~= "integer" or i < 1 or i > n then
      argerror(1, "select", string.format("indices[%d] = %s is not a position in 1..%d", k, tostring(i), n))
    end
    for _, c in ipairs(self.columns) do cols[c][k] = self[c][i] end
  end
  return new_split(cols, copy_names(self.columns), copy_names(self.label_names), { source = self.source })
end

function Split:head(n)
  check_split("head", self)
  local idx = {}
  for i = 1, math.min(n or 5, #self.text) do idx[i] = i end
  return self:select(idx)
end

function Split:filter(fn)
  check_split("filter", self)
  if type(fn) ~= "function" then argerror(1, "filter", "function expected, got " .. type(fn)) end
  local idx = {}
  for i = 1, #self.text do
    if fn(self:row(i), i) then idx[#idx + 1] = i end
  end
  return self:select(idx)
end

-- fn(row, i) returns the new row (a table). Its keys become the columns: text and label are
-- required, other keys are extra columns; label_name is derived from label and ignored.
-- A label may come back as an id or as one of the label names.
function Split:map(fn)
  check_split("map", self)
  if type(fn) ~= "function" then argerror(1, "map", "function expected, got " .. type(fn)) end
  local n, rows, extra, seen = #self.text, {}, {}, {}
  for i = 1, n do
    local r = fn(self:row(i), i)
    if type(r) ~= "table" then
      raise(string.format("map: the function returned %s for row %d (a table expected)", type(r), i))
    end
    rows[i] = r
    for k in pairs(r) do
      if type(k) ~= "string" then
        raise(string.format("map: row %d has a non-string key %s", i, tostring(k)))
      end
      if k ~= "text" and k ~= "label" and k ~= "label_name" and not seen[k] then
        if RESERVED[k] or Split[k] then
          raise(string.format("map: '%s' cannot be a column name (it is a split field or method)", k))
        end
        seen[k] = true
        extra[#extra + 1] = k
      end
    end
  end
  table.sort(extra)
  local columns = { "text", "label" }
  for _, k in ipairs(extra) do columns[#columns + 1] = k end
  local cols = {}
  for _, c in ipairs(columns) do cols[c] = {} end
  local index = {}
  for id, name in ipairs(self.label_names) do index[name] = id - 1 end
  for i = 1, n do
    local r = rows[i]
    if type(r.text) ~= "string" then
      raise(string.format("map: row %d: text must be a string, got %s", i, type(r.text)))
    end
    local label = r.label
    if type(label) == "string" then label = index[label] end
    if math.type(label) ~= "integer" or label < 0 or label >= #self.label_names then
      raise(string.format("map: row %d: label %s is not an id in 0..%d or a label name (%s)", i,
                          tostring(r.label), #self.label_names - 1, table.concat(self.label_names, ", ")))
    end
    cols.text[i], cols.label[i] = r.text, label
    for _, k in ipairs(extra) do cols[k][i] = r[k] end
  end
  return new_split(cols, columns, copy_names(self.label_names), { source = self.source })
end

-- A seeded shuffle (the runtime's xoshiro256**; the same seed gives the same order everywhere).
function Split:shuffle(seed)
  check_split("shuffle", self)
  if seed ~= nil and math.type(seed) ~= "integer" then argerror(1, "shuffle", "integer seed expected") end
  return self:select(core.permutation(#self.text, seed or 0))
end

-- {train=, test=}. test_size: a fraction in (0,1) (rounded up, as scikit-learn) or a count.
-- stratify=true keeps each class's share in both parts (largest-remainder allocation).
function Split:train_test_split(opts)
  check_split("train_test_split", self)
  opts = check_opts("train_test_split", 1, opts)
  local n = #self.text
  local ts = opts.test_size == nil and 0.25 or opts.test_size
  local n_test
  if math.type(ts) == "integer" then
    n_test = ts
  elseif type(ts) == "number" and ts > 0 and ts < 1 then
    n_test = math.ceil(ts * n - 1e-9)
  else
    argerror(1, "train_test_split", "test_size must be a fraction in (0,1) or a count, got " .. tostring(ts))
  end
  if n_test < 1 or n_test >= n then
    argerror(1, "train_test_split", string.format("test_size gives %d test examples out of %d; need 1..%d",
                                                  n_test, n, n - 1))
  end
  local seed = opts.seed or 0
  local shuffle = opts.shuffle ~= false
  local order
  if shuffle then order = core.permutation(n, seed) else order = {} for i = 1, n do order[i] = i end end
  local is_test = {}
  if opts.stratify then
    local by_class, K = {}, #self.label_names
    for c = 0, K - 1 do by_class[c] = {} end
    for _, i in ipairs(order) do local g = by_class[self.label[i]] g[#g + 1] = i end
    local quota, total, rema = {}, 0, {}
    for c = 0, K - 1 do
      local exact = n_test * #by_class[c] / n
      quota[c] = math.floor(exact)
      total = total + quota[c]
      rema[#rema + 1] = { c = c, r = exact - quota[c] }
    end
    table.sort(rema, function(a, b) if a.r ~= b.r then return a.r > b.r end return a.c < b.c end)
    for k = 1, n_test - total do quota[rema[k].c] = quota[rema[k].c] + 1 end
    for c = 0, K - 1 do
      local g = by_class[c]
      -- without shuffling the tail of each class is the test part (as the unshuffled plain split)
      local first = shuffle and 1 or #g - quota[c] + 1
      for k = first, first + quota[c] - 1 do is_test[g[k]] = true end
    end
  elseif shuffle then
    for k = 1, n_test do is_test[order[k]] = true end
  else
    for k = n - n_test + 1, n do is_test[order[k]] = true end
  end
  local tr, te = {}, {}
  for _, i in ipairs(order) do
    if is_test[i] then te[#te + 1] = i else tr[#tr + 1] = i end
  end
  return { train = self:select(tr), test = self:select(te) }
end

-- counts[id + 1] for each label (aligned with label_names), and a second table by name.
function Split:class_counts()
  check_split("class_counts", self)
  local counts, by_name = {}, {}
  for i = 1, #self.label_names do counts[i] = 0 end
  for _, id in ipairs(self.label) do counts[id + 1] = counts[id + 1] + 1 end
  for i, name in ipairs(self.label_names) do by_name[name] = counts[i] end
  return counts, by_name
end

-- Whitespace-separated words per text: the notebook's "Words Per Tweet" box plot
-- (df["text"].str.split().apply(len); ASCII whitespace here, which is all the emotion data has).
function Split:words_per_text()
  check_split("words_per_text", self)
  local out = {}
  for i, t in ipairs(self.text) do
    local _, k = t:gsub("%S+", "")
    out[i] = k
  end
  return out
end

-- Token ids per text with the tokenizer's special tokens ([CLS] ... [SEP]), truncated to
-- opts.max_length when given. Uses tok:lengths when the tokenizer has it, else tok:encode.
-- Cached per tokenizer and max_length.
function Split:lengths(tok, opts)
  check_split("lengths", self)
  if tok == nil then argerror(1, "lengths", "tokenizer expected, got nil") end
  opts = check_opts("lengths", 2, opts)
  local ml = opts.max_length
  local per_tok = self._cache[tok]
  if not per_tok then per_tok = {} self._cache[tok] = per_tok end
  local key = ml or 0
  if per_tok[key] then return per_tok[key] end
  local out
  if tok.lengths then
    out = tok:lengths(self.text, { max_length = ml, truncation = ml ~= nil })
    if type(out) ~= "table" and out.totable then out = out:totable() end
  elseif tok.encode then
    out = {}
    for i, t in ipairs(self.text) do
      local e = tok:encode(t, { truncation = ml ~= nil, max_length = ml })
      local ids = e.input_ids
      out[i] = type(ids) == "table" and #ids or ids:numel()
    end
  else
    argerror(1, "lengths", "a tokenizer with lengths() or encode() expected")
  end
  if #out ~= #self.text then
    raise(string.format("lengths: the tokenizer returned %d lengths for %d texts", #out, #self.text))
  end
  per_tok[key] = out
  return out
end

-- A content hash (FNV-1a 64 over texts, label ids and label names) as 16 hex digits, for
-- feature caches and the results store's dataset hash.
function Split:hash()
  check_split("hash", self)
  local ids = {}
  for i = 1, #self.label_names do ids[i] = i - 1 end
  local data_hash = core.hash(self.text, self.label)
  local names_hash = core.hash(self.label_names, ids)
  return core.hash({ data_hash, names_hash }, { 0, 0 })
end

-- ---- batches ---------------------------------------------------------------------

local Batches = {}
Batches.__index = Batches
Batches.__name = "moonbert.Batches"

local PADDINGS = { longest = true, global = true, max_length = true }

-- The plan: which examples go into each batch and how long each batch is. Deterministic in
-- (seed, epoch): shuffle, then (bucket) cut into chunks of batch_size * bucket_chunks, sort each
-- chunk by length, cut into batches and shuffle the batch order.
function Split:batches(opts)
  check_split("batches", self)
  opts = check_opts("batches", 1, opts)
  local tok = opts.tokenizer
  if tok == nil then argerror(1, "batches", "field 'tokenizer' is required") end
  local bs = opts.batch_size or 32
  if math.type(bs) ~= "integer" or bs < 1 then argerror(1, "batches", "field 'batch_size' must be an integer >= 1") end
  local padding = opts.padding or "longest"
  if not PADDINGS[padding] then
    argerror(1, "batches", "field 'padding' must be \"longest\", \"global\" or \"max_length\", got " .. tostring(padding))
  end
  local max_length = opts.max_length
  if max_length == nil and tok.model_max_length then
    max_length = type(tok.model_max_length) == "function" and tok:model_max_length() or tok.model_max_length
  end
  max_length = max_length or 512
  if opts.truncation == false then max_length = nil end
  if padding == "max_length" and not opts.max_length then
    argerror(1, "batches", "padding=\"max_length\" needs field 'max_length'")
  end
  local seed = opts.seed or 0
  if math.type(seed) ~= "integer" then argerror(1, "batches", "field 'seed' must be an integer") end
  -- a different order each epoch, reproducible from (seed, epoch)
  if opts.epoch then seed = seed * 1000003 + opts.epoch end
  local chunk = bs * (opts.bucket_chunks or 50)

  local n = #self.text
  local lengths = self:lengths(tok, { max_length = max_length })
  local order
  if opts.shuffle then order = core.permutation(n, seed) else order = {} for i = 1, n do order[i] = i end end

  local plan = {}
  if opts.bucket then
    for c0 = 1, n, chunk do
      local part = {}
      for k = c0, math.min(c0 + chunk - 1, n) do part[#part + 1] = order[k] end
      local rank = {}
      for k, i in ipairs(part) do rank[i] = k end
      table.sort(part, function(a, b)
        if lengths[a] ~= lengths[b] then return lengths[a] < lengths[b] end
        return rank[a] < rank[b]
      end)
      for b0 = 1, #part, bs do
        local idx = {}
        for k = b0, math.min(b0 + bs - 1, #part) do idx[#idx + 1] = part[k] end
        plan[#plan + 1] = idx
      end
    end
    if opts.shuffle then
      local p = core.permutation(#plan, seed + 0x9E3779B9)
      local shuffled = {}
      for k, j in ipairs(p) do shuffled[k] = plan[j] end
      plan = shuffled
    end
  else
    for b0 = 1, n, bs do
      local idx = {}
      for k = b0, math.min(b0 + bs - 1, n) do idx[#idx + 1] = order[k] end
      plan[#plan + 1] = idx
    end
  end
  if opts.drop_last then
    for k = #plan, 1, -1 do
      if #plan[k] < bs then table.remove(plan, k) end
    end
  end

  local global_len = 0
  for i = 1, n do if lengths[i] > global_len then global_len = lengths[i] end end
  local widths, tokens, slots = {}, 0, 0
  for k, idx in ipairs(plan) do
    local w = 0
    if padding == "longest" then
      for _, i in ipairs(idx) do if lengths[i] > w then w = lengths[i] end end
    elseif padding == "global" then
      w = global_len
    else
      w = opts.max_length
    end
    widths[k] = w
    for _, i in ipairs(idx) do tokens = tokens + lengths[i] end
    slots = slots + #idx * w
  end
  return setmetatable({
    split = self, tokenizer = tok, plan = plan, widths = widths, padding = padding,
    max_length = max_length, truncation = opts.truncation ~= false, cursor = 0,
    _stats = {
      batches = #plan, examples = 0, tokens = tokens, slots = slots, padded = slots - tokens,
      padding_fraction = slots > 0 and (slots - tokens) / slots or 0, longest = global_len,
    },
  }, Batches)
end

Batches.__len = function(b) return #b.plan end

-- Token and padding counts of the whole plan: tokens (real ids), slots (sum of B*T),
-- padded = slots - tokens, padding_fraction = padded / slots, longest (the split's longest text).
function Batches:stats()
  local s = {}
  for k, v in pairs(self._stats) do s[k] = v end
  s.examples = 0
  for _, idx in ipairs(self.plan) do s.examples = s.examples + #idx end
  return s
end

-- Batch k of the plan: {input_ids=int32 [B,T], attention_mask=int32 [B,T], labels=int32 [B],
-- indices={1-based positions}, size=B} (plus any other fields the tokenizer returns).
function Batches:get(k)
  local idx = self.plan[k]
  if not idx then return nil end
  local split, T = self.split, self.widths[k]
  local texts, labels = {}, {}
  for j, i in ipairs(idx) do texts[j], labels[j] = split.text[i], split.label[i] end
  local enc
  if self.padding == "longest" then
    enc = self.tokenizer:encode_batch(texts, { padding = "longest", truncation = self.truncation,
                                               max_length = self.max_length })
  else
    enc = self.tokenizer:encode_batch(texts, { padding = "max_length", truncation = self.truncation,
                                               max_length = T })
  end
  local got = enc.input_ids:size(2)
  if got ~= T then
    raise(string.format("batches: the tokenizer padded batch %d to %d tokens, the plan says %d", k, got, T))
  end
  local batch = {}
  for key, v in pairs(enc) do batch[key] = v end
  batch.labels = require("moonbert.tensor").from(labels, { dtype = "int32" })
  batch.indices = idx
  batch.size = #idx
  return batch
end

-- for batch in batches do ... end: iterates the plan once, then starts over.
Batches.__call = function(self)
  self.cursor = self.cursor + 1
  local b = self:get(self.cursor)
  if not b then self.cursor = 0 end
  return b
end

function Batches:reset() self.cursor = 0 end

function M.padding_fraction(split, tok, opts)
  check_split("padding_fraction", split)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.tokenizer = tok
  return split:batches(o):stats().padding_fraction
end

-- ---- loaders ---------------------------------------------------------------------------

local function finish_load(fname, raw, path, opts)
  local on_skip = opts.on_error == "skip"
  local label_names = opts.label_names
  if label_names ~= nil then check_label_names(fname, 2, label_names) label_names = copy_names(label_names) end
  local lines = raw.line
  local ids, names, keep, msgs = resolve_labels(raw.label, label_names,
                                                function(i) return path .. ":" .. lines[i] end, on_skip)
  local text = raw.text
  if keep then
    local t = {}
    for k, i in ipairs(keep) do t[k] = text[i] end
    text = t
  end
  local skipped = raw.skipped + #msgs
  local messages = raw.skip_messages
  for _, m in ipairs(msgs) do if #messages < 8 then messages[#messages + 1] = m end end
  if #text == 0 and skipped == 0 then raise(path .. ": no examples (the file is empty)") end
  local s = new_split({ text = text, label = ids }, { "text", "label" }, names,
                      { source = path, skipped = skipped, skip_messages = messages })
  if skipped > 0 and not opts.quiet then
    io.stderr:write(string.format("moonbert.data: %s: skipped %d bad line%s (first: %s)\n", path, skipped,
                                  skipped == 1 and "" or "s", messages[1] or "?"))
  end
  return s
end

local function check_on_error(fname, opts)
  if opts.on_error ~= nil and opts.on_error ~= "raise" and opts.on_error ~= "skip" then
    argerror(2, fname, "field 'on_error' must be \"raise\" or \"skip\", got " .. tostring(opts.on_error))
  end
end

-- load_text(path, {sep=";", names={"text","label"}, label_names=, on_error=, quiet=})
-- names={"label","text"} reads label;text lines (split at the first separator).
function M.load_text(path, opts)
  check_type("load_text", 1, path, "string")
  opts = check_opts("load_text", 2, opts)
  check_on_error("load_text", opts)
  local names = opts.names or { "text", "label" }
  local label_first
  if type(names) == "table" and #names == 2 and names[1] == "text" and names[2] == "label" then
    label_first = false
  elseif type(names) == "table" and #names == 2 and names[1] == "label" and names[2] == "text" then
    label_first = true
  else
    argerror(2, "load_text", "field 'names' must be {\"text\",\"label\"} or {\"label\",\"text\"}")
  end
  if opts.sep ~= nil and (type(opts.sep) ~= "string" or opts.sep == "") then
    argerror(2, "load_text", "field 'sep' must be a non-empty string")
  end
  local raw = call_core(core.read, path, "text", { sep = opts.sep, label_first = label_first, on_error = opts.on_error })
  return finish_load("load_text", raw, path, opts)
end

-- load_csv(path, {header=true, text_column="text", label_column="label", delimiter=",", ...})
-- Columns are names (with a header) or 1-based numbers; without a header they default to 1 and 2.
function M.load_csv(path, opts)
  check_type("load_csv", 1, path, "string")
  opts = check_opts("load_csv", 2, opts)
  check_on_error("load_csv", opts)
  local header = opts.header ~= false
  local raw = call_core(core.read, path, "csv", {
    header = header, text_column = opts.text_column, label_column = opts.label_column,
    delimiter = opts.delimiter, on_error = opts.on_error,
  })
  return finish_load("load_csv", raw, path, opts)
end

-- load_jsonl(path, {text_field="text", label_field="label", ...}); labels are strings or integers.
function M.load_jsonl(path, opts)
  check_type("load_jsonl", 1, path, "string")
  opts = check_opts("load_jsonl", 2, opts)
  check_on_error("load_jsonl", opts)
  local raw = call_core(core.read, path, "jsonl", { text_field = opts.text_field, label_field = opts.label_field,
                                         on_error = opts.on_error })
  return finish_load("load_jsonl", raw, path, opts)
end

-- from_table{text={...}, label={...}, label_names=} (labels as ids or names).
function M.from_table(t)
  check_type("from_table", 1, t, "table")
  check_type("from_table", 1, t.text, "table")
  check_type("from_table", 1, t.label, "table")
  if #t.text ~= #t.label then
    argerror(1, "from_table", string.format("%d texts but %d labels", #t.text, #t.label))
  end
  for i, s in ipairs(t.text) do
    if type(s) ~= "string" then argerror(1, "from_table", string.format("text[%d] is %s, not a string", i, type(s))) end
  end
  local names = t.label_names
  if names ~= nil then check_label_names("from_table", 1, names) names = copy_names(names) end
  local ids, label_names = resolve_labels(t.label, names, function(i) return "label[" .. i .. "]" end, false)
  local text = {}
  for i, s in ipairs(t.text) do text[i] = s end
  return new_split({ text = text, label = ids }, { "text", "label" }, label_names)
end

local function exists(path)
  return require("lfs").attributes(path, "mode") == "file"
end

-- load_emotion(dir, opts): train.txt, validation.txt (or val.txt), test.txt with the six
-- emotion labels in Hugging Face order (0 sadness .. 5 surprise).
function M.load_emotion(dir, opts)
  check_type("load_emotion", 1, dir, "string")
  opts = check_opts("load_emotion", 2, opts)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.label_names = o.label_names or M.EMOTION_LABELS
  local val = dir .. "/validation.txt"
  if not exists(val) and exists(dir .. "/val.txt") then val = dir .. "/val.txt" end
  local out = {
    train = M.load_text(dir .. "/train.txt", o),
    validation = M.load_text(val, o),
    test = M.load_text(dir .. "/test.txt", o),
  }
  out.label_names = copy_names(o.label_names)
  return out
end

local FOLDER_FORMATS = { "txt", "csv", "jsonl" }

-- load_folder(dir, {text_column=, label_column=, label_names=}) -> {train=, validation=, test=, label_names=, format=}
-- A data folder as the experiments' --data takes it: train, validation (or val) and test as
-- .txt (`text;label` lines, the emotion data's format and labels), .csv (with a header; columns
-- text_column / label_column, default "text" / "label") or .jsonl (fields of those names).
-- Label names come from the training split (sorted names, or 0..max when all are ids) unless
-- given, and the other splits are read against them, so an unknown label names its file and line.
function M.load_folder(dir, opts)
  check_type("load_folder", 1, dir, "string")
  opts = check_opts("load_folder", 2, opts)
  if require("lfs").attributes(dir, "mode") ~= "directory" then error(dir .. ": no such data folder", 2) end
  local format
  for _, ext in ipairs(FOLDER_FORMATS) do
    if exists(dir .. "/train." .. ext) then format = ext break end
  end
  if not format then
    error(dir .. ": no train.txt, train.csv or train.jsonl (a data folder holds train, validation and test " ..
          "splits as .txt lines text;label, .csv with a header, or .jsonl)", 2)
  end
  local function path(split)
    local p = dir .. "/" .. split .. "." .. format
    if split == "validation" and not exists(p) and exists(dir .. "/val." .. format) then p = dir .. "/val." .. format end
    if not exists(p) then
      error(string.format("%s: %s.%s is missing (a data folder holds train, validation and test)", dir, split, format), 2)
    end
    return p
  end
  if format == "txt" then
    if opts.text_column or opts.label_column then
      error(dir .. ": --text-column and --label-column are for .csv and .jsonl data (the .txt splits are text;label lines)", 2)
    end
    local out = M.load_emotion(dir, { label_names = opts.label_names })
    out.format = "txt"
    return out
  end
  local function load(split, names)
    local o = { label_names = names }
    if format == "csv" then
      o.text_column, o.label_column = opts.text_column or "text", opts.label_column or "label"
      return M.load_csv(path(split), o)
    end
    o.text_field, o.label_field = opts.text_column or "text", opts.label_column or "label"
    return M.load_jsonl(path(split), o)
  end
  local train = load("train", opts.label_names)
  local names = copy_names(train.label_names)
  local out = { train = train, validation = load("validation", names), test = load("test", names),
                label_names = names, format = format }
  return out
end

return M
