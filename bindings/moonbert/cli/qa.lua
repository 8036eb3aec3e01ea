-- moonbert qa --model DIR --question Q --context C [--top-k K] [--json]: extractive question
-- answering as Hugging Face's question-answering pipeline (bindings/moonbert/pipeline_qa.lua).
-- Without --question/--context, one JSON object {"question": ..., "context": ...} per stdin line.
local args = require "moonbert.args"

local SPEC = {
  { "--model", "DIR", "question-answering folder (BertForQuestionAnswering, DistilBertForQuestionAnswering)" },
  { "--question", "Q", "the question" },
  { "--context", "C", "the text that holds the answer" },
  { "--top-k", "K", "answers per question (default 1)", type = "number" },
  { "--max-answer-len", "N", "longest answer in tokens (default 15)", type = "number" },
  { "--max-seq-len", "N", "tokens per window (default min(model_max_length, 384))", type = "number" },
  { "--doc-stride", "N", "tokens shared by consecutive windows of a long context (default 128)", type = "number" },
  { "--impossible", nil, "allow the empty answer (handle_impossible_answer)" },
  { "--json", nil, "one JSON line per question: {score, start, end, answer} (a list with --top-k > 1)" },
  { "--help", nil, "show this help" },
}

local M = {
  name = "qa",
  summary = "answer questions from a context with a question-answering model",
  usage = args.usage(SPEC, [[
usage: moonbert qa --model DIR --question "Where do I live?" --context "I live in Berlin."
       moonbert qa --model DIR < questions.jsonl   ({"question": ..., "context": ...} per line)

Prints the answer span of the context, its probability and its byte positions
(1-based, inclusive: context:sub(start, end)). Long contexts are read in
overlapping windows, as Hugging Face's pipeline does.

options:]]),
}

local function clean(err) return (tostring(err):gsub("^[^\n]-%.lua:%d+: ", ""):gsub("^question%-answering: ", "")) end

local function items_from_stdin(json)
  local items = {}
  local n = 0
  for line in io.lines() do
    n = n + 1
    if line:match("%S") then
      local obj, _, err = json.decode(line)
      if type(obj) ~= "table" or type(obj.question) ~= "string" or type(obj.context) ~= "string" then
        args.fail(string.format("stdin line %d: a JSON object {\"question\": string, \"context\": string} expected%s",
          n, err and (" (" .. err .. ")") or ""))
      end
      items[#items + 1] = obj
    end
  end
  if #items == 0 then args.usage_error("give --question and --context, or JSON lines on stdin") end
  return items
end

function M.main(argv)
  local opts, rest = args.parse(argv, SPEC)
  if opts.help then print(M.usage) return 0 end
  if not opts.model then args.usage_error("--model DIR is required (a question-answering model folder)") end
  if #rest > 0 then args.usage_error("unexpected argument '" .. rest[1] .. "' (use --question and --context)") end
  if (opts.question == nil) ~= (opts.context == nil) then
    args.usage_error("--question and --context go together")
  end
  local o = { top_k = args.integer(opts, "top_k", 1), max_answer_len = args.integer(opts, "max_answer_len", 1),
              max_seq_len = args.integer(opts, "max_seq_len", 4), doc_stride = args.integer(opts, "doc_stride", 0),
              handle_impossible_answer = opts.impossible or nil }
  local ok, qa = pcall(require("moonbert.pipeline_qa").load, opts.model, o)
  if not ok then args.fail(clean(qa)) end
  local json = require "dkjson"
  local items = opts.question and { { question = opts.question, context = opts.context } } or items_from_stdin(json)
  local rc = 0
  for _, it in ipairs(items) do
    local okc, res = pcall(qa, it)
    if not okc then
      io.stderr:write("moonbert qa: ", clean(res), "\n")
      rc = 1
    elseif opts.json then
      io.stdout:write(json.encode(res), "\n")
    else
      local list = res.score and { res } or res
      if #items > 1 then io.stdout:write(it.question, "\n") end
      for _, a in ipairs(list) do
        io.stdout:write(string.format("%-8.4f %s  (bytes %d-%d)\n", a.score, a.answer == "" and "(no answer)" or a.answer,
          a.start, a["end"]))
      end
    end
  end
  qa:free()
  return rc
end

return M
