-- experiments/sweep_lr.lua: learning rate x batch size for fine-tuning DistilBERT
-- on the emotion data (experiments/baseline_vs_finetune.lua).
--
--   moonbert sweep experiments/sweep_lr.lua --jobs 2
--   moonbert results best --experiment sweep_lr --metric val/accuracy
--
-- Six trials, each its own `moonbert run` process writing to results/moonbert.db;
-- rerunning skips the trials already completed. --quick keeps a trial to a small
-- subset of the data and one epoch, so the whole sweep fits a CPU afternoon;
-- remove it from args for full-size trials (then add e.g. "--epochs", "2").
return {
  script = "experiments/baseline_vs_finetune.lua",
  args = { "--quick" },
  grid = {
    lr = { 1e-5, 2e-5, 5e-5 },
    batch_size = { 32, 64 },
  },
  metric = "val/accuracy",
  mode = "max",
  experiment = "sweep_lr",
  store = "results/moonbert.db",
  jobs = 1,
}
