-- moonbert bench train: DistilBERT training and inference throughput on the CPU.
--
-- Full-size config (dim 768, 6 layers, 12 heads, hidden 3072, vocab 30522,
-- random init), batch 32 padded to length 64 (lengths 8..64, one of 64):
--   train       forward + loss + backward (no optimizer), train mode (dropout)
--   frozen      the same with the encoder frozen (no encoder backward)
--   inference   [CLS] features for a batch of 64 (eval mode)
-- Each reports seconds per step, steps/s, sequences/s and achieved GFLOP/s
-- (matrix-product flops of the model's cost model); peak RSS is the
-- process's high-water mark. --quick uses a tiny model (for tests).
-- fraction_of_sgemm compares each with the sgemm ceiling measured in the same
-- run (PyTorch reaches 126 / 158-172 = 0.73-0.80 on its full step).
-- The PyTorch figures beside them are from shared/peer/bench_torch.py on this
-- kind of machine with 2 threads (full step includes AdamW there).
local M = { summary = "DistilBERT train / frozen / inference throughput (JSON)" }

local function peak_rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024 or nil
end

local function make_batch(mb, rng_seed, B, T, vocab)
  local ids, mask = {}, {}
  local rng = mb.tensor.rand({ B }, { seed = rng_seed })
  for b = 1, B do
    local len = b == 1 and T or math.max(8, math.floor(8 + rng[b] * (T - 8)))
    local row, mrow = {}, {}
    for t = 1, T do
      if t <= len then
        row[t] = t == 1 and 101 or (t == len and 102 or (1000 + (b * 7919 + t * 104729) % (vocab - 1000)))
        mrow[t] = 1
      else
        row[t], mrow[t] = 0, 0
      end
    end
    ids[b], mask[b] = row, mrow
  end
  return { input_ids = mb.tensor.from(ids, { dtype = "int32" }),
           attention_mask = mb.tensor.from(mask, { dtype = "int32" }) }
end

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return nil end
  local one = f:read("n")
  f:close()
  return one
end

-- The sgemm ceiling on the model's largest product (ffn.lin1 at B*T = 2048 rows),
-- measured in the same run: on a shared machine absolute times drift, the
-- ratio model/sgemm does much less.
local function sgemm_gflops(mb, rows, dim, hidden)
  local mean = mb.tensor.bench_sgemm(rows, hidden, dim, 2)
  return 2 * rows * hidden * dim / mean / 1e9
end

local function timed(clock, warmup, steps, fn)
  for _ = 1, warmup do fn() end
  local t0 = clock()
  for _ = 1, steps do fn() end
  return (clock() - t0) / steps
end

function M.run(opts)
  opts = opts or {}
  local mb = require "moonbert"
  local core = require("moonbert.core").distilbert
  local clock = core.wall_time
  local cfg = { dim = 768, n_layers = 6, n_heads = 12, hidden_dim = 3072, vocab_size = 30522,
                max_position_embeddings = 512 }
  local B, T, BI, steps, warmup = 32, 64, 64, opts.steps or 2, 1
  if opts.quick then
    cfg = { dim = 64, n_layers = 2, n_heads = 4, hidden_dim = 128, vocab_size = 2000, max_position_embeddings = 64 }
    B, T, BI, steps = 4, 16, 8, 2
  end
  local model = mb.distilbert.new(cfg, { seed = 42, num_labels = 6 })
  local batch = make_batch(mb, 1, B, T, cfg.vocab_size)
  local ibatch = make_batch(mb, 2, BI, T, cfg.vocab_size)
  local labels = {}
  for b = 1, B do labels[b] = (b - 1) % 6 end

  local sgemm
  local function figures(sec, seqs, flops)
    return { seconds_per_step = sec, steps_per_s = 1 / sec, sequences_per_s = seqs / sec,
             gflop_per_s = flops / sec / 1e9, fraction_of_sgemm = flops / sec / 1e9 / sgemm }
  end

  local load_before = loadavg()
  local sgemm_before = sgemm_gflops(mb, B * T, cfg.dim, cfg.hidden_dim)
  local train_s = timed(clock, warmup, steps, function()
    model:zero_grad()
    model:loss(batch, labels, { train = true })
    model:backward()
  end)
  model:freeze_encoder(true)
  local frozen_s = timed(clock, warmup, steps, function()
    model:zero_grad()
    model:loss(batch, labels, { train = true })
    model:backward()
  end)
  model:freeze_encoder(false)
  local infer_s = timed(clock, warmup, steps, function() model:features(ibatch) end)
  sgemm = (sgemm_before + sgemm_gflops(mb, B * T, cfg.dim, cfg.hidden_dim)) / 2

  local result = {
    config = { dim = cfg.dim, n_layers = cfg.n_layers, n_heads = cfg.n_heads, hidden_dim = cfg.hidden_dim,
               vocab_size = cfg.vocab_size, parameters = model:num_parameters() },
    batch = B, length = T, inference_batch = BI, steps = steps, threads = mb.threads(),
    train = figures(train_s, B, model:flops(B, T, true, false)),
    frozen = figures(frozen_s, B, model:flops(B, T, true, true)),
    inference = figures(infer_s, BI, model:flops(BI, T, false, false)),
    peak_rss_mb = peak_rss_mb(),
    sgemm_gflop_per_s = sgemm,
    load_average = { before = load_before, after = loadavg() },
    pytorch_reference_2_threads = {
      train_seconds_per_step_with_adamw = 4.1, frozen_seconds_per_step = 1.19,
      inference_seconds_per_64 = 2.17, train_gflop_per_s = 126, sgemm_gflop_per_s = "158-172",
    },
  }
  model:free()
  return result
end

return M
