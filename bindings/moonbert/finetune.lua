-- moonbert.finetune: what the task fine-tuning experiments (experiments/finetune_qa.lua,
-- finetune_token_classification.lua) share: their command line and their training run, which
-- is mb.trainer.fit's loop over the script's own examples.
--
--   local opts = finetune.parse("finetune_qa", {format = "SQuAD v1.1 JSON", head = "qa_outputs is added",
--     batch_unit = "windows", epochs = 2, batch_size = 12, lr = 3e-5,
--     rows = {{"--max-seq-len", "N", "tokens per window", type = "number", default = 384}, ...},
--     integers = {"max_seq_len", ...}, naturals = {"doc_stride"}})
--   finetune.train{model=, tokenizer=, items=, encode=function(list) return batch end, hash=,
--                  opts=opts, run=run, evaluate=function(epoch) end}
--
-- parse: --train, --validation and --model are required; --epochs, --batch-size (and the
-- script's integers) are integers >= 1, --seed and the naturals >= 0; a mistake prints one
-- line and the usage and exits 2. train: every epoch takes the items in a new seeded order
-- (the experiments' LCG, continued from epoch to epoch), batch_size at a time, through
-- encode; AdamW with linear decay and no warmup, clipping at 1.0; the store run gets the
-- trainer's train/loss, train/lr and train/grad_norm; evaluate(epoch) runs after each epoch.
local args = require "moonbert.args"

local M = {}

function M.parse(script, o)
  local spec = {
    { "--train", "FILE", "training data (" .. o.format .. ")" },
    { "--validation", "FILE", "validation data (" .. o.format .. ")" },
    { "--model", "DIR", "BERT or DistilBERT folder (a pretrained encoder; " .. o.head .. ")" },
    { "--store", "PATH", "results store", default = "results/moonbert.db" },
    { "--epochs", "N", "epochs", type = "number", default = o.epochs },
    { "--batch-size", "N", o.batch_unit .. " per batch", type = "number", default = o.batch_size },
    { "--lr", "X", "peak learning rate (linear decay, no warmup)", type = "number", default = o.lr },
    { "--weight-decay", "X", "AdamW weight decay", type = "number", default = 0.01 },
  }
  for _, row in ipairs(o.rows or {}) do spec[#spec + 1] = row end
  for _, row in ipairs {
    { "--seed", "N", "seed (head init, dropout, shuffling)", type = "number", default = 42 },
    { "--name", "NAME", "run name" },
    { "--help", nil, "show this help" },
  } do spec[#spec + 1] = row end
  local usage = args.usage(spec, "usage: moonbert run experiments/" .. script .. ".lua --train FILE "
    .. "--validation FILE --model DIR [options]\n\noptions:")
  local ok, opts = pcall(args.parse, arg or {}, spec)
  if not ok then io.stderr:write(script, ": ", args.message(opts), "\n", usage, "\n") os.exit(2) end
  if opts.help then print(usage) os.exit(0) end
  for _, k in ipairs { "train", "validation", "model" } do
    if not opts[k] then io.stderr:write(script, ": --", k, " is required\n", usage, "\n") os.exit(2) end
  end
  local function integer(k, min)
    local okk, v = pcall(args.integer, opts, k, min)
    if not okk then
      io.stderr:write(script, ": --", (k:gsub("_", "-")), " takes a whole number >= ", min, "\n") os.exit(2)
    end
    opts[k] = v
  end
  for _, k in ipairs { "epochs", "batch_size" } do integer(k, 1) end
  for _, k in ipairs(o.integers or {}) do integer(k, 1) end
  integer("seed", 0)
  for _, k in ipairs(o.naturals or {}) do integer(k, 0) end
  return opts
end

-- The items as mb.trainer.fit's train source: epoch e's order is the LCG (seeded with the seed)
-- continued through the shuffles of epochs 1..e, each of the identity.
local function source(items, encode, hash)
  local src = {}
  function src:hash() return hash end
  function src:batches(b)
    local state, idx = b.seed, nil
    for _ = 1, b.epoch do
      idx = {}
      for i = 1, #items do idx[i] = i end
      for i = #items, 2, -1 do
        state = (state * 1103515245 + 12345) % 2147483648
        local j = state % i + 1
        idx[i], idx[j] = idx[j], idx[i]
      end
    end
    local plan = {}
    function plan.get(_, k)
      local list = {}
      for i = (k - 1) * b.batch_size + 1, math.min(#idx, k * b.batch_size) do list[#list + 1] = items[idx[i]] end
      return encode(list)
    end
    return setmetatable(plan, { __len = function() return (#idx + b.batch_size - 1) // b.batch_size end })
  end
  return src
end

function M.train(o)
  local opts = o.opts
  return require("moonbert.trainer").fit {
    model = o.model, tokenizer = o.tokenizer, train = source(o.items, o.encode, o.hash),
    epochs = opts.epochs, batch_size = opts.batch_size, lr = opts.lr, weight_decay = opts.weight_decay,
    warmup = 0, max_grad_norm = 1.0, seed = opts.seed, run = o.run,
    callback = function(event, t) if event == "epoch" then o.evaluate(t.epoch) end end,
  }
end

return M
