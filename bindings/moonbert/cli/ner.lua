-- moonbert ner --model DIR [--aggregation S] [--json] TEXT...: named entities (or any token tags)
-- as Hugging Face's token-classification pipeline (bindings/moonbert/pipeline_ner.lua).
-- Without TEXT arguments, one text per stdin line.
local args = require "moonbert.args"

local SPEC = {
  { "--model", "DIR", "token-classification folder (BertForTokenClassification, DistilBertForTokenClassification)" },
  { "--aggregation", "S", "none, simple (default here), first, average or max (HF's aggregation_strategy)" },
  { "--all", nil, "keep the O tag (ignore_labels = {})" },
  { "--json", nil, "one JSON line per text: the list of entities" },
  { "--help", nil, "show this help" },
}

local M = {
  name = "ner",
  summary = "named entities of texts with a token-classification model",
  usage = args.usage(SPEC, [[
usage: moonbert ner --model DIR "My name is Wolfgang and I live in Berlin"
       moonbert ner --model DIR --aggregation first --json < texts.txt

Prints each entity with its tag, probability and byte positions in the text
(1-based, inclusive). With --aggregation none every word piece is listed with
its B-/I- tag; simple groups B-/I- runs; first, average and max also make
every word take one tag.

options:]]),
}

local function clean(err) return (tostring(err):gsub("^[^\n]-%.lua:%d+: ", ""):gsub("^token%-classification: ", "")) end

function M.main(argv)
  local opts, texts = args.parse(argv, SPEC)
  if opts.help then print(M.usage) return 0 end
  if not opts.model then args.usage_error("--model DIR is required (a token-classification model folder)") end
  local strategy = opts.aggregation or "simple"
  local valid = { none = true, simple = true, first = true, average = true, max = true }
  if not valid[strategy] then
    args.usage_error("--aggregation must be none, simple, first, average or max (got '" .. strategy .. "')")
  end
  local ok, ner = pcall(require("moonbert.pipeline_ner").load, opts.model,
                        { aggregation_strategy = strategy, ignore_labels = opts.all and {} or nil })
  if not ok then args.fail(clean(ner)) end
  texts = args.texts(texts)
  local json = require "dkjson"
  local rc = 0
  for _, text in ipairs(texts) do
    local okc, res = pcall(ner, text)
    if not okc then
      io.stderr:write("moonbert ner: ", clean(res), "\n")
      rc = 1
    elseif opts.json then
      io.stdout:write(json.encode(res), "\n")
    else
      io.stdout:write(text, "\n")
      for _, e in ipairs(res) do
        io.stdout:write(string.format("  %-8s %-7.4f %-24s (bytes %d-%d)\n", e.entity_group or e.entity, e.score, e.word,
          e.start, e["end"]))
      end
    end
  end
  ner:free()
  return rc
end

return M
