-- moonbert fill-mask --model DIR [--top-k K] [--json] TEXT...: the most probable tokens for each
-- [MASK] of a text, with their probabilities and the filled-in sequence, as Hugging Face's
-- fill-mask pipeline returns them. Without TEXT arguments, one text per stdin line.
-- This is mb.pipeline("fill-mask") (bindings/moonbert/pipeline_fill_mask.lua).
local args = require "moonbert.args"

local SPEC = {
  { "--model", "DIR", "masked-LM folder: config.json, model.safetensors (vocab_* head), tokenizer files" },
  { "--top-k", "K", "tokens per mask (default 5, as Hugging Face)", type = "number" },
  { "--max-length", "N", "truncate texts to N tokens (default: the tokenizer's, 512)", type = "number" },
  { "--json", nil, "one JSON line per text: HF's list of {score, token, token_str, sequence} (a list per mask)" },
  { "--help", nil, "show this help" },
}

local M = {
  name = "fill-mask",
  summary = "most probable tokens for [MASK] from a masked-LM model",
  usage = args.usage(SPEC, [[
usage: moonbert fill-mask --model DIR [--top-k K] [--json] "i feel so [MASK] today"
       moonbert fill-mask --model DIR < texts.txt        (one text per line)

Prints, for each [MASK] in each text, the K most probable tokens with their
probabilities (softmax over the vocabulary) and the sequence with that token
filled in. DIR is a Hugging Face DistilBertForMaskedLM folder, such as
models/moonbert-small-mlm from `make pretrain`, or a hub name such as
distilbert-base-uncased, fetched into MOONBERT_CACHE as from_pretrained does.
A classifier folder is refused: fine-tuning replaced its vocabulary head.

options:]]),
}

local function clean(err) return (tostring(err):gsub("^[^\n]-%.lua:%d+: ", ""):gsub("^fill%-mask: ", "")) end

function M.main(argv)
  local opts, texts = args.parse(argv, SPEC)
  if opts.help then print(M.usage) return 0 end
  if not opts.model then args.usage_error("--model DIR is required (a masked-LM model folder)") end
  local top_k, max_length = args.integer(opts, "top_k", 1), args.integer(opts, "max_length", 2)
  local hub = require "moonbert.hub"
  local dir, herr = hub.model_arg(opts.model)
  if not dir then args.fail(herr) end
  local arch, cfg = hub.architecture(dir)
  -- (a folder without weights is left to the loader, which names the missing file)
  if arch and arch:find("SequenceClassification") and require("lfs").attributes(dir .. "/model.safetensors", "mode") then
    local labels = {}
    for i = 0, 1000 do
      local l = cfg.id2label and cfg.id2label[tostring(i)]
      if not l then break end
      labels[#labels + 1] = l
    end
    args.fail(opts.model .. " holds a text classifier (" .. arch .. (#labels > 0 and (", labels " ..
              table.concat(labels, ", ")) or "") .. "), not a masked-language model: its vocabulary head " ..
              "is gone; use moonbert predict --model " .. opts.model)
  end
  local ok, fill = pcall(require("moonbert.pipeline_fill_mask").load, dir,
                         { top_k = top_k, max_length = max_length })
  if not ok then args.fail(clean(fill)) end
  texts = args.texts(texts) -- after the model loads: a bad --model is reported before stdin is read
  local json = opts.json
  local out = io.stdout
  local rc = 0
  for _, text in ipairs(texts) do
    local okc, res = pcall(fill, text)
    if not okc then
      io.stderr:write("moonbert fill-mask: ", clean(res), "\n")
      rc = 1
    elseif json then
      out:write(args.json(res, { keyorder = { "score", "token", "token_str", "sequence" } }), "\n") -- HF's order
    else
      out:write(text, "\n")
      local per_mask = res[1] and res[1].score and { res } or res
      for m, list in ipairs(per_mask) do
        if #per_mask > 1 then out:write(string.format("  [MASK] %d:\n", m)) end
        for _, r in ipairs(list) do
          out:write(string.format("  %-10.4g %-16s %s\n", r.score, r.token_str, r.sequence))
        end
      end
    end
  end
  fill:free()
  return rc
end

return M
