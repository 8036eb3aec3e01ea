-- moonbert.bench.matmul: single-precision matrix product throughput (cblas_sgemm).
--
-- `moonbert bench matmul [--quick] [--threads N]` reports GFLOP/s (2*m*n*k flops per
-- product) for a square 2048^3 product and the DistilBERT shapes at 32 sequences of
-- 128 tokens (4096 rows): the attention projections 4096x768x768 and the feed-forward
-- layers 4096x768x3072 and 4096x3072x768. Timing is done in C
-- (core.tensor.bench_sgemm) after one warm-up product, so Lua is not measured;
-- "gflops" is from the mean time, "gflops_best" from the fastest repetition.
-- --quick uses one repetition at 128 rows (for tests; the figures are not representative).
--
-- bf16 (README "bf16 on the CPU"): the linear layers' products as the model makes them at
-- 32 x 64 tokens (2048 rows, C = A W^T, W [out, in]): bf16 operands converted beforehand and
-- the oneDNN primitive created in the warm-up (core.bf16.bench), against fp32 sgemm on the
-- same operands, in alternating rounds in this one process (ROUNDS, 3; the ratio of adjacent
-- runs holds on a shared machine where absolute times drift), with the load average before and
-- after. Where there is no bf16 kernel (no AVX-512 BF16) the section says why instead;
-- MOONBERT_BF16=emulate times the emulated kernel (slower than fp32 by construction).
local core = require("moonbert.core").tensor
local bcore = require("moonbert.core").bf16

local SHAPES = {
  { name = "square_2048", m = 2048, n = 2048, k = 2048 },
  { name = "distilbert_qkvo_4096x768x768", m = 4096, n = 768, k = 768 },
  { name = "distilbert_ffn1_4096x768x3072", m = 4096, n = 3072, k = 768 },
  { name = "distilbert_ffn2_4096x3072x768", m = 4096, n = 768, k = 3072 },
}

local BF16_SHAPES = {
  { name = "qkvo_2048x768x768", m = 2048, n = 768, k = 768 },
  { name = "ffn1_2048x3072x768", m = 2048, n = 3072, k = 768 },
  { name = "ffn2_2048x768x3072", m = 2048, n = 768, k = 3072 },
}

local M = { summary = "sgemm GFLOP/s at 2048^3 and the DistilBERT layer shapes; bf16 against sgemm" }

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return nil end
  local one = f:read("n")
  f:close()
  return one
end

local function median(t)
  local s = table.move(t, 1, #t, 1, {})
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

--- bf16 against sgemm at the linear layers' shapes, alternating; rows = 2048 unless given.
function M.bf16_vs_sgemm(opts)
  opts = opts or {}
  local kernel, why = bcore.kernel()
  local out = { kernel = kernel, load_average = { before = loadavg() } }
  if kernel == "none" then
    out.skipped = "no bf16 kernel here: " .. why
    return out
  end
  local rounds = opts.rounds or tonumber(os.getenv("ROUNDS") or "") or 3
  local reps = opts.reps or 3
  out.rounds, out.reps, out.shapes = rounds, reps, {}
  for _, s in ipairs(BF16_SHAPES) do
    local m = opts.rows or s.m
    local flops = 2.0 * m * s.n * s.k
    local r = { name = s.name, m = m, n = s.n, k = s.k, sgemm_gflops = {}, bf16_gflops = {}, ratio = {} }
    for _ = 1, rounds do
      local ts = bcore.bench(m, s.n, s.k, reps, "sgemm")
      local tb = bcore.bench(m, s.n, s.k, reps, "bf16")
      r.sgemm_gflops[#r.sgemm_gflops + 1] = flops / ts / 1e9
      r.bf16_gflops[#r.bf16_gflops + 1] = flops / tb / 1e9
      r.ratio[#r.ratio + 1] = ts / tb
    end
    r.bf16_over_sgemm_speed = median(r.ratio)
    r.bf16_gflops_median, r.sgemm_gflops_median = median(r.bf16_gflops), median(r.sgemm_gflops)
    out.shapes[#out.shapes + 1] = r
  end
  out.load_average.after = loadavg()
  return out
end

function M.run(opts)
  opts = opts or {}
  local reps = opts.quick and 1 or 5
  local results = {}
  for _, s in ipairs(SHAPES) do
    local m = opts.quick and 128 or s.m
    local mean, best = core.bench_sgemm(m, s.n, s.k, reps)
    local flops = 2.0 * m * s.n * s.k
    results[#results + 1] = {
      name = s.name, m = m, n = s.n, k = s.k, reps = reps,
      seconds = mean, gflops = flops / mean / 1e9, gflops_best = flops / best / 1e9,
    }
  end
  local bf16 = M.bf16_vs_sgemm(opts.quick and { rows = 128, rounds = 1, reps = 1 } or {})
  return { shapes = results, bf16 = bf16, quick = opts.quick and true or false }
end

return M
