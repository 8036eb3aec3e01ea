-- moonbert bench data: loading the emotion data and the padding that batching leaves.
--
-- Loads ../shared/data/emotion (MOONBERT_SHARED) and, with distilbert-base-uncased, plans one
-- epoch of the training set in batches of 64 (seed 42) three ways: bucketed by length
-- (bucket=true), random batches padded to their longest text (padding="longest"), and every
-- batch padded to the longest text of the split (padding="global", the notebook's behaviour).
-- Figures: seconds to load the three splits, seconds for one epoch of bucketed batches
-- (encode_batch per batch included; the lengths were cached by the plans above), and the padded-token fraction (padded / B*T summed over batches).
local M = { summary = "emotion data: load time, batching time and padded-token fraction (bucket vs longest vs global)" }

local function shared_root()
  local s = os.getenv("MOONBERT_SHARED")
  if s and s ~= "" then return s end
  return (MOONBERT_ROOT or ".") .. "/../shared"
end

function M.run(opts)
  local mb = require "moonbert"
  local clock = require("moonbert.tokenizer").wall_clock
  local root = shared_root()
  local t0 = clock()
  local d = mb.data.load_emotion(root .. "/data/emotion")
  local load_s = clock() - t0
  local tok = mb.tokenizer.load(root .. "/models/distilbert-base-uncased")
  local train = d.train
  if opts and opts.quick then train = train:select((function() local t = {} for i = 1, 2000 do t[i] = i end return t end)()) end
  local out = { examples = #train, load_emotion_s = load_s, batch_size = 64 }
  for _, way in ipairs { "bucket", "longest", "global" } do
    local o = { tokenizer = tok, batch_size = 64, shuffle = true, seed = 42 }
    if way == "bucket" then o.bucket = true elseif way == "global" then o.padding = "global" end
    local st = train:batches(o):stats()
    out["padding_fraction_" .. way] = st.padding_fraction
    out["tokens_in_batches_" .. way] = st.slots
  end
  out.real_tokens = train:batches { tokenizer = tok }:stats().tokens
  local t1 = clock()
  for _ in train:batches { tokenizer = tok, batch_size = 64, shuffle = true, seed = 43, bucket = true } do end
  out.epoch_of_bucketed_batches_s = clock() - t1
  return out
end

return M
