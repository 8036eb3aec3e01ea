-- moonbert bench train: DistilBERT training and inference throughput on the CPU.
--
-- Full-size config (dim 768, 6 layers, 12 heads, hidden 3072, vocab 30522,
-- random init), batch 32 padded to length 64 (lengths 8..64, one of 64), the
-- same work as shared/peer/bench_torch.py:
--   train       forward + loss + backward + AdamW step, train mode (dropout)
--   frozen      the same with the encoder frozen (AdamW over the head only)
--   inference   [CLS] features for a batch of 64 (eval mode)
--   optimizer   gradient clipping (max norm 1) + one AdamW step over all
--               66 M parameters, nothing else: the part of a step that
--               grows with the parameter count, not the batch
--   memory      (in its own process: MOONBERT_BENCH_ROWS=memory) fine-tune
--               steps at batch 64 with AdamW on bucketed batches as the
--               emotion fine-tune makes them (16000 texts, mean ~22 tokens,
--               chunks of 50 batches sorted by length): a typical batch
--               (length 32, lengths 12..32) gives seconds per step and the
--               2-epoch estimate (500 such steps); the longest bucket
--               (length 72, lengths 48..72) gives the peak RSS.
-- MOONBERT_BENCH_ROWS (comma list, default train,frozen,inference,optimizer) picks rows;
-- MOONBERT_BENCH_STEPS the timed steps per row (default 2, one warm-up).
-- Each reports seconds per step, steps/s, sequences/s and achieved GFLOP/s
-- (matrix-product flops of the model's cost model); peak RSS is the
-- process's high-water mark. --quick uses a tiny model (for tests).
-- fraction_of_sgemm compares each with the sgemm ceiling measured in the same
-- run (PyTorch reaches 126 / 158-172 = 0.73-0.80 on its full step).
-- --precision bf16 runs the model's matrix products in bf16 (README "bf16 on the CPU"; an
-- error where this CPU has no bf16 kernel, unless MOONBERT_BF16=emulate); the bf16 ceiling
-- (core.bf16.bench at the same shape, the layer's orientation) is then measured beside the
-- sgemm one, and fraction_of_ceiling compares each row with it (fraction_of_sgemm with sgemm).
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

-- A right-padded batch of B synthetic sequences: the first T long, the rest 8 (min_len)..T
-- tokens, lengths drawn from rng_seed. Shared with bench/train_cuda.lua.
local function make_batch(mb, rng_seed, B, T, vocab, min_len)
  local ids, mask = {}, {}
  local rng = mb.tensor.rand({ B }, { seed = rng_seed })
  min_len = min_len or 8
  for b = 1, B do
    local len = b == 1 and T or math.max(min_len, math.floor(min_len + rng[b] * (T - min_len)))
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

-- The bf16 ceiling at the same shape as sgemm_gflops, in the linear layer's orientation.
local function bf16_gflops(rows, dim, hidden)
  local mean = require("moonbert.core").bf16.bench(rows, hidden, dim, 2, "bf16")
  return 2 * rows * hidden * dim / mean / 1e9
end

local function timed(clock, warmup, steps, fn)
  for _ = 1, warmup do fn() end
  local t0 = clock()
  for _ = 1, steps do fn() end
  return (clock() - t0) / steps
end

local function wanted_rows()
  local rows = {}
  for r in (os.getenv("MOONBERT_BENCH_ROWS") or "train,frozen,inference,optimizer"):gmatch("[%w_]+") do rows[r] = true end
  return rows
end

local FULL = { dim = 768, n_layers = 6, n_heads = 12, hidden_dim = 3072, vocab_size = 30522,
               max_position_embeddings = 512 }
local QUICK = { dim = 64, n_layers = 2, n_heads = 4, hidden_dim = 128, vocab_size = 2000, max_position_embeddings = 64 }
M.FULL, M.QUICK, M.make_batch = FULL, QUICK, make_batch

local function head_params(model)
  local list = {}
  for _, p in ipairs(model:parameters()) do
    if not p.name:match("^distilbert%.") then list[#list + 1] = p end
  end
  return list
end

-- One training step as the peer times it: forward, loss, backward, AdamW.
local function train_step(model, opt, batch, labels)
  opt:zero_grad()
  model:loss(batch, labels, { train = true })
  model:backward()
  opt:step()
end

function M.run(opts)
  if opts and (opts.device == "cuda" or opts.device == "auto" and require("moonbert").cuda.available()) then
    -- the GPU step: bench/train_cuda.lua
    return require("moonbert.bench.train_cuda").run(opts)
  end
  opts = opts or {}
  local mb = require "moonbert"
  local core = require("moonbert.core").distilbert
  local clock = core.wall_time
  local rows = wanted_rows()
  local cfg = FULL
  local B, T, BI, warmup = 32, 64, 64, 1
  local steps = opts.steps or tonumber(os.getenv("MOONBERT_BENCH_STEPS") or "") or 2
  local MB, MT, MMIN = 64, 32, 12 -- the memory row's typical bucketed batch
  local WT, WMIN = 72, 48          -- and its longest bucket
  if opts.quick then
    cfg = QUICK
    B, T, BI, steps, MB, MT, MMIN, WT, WMIN = 4, 16, 8, 2, 8, 12, 6, 16, 12
  end
  local model = mb.distilbert.new(cfg, { seed = 42, num_labels = 6 })
  local precision = opts.precision or "fp32"
  if precision == "bf16" then
    local notice = model:set_precision("bf16")
    if notice then require("moonbert.args").fail("--precision bf16: no bf16 kernel here: " .. notice) end
  elseif precision ~= "fp32" then
    require("moonbert.args").usage_error("--precision must be fp32 or bf16, got '" .. tostring(precision) .. "'")
  end
  local labels = {}
  for b = 1, math.max(B, MB) do labels[b] = (b - 1) % 6 end
  local function labels_for(n) return table.move(labels, 1, n, 1, {}) end

  local sgemm, ceiling
  local function figures(sec, seqs, flops)
    return { seconds_per_step = sec, steps_per_s = 1 / sec, sequences_per_s = seqs / sec,
             gflop_per_s = flops / sec / 1e9, fraction_of_sgemm = flops / sec / 1e9 / sgemm,
             fraction_of_ceiling = flops / sec / 1e9 / ceiling }
  end

  local load_before = loadavg()
  local sgemm_before = sgemm_gflops(mb, B * T, cfg.dim, cfg.hidden_dim)
  local bf16_before = precision == "bf16" and bf16_gflops(B * T, cfg.dim, cfg.hidden_dim) or nil
  local secs = {}
  if rows.train then
    local batch = make_batch(mb, 1, B, T, cfg.vocab_size)
    local opt = mb.optim.adamw(model:parameters(), { lr = 2e-5, weight_decay = 0.01 })
    local lb = labels_for(B)
    secs.train = timed(clock, warmup, steps, function() train_step(model, opt, batch, lb) end)
    opt:free()
  end
  if rows.frozen then
    local batch = make_batch(mb, 1, B, T, cfg.vocab_size)
    model:freeze_encoder(true)
    local opt = mb.optim.adamw(head_params(model), { lr = 2e-5, weight_decay = 0.01 })
    local lb = labels_for(B)
    secs.frozen = timed(clock, warmup, steps, function() train_step(model, opt, batch, lb) end)
    opt:free()
    model:freeze_encoder(false)
  end
  if rows.inference then
    local ibatch = make_batch(mb, 2, BI, T, cfg.vocab_size)
    secs.inference = timed(clock, warmup, steps, function() model:features(ibatch) end)
  end
  if rows.optimizer then
    local params = model:parameters()
    local opt = mb.optim.adamw(params, { lr = 2e-5, weight_decay = 0.01 })
    secs.optimizer = timed(clock, 1, math.max(steps, 5), function()
      mb.optim.clip_grad_norm(params, 1.0)
      opt:step()
    end)
    opt:free()
  end
  if rows.memory then
    local batch = make_batch(mb, 3, MB, MT, cfg.vocab_size, MMIN)
    local opt = mb.optim.adamw(model:parameters(), { lr = 2e-5, weight_decay = 0.01 })
    local lb = labels_for(MB)
    secs.memory = timed(clock, warmup, steps, function() train_step(model, opt, batch, lb) end)
    local longest = make_batch(mb, 4, MB, WT, cfg.vocab_size, WMIN)
    secs.memory_longest = timed(clock, 0, 1, function() train_step(model, opt, longest, lb) end)
    opt:free()
  end
  sgemm = (sgemm_before + sgemm_gflops(mb, B * T, cfg.dim, cfg.hidden_dim)) / 2
  local bf16_ceiling = bf16_before and (bf16_before + bf16_gflops(B * T, cfg.dim, cfg.hidden_dim)) / 2 or nil
  ceiling = bf16_ceiling or sgemm

  local result = {
    config = { dim = cfg.dim, n_layers = cfg.n_layers, n_heads = cfg.n_heads, hidden_dim = cfg.hidden_dim,
               vocab_size = cfg.vocab_size, parameters = model:num_parameters() },
    batch = B, length = T, inference_batch = BI, steps = steps, threads = mb.threads(),
    peak_rss_mb = peak_rss_mb(),
    sgemm_gflop_per_s = sgemm,
    precision = model:precision(), bf16_kernel = precision == "bf16" and require("moonbert.core").bf16.kernel() or nil,
    bf16_gflop_per_s = bf16_ceiling, ceiling_gflop_per_s = ceiling,
    load_average = { before = load_before, after = loadavg() },
    pytorch_reference_2_threads = {
      train_seconds_per_step_with_adamw = 4.14, frozen_seconds_per_step = 1.19,
      inference_seconds_per_64 = 2.17, train_gflop_per_s = 126, sgemm_gflop_per_s = "158-172",
    },
  }
  if secs.train then result.train = figures(secs.train, B, model:flops(B, T, true, false)) end
  if secs.frozen then result.frozen = figures(secs.frozen, B, model:flops(B, T, true, true)) end
  if secs.inference then result.inference = figures(secs.inference, BI, model:flops(BI, T, false, false)) end
  if secs.optimizer then
    result.optimizer = { seconds_per_step = secs.optimizer, parameters = model:num_parameters(),
                         parameters_per_s = model:num_parameters() / secs.optimizer }
  end
  if secs.memory then
    result.memory = figures(secs.memory, MB, model:flops(MB, MT, true, false))
    result.memory.batch, result.memory.length, result.memory.min_length = MB, MT, MMIN
    result.memory.longest = { length = WT, min_length = WMIN, seconds_per_step = secs.memory_longest }
    result.memory.peak_rss_mb = result.peak_rss_mb
    result.memory.two_epoch_estimate_minutes = 500 * secs.memory / 60 -- 16000 texts / 64, twice
  end
  model:free()
  return result
end

return M
