-- moonbert.experiment: the pieces the experiment scripts in experiments/ share.
--
--   local ex = require "moonbert.experiment"
--   local m  = ex.resolve_model{model = opts.model}     -- which weights, and how the run is initialised
--   ex.print_banner(m)                                   -- says loudly when weights are random
--   local model = ex.load_model(m, {num_labels = 6, id2label = names, seed = 42})
--   local X = ex.features(model, split, tok, {pooling = "cls", cache_dir = "results/cache", model_hash = h})
--   local pred = ex.predict(model, split, tok)           -- mb.trainer.predict: {predicted=, probs=, loss=}
--   ex.fit{model=, train=, eval=, tokenizer=, epochs=, batch_size=, lr=, ...}  -- mb.trainer.fit
--   ex.print_table(headers, rows)
--
-- Model lookup order (resolve_model): --model DIR (or a hub name, fetched into MOONBERT_CACHE);
-- models/distilbert-base-uncased with model.safetensors, else the hub cache, else a download
-- (init "pretrained"); models/moonbert-small-mlm with weights (init
-- "moonbert-small-mlm"); else config and tokenizer only, from models/distilbert-base-uncased or
-- ../shared/models/distilbert-base-uncased, with random weights (init "random"). A run records
-- init so that no result from random weights is mistaken for a pretrained one.
--
-- Feature cache: features(...) with cache_dir keeps [N, D] float32 features in
-- <cache_dir>/features-<key>.safetensors, key = sha256(model hash, split hash, pooling,
-- max_length). A second run with the same model and data reads them instead of recomputing.
--
-- Limits: features and predictions are computed batch by batch in evaluation mode (no dropout);
-- BERT models run on the CPU only (place() says so for --device cuda).
local T = require "moonbert.tensor"

local M = {}

local function exists(path, mode)
  local lfs = require "lfs"
  local m = lfs.attributes(path, "mode")
  if mode then return m == mode end
  return m ~= nil
end
M.exists = exists

local function mkdir_p(dir)
  local ok, err = require("moonbert.fs").mkdir_p(dir)
  if not ok then error(err, 2) end
  return true
end
M.mkdir_p = mkdir_p

local function shared_dir() return os.getenv("MOONBERT_SHARED") or "../shared" end
M.shared_dir = shared_dir

-- ---- device ------------------------------------------------------------------------------------

--- check_device(dev, precision) -> device, precision, note: where an experiment runs.
-- dev: "cpu", "cuda" or "auto" (mb.cuda.device: auto is cuda when a GPU can be used); precision:
-- nil (the device's default: mb.cuda.DEFAULT_PRECISION on cuda, fp32 on the CPU), "fp32", "tf32"
-- or "bf16". A one-layer model is moved there with model:to(device, {precision=}) at once, so that
-- a device or precision this machine cannot run fails before any data is loaded, with the
-- runtime's reason ("--device cuda: CUDA is not available: no CUDA driver ..."; on the CPU a
-- precision other than fp32 is the CPU runtime's to accept). note: the line the banner prints.
-- kind "masked_lm" probes the masked-LM model (it runs on the GPU too; where a model cannot, auto
-- means the CPU).
function M.check_device(dev, precision, kind)
  local mb = require "moonbert"
  local okd, device, why = pcall(mb.cuda.device, dev or "auto")
  if not okd then error((tostring(device):gsub("^[^:]+:%d+: ", "")), 0) end
  local function try(d, p)
    local cfg = { dim = 8, n_layers = 1, n_heads = 2, hidden_dim = 8, vocab_size = 8, max_position_embeddings = 4,
                  num_labels = 2 }
    local probe = kind == "masked_lm" and mb.distilbert.new_masked_lm(cfg, { seed = 1 })
                  or mb.distilbert.new(cfg, { seed = 1 })
    local ok, err = pcall(probe.to, probe, d, { precision = p, quiet = true })
    probe:free()
    return ok, err
  end
  local p0 = precision
  precision = precision or (device == "cuda" and mb.cuda.DEFAULT_PRECISION or "fp32")
  local ok, err = try(device, precision)
  if not ok and dev == "auto" and device == "cuda" then -- this model cannot use the GPU: auto is the CPU
    why = tostring(err):gsub("^[^:]*: ", "")
    device, precision = "cpu", p0 or "fp32"
    ok, err = try(device, precision)
  end
  if not ok then
    error(string.format("--device %s --precision %s: %s", device, precision,
      require("moonbert.check").reason(err)), 0)
  end
  local note = "device: " .. device
  if device == "cuda" then note = note .. " (" .. tostring(mb.cuda.device_name()) .. ")" end
  note = note .. ", precision " .. precision
  if dev == "auto" then note = note .. (device == "cuda" and " (--device auto: a GPU is available)"
                                      or " (--device auto: " .. tostring(why) .. ")") end
  return device, precision, note
end

--- model_type_of(model_arg) -> config.json's model_type of a --model folder (or of a hub name
-- already in the cache), else nil (nothing is fetched or loaded).
function M.model_type_of(arg)
  if type(arg) ~= "string" then return nil end
  local dir = arg
  if not exists(dir .. "/config.json", "file") then
    local okh, cached = pcall(require("moonbert.hub").find, arg)
    if not okh or not cached then return nil end
    dir = cached
  end
  local okc, cfg = pcall(function()
    return require("dkjson").decode(require("moonbert.fs").read_file(dir .. "/config.json") or "{}")
  end)
  return okc and type(cfg) == "table" and cfg.model_type or nil
end

--- place(model, opts) -> model: the model on opts.device in opts.precision (parse_options set
-- them), where every later call of the experiment runs.
-- A model without a GPU backend (BERT) stays on the CPU, and says so for cuda.
function M.place(model, opts)
  if not opts.device then return model end
  if model.to then
    model:to(opts.device, { precision = opts.precision, quiet = true }) -- parse_options gave the notice
  elseif opts.device ~= "cpu" then
    error(tostring(model):match("^[%w.]+") .. " runs on the CPU only (this model has no GPU backend)", 0)
  end
  return model
end

--- with_device(params, opts) -> params plus device, precision and gpu (the GPU's name), for a
-- store run's params.
function M.with_device(params, opts)
  params.device, params.precision = opts.device, opts.precision
  if opts.device == "cuda" then params.gpu = require("moonbert").cuda.device_name() end
  return params
end

--- log_device_memory(run, opts): the peak device memory moonbert held (device/peak_memory_mb).
function M.log_device_memory(run, opts)
  if opts.device ~= "cuda" or not run then return end
  local mem = require("moonbert").cuda.memory()
  if mem then run:log_metric("device/peak_memory_mb", mem.peak / 1e6) end
end

-- ---- model lookup ------------------------------------------------------------------------------

local TOKENIZER_FILES = { "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json" }
M.TOKENIZER_FILES = TOKENIZER_FILES

local function has_weights(dir) return exists(dir .. "/model.safetensors", "file") end
local function has_config(dir) return exists(dir .. "/config.json", "file") end
local function has_tokenizer(dir)
  return exists(dir .. "/tokenizer.json", "file") or exists(dir .. "/vocab.txt", "file")
end

--- resolve_model{model = DIR or hub name or nil, models_dir = "models"} -> info
-- info = {dir = config/weights folder, tokenizer_dir =, init = "pretrained"|"moonbert-small-mlm"|
--         "random", weights = path or nil, looked = {folders tried}}
-- Without --model: models/distilbert-base-uncased, then the hub cache (MOONBERT_CACHE), then a
-- download into the cache (unless HF_HUB_OFFLINE=1; when it cannot be fetched, one line says so
-- and names scripts/fetch-model), then models/moonbert-small-mlm, then config and tokenizer only.
-- A missing or broken model is a user error (moonbert.args.fail: one line, no traceback).
function M.resolve_model(o)
  o = o or {}
  local hub = require "moonbert.hub"
  local models = o.models_dir or "models"
  local looked = {}
  if o.model then
    local dir = o.model
    if not exists(dir, "directory") and hub.is_repo_name(dir) then
      local got, err = hub.model_arg(dir)
      if not got then M.user_error("--model " .. dir .. ": " .. err) end
      dir = got
    end
    if not exists(dir, "directory") then
      M.user_error("--model " .. dir .. ": no such folder (a Hugging Face model folder with config.json, or a hub name)")
    end
    if not has_config(dir) then M.user_error("--model " .. dir .. ": no config.json in this folder") end
    if not has_tokenizer(dir) then
      M.user_error("--model " .. dir .. ": no tokenizer files (tokenizer.json or vocab.txt) in this folder")
    end
    looked[1] = dir
    if has_weights(dir) then
      local init = o.model:match("moonbert%-small%-mlm/?$") and "moonbert-small-mlm" or "pretrained"
      return { dir = dir, tokenizer_dir = dir, init = init, weights = dir .. "/model.safetensors", looked = looked }
    end
    return { dir = dir, tokenizer_dir = dir, init = "random", looked = looked }
  end
  local real = models .. "/distilbert-base-uncased"
  local cached = hub.local_dir("distilbert-base-uncased")
  looked[#looked + 1] = real
  looked[#looked + 1] = cached
  if has_weights(real) and has_config(real) then
    return { dir = real, tokenizer_dir = has_tokenizer(real) and real or (shared_dir() .. "/models/distilbert-base-uncased"),
             init = "pretrained", weights = real .. "/model.safetensors", looked = looked }
  end
  local dir, err = hub.find("distilbert-base-uncased")
  if not dir then dir, err = hub.ensure("distilbert-base-uncased") end
  if dir then
    return { dir = dir, tokenizer_dir = dir, init = "pretrained", weights = dir .. "/model.safetensors", looked = looked }
  end
  io.stderr:write("note: distilbert-base-uncased weights are not on disk (", real, ", ", cached, ") and ",
                  M.why_not_fetched(err),
                  ": fetch them with scripts/fetch-model\n")
  local small = models .. "/moonbert-small-mlm"
  looked[#looked + 1] = small
  if has_weights(small) and has_config(small) then
    local tokdir = has_tokenizer(small) and small or
      (has_tokenizer(real) and real or (has_tokenizer(cached) and cached or shared_dir() .. "/models/distilbert-base-uncased"))
    return { dir = small, tokenizer_dir = tokdir, init = "moonbert-small-mlm",
             weights = small .. "/model.safetensors", looked = looked }
  end
  for _, d in ipairs { real, cached, shared_dir() .. "/models/distilbert-base-uncased" } do
    if has_config(d) and has_tokenizer(d) then
      if d ~= real and d ~= cached then looked[#looked + 1] = d end
      return { dir = d, tokenizer_dir = d, init = "random", looked = looked }
    end
  end
  M.user_error("no model: looked in " .. table.concat(looked, ", ") .. " and " .. shared_dir() ..
               "/models/distilbert-base-uncased for config.json and tokenizer files; " ..
               "fetch distilbert-base-uncased with scripts/fetch-model, or pass --model DIR")
end

--- Why the hub could not provide something, for "... is not on disk and <why>".
function M.why_not_fetched(err)
  if require("moonbert.hub").offline() then return "HF_HUB_OFFLINE is set" end
  err = tostring(err):gsub(";? ?run the same command again to resume$", "")
  if err:find("^cannot reach") then return err end
  return "the download failed (" .. err .. ")"
end

--- Is some model on disk (what resolve_model would use without downloading)? For messages.
function M.model_on_disk(models_dir)
  local models = models_dir or "models"
  for _, d in ipairs { models .. "/distilbert-base-uncased", models .. "/moonbert-small-mlm",
                       require("moonbert.hub").local_dir("distilbert-base-uncased"),
                       shared_dir() .. "/models/distilbert-base-uncased" } do
    if has_config(d) and has_tokenizer(d) then return true end
  end
  return false
end

-- ---- user errors -------------------------------------------------------------------------------

--- user_error(msg [, opts]): a mistake in the data, model or options, found before or while the
-- run starts. Records a failed run with the message in the store (so `moonbert results list`
-- shows what was tried), then raises moonbert.args.fail: `moonbert run` prints the one line, no
-- traceback (MOONBERT_DEBUG=1 adds one), and exits 1. opts defaults to parse_options' result.
function M.user_error(msg, opts)
  local args = require "moonbert.args"
  msg = args.clean(msg)
  opts = opts or M.current
  if opts and opts._script and not opts._failed_run and require("moonbert.dist").is_main() then -- rank 0 writes
    opts._failed_run = true
    pcall(function()
      local store = require("moonbert.store").open(opts.store)
      local run = store:start_run { experiment = opts._script, name = opts.name, seed = opts.seed,
                                    params = { data = opts.data or "(default)", model = opts.model or "(default)" } }
      run:fail(msg)
      store:close()
    end)
  end
  args.fail(msg)
end

--- open_store(opts) -> the results store of --store (opts.store; the default store when nil).
-- A store that cannot be opened (a read-only or uncreatable folder, not a store, an unreachable
-- server) is a user's mistake found before any training: one line, exit 1, no failed run
-- recorded (there is no store to record it in).
function M.open_store(opts)
  local ok, store = pcall(require("moonbert.store").open, opts and opts.store)
  if not ok then require("moonbert.args").fail(require("moonbert.args").clean(store)) end
  return store
end

--- The tokenizer of a resolved model (a broken one is a user error).
function M.load_tokenizer(info)
  local ok, tok = pcall(require("moonbert.tokenizer").load, info.tokenizer_dir)
  if not ok then M.user_error(tok) end
  return tok
end

--- "BERT" or "DistilBERT": the family of the folder's config.json (model_type).
function M.model_family(info)
  local cfg = require("dkjson").decode(require("moonbert.fs").read_file(info.dir .. "/config.json") or "{}")
  return type(cfg) == "table" and cfg.model_type == "bert" and "BERT" or "DistilBERT"
end

--- What the model is, for summaries: "DistilBERT" (pretrained distilbert-base-uncased),
-- "moonbert-small-mlm", "DistilBERT (random weights)", or the --model folder's name.
function M.model_name(info)
  if info.init == "moonbert-small-mlm" then return "moonbert-small-mlm" end
  if info.init == "random" then return M.model_family(info) .. " (random weights)" end
  if info.dir:match("distilbert%-base%-uncased/?$") then return "DistilBERT" end
  return (info.dir:gsub("/+$", ""):match("([^/]+)$") or info.dir)
end

--- The banner saying which weights a run starts from (random and substitute weights loudly).
function M.banner(info)
  local bar = string.rep("=", 78)
  if info.init == "pretrained" then
    return "model: pretrained weights from " .. info.weights
  elseif info.init == "moonbert-small-mlm" then
    return table.concat({
      bar,
      " NOTE: distilbert-base-uncased weights not found (looked in " .. info.looked[1] .. ").",
      " Using moonbert-small-mlm, the small model pretrained by moonbert, from " .. info.dir .. ".",
      " Results are NOT those of pretrained DistilBERT. Fetch the real checkpoint with",
      "     scripts/fetch-model        (into " .. require("moonbert.hub").local_dir("distilbert-base-uncased") .. "/)",
      " This run is recorded with init=moonbert-small-mlm.",
      bar }, "\n")
  end
  return table.concat({
    bar,
    " WARNING: no pretrained weights found (looked in " .. table.concat(info.looked, ", ") .. ").",
    " Continuing with RANDOM initial weights from " .. info.dir .. "/config.json:",
    " these results are NOT those of a pretrained model. Fetch the weights with",
    "     scripts/fetch-model        (into " .. require("moonbert.hub").local_dir("distilbert-base-uncased") .. "/)",
    " This run is recorded with init=random.",
    bar }, "\n")
end

function M.print_banner(info, out)
  (out or io.stdout):write(M.banner(info), "\n")
end

--- load_model(info, {num_labels=, id2label=, seed=, precision=}) -> model
-- Pretrained folders load their weights (a fresh classification head, seeded); otherwise a
-- randomly initialised model of the folder's config. precision: "fp32" or "bf16" (on the CPU).
function M.load_model(info, o)
  o = o or {}
  local db = require "moonbert.distilbert"
  local ok, model = pcall(function()
    local cfg = require("dkjson").decode(require("moonbert.fs").read_file(info.dir .. "/config.json") or "{}")
    if type(cfg) == "table" and cfg.model_type == "bert" then -- BertForSequenceClassification (mb.bert)
      local bert = require "moonbert.bert"
      if info.weights then
        return bert.load(info.dir, { num_labels = o.num_labels, id2label = o.id2label, seed = o.seed, quiet = true })
      end
      return bert.new(info.dir, { num_labels = o.num_labels, id2label = o.id2label, seed = o.seed })
    end
    if info.weights then
      return db.load(info.dir, { num_labels = o.num_labels, id2label = o.id2label, seed = o.seed, quiet = true,
                                 precision = o.precision })
    end
    return db.new(info.dir, { num_labels = o.num_labels, id2label = o.id2label, seed = o.seed,
                              precision = o.precision })
  end)
  if not ok then M.user_error("model " .. info.dir .. ": " .. require("moonbert.args").clean(model)) end
  return model
end

--- A hash naming the initial weights: the weights file's sha256, or the config's with the seed.
function M.model_hash(info, seed)
  local store = require "moonbert.store"
  if info.weights then
    local h, err = store.hash_file(info.weights)
    if not h then error(err, 0) end
    return h
  end
  local h = store.hash_file(info.dir .. "/config.json") or "noconfig"
  return store.sha256("random:" .. h .. ":seed=" .. tostring(seed))
end

--- Copy the tokenizer files of src into dst (saved models are complete HF folders).
function M.copy_tokenizer(src, dst)
  for _, f in ipairs(TOKENIZER_FILES) do
    local i = io.open(src .. "/" .. f, "rb")
    if i then
      local s = i:read("a")
      i:close()
      local o = assert(io.open(dst .. "/" .. f, "wb"))
      o:write(s)
      o:close()
    end
  end
end

-- ---- features ----------------------------------------------------------------------------------

local POOLINGS = { cls = true, mean = true, ["layers-mean"] = true }
M.POOLINGS = POOLINGS

-- Masked mean over tokens: h [B,T,D], mask [B,T] (float) -> [B,D].
local function masked_mean(h, mask)
  local B, Tn = mask:shape()[1], mask:shape()[2]
  local n = mask:sum(2):reshape { B, 1 }
  return (h * mask:reshape { B, Tn, 1 }):sum(2) / n
end

-- One batch of features [B, D'] for a pooling.
local function batch_features(model, b, pooling)
  if pooling == "cls" then return model:features(b) end
  local mask = b.attention_mask:float()
  if pooling == "mean" then
    local out = model:forward(b, { train = false })
    return masked_mean(out.last_hidden_state, mask)
  end
  -- layers-mean: every hidden state Hugging Face returns (embeddings output, then each layer)
  local out = model:forward(b, { train = false, output_hidden_states = true })
  local hs = out.hidden_states
  local B, D = mask:shape()[1], hs[1]:shape()[3]
  local X = T.zeros { B, D * #hs }
  for l, h in ipairs(hs) do X:narrow(2, (l - 1) * D + 1, D):copy(masked_mean(h, mask)) end
  return X
end

local function compute_features(model, split, tok, o)
  local n = #split.text
  local X
  local bar = o.progress == nil and n >= 256 and
      require("moonbert.progress").new { label = "features " .. (o.label or o.pooling), total = n } or nil
  -- under mpirun each rank computes its share of every batch, gathered in rank order (o.shard)
  local dist = o.shard and require("moonbert.dist") or nil
  for b in split:batches { tokenizer = tok, batch_size = o.batch_size or 64, bucket = true,
                           max_length = o.max_length } do
    local f
    if dist then
      local sb = dist.share_batch(b)
      f = dist.allgather_rows(sb and batch_features(model, sb, o.pooling) or T.zeros { 0, 1 }, "gathering features")
    else
      f = batch_features(model, b, o.pooling)
    end
    if not X then X = T.zeros { n, f:shape()[2] } end
    for k, i in ipairs(b.indices) do X[i]:copy(f[k]) end
    if o.progress then o.progress(#b.indices) end
    if bar then bar:advance(#b.indices) end
  end
  if bar then bar:done() end
  return X or T.zeros { 0, 1 }
end

--- features(model, split, tok, {pooling="cls", max_length=, batch_size=64, cache_dir=, model_hash=})
--  -> X float32 [N, D], hit (true when read from the cache)
function M.features(model, split, tok, o)
  o = o or {}
  o.pooling = o.pooling or "cls"
  if not POOLINGS[o.pooling] then
    error("pooling must be cls, mean or layers-mean, got '" .. tostring(o.pooling) .. "'", 2)
  end
  local path
  if o.cache_dir and o.model_hash then
    local store = require "moonbert.store"
    local key = store.sha256(table.concat({ "features v1", o.model_hash, split:hash(), tostring(#split.text),
                                            o.pooling, tostring(o.max_length or "none") }, "\n"))
    path = o.cache_dir .. "/features-" .. key:sub(1, 24) .. ".safetensors"
    local X
    if exists(path, "file") then
      local ok, t = pcall(require("moonbert.safetensors").load, path)
      if ok and t.X and t.X:shape()[1] == #split.text then X = t.X end
    end
    -- data parallel: the ranks compute together only when none of them has the cache
    local dist = require "moonbert.dist"
    if dist.active() then o.shard = dist.sum_numbers({ X and 0 or 1 }, "checking the feature cache")[1] == dist.size() end
    if X then return X, true, path end
  elseif require("moonbert.dist").active() then
    o.shard = true
  end
  local X = compute_features(model, split, tok, o)
  if path and require("moonbert.dist").is_main() then -- under mpirun, rank 0 alone writes the cache
    mkdir_p(o.cache_dir)
    local tmp = path .. ".tmp"
    require("moonbert.safetensors").save(tmp, { X = X }, { pooling = o.pooling, model_hash = o.model_hash })
    os.rename(tmp, path)
  end
  return X, false, path
end

-- ---- predictions and metrics -------------------------------------------------------------------

--- predict(model, split, tok, {batch_size=64, max_length=}) -> mb.trainer.predict's result:
--  predicted = {0-based ids}, probs = {{K probabilities}, ...}, loss = {per-example cross-entropy},
--  in split order, plus accuracy, f1_weighted, confusion.
function M.predict(model, split, tok, o)
  o = o or {}
  return require("moonbert.trainer").predict(model, split, { tokenizer = tok, batch_size = o.batch_size or 64,
                                                             max_length = o.max_length })
end

--- scores(y, predicted) -> {accuracy=, f1=} (f1 weighted, as the notebook)
function M.scores(y, p)
  local metrics = require "moonbert.metrics"
  return { accuracy = metrics.accuracy(y, p), f1 = metrics.f1(y, p, { average = "weighted", zero_division = 0 }) }
end

--- Confusion matrix over all labels (rows true, columns predicted) as a plain table.
function M.confusion(y, p, label_names)
  local labels = {}
  for i = 1, #label_names do labels[i] = i - 1 end
  local cm = require("moonbert.metrics").confusion_matrix(y, p, { labels = labels })
  return cm:totable()
end

-- ---- training ----------------------------------------------------------------------------------

--- fit(opts): fine-tune with mb.trainer.fit (opts are its options; see bindings/moonbert/trainer.lua).
function M.fit(o)
  local res = require("moonbert.trainer").fit(o)
  -- data parallel: ranks other than 0 are done; they wait (sleeping) for rank 0 to finish the run
  require("moonbert.dist").worker_done()
  return res
end

--- start_run(store, opts, fields) -> run, resumed (true when an earlier run continues)
-- fields as store:start_run's. The run is tagged resume_key (a hash of its params); with --resume
-- (opts.resume) the newest interrupted or killed run of the experiment with the same key is taken
-- over (store:resume_run: same id, its interruption and resumption recorded), else a new run starts.
function M.start_run(store, opts, fields)
  local dist = require "moonbert.dist"
  if dist.active() then
    -- rank 0 alone writes the run; the others get its id and folder (checkpoints are read from there)
    local run, resumed
    if dist.is_main() then run, resumed = M.start_run_here(store, opts, fields) end
    local id = dist.broadcast_value(run and run.id, "sharing the run id")
    local dir = dist.broadcast_value(run and run:artifact_dir(), "sharing the run folder")
    resumed = dist.broadcast_value(resumed, "sharing the resume")
    if dist.is_main() then
      -- not in the resume key: a run may resume with another number of ranks; a param is written
      -- once, so a resumption records its own count as a tag
      if resumed then run:set_tag("world_size_resumed", tostring(dist.size()))
      else run:log_params { world_size = dist.size() } end
      return run, resumed
    end
    local shadow = { id = math.tointeger(id) or id }
    return setmetatable(shadow, {
      __index = function(_, k)
        if k == "artifact_dir" then return function() return dir end end
        return function() end -- log_metric, finish, fail ...: rank 0 records them
      end,
      __close = function() end,
    }), resumed
  end
  return M.start_run_here(store, opts, fields)
end

function M.start_run_here(store, opts, fields)
  local keys, parts = {}, {}
  for k in pairs(fields.params or {}) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(fields.params[k]) end
  local key = require("moonbert.store").sha256(fields.experiment .. "\n" .. table.concat(parts, "\n"))
  fields.tags = fields.tags or {}
  fields.tags.resume_key = key
  if opts.resume then
    if not store.resume_run then
      error("--resume: this build's results store cannot resume runs (no store:resume_run)", 0)
    end
    -- under `moonbert sweep` the store files runs under the sweep's experiment (mb.store.start_run)
    local experiment = fields.experiment
    local sweep, sweep_exp = os.getenv("MOONBERT_SWEEP"), os.getenv("MOONBERT_EXPERIMENT")
    if sweep and sweep ~= "" and sweep_exp and sweep_exp ~= "" then experiment = sweep_exp end
    local runs = store:runs { experiment = experiment }
    for i = #runs, 1, -1 do
      local r = runs[i]
      if (r.status == "interrupted" or r.status == "killed") and store:tags(r.id).resume_key == key then
        local run = store:resume_run(r.id)
        print(string.format("--resume: continuing run %d (%s)", r.id, r.status))
        return run, true
      end
    end
    print("--resume: no interrupted or killed " .. fields.experiment .. " run with these options; starting a new run")
  end
  return store:start_run(fields), false
end

--- fit options for an experiment's fine-tuning: checkpoints in the run's folder (every
-- --save-steps steps and at epoch ends, newest --save-total-limit kept), resumed with --resume;
-- after_fit(run, opts) removes them once the run has its final model (unless --keep-checkpoints).
function M.checkpoint_options(run, opts)
  return { checkpoint_dir = run:artifact_dir() .. "/checkpoints", save_steps = opts.save_steps,
           save_total_limit = opts.save_total_limit or 2, resume = opts.resume and true or nil }
end

function M.after_fit(run, opts)
  if not opts.keep_checkpoints then require("moonbert.checkpoint").rmtree(run:artifact_dir() .. "/checkpoints") end
end

--- A view of a store run that files everything under a prefix ("frozen/eval/accuracy",
--  confusion and predictions of split "frozen/validation"), so that several trainings share a run.
function M.prefixed_run(run, prefix)
  local p = prefix .. "/"
  local wrap = {
    log_metric = function(_, key, ...) return run:log_metric(p .. key, ...) end,
    log_metrics = function(_, t, ...)
      local out = {}
      for k, v in pairs(t) do out[p .. k] = v end
      return run:log_metrics(out, ...)
    end,
    log_confusion = function(_, split, ...) return run:log_confusion(p .. tostring(split), ...) end,
    log_predictions = function(_, split, ...) return run:log_predictions(p .. tostring(split), ...) end,
    -- a resume removes only this training's rows
    truncate_after = function(_, step, epoch) return run:truncate_after(step, epoch or -1, p) end,
  }
  return setmetatable({}, { __index = function(_, k)
    if wrap[k] then return wrap[k] end
    local v = run[k]
    if type(v) == "function" then return function(_, ...) return v(run, ...) end end
    return v
  end })
end

-- ---- options and data shared by the experiments ---------------------------------------------------

--- The checkpoint and resume options of an experiment that fine-tunes with checkpoint_options
-- (append them to common_options' extra).
M.CHECKPOINT_OPTIONS = {
  { "--save-steps", "N", "also checkpoint every N steps, mid-epoch (checkpoints: <run folder>/checkpoints)",
    type = "number" },
  { "--save-total-limit", "K", "keep the newest K checkpoints (default 2)", type = "number" },
  { "--keep-checkpoints", nil, "keep the checkpoints after a finished run (default: removed)" },
  { "--resume", nil, "continue the newest interrupted or killed run with the same options, under its run id" },
}

--- The options every experiment takes (moonbert.args spec entries); extra entries are appended.
-- common_options(extra, defaults): the shared options plus extra, with this experiment's own
-- defaults (keyed by option name without dashes, e.g. {epochs = 1, lr = 5e-4, ["max-length"] = 64})
-- in place of the shared ones, so that --help shows what the run will really use.
function M.common_options(extra, defaults)
  local spec = {
    { "--data", "DIR", "data folder: train/validation/test as .txt (text;label), .csv or .jsonl " ..
                       "(default: " .. shared_dir() .. "/data/emotion, else the emotion data in MOONBERT_CACHE, fetched when missing)" },
    { "--text-column", "NAME", "text column (.csv) or field (.jsonl) of --data (default text)" },
    { "--label-column", "NAME", "label column (.csv) or field (.jsonl) of --data (default label)" },
    { "--model", "DIR", "model folder (default: models/distilbert-base-uncased, models/moonbert-small-mlm, else config only)" },
    { "--store", "PATH", "results store: a SQLite file or postgresql://... (default: $MOONBERT_STORE, else results/moonbert.db)",
      default = require("moonbert.store").default_path },
    { "--epochs", "N", "fine-tuning epochs", type = "number", default = 2 },
    { "--batch-size", "N", "batch size", type = "number", default = 64 },
    { "--lr", "X", "learning rate", type = "number", default = 2e-5 },
    { "--weight-decay", "X", "AdamW weight decay", type = "number", default = 0.01 },
    { "--max-length", "N", "truncate texts to N tokens (default 512, --quick 64)", type = "number" },
    { "--seed", "N", "seed (head init, dropout, shuffling)", type = "number", default = 42 },
    { "--device", "DEV", "cpu, cuda or auto (a GPU when one can be used)", default = "auto",
      choices = { "cpu", "cuda", "auto" } },
    { "--precision", "P", "fp32, tf32 or bf16 (default: tf32 on cuda, fp32 on the CPU; README: bf16 on the CPU)",
      choices = { "fp32", "tf32", "bf16" } },
    { "--quick", nil, "500 train / 200 validation / 200 test examples, 1 epoch, max length 64" },
    { "--limit", "N", "at most N examples in every split", type = "number" },
    { "--name", "NAME", "run name" },
    { "--distributed", nil, "data parallel: this process is one rank of mpirun/srun (found without it when they set " ..
                            "OMPI_COMM_WORLD_SIZE, PMI_SIZE or SLURM_NTASKS); docs/distributed.md" },
    { "--dist-timeout", "S", "data parallel: seconds a rank waits for the others before failing (default 300)",
      type = "number" },
  }
  for _, o in ipairs(spec) do
    local d = (defaults or {})[o[1]:sub(3)]
    if d ~= nil then
      o.default = d
      if o[1] == "--max-length" then o[3] = "truncate texts to N tokens" end
    end
  end
  for _, o in ipairs(extra or {}) do spec[#spec + 1] = o end
  spec[#spec + 1] = { "--help", nil, "show this help" }
  return spec
end

--- parse_options(script_name, spec) -> opts (exits 2 with the usage on a bad option, 0 on --help)
-- and derives: opts.max_length (512, --quick 64), opts.epochs (--quick 1 unless given),
-- opts.batch_size and opts.seed as integers, opts.device and opts.precision resolved and checked
-- (check_device: a device that cannot run here exits 1 with the reason before any data loads;
-- the device line is printed), opts.precision what will run (fp32 with a one-line notice where
-- bf16 has no CPU kernel here).
function M.parse_options(script, spec, argv)
  local args = require "moonbert.args"
  local usage = args.usage(spec, "usage: moonbert run experiments/" .. script .. ".lua [options]\n\noptions:")
  local ok, opts = pcall(args.parse, argv or {}, spec)
  if not ok then -- one line, as every moonbert command: the options are one --help away
    io.stderr:write(script, ": ", type(opts) == "table" and opts.message or tostring(opts),
                    " (--help lists the options)\n")
    os.exit(2)
  end
  if opts.help then print(usage) os.exit(0) end
  opts._script = script
  M.current = opts
  local function int(name, v)
    local i = math.tointeger(v)
    if not i or i < 1 then
      io.stderr:write(script, ": --", name, " must be a positive integer, got ", tostring(v), "\n")
      os.exit(2)
    end
    return i
  end
  opts.explicit_epochs = false
  for _, a in ipairs(argv or {}) do if a == "--epochs" or a:match("^%-%-epochs=") then opts.explicit_epochs = true end end
  opts.max_length = opts.max_length and int("max-length", opts.max_length) or (opts.quick and 64 or 512)
  opts.epochs = (opts.quick and not opts.explicit_epochs) and 1 or int("epochs", opts.epochs)
  opts.batch_size = int("batch-size", opts.batch_size)
  opts.seed = math.tointeger(opts.seed) or int("seed", opts.seed)
  if opts.limit then opts.limit = int("limit", opts.limit) end
  if opts.save_steps then opts.save_steps = int("save-steps", opts.save_steps) end
  if opts.save_total_limit then opts.save_total_limit = int("save-total-limit", opts.save_total_limit) end
  M.setup_dist(script, opts)
  local okd, dev, precision, note = pcall(M.check_device, opts.device, opts.precision)
  if not okd then io.stderr:write(script, ": ", tostring(dev), "\n") os.exit(1) end
  -- a BERT --model has no device backend: refused here, before any data loads or the store opens
  -- (--device auto falls back to the CPU and says why)
  if dev == "cuda" and M.model_type_of(opts.model) == "bert" then
    local why = "--model " .. opts.model .. " is a BERT model, which runs on the CPU only (the device backend is " ..
                "DistilBERT's)"
    if opts.device ~= "auto" then io.stderr:write(script, ": --device cuda: ", why, "; use --device cpu\n") os.exit(1) end
    okd, dev, precision, note = pcall(M.check_device, "cpu", opts.precision)
    if not okd then io.stderr:write(script, ": ", tostring(dev), "\n") os.exit(1) end
    note = note .. " (--device auto: " .. why .. ")"
  end
  opts.device, opts.precision = dev, precision
  -- bf16 where this CPU has no bf16 kernel runs fp32: say so once, and record what runs
  if dev == "cpu" and precision == "bf16" then
    local kernel, why = require("moonbert.core").bf16.kernel()
    if kernel == "none" then
      io.stderr:write(script, ": --precision bf16 runs in fp32 here: ", why, "\n")
      opts.precision = "fp32"
      note = note:gsub("precision bf16", "precision fp32")
    end
  end
  print(note)
  return opts
end

--- setup_dist(script, opts): join the other ranks when started by mpirun/srun (or --distributed):
-- --dist-timeout checked, one line and exit 2 (usage) or 1 (no MPI here, no NCCL for --device
-- cuda) on a problem; ranks other than 0 print nothing (rank 0 speaks for the run).
function M.setup_dist(script, opts)
  local dist = require "moonbert.dist"
  if opts.dist_timeout ~= nil and (type(opts.dist_timeout) ~= "number" or opts.dist_timeout <= 0) then
    io.stderr:write(script, ": --dist-timeout must be a number of seconds > 0, got ", tostring(opts.dist_timeout), "\n")
    os.exit(2)
  end
  local ok, err = pcall(dist.setup, { distributed = opts.distributed, timeout = opts.dist_timeout })
  if not ok then
    io.stderr:write(script, ": ", (require("moonbert.args").clean(err):gsub("^mb%.dist: ", "")), "\n")
    os.exit(opts.distributed and not dist.detect().source and 2 or 1)
  end
  if not dist.active() then return end
  if opts.device == "cuda" then
    local have, why = require("moonbert.core").dist.nccl_available()
    if not have then
      if dist.is_main() then io.stderr:write(script, ": --device cuda: ", why, "\n") end
      os.exit(1)
    end
  end
  if not dist.is_main() then
    io.output("/dev/null")
    print = function() end -- luacheck: ignore (rank 0 prints the run's report)
  end
end

--- load_splits(opts) -> {train=, validation=, test=, ood= (or nil), ood_path=, label_names=}
-- --quick keeps 500 / 200 / 200 (and 200 out-of-domain) examples, --limit N at most N per split:
-- the first ones after a seeded shuffle, so a quick run sees every label.
--- resolve_data(opts) -> folder: --data, else ../shared/data/emotion, else the emotion data in the
-- hub cache, else downloaded into it (unless HF_HUB_OFFLINE=1); else a user error naming what is
-- missing (and the model too when none is on disk) and the commands that fetch them.
function M.resolve_data(opts)
  if opts.data then return opts.data end
  local shared = shared_dir() .. "/data/emotion"
  if exists(shared .. "/train.txt", "file") then return shared end
  local hub = require "moonbert.hub"
  local dir, err = hub.find("emotion")
  if not dir then dir, err = hub.ensure("emotion") end
  if dir then return dir end
  local why = M.why_not_fetched(err)
  local msg = "needs the emotion data, which is not on disk (looked in " .. shared .. ", " .. hub.local_dir("emotion") ..
      ") and " .. why .. ": fetch it with scripts/fetch-data, or pass --data DIR"
  if not opts.model and not M.model_on_disk() then
    msg = msg .. "; it needs a model too (none in models/, " .. hub.local_dir("distilbert-base-uncased") ..
        " or " .. shared_dir() .. "/models): scripts/fetch-model, or --model DIR"
  end
  M.user_error(msg, opts)
end

function M.load_splits(opts)
  local mbdata = require "moonbert.data"
  opts.data = M.resolve_data(opts)
  local okd, data = pcall(mbdata.load_folder, opts.data, { text_column = opts.text_column,
                                                            label_column = opts.label_column })
  if not okd then M.user_error(data, opts) end
  local sizes = opts.quick and { train = 500, validation = 200, test = 200, ood = 200 } or {}
  local function limited(k)
    local n = sizes[k]
    if opts.limit then n = math.min(n or math.huge, opts.limit) end
    return n ~= math.huge and n or nil
  end
  local out = { label_names = data.label_names }
  for _, k in ipairs { "train", "validation", "test" } do out[k] = M.subset(data[k], limited(k), opts.seed) end
  local path = opts.ood
  if not path and not opts.no_ood and data.format == "txt" then
    local p = shared_dir() .. "/data/goemotions-ood/emotion_ood.txt"
    if exists(p, "file") then path = p end
  end
  if path and not opts.no_ood then
    out.ood_path = path
    local oko, ood = pcall(mbdata.load_text, path, { sep = ";", names = { "text", "label" }, label_names = data.label_names })
    if not oko then M.user_error("--ood " .. path .. ": " .. require("moonbert.args").clean(ood), opts) end
    out.ood = M.subset(ood, limited("ood"), opts.seed)
  end
  return out
end

-- ---- output ------------------------------------------------------------------------------------

local function fmt(v)
  if v == nil then return "-" end
  if type(v) == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.4f", v)
  end
  return tostring(v)
end
M.fmt = fmt

--- print_table(headers, rows [, out]): a plain text table, first column left-aligned.
function M.format_table(headers, rows)
  local w = {}
  local cells = { headers }
  for _, r in ipairs(rows) do
    local c = {}
    for j = 1, #headers do c[j] = fmt(r[j]) end
    cells[#cells + 1] = c
  end
  for _, r in ipairs(cells) do
    for j = 1, #headers do w[j] = math.max(w[j] or 0, utf8.len(r[j]) or #r[j]) end
  end
  local lines = {}
  for i, r in ipairs(cells) do
    local parts = {}
    for j = 1, #headers do
      local pad = string.rep(" ", w[j] - (utf8.len(r[j]) or #r[j]))
      parts[j] = j == 1 and (r[j] .. pad) or (pad .. r[j])
    end
    lines[#lines + 1] = table.concat(parts, "  ")
    if i == 1 then
      local sep = {}
      for j = 1, #headers do sep[j] = string.rep("-", w[j]) end
      lines[#lines + 1] = table.concat(sep, "  ")
    end
  end
  return table.concat(lines, "\n")
end

function M.print_table(headers, rows, out)
  (out or io.stdout):write(M.format_table(headers, rows), "\n")
end

--- A subset for --quick / --limit: the first n examples after a seeded shuffle.
function M.subset(split, n, seed)
  if not n or n >= #split.text then return split end
  return split:shuffle(seed or 42):head(n)
end

--- Optional module (report, umap, trainer): the module or nil, never an error.
function M.optional(name)
  if not package.searchpath("moonbert." .. name, package.path) then return nil end
  local ok, m = pcall(require, "moonbert." .. name)
  if ok then return m end
  return nil
end

--- write_report(store, run): the run's HTML report (mb.report.write) after run:finish(); prints
-- its path, or a note when it cannot be written (the run's results stay in the store).
function M.write_report(store, run)
  local report = M.optional("report")
  if not report then return nil end
  local ok, path, err = pcall(report.write, store, run.id)
  if ok and path then print("report: " .. path) return path end
  io.stderr:write("note: report not written: ", tostring(ok and err or path), "\n")
  return nil
end

--- Call an optional step; a failure prints a note and the experiment goes on.
function M.try(what, fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then io.stderr:write("note: ", what, " skipped: ", tostring(err), "\n") end
  return ok, err
end

return M
