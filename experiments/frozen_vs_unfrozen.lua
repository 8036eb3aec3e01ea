-- frozen_vs_unfrozen.lua: the same fine-tuning twice from the same initial weights, once with
-- the encoder frozen (only the classification head, pre_classifier + classifier, is trained)
-- and once unfrozen (every parameter), compared in one table.
--
--   moonbert run experiments/frozen_vs_unfrozen.lua [--quick] [--model DIR] [--frozen-lr X] ...
--
-- Both runs use the notebook's defaults (2 epochs, batch size 64, lr 2e-5, weight decay 0.01)
-- unless told otherwise; a head alone learns slowly at 2e-5, so --frozen-lr sets its own rate.
-- One store run holds both: metrics under frozen/... and unfrozen/..., the validation
-- confusion matrix of each, and init=pretrained|moonbert-small-mlm|random as everywhere.
local mb = require "moonbert"
local ex = require "moonbert.experiment"

local opts = ex.parse_options("frozen_vs_unfrozen", ex.common_options {
  { "--frozen-lr", "X", "learning rate of the frozen-encoder run (default: --lr)", type = "number" },
  { "--ood", "PATH", "out-of-domain set (text;label); default ../shared/data/goemotions-ood/emotion_ood.txt" },
  { "--no-ood", nil, "skip the out-of-domain evaluation" },
}, arg)
local t_start = mb.store.now()

-- ---- data, model lookup, run ------------------------------------------------------------------
local data = ex.load_splits(opts)
local names = data.label_names
print(string.format("data: %d train, %d validation, %d test%s", #data.train.text, #data.validation.text,
                    #data.test.text, data.ood and (", " .. #data.ood.text .. " out-of-domain") or ""))
local info = ex.resolve_model { model = opts.model }
ex.print_banner(info)
local tok = ex.load_tokenizer(info)

local store = ex.open_store(opts)
local run <close> = store:start_run {
  experiment = "frozen_vs_unfrozen", name = opts.name, seed = opts.seed, device = opts.device,
  dataset_hash = mb.store.sha256(data.train:hash() .. data.validation:hash() .. data.test:hash()),
  model_hash = ex.model_hash(info, opts.seed),
  params = ex.with_device({ model = info.dir, init = info.init, data = opts.data, epochs = opts.epochs,
             batch_size = opts.batch_size, lr = opts.lr, frozen_lr = opts.frozen_lr or opts.lr,
             weight_decay = opts.weight_decay, max_length = opts.max_length, quick = opts.quick,
             limit = opts.limit, n_train = #data.train.text }, opts),
  tags = { init = info.init },
}
print(string.format("run %d (store %s, init=%s)", run.id, opts.store, info.init))
local report = ex.optional("report")
if report then
  ex.try("dataset statistics for the report", function()
    report.log_dataset_stats(run, "train", data.train, names)
    -- the trainer ranks frozen/validation and unfrozen/validation: both read these texts
    report.log_examples(run, "validation", data.validation.text)
  end)
end

-- ---- the two fine-tunings ---------------------------------------------------------------------
local rows = {}
local comparison = {} -- the report's comparison table (mb.report.log_comparison)
for _, variant in ipairs { "frozen", "unfrozen" } do
  local model = ex.place(ex.load_model(info, { num_labels = #names, id2label = names, seed = opts.seed }), opts)
  model:freeze_encoder(variant == "frozen")
  local trainable = model:num_parameters(true)
  local lr = variant == "frozen" and (opts.frozen_lr or opts.lr) or opts.lr
  print(string.format("\n== %s encoder: %d trainable of %d parameters, lr %g, %d epoch%s", variant, trainable,
                      model:num_parameters(), lr, opts.epochs, opts.epochs == 1 and "" or "s"))
  local scoped = ex.prefixed_run(run, variant) -- the trainer's metrics land under "<variant>/..."
  local t0 = mb.store.now()
  ex.fit { model = model, train = data.train, eval = data.validation, tokenizer = tok, epochs = opts.epochs,
           batch_size = opts.batch_size, lr = lr, weight_decay = opts.weight_decay, seed = opts.seed,
           run = scoped, max_length = opts.max_length }
  local seconds = mb.store.now() - t0
  run:log_metric(variant .. "/time/fine_tune_seconds", seconds)
  run:log_metric(variant .. "/trainable_parameters", trainable)
  local row = { variant, trainable } -- then accuracy and F1 of val, test, ood (columns 3..8), seconds
  local grouped = tostring(trainable):reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
  local crow = { name = string.format("%s encoder (%s trainable parameters, lr %g)", variant, grouped, lr),
                 key = variant, seconds = seconds }
  for j, s in ipairs { { "val", data.validation, "validation" }, { "test", data.test, "test" }, { "ood", data.ood, "ood" } } do
    if s[2] then
      local p = ex.predict(model, s[2], tok, { batch_size = opts.batch_size, max_length = opts.max_length })
      local sc = ex.scores(s[2].label, p.predicted)
      run:log_metric(variant .. "/" .. s[1] .. "/accuracy", sc.accuracy, { split = s[3], epoch = opts.epochs })
      run:log_metric(variant .. "/" .. s[1] .. "/f1", sc.f1, { split = s[3], epoch = opts.epochs })
      run:log_confusion(variant .. "/" .. s[3], ex.confusion(s[2].label, p.predicted, names), names,
                        { epoch = opts.epochs })
      row[2 * j + 1], row[2 * j + 2] = sc.accuracy, sc.f1
      crow[s[3]] = { accuracy = sc.accuracy, f1 = sc.f1 }
    end
  end
  row[9] = seconds
  rows[#rows + 1] = row
  comparison[#comparison + 1] = crow
  model:free()
end
if report then
  ex.try("the comparison table for the report", function()
    report.log_comparison(run, comparison, { ood_name = data.ood and ("out-of-domain, " .. #data.ood.text .. " texts") or nil,
                                             note = "time: fine-tuning only (evaluation not included)" })
  end)
end

-- ---- summary ----------------------------------------------------------------------------------
run:log_metric("time/total_seconds", mb.store.now() - t_start)
ex.log_device_memory(run, opts)
run:finish()
print(string.format("\n== Summary: frozen_vs_unfrozen, run %d (init=%s%s)", run.id, info.init,
                    opts.quick and ", quick" or ""))
ex.print_table({ "encoder", "trainable params", "val accuracy", "val F1", "test accuracy", "test F1",
                 "ood accuracy", "ood F1", "seconds" }, rows)
if info.init ~= "pretrained" then print("(init=" .. info.init .. ": not pretrained DistilBERT weights)") end
print("run folder: " .. run:artifact_dir())
if report then ex.write_report(store, run) end
