-- moonbert.pipeline_fill_mask: the "fill-mask" task of mb.pipeline (Hugging Face's FillMaskPipeline).
--
--   local fill = mb.pipeline("fill-mask", "models/moonbert-small-mlm")
--   fill("i feel so [MASK] today")
--     --> {{score=0.31, token=3407, token_str="happy", sequence="i feel so happy today"}, ...}  top 5
--   fill("[MASK] is [MASK]", {top_k = 3})   -- several masks: one list per [MASK], in text order
--   fill({"text one [MASK]", "text two [MASK]"})  -- a list of texts: one result per text
--
-- The folder is a Hugging Face masked-LM directory (config.json, model.safetensors with the
-- vocab_* head, tokenizer files). Scores are the softmax over the whole vocabulary at the mask
-- position, evaluation mode; ties keep id order. sequence is the text decoded with that token in
-- place of the mask (special tokens skipped for one mask, kept with several, as HF). Logits are computed at the mask positions only.
-- A text without the tokenizer's mask token is an error, as in HF.
local pipeline = require "moonbert.pipeline"
local M = {}

local FillMask = pipeline.class("moonbert.FillMaskPipeline")

local function top_k_of(v, fname)
  if v == nil then return nil end
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) or v < 1 then
    error(string.format("bad argument to '%s' (top_k must be a positive integer, got %s)", fname, tostring(v)), 4)
  end
  return math.tointeger(v)
end

-- indices of the k largest of p (a Lua list), best first; ties: lower index first
local function top_indices(p, k)
  local best = {}
  for i = 1, #p do
    local v = p[i]
    if #best < k or v > p[best[#best]] then
      local j = #best < k and #best + 1 or #best
      while j > 1 and v > p[best[j - 1]] do best[j] = best[j - 1]; j = j - 1 end
      best[j] = i
    end
  end
  return best
end

function FillMask:__call(texts, o)
  o = o or {}
  if type(o) ~= "table" then error("bad argument #2 to 'fill-mask' (options table expected)", 2) end
  if self.model == nil then error("fill-mask: pipeline is freed", 2) end
  local single = type(texts) == "string"
  if single then texts = { texts } end
  if type(texts) ~= "table" then
    error("bad argument #1 to 'fill-mask' (string or list of strings expected, got " .. type(texts) .. ")", 2)
  end
  local k = top_k_of(o.top_k, "fill-mask") or self.top_k
  local out = {}
  for n, text in ipairs(texts) do
    if type(text) ~= "string" then
      error(string.format("bad argument #1 to 'fill-mask' (text %d: string expected, got %s)", n, type(text)), 2)
    end
    local e = self.tokenizer:encode(text, { max_length = self.max_length })
    local ids = e.input_ids
    ids = type(ids) == "table" and ids or ids:totable()
    local positions = {}
    for t, id in ipairs(ids) do
      if id == self.mask_id then positions[#positions + 1] = t - 1 end
    end
    if #positions == 0 then
      error(string.format("fill-mask: no mask token (%s) found in the input %q", self.mask_token, text), 2)
    end
    local logits = self.model:forward({ input_ids = { ids } }, { positions = positions })
    local probs = logits:softmax(2):totable()
    logits:free()
    local per_mask = {}
    for m, p in ipairs(probs) do
      local r = {}
      for rank, i in ipairs(top_indices(p, math.min(k, #p))) do
        local id = i - 1
        local filled = table.move(ids, 1, #ids, 1, {})
        filled[positions[m] + 1] = id
        r[rank] = { score = p[i], token = id, token_str = self.tokenizer:decode({ id }),
                    sequence = self.tokenizer:decode(filled, { skip_special_tokens = #positions == 1 }) }
      end
      per_mask[m] = r
    end
    out[n] = #per_mask == 1 and per_mask[1] or per_mask
  end
  if single then return out[1] end
  return out
end

--- load(dir, opts) -> pipeline. opts: top_k (5, as HF), max_length (the tokenizer's), device ("cpu",
-- "cuda" or "auto": the GPU when present) and precision (on cuda: fp32, tf32 or bf16).
function M.load(dir, opts)
  opts = opts or {}
  pipeline.check_dir(dir, "fill-mask")
  local tok = require("moonbert.tokenizer").load(dir)
  local st = tok:special_tokens()
  if not st.mask_token_id then error("fill-mask: the tokenizer in '" .. dir .. "' has no mask token", 3) end
  local self = setmetatable({
    model = require("moonbert.mlm").load(dir, { quiet = true }), tokenizer = tok, dir = dir,
    mask_id = st.mask_token_id, mask_token = st.mask_token, max_length = opts.max_length,
  }, FillMask)
  self.top_k = top_k_of(opts.top_k, "pipeline") or 5
  if opts.device and opts.device ~= "cpu" and require("moonbert.cuda").device(opts.device) == "cuda" then
    pipeline.place(self.model, { device = "cuda", precision = opts.precision })
  end
  return self
end

return M
