-- tests/spec/dist/fit.lua: the fine-tune that tests/spec/dist_spec.lua runs under mpirun and alone.
--   moonbert run tests/spec/dist/fit.lua KEY=VALUE...
--   out=DIR          checkpoints in DIR/checkpoints, the final parameters in DIR/final.safetensors,
--                    the eval history in DIR/history.txt (rank 0)
--   epochs=N (2) stop_after=E resume=1 dropout=0|1 (0) timeout=S (30) check_every=N
--   db=PATH          a results store: rank 0 records the run (failed with the error if fit fails)
--   kill_at=STEP     rank 1 kills itself with SIGKILL after that step (the fault test)
--   stop_at=STEP     rank 1 stops itself with SIGSTOP after that step (the hang test)
--   skew_at=STEP     rank 1 changes one weight after that step (the checksum test)
-- Data: the first 40 emotion training texts (5 global batches of 8), 20 validation texts.
local mb = require "moonbert"
local o = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  if k then o[k] = v end
end
local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local dist = mb.dist.setup { timeout = tonumber(o.timeout or "30") }
local rank = dist.rank()

local tok = mb.tokenizer.load(TINY)
local data = mb.data.load_emotion(SHARED .. "/data/emotion")
local train, val = data.train:head(40), data.validation:head(20)

-- the fixture's weights in a model whose dropout is off (parity) or on
local drop = o.dropout == "1" and 0.1 or 0.0
local cfg = require("dkjson").decode(require("moonbert.fs").read_file(TINY .. "/config.json"))
cfg.dropout, cfg.attention_dropout, cfg.seq_classif_dropout = drop, drop, drop
local model = mb.distilbert.new(cfg, { num_labels = 6, id2label = data.label_names, seed = 1 })
local st = mb.safetensors.load(TINY .. "/model.safetensors")
for _, p in ipairs(model:parameters()) do p.value:copy(st[p.name]) end

local step_fn = mb.trainer.step
local core = require("moonbert.core")
mb.trainer.step = function(m, opt, b, labels, so)
  local loss, norm, lr = step_fn(m, opt, b, labels, so)
  if rank == 1 then
    local s = so.step
    if tonumber(o.kill_at) == s then core.signal.kill(core.signal.pid(), "SIGKILL") end
    if tonumber(o.stop_at) == s then os.execute("kill -STOP " .. core.signal.pid()) end
    if tonumber(o.skew_at) == s then
      local w = m:parameters()[1].value
      w:set(1, 1, w:get(1, 1) + 1e-3)
    end
  end
  return loss, norm, lr
end

local run
if o.db and rank == 0 then
  run = mb.store.open(o.db):start_run { experiment = "dist_spec", params = { world_size = dist.size() } }
end
local ok, res = pcall(mb.trainer.fit, {
  model = model, tokenizer = tok, train = train, eval = val, epochs = tonumber(o.epochs or "2"), batch_size = 8,
  lr = 1e-3, seed = 11, max_length = 48, progress = false, run = run,
  checkpoint_dir = o.out and (o.out .. "/checkpoints"), resume = o.resume == "1" or nil,
  stop_after_epoch = tonumber(o.stop_after), check_every = tonumber(o.check_every),
})
if not ok then
  if run then run:fail(tostring(res)) end
  error(res, 0)
end
if run then run:finish() end
mb.trainer.step = step_fn
if o.out and rank == 0 then
  local t = {}
  for _, p in ipairs(model:parameters()) do t[p.name] = p.value end
  mb.safetensors.save(o.out .. "/final.safetensors", t)
  local f = assert(io.open(o.out .. "/history.txt", "w"))
  for _, h in ipairs(res.history) do
    f:write(string.format("%d %d %.17g %.17g %.17g\n", h.epoch, h.step, h.train_loss, h.eval_loss or 0 / 0,
      h.eval_accuracy or 0 / 0))
  end
  f:close()
end
print(string.format("rank %d of %d: %d steps", rank, dist.size(), res.steps))
