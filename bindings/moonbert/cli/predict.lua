-- moonbert predict --model DIR [--top-k K] [--json] TEXT...: the label and class probabilities
-- of new texts from a fine-tuned model folder (one a run saved under results/runs/<id>/model).
-- Without TEXT arguments, one text per stdin line. This is mb.pipeline("text-classification").
local args = require "moonbert.args"

local SPEC = {
  { "--model", "DIR", "model folder (config.json with id2label, model.safetensors, tokenizer files) or hub name" },
  { "--top-k", "K", "print the K most probable classes (default: all)", type = "number" },
  { "--max-length", "N", "truncate texts to N tokens (default: the tokenizer's, 512)", type = "number" },
  { "--precision", "P", "matrix products in fp32 (default) or bf16 (README: bf16 on the CPU)",
    choices = { "fp32", "bf16" } },
  { "--json", nil, "one JSON object per text: {\"text\":..., \"label\":..., \"scores\":[{label, score}...]}" },
  { "--help", nil, "show this help" },
}

local M = {
  summary = "label and class probabilities of texts from a fine-tuned model",
  usage = args.usage(SPEC, [[
usage: moonbert predict --model DIR [--top-k K] [--json] TEXT...
       moonbert predict --model DIR < texts.txt        (one text per line)

Prints, for each text, the predicted label and the class probabilities, most
probable first. DIR is a model folder saved by an experiment
(results/runs/<id>/model) or any Hugging Face DistilBertForSequenceClassification folder,
or a hub name (ORG/NAME), fetched into MOONBERT_CACHE as from_pretrained does (see
scripts/fetch-model). A masked-LM folder is refused: it has no classification head.

options:]]),
}

function M.main(argv)
  local opts, texts = args.parse(argv, SPEC)
  if opts.help then print(M.usage) return 0 end
  if not opts.model then args.usage_error("--model DIR is required (a fine-tuned model folder)") end
  local top_k, max_length = args.integer(opts, "top_k", 1), args.integer(opts, "max_length", 2)
  local hub = require "moonbert.hub"
  local dir, herr = hub.model_arg(opts.model)
  if not dir then args.fail(herr) end
  local arch = hub.architecture(dir)
  -- (a folder without weights is left to the loader, which names the missing file)
  if arch and arch:find("MaskedLM") and require("lfs").attributes(dir .. "/model.safetensors", "mode") then
    args.fail(opts.model .. " holds a masked-language model (" .. arch .. "), not a text classifier: " ..
              "fine-tune it first (moonbert run experiments/baseline_vs_finetune.lua --model " .. opts.model ..
              "), or fill in [MASK] tokens with moonbert fill-mask --model " .. opts.model)
  end
  local ok, clf = pcall(require("moonbert.pipeline").new, "text-classification", dir,
                        { top_k = "all", max_length = max_length, precision = opts.precision })
  if not ok then args.fail((tostring(clf):gsub("^[^\n]-%.lua:%d+: ", ""):gsub("^pipeline: ", ""))) end
  texts = args.texts(texts) -- after the model loads: a bad --model is reported before stdin is read
  local k = top_k or "all"
  local json = opts.json
  local out = io.stdout
  local CHUNK = 256 -- texts per call: bounded memory on long stdin input
  for start = 1, #texts, CHUNK do
    local chunk = table.move(texts, start, math.min(start + CHUNK - 1, #texts), 1, {})
    local results = clf(chunk, { top_k = k })
    for i, scores in ipairs(results) do
      if json then
        local list = {}
        for j, s in ipairs(scores) do list[j] = { label = s.label, score = s.score } end
        out:write(args.json({ text = chunk[i], label = scores[1].label, scores = list },
                            { keyorder = { "text", "label", "scores", "score" } }), "\n")
      else
        out:write(chunk[i], "\n")
        out:write(string.format("  label: %s\n", scores[1].label))
        for _, s in ipairs(scores) do out:write(string.format("  %-12s %.4f\n", s.label, s.score)) end
      end
    end
  end
  clf:free()
  return 0
end

return M
