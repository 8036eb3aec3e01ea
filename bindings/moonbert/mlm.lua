-- moonbert.mlm (mb.mlm): masked-language-model pretraining pieces.
--
--   local model = mb.mlm.load("../shared/fixtures/distilbert-mlm-tiny")   -- = mb.distilbert.load_masked_lm
--   local model = mb.mlm.new({dim=256, n_layers=4, n_heads=4, hidden_dim=1024, vocab_size=30522,
--                             max_position_embeddings=128}, {seed=42})
--   local logits = model:forward(batch)                       -- [B,T,vocab]; {positions={...}} -> [n,vocab]
--   local loss, n = model:loss(batch, labels, {train=true})   -- mean CE over labels ~= -100
--   model:backward(); model:save("models/moonbert-small-mlm")  -- HF DistilBertForMaskedLM directory
--   local col = mb.mlm.collator(tok, {seed=42, mlm_probability=0.15})
--   local b = col:mask(tok:encode_batch(texts, {padding=true}))  -- {input_ids=, attention_mask=, labels=}
--
-- The model is HF's DistilBertForMaskedLM (runtime/distilbert_mlm.h): the projector is tied to the
-- word embeddings, so model:parameters() lists distilbert.embeddings.word_embeddings.weight once and
-- no vocab_projector.weight; the optimizer and clip_grad_norm see the tied matrix once.
-- The collator is DataCollatorForLanguageModeling's rule (15% of the tokens that are neither special
-- nor padding; of those 80% [MASK], 10% a random id, 10% unchanged; labels -100 elsewhere), drawn
-- from its own seeded RNG whose state (col:state()) goes into checkpoints.
local core = require("moonbert.core").distilbert_mlm
local json = require "dkjson"

local M = {}
local methods = core.methods

local argerror = require("moonbert.check").arg

--- A HF masked-LM directory. opts: seed (a missing head's init), quiet.
function M.load(dir, opts)
  if type(dir) ~= "string" then argerror(1, "load_masked_lm", "directory expected, got " .. type(dir)) end
  opts = opts or {}
  if type(opts) ~= "table" then argerror(2, "load_masked_lm", "options table expected, got " .. type(opts)) end
  local f = io.open(dir .. "/config.json", "rb")
  if not f then argerror(1, "load_masked_lm", "no config.json in '" .. dir .. "'") end
  f:close()
  local model = core.load(dir, opts.seed or 42)
  local w = model:warnings()
  if w ~= "" and not opts.quiet then io.stderr:write(w, "\n") end
  return model
end

--- Random HF init from a config table or a config.json path / directory. opts: seed.
function M.new(config, opts)
  opts = opts or {}
  local text, source
  if type(config) == "string" then
    for _, path in ipairs({ config .. "/config.json", config }) do
      local f = io.open(path, "rb")
      if f then
        text, source = f:read("a"), path
        f:close()
        break
      end
    end
    if not text then argerror(1, "new_masked_lm", "cannot read config '" .. config .. "'") end
  elseif type(config) == "table" then
    text, source = json.encode(config), "config"
  else
    argerror(1, "new_masked_lm", "config table or path expected, got " .. type(config))
  end
  return core.new(text, source, opts.seed or 42)
end

function methods:config() return json.decode(self:config_json()) end

function methods:named_parameters()
  local out = {}
  for _, p in ipairs(self:parameters()) do out[p.name] = p end
  return out
end

-- ---- the masking collator -------------------------------------------------------------------
local Collator = {}
Collator.__index = Collator
Collator.__name = "moonbert.MLMCollator"

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

--- collator(tok or {mask_id=, vocab_size=, special_ids=}, {seed=42, mlm_probability=0.15})
function M.collator(tok, opts)
  opts = opts or {}
  if type(tok) ~= "table" and type(tok) ~= "userdata" then
    argerror(1, "collator", "tokenizer or {mask_id=, vocab_size=, special_ids=} expected, got " .. type(tok))
  end
  local c = setmetatable({}, Collator)
  if type(tok) == "table" and tok.mask_id then
    c.mask_id, c.vocab_size, c.special_ids = tok.mask_id, tok.vocab_size, tok.special_ids or {}
  else
    local st = tok:special_tokens()
    c.mask_id, c.vocab_size, c.special_ids = st.mask_token_id, tok.vocab_size, {}
    for _, k in ipairs({ "pad", "unk", "cls", "sep", "mask" }) do
      if st[k .. "_token_id"] then c.special_ids[#c.special_ids + 1] = st[k .. "_token_id"] end
    end
  end
  if math.type(c.mask_id) ~= "integer" then argerror(1, "collator", "the tokenizer has no [MASK] token") end
  -- [UNK] is a special token for HF's get_special_tokens_mask too: it is never masked.
  c.p = opts.mlm_probability or 0.15
  if type(c.p) ~= "number" or c.p < 0 or c.p > 1 then argerror(2, "collator", "mlm_probability must be in [0, 1]") end
  c.rng = core.rng_seed(opts.seed or 42)
  return c
end

--- Mask a batch {input_ids=, attention_mask=} -> {input_ids=, attention_mask=, labels=, n_masked=}.
function Collator:mask(batch)
  if type(batch) ~= "table" or batch.input_ids == nil then
    argerror(1, "mask", "batch {input_ids=, attention_mask=} expected")
  end
  local ids, labels, n
  ids, labels, n, self.rng = core.mask_tokens(batch.input_ids, batch.attention_mask, self.special_ids, self.mask_id,
    self.vocab_size, self.p, self.rng)
  return { input_ids = ids, attention_mask = batch.attention_mask, labels = labels, n_masked = n }
end

--- The RNG state as hex text (for checkpoints) and back.
function Collator:state() return hex(self.rng) end
function Collator:set_state(h)
  if type(h) ~= "string" or #h ~= #hex(self.rng) then argerror(1, "set_state", "state from collator:state() expected") end
  self.rng = unhex(h)
end

M.methods = methods
return M
