-- moonbert bench tokenize: WordPiece encoding throughput on the emotion training texts.
--
-- Encodes the 16,000 training texts of ../shared/data/emotion (MOONBERT_SHARED) with
-- distilbert-base-uncased, on 1 thread and on all threads (mb.threads()), through
-- tok:lengths (the encoder alone: normalize, split, WordPiece, template) and through
-- tok:encode_batch (the same plus the padded [B,T] int32 tensors). Figures are
-- tokens/s counting [CLS]/[SEP], the best of several repetitions, wall-clock time.
-- Reference: Hugging Face's JavaScript BERT tokenizer does about 0.5 M tokens/s on one core.
local M = { summary = "tokenizer throughput (tokens/s) on the 16,000 emotion training texts, 1 and all threads" }

local function shared_root()
  local s = os.getenv("MOONBERT_SHARED")
  if s and s ~= "" then return s end
  return (MOONBERT_ROOT or ".") .. "/../shared"
end

local function read_texts(path, limit)
  local f = assert(io.open(path, "r"), "bench tokenize: cannot open " .. path)
  local texts = {}
  for line in f:lines() do
    texts[#texts + 1] = line:match("^(.*);[^;]*$") or line
    if limit and #texts >= limit then break end
  end
  f:close()
  return texts
end

local function best_rate(fn, tokens, reps)
  local clock = require("moonbert.tokenizer").wall_clock
  local best = math.huge
  for _ = 1, reps do
    local t0 = clock()
    fn()
    local dt = clock() - t0
    if dt < best then best = dt end
  end
  return tokens / best, best
end

function M.run(opts)
  local mb = require "moonbert"
  local root = shared_root()
  local tok = mb.tokenizer.load(root .. "/models/distilbert-base-uncased")
  local texts = read_texts(root .. "/data/emotion/train.txt", opts and opts.quick and 2000 or nil)
  local tokens = 0
  for _, n in ipairs(tok:lengths(texts)) do tokens = tokens + n end
  local reps = opts and opts.quick and 2 or 5
  local all = mb.threads()
  local out = { texts = #texts, tokens = tokens, threads_all = all }
  local function measure(threads)
    mb.set_threads(threads)
    local r1, s1 = best_rate(function() tok:lengths(texts) end, tokens, reps)
    local r2 = best_rate(function()
      local b = tok:encode_batch(texts, { padding = "longest" })
      b.input_ids:free(); b.attention_mask:free(); b.lengths:free()
    end, tokens, reps)
    return r1, s1, r2
  end
  local r1, s1, b1 = measure(1)
  local rn, sn, bn = measure(all)
  mb.set_threads(all)
  out.tokens_per_s_1_thread = math.floor(r1)
  out.tokens_per_s_all_threads = math.floor(rn)
  out.seconds_1_thread = s1
  out.seconds_all_threads = sn
  out.encode_batch_tokens_per_s_1_thread = math.floor(b1)
  out.encode_batch_tokens_per_s_all_threads = math.floor(bn)
  out.reference_js_tokens_per_s = 500000
  tok:free()
  return out
end

return M
