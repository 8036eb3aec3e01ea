-- tests/spec/faults/data.lua: a made-up tokenizer folder and data set for the fault specs
-- (faults_spec.lua, full_disk_spec.lua) and their child processes; not a spec.
--   require("tests.spec.faults.data").make_data(dir)  -- dir/vocab.txt, dir/train.txt (96 texts)
--   local tok, split, config = require("tests.spec.faults.data").load_data(dir)  -- read them back
--   local dir, tok, split, config = require("tests.spec.faults.data").workspace()  -- both, in a new folder
local mb = require "moonbert"
local support = require "tests.spec.support"

local M = {}

local WORDS = { "i", "feel", "so", "very", "today", "not", "a", "the", "happy", "sad", "angry", "calm", "love",
                "fear", "joy", "dark", "bright", "glad", "cry", "smile", "storm" }
local CUES = { "sad", "happy", "love", "angry", "fear", "storm" } -- label i-1 has cue word CUES[i]

-- A tokenizer folder (vocab.txt) and 96 labelled texts in dir.
function M.make_data(dir)
  local vocab = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }
  for _, w in ipairs(WORDS) do vocab[#vocab + 1] = w end
  support.write(dir .. "/vocab.txt", table.concat(vocab, "\n") .. "\n")
  local rng = 12345
  local function rand(n) rng = (rng * 1103515245 + 12345) % 2147483648 return rng % n + 1 end
  local lines = {}
  for i = 1, 96 do
    local label = (i - 1) % 6
    local t = {}
    for _ = 1, 2 + rand(8) do t[#t + 1] = WORDS[rand(#WORDS)] end
    table.insert(t, rand(#t + 1), CUES[label + 1])
    lines[i] = table.concat(t, " ") .. ";" .. mb.data.EMOTION_LABELS[label + 1]
  end
  support.write(dir .. "/train.txt", table.concat(lines, "\n") .. "\n")
end

-- What the fault specs train on, from a folder make_data wrote: its tokenizer, its 96 texts
-- (an mb.data split with the emotion labels) and a one-layer model config of dim 16 for its vocabulary.
function M.load_data(dir)
  local tok = mb.tokenizer.load(dir)
  local split = mb.data.load_text(dir .. "/train.txt", { sep = ";", names = { "text", "label" },
                                                         label_names = mb.data.EMOTION_LABELS })
  local config = { dim = 16, n_layers = 1, n_heads = 2, hidden_dim = 32, vocab_size = tok.vocab_size,
                   max_position_embeddings = 32 }
  return tok, split, config
end

-- A fresh folder (support.tmpdir) with make_data's files -> dir, and load_data's values for it.
function M.workspace()
  local dir = support.tmpdir()
  M.make_data(dir)
  return dir, M.load_data(dir)
end

return M
