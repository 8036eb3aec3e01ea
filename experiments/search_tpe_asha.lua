-- experiments/search_tpe_asha.lua: learning rate, warmup and weight decay of a small
-- random-init fine-tune on the emotion data (experiments/search_finetune.lua), searched by
-- TPE with ASHA stopping the trials that fall behind.
--
--   moonbert sweep experiments/search_tpe_asha.lua
--   moonbert sweep experiments/search_tpe_asha.lua --rank      -- pruned trials with their rungs
--   moonbert results list --experiment search_tpe_asha --status pruned
--
-- Every trial evaluates every 25 steps (--eval-every); ASHA's rungs sit at steps 75 and 225
-- of 250 (min_resource * 3^k): a trial goes on past a rung only when its validation loss is
-- in the best third of the trials that reached it (the loss, not the accuracy: from random
-- weights the accuracy sits at the majority class for the first ~150 steps of every trial,
-- while the loss already tells the learning rates apart; a first rung at 25 steps was too
-- early to tell, see the README). TPE draws 5 random points, then learns from the finished
-- (completed and pruned) trials. scripts/bench-asha compares this with random search with and
-- without pruning on the same budget.
return {
  script = "search_finetune.lua",
  args = { "--limit", "16000", "--val-limit", "500", "--epochs", "1", "--batch-size", "64", "--eval-every", "25" },
  sampler = "tpe",
  random = {
    lr = { log_uniform = { 1e-5, 1e-3 } },
    warmup = { uniform = { 0, 0.3 } },        -- a ratio of all steps
    weight_decay = { uniform = { 0, 0.1 } },
  },
  trials = 24, seed = 1,
  tpe = { n_startup_trials = 5 },
  pruner = { asha = { min_resource = 75, reduction_factor = 3, resource = "step", metric = "eval/loss", mode = "min" } },
  metric = "eval/accuracy", mode = "max",
  max_minutes = 60,
  store = "results/moonbert.db", jobs = 1,
}
