-- moonbert.bench.matmul: single-precision matrix product throughput (cblas_sgemm).
--
-- `moonbert bench matmul [--quick] [--threads N]` reports GFLOP/s (2*m*n*k flops per
-- product) for a square 2048^3 product and the DistilBERT shapes at 32 sequences of
-- 128 tokens (4096 rows): the attention projections 4096x768x768 and the feed-forward
-- layers 4096x768x3072 and 4096x3072x768. Timing is done in C
-- (core.tensor.bench_sgemm) after one warm-up product, so Lua is not measured;
-- "gflops" is from the mean time, "gflops_best" from the fastest repetition.
-- --quick uses one repetition at 128 rows (for tests; the figures are not representative).
local core = require("moonbert.core").tensor

local SHAPES = {
  { name = "square_2048", m = 2048, n = 2048, k = 2048 },
  { name = "distilbert_qkvo_4096x768x768", m = 4096, n = 768, k = 768 },
  { name = "distilbert_ffn1_4096x768x3072", m = 4096, n = 3072, k = 768 },
  { name = "distilbert_ffn2_4096x3072x768", m = 4096, n = 768, k = 3072 },
}

local M = { summary = "sgemm GFLOP/s at 2048^3 and the DistilBERT layer shapes" }

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
  return { shapes = results, quick = opts.quick and true or false }
end

return M
