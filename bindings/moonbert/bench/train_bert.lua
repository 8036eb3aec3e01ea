-- moonbert bench train_bert: a BERT-base training step on the CPU, the work of
-- scripts/bench-bert-peer.py (PyTorch, ../shared/peer/bert_torch.py): BertForSequenceClassification
-- (hidden 768, 12 layers, 12 heads, intermediate 3072, vocab 30522, 6 labels, random init),
-- batch 32 padded to length 64 (lengths 8..64, bench train's synthetic batch, token types 0),
-- forward + loss + backward + AdamW step in train mode. MOONBERT_BENCH_STEPS timed steps (default 2)
-- after one warm-up; seconds per step, sequences/s, GFLOP/s of the model's cost model, peak RSS.
-- --quick uses a tiny model (for tests).
local M = { summary = "BERT-base full training step, B32, L<=64, AdamW (JSON)" }

local FULL = { hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12, intermediate_size = 3072,
               vocab_size = 30522, max_position_embeddings = 512, type_vocab_size = 2 }
local QUICK = { hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4, intermediate_size = 64,
                vocab_size = 30522, max_position_embeddings = 64, type_vocab_size = 2 }

local function peak_rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local kb = f:read("a"):match("VmHWM:%s*(%d+)")
  f:close()
  return kb and tonumber(kb) / 1024 or nil
end

function M.run(opts)
  opts = opts or {}
  local mb = require "moonbert"
  local clock = require("moonbert.core").distilbert.wall_time
  local cfg, B, T = FULL, 32, 64
  local steps = opts.steps or tonumber(os.getenv("MOONBERT_BENCH_STEPS") or "") or 2
  if opts.quick then cfg, B, T, steps = QUICK, 4, 16, 1 end
  local model = mb.bert.new(cfg, { task = "text-classification", num_labels = 6, seed = 42 })
  local batch = require("moonbert.bench.train").make_batch(mb, 1, B, T, cfg.vocab_size)
  local labels = {}
  for b = 1, B do labels[b] = (b - 1) % 6 end
  local opt = mb.optim.adamw(mb.trainer.optimizer_params(model), { lr = 2e-5, weight_decay = 0.01 })
  local function step()
    opt:zero_grad()
    model:loss(batch, labels, { train = true })
    model:backward()
    opt:step()
  end
  step() -- warm-up: buffers grow once
  local t0 = clock()
  for _ = 1, steps do step() end
  local sec = (clock() - t0) / steps
  local flops = model:flops(B, T, true)
  opt:free()
  model:free()
  return { config = opts.quick and "quick" or "bert-base", batch = B, length = T, steps = steps,
           seconds_per_step = sec, sequences_per_s = B / sec, gflop_per_s = flops / sec / 1e9,
           peak_rss_mb = peak_rss_mb(), threads = mb.threads() }
end

return M
