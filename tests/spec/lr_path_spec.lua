-- lr_path_spec.lua: the learning rate crosses from Lua to C once per training step. Each
-- mb.trainer.step makes exactly one call of the C optimizer's step, with the scheduled rate
-- (transformers' linear schedule with warmup, computed here by hand), and mb.trainer.step returns
-- that value (what fit logs as train/lr). Needs no ../shared (a tiny random model).
local mb = require "moonbert"
local T = require "moonbert.tensor"

describe("the learning rate's path", function()
  it("crosses into C once per step, as the schedule's value", function()
    local model = mb.distilbert.new({ dim = 8, n_layers = 1, n_heads = 2, hidden_dim = 16, vocab_size = 32,
                                      max_position_embeddings = 16 }, { seed = 3, num_labels = 2 })
    local base, warmup, total = 1e-2, 2, 6
    local opt = mb.optim.adamw(mb.trainer.optimizer_params(model),
      { lr = base, schedule = mb.optim.schedule.linear { warmup_steps = warmup, total_steps = total } })
    -- every call into the C optimizer, by method; the step calls with their argument
    local real, calls, lrs = opt.core, {}, {}
    opt.core = setmetatable({}, { __index = function(_, k)
      return function(_, ...)
        calls[k] = (calls[k] or 0) + 1
        if k == "step" then lrs[#lrs + 1] = select(1, ...) end
        return real[k](real, ...)
      end
    end })
    local batch = { input_ids = T.from({ { 2, 5, 7, 9, 3 }, { 2, 11, 4, 3, 0 } }, { dtype = "int32" }),
                    attention_mask = T.from({ { 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 0 } }, { dtype = "int32" }) }
    local labels = T.from({ 1, 0 }, { dtype = "int32" })
    for s = 0, total - 1 do
      local _, _, used = mb.trainer.step(model, opt, batch, labels, { max_grad_norm = 1.0 })
      -- get_linear_schedule_with_warmup: s/warmup, then (total - s)/(total - warmup)
      local want = base * (s < warmup and s / warmup or (total - s) / (total - warmup))
      assert.are.equal(s + 1, calls.step, "one C step call per training step")
      assert.is_true(math.abs(lrs[s + 1] - want) <= 1e-15 * base, string.format("step %d: lr %.17g, want %.17g",
        s, lrs[s + 1], want))
      assert.are.equal(lrs[s + 1], used)
    end
    opt.core = real
    opt:free()
  end)
end)
