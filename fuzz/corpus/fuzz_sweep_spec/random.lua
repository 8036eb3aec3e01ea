local lrs = {}
for i = 1, 3 do lrs[i] = 10 ^ -(3 + i) end
return { name = "r", script = "experiments/baseline_vs_finetune.lua", args = { "--quick", 1 },
  random = { lr = { log_uniform = { 1e-5, 1e-4 } }, batch_size = { choice = { 32, 64 } },
             epochs = { int_uniform = { 1, 3 } }, wd = { uniform = { 0, 0.1 } }, x = { choice = lrs } },
  trials = 4, seed = 7, metric = "val/accuracy", mode = "min", jobs = 2, timeout = 60, store = "s.db" }
