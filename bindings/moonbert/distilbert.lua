-- moonbert.distilbert (mb.distilbert): DistilBertForSequenceClassification in C.
--
--   local model = mb.distilbert.load("models/distilbert-base-uncased", {num_labels=6, id2label=names})
--   local model = mb.distilbert.new({dim=64, n_layers=2, n_heads=4, hidden_dim=256,
--                                    vocab_size=30522, max_position_embeddings=128}, {seed=42})
--   local out  = model:forward(batch, {train=false, output_hidden_states=true, output_attentions=true})
--                -- out.logits [B,num_labels], out.last_hidden_state [B,T,dim],
--                -- out.hidden_states {embeddings, layer 1, ...}, out.attentions {[B,heads,T,T], ...}
--   local X    = model:features(batch)            -- [CLS] hidden states [B,dim], eval mode
--   local loss, logits = model:loss(batch, labels, {train=true})  -- labels: int32 tensor [B] or list of ids
--   model:backward()                               -- gradients accumulate: model:zero_grad() between steps
--   for _, p in ipairs(model:parameters()) do print(p.name, p.value, p.grad, p.no_decay) end
--   model:freeze_encoder(true); model:save("results/runs/1/model"); model:config().id2label
--   model:to("cuda", {precision="tf32"})          -- fp32, tf32, bf16: every method above (and mb.optim,
--                                                -- mb.trainer) then runs on the GPU; model:to("cpu") back
--   model:device(), model:precision()              -- "cuda"/"cpu", "tf32"/... (docs/cuda.md)
--
-- A batch is {input_ids=, attention_mask=} int32 tensors [B,T] as tok:encode_batch makes
-- them (nested Lua tables work too). Label ids are 0-based, as in Hugging Face.
-- load() accepts checkpoints with or without the distilbert. prefix, in F32/F16/BF16;
-- a base model gets a new classification head, with Hugging Face's warning on stderr
-- (opts.quiet=true silences it; model:warnings() returns it).
local core = require("moonbert.core").distilbert
local check = require "moonbert.check"
local hf_config = require "moonbert.hf_config"

local M = {}
local methods = core.methods

local label_list = hf_config.label_list

--- The precision of the model's matrix products on the CPU: "fp32" (the default) or "bf16"
-- (README "bf16 on the CPU": bf16 operands, fp32 accumulation, fp32 master weights, optimizer,
-- loss, LayerNorm, softmax and GELU). On a CPU without a bf16 kernel (no AVX-512 BF16), "bf16"
-- stays fp32 and prints a one-line notice to stderr unless quiet. Returns the model.
function M.set_cpu_precision(model, precision, quiet, fname)
  fname = fname or "set_cpu_precision"
  if precision ~= "fp32" and precision ~= "bf16" then
    check.arg(2, fname, "precision 'fp32' or 'bf16' expected, got " .. tostring(precision))
  end
  local notice = model:set_precision(precision)
  if notice and not quiet then
    io.stderr:write("moonbert: precision bf16 runs in fp32 here: ", notice, "\n")
  end
  return model
end

--- Load a Hugging Face checkpoint directory (config.json + model.safetensors).
-- opts: num_labels, id2label (list or 0-based map), seed (head init), quiet,
-- precision ("fp32" or "bf16" on the CPU, M.set_cpu_precision).
function M.load(dir, opts)
  if type(dir) ~= "string" then check.arg(1, "load", "directory expected, got " .. type(dir)) end
  opts = opts or {}
  if type(opts) ~= "table" then check.arg(2, "load", "options table expected, got " .. type(opts)) end
  local names = label_list(opts.id2label, "load")
  local n = opts.num_labels
  if n ~= nil and (math.type(n) ~= "integer" or n < 1) then
    check.arg(2, "load", "opts.num_labels must be a positive integer")
  end
  if names and n and #names ~= n then
    check.arg(2, "load", string.format("opts.id2label has %d names but num_labels is %d", #names, n))
  end
  if opts.precision ~= nil and opts.precision ~= "fp32" and opts.precision ~= "bf16" then
    check.arg(2, "load", "opts.precision must be 'fp32' or 'bf16', got " .. tostring(opts.precision))
  end
  local model = core.load(dir, n, names, opts.seed or 42)
  local w = model:warnings()
  if w ~= "" and not opts.quiet then io.stderr:write(w, "\n") end
  if opts.precision then M.set_cpu_precision(model, opts.precision, opts.quiet, "load") end
  return model
end

--- A randomly initialised model (HF _init_weights) from a config table, a
-- config.json path or a checkpoint directory. opts: seed (default 42),
-- num_labels, id2label, precision (as load), quiet.
function M.new(config, opts)
  opts = opts or {}
  if type(opts) ~= "table" then check.arg(2, "new", "options table expected, got " .. type(opts)) end
  local names = label_list(opts.id2label, "new")
  local text, source = hf_config.text(config, names, opts.num_labels, "new")
  if opts.precision ~= nil and opts.precision ~= "fp32" and opts.precision ~= "bf16" then
    check.arg(2, "new", "opts.precision must be 'fp32' or 'bf16', got " .. tostring(opts.precision))
  end
  local model = core.new(text, source, opts.seed or 42)
  if opts.precision then M.set_cpu_precision(model, opts.precision, opts.quiet, "new") end
  return model
end

hf_config.install(methods) -- model:config(), model:label_names(), model:named_parameters()

--- DistilBertForMaskedLM (bindings/moonbert/mlm.lua): load a HF masked-LM directory / a new one.
function M.load_masked_lm(dir, opts) return require("moonbert.mlm").load(dir, opts) end
function M.new_masked_lm(config, opts) return require("moonbert.mlm").new(config, opts) end

--- model:to("cpu" | "cuda", {precision=, seed=, quiet=}) -> model: the C method moves the
-- parameter block (bindings/distilbert.c: every method then runs there); on the CPU a precision
-- goes through M.set_cpu_precision, which says when bf16 falls back to fp32.
local core_to = methods.to
function methods:to(device, opts)
  if device == "cpu" and type(opts) == "table" and opts.precision ~= nil then
    core_to(self, "cpu")
    return M.set_cpu_precision(self, opts.precision, opts.quiet, "to")
  end
  return core_to(self, device, opts)
end

M.methods = methods
return M
