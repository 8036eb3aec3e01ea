-- trajectory_spec.lua: model-level training parity with the PyTorch reference
-- (../shared/fixtures/distilbert-tiny, HF Trainer semantics): five steps on the same batch,
-- dropout off, clip_grad_norm_ 1.0 (0.1 for clipped.*), lr_k = 1e-3 * (1 - k/5) from the linear
-- schedule, AdamW wd 0.01 with no decay for biases and LayerNorm weights; frozen.* trains only
-- the head. Steps go through mb.trainer.step, the function fit uses.
-- Tolerances (fixture README): traj.loss and traj.grad_norm |got - ref| <= 1e-4 * max|ref|;
-- after5.* |got - ref| <= 1e-4 (absolute; Adam turns grad rounding near eps into ~1e-5 moves).
-- The measured errors are printed (MOONBERT_VERBOSE=1) and asserted against those bounds.
local mb = require "moonbert"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local have_shared = io.open(TINY .. "/cases.safetensors") ~= nil
local report = require("tests.spec.support").report

-- Five steps from the fixture weights; returns losses, norms, lrs and the model.
local function run_trajectory(opts)
  local model = mb.distilbert.load(TINY, { quiet = true })
  local fx = mb.safetensors.load(TINY .. "/cases.safetensors")
  if opts.frozen then model:freeze_encoder(true) end
  local initial = {}
  for _, p in ipairs(model:parameters()) do initial[p.name] = p.value:clone() end
  local opt = mb.optim.adamw(mb.trainer.optimizer_params(model), {
    lr = 1e-3, weight_decay = 0.01, schedule = mb.optim.schedule.linear { warmup_steps = 0, total_steps = 5 } })
  local batch = { input_ids = fx.input_ids, attention_mask = fx.attention_mask }
  local losses, norms, lrs = {}, {}, {}
  for k = 1, 5 do
    losses[k], norms[k], lrs[k] = mb.trainer.step(model, opt, batch, fx.labels,
      { max_grad_norm = opts.max_grad_norm, train = false })
  end
  opt:free()
  return { model = model, fx = fx, losses = losses, norms = norms, lrs = lrs, initial = initial }
end

local function max_abs(list) local m = 0 for _, v in ipairs(list) do m = math.max(m, math.abs(v)) end return m end

-- worst |got - ref| over a 5-vector and the bound 1e-4 * max|ref|
local function series_error(got, ref_tensor)
  local ref = ref_tensor:totable()
  local err = 0
  for k = 1, 5 do err = math.max(err, math.abs(got[k] - ref[k])) end
  return err, 1e-4 * max_abs(ref), max_abs(ref)
end

local function check_series(name, got, ref_tensor)
  local err, bound, scale = series_error(got, ref_tensor)
  report("%-26s max abs err %.3e (relative %.3e, bound %.1e)", name, err, err / scale, bound)
  assert(err <= bound, string.format("%s: max abs error %.3e exceeds 1e-4 * max|ref| = %.3e", name, err, bound))
end

-- every parameter named in the fixture with prefix: |got - ref| <= 1e-4; returns how many were compared
local function check_after5(model, fx, prefix, only)
  local worst, worst_name, worst_rel, n = 0, "", 0, 0
  for _, p in ipairs(model:parameters()) do
    local ref = fx[prefix .. p.name]
    if only == nil or only[p.name] then
      assert(ref, "fixture has no " .. prefix .. p.name)
      local err = (p.value - ref):abs():max()
      local scale = ref:abs():max()
      if err > worst then worst, worst_name = err, p.name end
      worst_rel = math.max(worst_rel, scale > 0 and err / scale or err)
      assert(err <= 1e-4, string.format("%s%s: max abs error %.3e > 1e-4", prefix, p.name, err))
      n = n + 1
    end
  end
  report("%-26s max abs err %.3e (%s), worst relative %.3e over %d tensors", prefix .. "*", worst, worst_name,
    worst_rel, n)
  return n
end

describe("training trajectory parity (distilbert-tiny)", function()
  if not have_shared then
    pending("needs " .. TINY .. " (../shared is absent)")
    return
  end

  it("matches traj.* and after5.* (clip 1.0, linear lr 1e-3 -> 0)", function()
    local r = run_trajectory { max_grad_norm = 1.0 }
    check_series("traj.loss", r.losses, r.fx["traj.loss"])
    check_series("traj.grad_norm", r.norms, r.fx["traj.grad_norm"])
    local ref_lr = r.fx["traj.lr"]:totable()
    for k = 1, 5 do
      -- the reference lrs are stored as float32 (relative rounding 6e-8)
      assert.is_true(math.abs(r.lrs[k] - ref_lr[k]) <= 1e-6 * ref_lr[k], "lr of step " .. k)
    end
    assert.are.equal(40, check_after5(r.model, r.fx, "after5."))
    -- the run moved the weights by far more than the tolerance (the check can fail)
    local moved = 0
    for _, p in ipairs(r.model:parameters()) do
      moved = math.max(moved, (p.value - r.initial[p.name]):abs():max())
    end
    assert.is_true(moved > 1e-3, "parameters moved by " .. moved)
  end)

  it("matches clipped.* (clip_grad_norm_ 0.1 actually clips)", function()
    local r = run_trajectory { max_grad_norm = 0.1 }
    check_series("clipped.traj.loss", r.losses, r.fx["clipped.traj.loss"])
    check_series("clipped.traj.grad_norm", r.norms, r.fx["clipped.traj.grad_norm"])
    assert.is_true(r.norms[1] > 0.1, "the norm must exceed the clip for this case to test clipping")
    assert.are.equal(40, check_after5(r.model, r.fx, "clipped.after5."))
  end)

  it("matches frozen.* (encoder frozen: only the head trains, the encoder stays bit-identical)", function()
    local r = run_trajectory { max_grad_norm = 1.0, frozen = true }
    check_series("frozen.traj.loss", r.losses, r.fx["frozen.traj.loss"])
    check_series("frozen.traj.grad_norm", r.norms, r.fx["frozen.traj.grad_norm"])
    local head = { ["pre_classifier.weight"] = true, ["pre_classifier.bias"] = true,
                   ["classifier.weight"] = true, ["classifier.bias"] = true }
    assert.are.equal(4, check_after5(r.model, r.fx, "frozen.after5.", head))
    for _, p in ipairs(r.model:parameters()) do
      if not head[p.name] then
        assert.are.equal(0, (p.value - r.initial[p.name]):abs():max(), p.name .. " changed while frozen")
      end
    end
  end)
end)
