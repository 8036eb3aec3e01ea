-- pretrain_mlm.lua: masked-language-model pretraining of a small DistilBERT from random weights,
-- on unlabelled text, saved as a Hugging Face DistilBertForMaskedLM folder.
--
--   moonbert run experiments/pretrain_mlm.lua [--config small] [--corpus results/corpus/wordnet.txt]
--       [--steps N] [--batch-size 64] [--lr 5e-4] [--resume] [--quick]
--   make pretrain ARGS="--corpus results/corpus/wordnet.txt"
--
-- Text: the emotion training split's texts (unless --no-train-texts) plus every --corpus file (one
-- text per line; scripts/wordnet-corpus writes WordNet glosses and examples as one). Held out: the
-- validation split's first --eval-size texts, masked once with a fixed seed, so every evaluation
-- scores the same masked tokens (MLM loss and masked-token accuracy).
-- Masking: mb.mlm.collator (15% of non-special, non-padding tokens; 80% [MASK], 10% random, 10%
-- unchanged), seeded. Logits are computed at the masked positions only.
-- Training: mb.trainer.fit with the masked_lm objective and max_steps = --steps (the trainer's
-- loop, schedule, checkpoints, resume and preemption). AdamW (wd 0.01, none for biases and
-- LayerNorm weights), linear warmup (6%, rounded up to whole steps) then linear decay to 0 over
-- --steps, clip 1.0, dropout on. Batches: texts shuffled per epoch (seeded), grouped
-- by length within 50-batch windows, padded to the longest in the batch, truncated at --max-length.
-- Store: one run (experiment pretrain_mlm): train/mlm_loss every --log-every steps (default: every
-- 10, or steps/20 when that is fewer, so that a short run still draws at least 20 points),
-- eval/mlm_loss and eval/masked_accuracy every --eval-every steps, params, time.
-- Checkpoints (the trainer's, moonbert.checkpoint): every --checkpoint-every steps under
-- --checkpoint-dir/checkpoint-N (model, optimizer, trainer_state.json with the step, the
-- collator's and the model's RNG states and the settings, manifest.sha256; the two newest kept).
-- --resume continues from the newest one whose manifest verifies, bit for bit (same settings
-- required). SIGTERM/SIGINT: the step finishes, a checkpoint is written, the run is marked
-- interrupted (exit 143 / 130).
-- Output: --out (models/moonbert-small-mlm) with config.json, model.safetensors (no
-- vocab_projector.weight: tied) and the tokenizer files.
-- Length: --steps N, or by default as many steps as fit in --minutes (40), from the time of three
-- measured steps (the count is printed, stored and kept in checkpoints; give --steps for runs that
-- must match across machines).
-- Device: --device cuda|auto runs the model and optimizer on the GPU (model:to; docs/cuda.md).
-- Limits: one process.
local mb = require "moonbert"
local args = require "moonbert.args"
local lfs = require "lfs"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"

local CONFIGS = {
  small = { dim = 256, n_layers = 4, n_heads = 4, hidden_dim = 1024 },
  tiny = { dim = 64, n_layers = 2, n_heads = 4, hidden_dim = 256 },
  base = { dim = 768, n_layers = 6, n_heads = 12, hidden_dim = 3072 },
}

local SPEC = {
  { "--config", "NAME", "model size: small (dim 256, 4 layers, 4 heads, hidden 1024), tiny, base", default = "small",
    choices = { "small", "tiny", "base" } },
  { "--corpus", "PATH", "extra unlabelled text, one per line (repeatable)", multiple = true },
  { "--no-train-texts", nil, "do not use the emotion training split's texts" },
  { "--data", "DIR", "emotion data folder (default: " .. SHARED .. "/data/emotion, else fetched into MOONBERT_CACHE)" },
  { "--tokenizer", "DIR", "tokenizer folder (default: " .. SHARED .. "/models/distilbert-base-uncased, else the cache's)" },
  { "--steps", "N", "optimizer steps (default: as many as fit in --minutes)", type = "number" },
  { "--minutes", "M", "time budget without --steps: the step count comes from a measured step time", type = "number",
    default = 40 },
  { "--batch-size", "N", "texts per step", type = "number", default = 64 },
  { "--lr", "X", "peak learning rate", type = "number", default = 5e-4 },
  { "--warmup", "X", "warmup fraction of the steps", type = "number", default = 0.06 },
  { "--weight-decay", "X", "AdamW weight decay", type = "number", default = 0.01 },
  { "--max-length", "N", "truncate texts to N tokens", type = "number", default = 64 },
  { "--mlm-probability", "X", "fraction of tokens masked", type = "number", default = 0.15 },
  { "--eval-size", "N", "held-out texts (validation split)", type = "number", default = 500 },
  { "--eval-every", "N", "evaluate every N steps", type = "number", default = 250 },
  { "--log-every", "N", "log the training loss every N steps (default 10, fewer for runs under 200 steps: 20 points at least)",
    type = "number" },
  { "--checkpoint-every", "N", "checkpoint every N steps", type = "number", default = 250 },
  { "--checkpoint-dir", "DIR", "checkpoints (default: <out>.checkpoints)" },
  { "--resume", nil, "continue from the newest checkpoint" },
  { "--out", "DIR", "output model folder (default models/moonbert-small-mlm; --quick: results/scratch/mlm-quick)" },
  { "--store", "PATH", "results store: a SQLite file or postgresql://user@host:port/db (default: $MOONBERT_STORE, else results/moonbert.db)",
    default = require("moonbert.store").default_path },
  { "--seed", "N", "seed (init, masking, dropout, shuffling)", type = "number", default = 42 },
  { "--device", "DEV", "cpu, cuda or auto (GPU when present)", default = "auto",
    choices = { "cpu", "cuda", "auto" } },
  { "--precision", "P", "fp32, tf32 or bf16 (default: the device's)", choices = { "fp32", "tf32", "bf16" } },
  { "--quick", nil, "60 steps, eval/checkpoint every 20, 200 held-out texts (a few minutes)" },
  { "--name", "NAME", "run name" },
  { "--help", nil, "show this help" },
}
local usage = args.usage(SPEC, "usage: moonbert run experiments/pretrain_mlm.lua [options]\n\noptions:")
local okp, opts = pcall(args.parse, arg or {}, SPEC)
if not okp then
  io.stderr:write("pretrain_mlm: ", type(opts) == "table" and opts.message or tostring(opts), " (--help lists the options)\n")
  os.exit(2)
end
if opts.help then print(usage) os.exit(0) end
do -- where the run goes, checked before any data loads (moonbert.experiment.check_device)
  local ok, dev, precision, note = pcall(require("moonbert.experiment").check_device, opts.device, opts.precision,
                                         "masked_lm")
  if not ok then io.stderr:write("pretrain_mlm: ", tostring(dev), "\n") os.exit(1) end
  opts.device, opts.precision = dev, precision
  print(note)
end
local function int(name)
  local key = name:gsub("%-", "_")
  local v = math.tointeger(opts[key])
  if not v or v < 1 then
    io.stderr:write("pretrain_mlm: --", name, " must be a positive integer, got ", tostring(opts[key]), "\n")
    os.exit(2)
  end
  opts[key] = v
end
if opts.quick then
  local given = {}
  for _, a in ipairs(arg) do given[(a:match("^%-%-([%w%-]+)") or "")] = true end
  if not given.steps then opts.steps = 60 end
  if not given["eval-every"] then opts.eval_every = 20 end
  if not given["checkpoint-every"] then opts.checkpoint_every = 20 end
  if not given["eval-size"] then opts.eval_size = 200 end
end
if opts.steps then int("steps") end
if opts.log_every then int("log-every") end
for _, n in ipairs { "batch-size", "max-length", "eval-size", "eval-every", "checkpoint-every",
                     "seed" } do int(n) end
-- A --quick toy (60 steps) must never become the model the next `make run` picks up.
local DEFAULT_OUT = "models/moonbert-small-mlm"
if opts.quick and opts.out and opts.out:gsub("/+$", "") == DEFAULT_OUT then
  io.stderr:write("pretrain_mlm: --quick does not write ", DEFAULT_OUT, " (the experiments would take a 60-step toy",
                  " for the pretrained small model); leave out --out or name another folder\n")
  os.exit(2)
end
opts.out = opts.out or (opts.quick and "results/scratch/mlm-quick" or DEFAULT_OUT)
opts.checkpoint_dir = opts.checkpoint_dir or (opts.out .. ".checkpoints")
-- Data and tokenizer: ../shared, else the hub cache (fetched when missing), else one line naming
-- scripts/fetch-data / scripts/fetch-model.
do
  local ex = require "moonbert.experiment"
  opts._script = "pretrain_mlm"
  if not opts.tokenizer then
    local hub = require "moonbert.hub"
    local cands = { SHARED .. "/models/distilbert-base-uncased", "models/distilbert-base-uncased",
                    hub.local_dir("distilbert-base-uncased") }
    for _, d in ipairs(cands) do
      if not opts.tokenizer and lfs.attributes(d .. "/vocab.txt", "mode") == "file" then opts.tokenizer = d end
    end
    if not opts.tokenizer then
      ex.user_error("needs the distilbert-base-uncased tokenizer files, which are not on disk (looked in " ..
                    table.concat(cands, ", ") .. "): fetch them with scripts/fetch-model, or pass --tokenizer DIR", opts)
    end
  end
  opts.data = ex.resolve_data(opts) -- the held-out texts come from its validation split
end

-- ---- helpers --------------------------------------------------------------------------------
local ckpt = require "moonbert.checkpoint"

local function read_lines(path, into)
  local f, err = io.open(path, "r")
  if not f then error("pretrain_mlm: cannot read corpus " .. path .. ": " .. tostring(err), 0) end
  local n = 0
  for line in f:lines() do
    if line:match("%S") then into[#into + 1] = line; n = n + 1 end
  end
  f:close()
  return n
end

-- ---- data -------------------------------------------------------------------------------------
local ex = require "moonbert.experiment"
local okt, tok = pcall(mb.tokenizer.load, opts.tokenizer)
if not okt then ex.user_error("--tokenizer " .. opts.tokenizer .. ": " .. require("moonbert.args").clean(tok), opts) end
local okd, emotion = pcall(mb.data.load_folder, opts.data)
if not okd then ex.user_error(emotion, opts) end
local texts, sources = {}, {}
if not opts.no_train_texts then
  local train = emotion.train
  for _, t in ipairs(train.text) do texts[#texts + 1] = t end
  sources[#sources + 1] = string.format("%s train split (%d texts)", opts.data, #train.text)
end
for _, path in ipairs(opts.corpus) do
  sources[#sources + 1] = string.format("%s (%d texts)", path, read_lines(path, texts))
end
if #texts == 0 then error("pretrain_mlm: no text (--no-train-texts without --corpus)", 0) end
local held = {}
do
  local val = emotion.validation.text
  for i = 1, math.min(opts.eval_size, #val) do held[i] = val[i] end
end
print("pretraining text: " .. table.concat(sources, " + ") .. string.format(" = %d texts; held out: %d", #texts, #held))

-- The training texts as mb.trainer.fit's train source. Batches of epoch e: the texts in a seeded
-- order (Fisher-Yates with Lua's xoshiro, reseeded per epoch), cut into groups of 50 batches, each
-- group sorted by token length before it is cut into batches (transformers' group_by_length):
-- little padding, still random, and the same for the same (seed, epoch), which a resume needs.
local lengths = tok:lengths(texts)
local nb = #texts // opts.batch_size
if nb < 1 then error(string.format("pretrain_mlm: %d texts is fewer than one batch of %d", #texts, opts.batch_size), 0) end
local corpus = {}
function corpus:hash() return mb.store.sha256(table.concat(texts, "\n")) end
function corpus:batches(o)
  local B, N = o.batch_size, #texts
  math.randomseed(o.seed * 1000003 + o.epoch - 1)
  local order = {}
  for k = 1, N do order[k] = k end
  for k = N, 2, -1 do
    local r = math.random(k)
    order[k], order[r] = order[r], order[k]
  end
  local batches = {}
  local group = 50 * B
  for g0 = 1, nb * B, group do
    local chunk = table.move(order, g0, math.min(g0 + group - 1, nb * B), 1, {})
    table.sort(chunk, function(a, b) if lengths[a] ~= lengths[b] then return lengths[a] > lengths[b] end return a < b end)
    for k = 1, #chunk, B do batches[#batches + 1] = table.move(chunk, k, k + B - 1, 1, {}) end
  end
  local plan = {}
  function plan.get(_, k)
    local list = {}
    for j, i in ipairs(batches[k]) do list[j] = texts[i] end
    return tok:encode_batch(list, { padding = "longest", truncation = true, max_length = o.max_length })
  end
  return setmetatable(plan, { __len = function() return #batches end })
end

-- ---- model, resume --------------------------------------------------------------------------------
local cfg = {
  model_type = "distilbert", architectures = { "DistilBertForMaskedLM" }, vocab_size = tok.vocab_size,
  max_position_embeddings = 128, sinusoidal_pos_embds = false, activation = "gelu", dropout = 0.1,
  attention_dropout = 0.1, initializer_range = 0.02, pad_token_id = 0, tie_weights_ = true,
  qa_dropout = 0.1, seq_classif_dropout = 0.2,
}
for k, v in pairs(CONFIGS[opts.config]) do cfg[k] = v end
if opts.max_length > cfg.max_position_embeddings then
  error(string.format("pretrain_mlm: --max-length %d exceeds max_position_embeddings %d", opts.max_length,
    cfg.max_position_embeddings), 0)
end

-- The resume itself is the trainer's; the checkpoint is picked here because a resume without
-- --steps takes the run's step count from it.
local resume_dir, resume_step = nil, 0
if opts.resume then
  resume_dir, resume_step = ckpt.newest(opts.checkpoint_dir, { warn = function(msg) print("warning: " .. msg) end })
end
if opts.resume and not resume_dir then print("resume: no checkpoint in " .. opts.checkpoint_dir .. ", starting anew") end
if resume_dir and not opts.steps then
  local state = ckpt.read_json(resume_dir .. "/" .. ckpt.TRAINER_STATE)
  opts.steps = state and math.tointeger(state.total_steps)
end
local model = mb.distilbert.new_masked_lm(cfg, { seed = opts.seed })
model:to(opts.device, { precision = opts.precision }) -- every later call runs there (check_device probed it)
-- Without --steps: time loss + backward on three batches after a warm-up one (eval mode, a collator of its own: the
-- run's RNG streams are untouched), add 15% for clipping and the optimizer, and fill --minutes.
if not opts.steps then
  local probe = mb.mlm.collator(tok, { seed = opts.seed + 1, mlm_probability = opts.mlm_probability })
  local plan = corpus:batches { batch_size = opts.batch_size, seed = opts.seed, epoch = 1, max_length = opts.max_length }
  local t_probe, n_probe = 0, 0
  -- The first batch is a warm-up (thread pool, buffers) and is not timed: timing it overestimated
  -- the step by 40% (0.68 s measured against 0.49 s in the run).
  for k, j in ipairs { 1, 1, nb // 3, (2 * nb) // 3 } do
    local b = probe:mask(plan:get(j + 1))
    if b.n_masked > 0 then
      local t = mb.store.now()
      model:loss(b, b.labels, { train = false })
      model:backward()
      if k > 1 then t_probe, n_probe = t_probe + mb.store.now() - t, n_probe + 1 end
    end
  end
  model:zero_grad()
  local per_step = 1.15 * t_probe / math.max(n_probe, 1)
  opts.steps = math.max(20, math.floor(opts.minutes * 60 / per_step))
  print(string.format("steps: %d (%.2f s per step measured, %g minutes)", opts.steps, per_step, opts.minutes))
end
print(string.format("model: %s config, %s", opts.config, tostring(model)))

-- ---- store ------------------------------------------------------------------------------------------
local store = ex.open_store(opts)
local run <close> = store:start_run {
  experiment = "pretrain_mlm", name = opts.name, seed = opts.seed, device = opts.device,
  dataset_hash = corpus:hash(),
  params = ex.with_device({ config = opts.config, model_config = cfg, steps = opts.steps, batch_size = opts.batch_size, lr = opts.lr,
             warmup = opts.warmup, weight_decay = opts.weight_decay, max_length = opts.max_length,
             mlm_probability = opts.mlm_probability, corpus = opts.corpus, train_texts = not opts.no_train_texts,
             n_texts = #texts, n_held_out = #held, out = opts.out, resumed_from = resume_dir or "",
             start_step = resume_step or 0, quick = opts.quick }, opts),
  tags = { init = "random", config = opts.config },
}
print(string.format("run %d (store %s)", run.id, opts.store))

-- ---- training: the trainer's loop -------------------------------------------------------------------
local t0 = mb.store.now()
mb.trainer.fit {
  model = model, tokenizer = tok, objective = "masked_lm", mlm_probability = opts.mlm_probability,
  train = corpus, eval = { text = held }, eval_batch_size = 64, max_length = opts.max_length,
  max_steps = opts.steps, batch_size = opts.batch_size, lr = opts.lr, warmup = opts.warmup,
  weight_decay = opts.weight_decay, max_grad_norm = 1.0, seed = opts.seed,
  log_every = opts.log_every or math.max(1, math.min(10, opts.steps // 20)),
  eval_every = opts.eval_every, eval_on_start = true,
  checkpoint_dir = opts.checkpoint_dir, save_steps = opts.checkpoint_every, save_total_limit = 2, resume = resume_dir,
  settings = { config = opts.config, lr = opts.lr, warmup = opts.warmup, weight_decay = opts.weight_decay,
               max_length = opts.max_length, mlm_probability = opts.mlm_probability },
  device = opts.device, precision = opts.precision, run = run,
}

-- ---- save -----------------------------------------------------------------------------------------------
ex.mkdir_p(opts.out)
model:save(opts.out)
ex.copy_tokenizer(opts.tokenizer, opts.out)
local seconds = mb.store.now() - t0
run:log_metric("time/pretrain_seconds", seconds)
ex.log_device_memory(run, opts)
run:log_artifact("model", opts.out .. "/model.safetensors")
run:finish()
ex.write_report(store, run)
print(string.format("saved %s (HF DistilBertForMaskedLM + tokenizer) after %d steps, %.0f s; run %d", opts.out,
  opts.steps, seconds, run.id))
