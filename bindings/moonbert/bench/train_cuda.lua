-- moonbert bench train_cuda: the whole DistilBERT training step on the GPU.
--
-- Full-size config (dim 768, 6 layers, 12 heads, hidden 3072, vocab 30522,
-- random init, 6 labels), batch 64 x length 64 (the PyTorch comparison of
-- scripts/torch_gpu_bench.py uses the same shape). One step is mb.trainer.step
-- on a model moved with model:to("cuda", {precision=}): zero_grad, forward
-- (train mode, dropout), loss, backward, gradient-norm clipping and the fused
-- AdamW of mb.optim.adamw(model:parameters()), all on the device: only the
-- batch goes in and the loss and norm come out. `moonbert bench train
-- --device cuda [--precision P]` runs this one. Each precision (fp32, tf32, bf16) reports seconds per step,
-- sequences and tokens per second, achieved TFLOP/s (the model's cost model)
-- and the peak device memory moonbert allocated. --quick uses a tiny model.
-- Without a GPU this benchmark fails with the reason (moonbert bench train is
-- the CPU one).
local M = { summary = "DistilBERT training step on the GPU per precision (needs CUDA)" }

local cpu_bench = require "moonbert.bench.train" -- the same synthetic batches and configs

function M.run(opts)
  opts = opts or {}
  local mb = require "moonbert"
  local cuda = mb.cuda
  if not cuda.available() then
    require("moonbert.args").fail("CUDA is not available: " .. cuda.unavailable_reason() ..
                                  " (moonbert bench train measures the CPU)")
  end
  local clock = require("moonbert.core").distilbert.wall_time
  local cfg = cpu_bench.FULL
  local B, T, steps, warmup = 64, 64, opts.steps or 20, 3
  if opts.quick then
    cfg = cpu_bench.QUICK
    B, T, steps, warmup = 8, 16, 3, 1
  end
  local batch = cpu_bench.make_batch(mb, 1, B, T, cfg.vocab_size)
  local labels = {}
  for b = 1, B do labels[b] = (b - 1) % 6 end
  local step = require("moonbert.trainer").step
  local result = {
    device = cuda.device_name(), batch = B, length = T, steps = steps,
    config = { dim = cfg.dim, n_layers = cfg.n_layers, n_heads = cfg.n_heads, hidden_dim = cfg.hidden_dim,
               vocab_size = cfg.vocab_size },
  }
  local precisions = opts.precision and { opts.precision } or cuda.PRECISIONS
  for _, prec in ipairs(precisions) do
    local model = mb.distilbert.new(cfg, { seed = 42, num_labels = 6 })
    result.config.parameters = model:num_parameters()
    local flops = model:flops(B, T, true, false)
    collectgarbage()
    cuda.reset_peak()
    model:to("cuda", { precision = prec, seed = 1 })
    local opt = mb.optim.adamw(model:parameters(), { lr = 5e-5, weight_decay = 0.01 })
    local o = { max_grad_norm = 1.0, lr = 5e-5 }
    local loss
    for _ = 1, warmup do loss = step(model, opt, batch, labels, o) end
    local allocated = cuda.memory().allocated
    local t0 = clock()
    for _ = 1, steps do loss = step(model, opt, batch, labels, o) end
    local sec = (clock() - t0) / steps
    local mem = cuda.memory()
    result[prec] = {
      seconds_per_step = sec, steps_per_s = 1 / sec, sequences_per_s = B / sec, tokens_per_s = B * T / sec,
      tflop_per_s = flops / sec / 1e12, peak_device_mb = mem.peak / 1e6, device_mb = mem.allocated / 1e6,
      allocated_during_steps_mb = (mem.allocated - allocated) / 1e6, last_loss = loss,
    }
    opt:free()
    model:free()
    collectgarbage()
  end
  return result
end

return M
