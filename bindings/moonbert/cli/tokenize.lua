-- moonbert tokenize --model DIR [--max-length N]: one text per stdin line in,
-- one line of space-separated token ids out (with [CLS]/[SEP], as Hugging Face's
-- tokenizer(text)["input_ids"]). Truncation is on at the model's max length
-- (512 for BERT) unless --no-truncation; --tokens prints the token strings instead.
local args = require "moonbert.args"

local SPEC = {
  { "--model", "DIR", "Hugging Face tokenizer folder (tokenizer.json or vocab.txt), or a hub name" },
  { "--max-length", "N", "truncate to N ids including [CLS]/[SEP] (default: model_max_length)", type = "number" },
  { "--no-truncation", nil, "never truncate" },
  { "--tokens", nil, "print token strings instead of ids" },
}

local M = {
  summary = "tokenize stdin lines into space-separated token ids",
  usage = args.usage(SPEC, "usage: moonbert tokenize --model DIR [--max-length N] < texts.txt\n\noptions:"),
}

local CHUNK = 4096 -- lines per encode_batch call: bounded memory on any input size

function M.main(argv)
  local opts = args.parse(argv, SPEC)
  if not opts.model then args.usage_error("--model DIR is required (a Hugging Face tokenizer folder)") end
  if opts.max_length and (opts.max_length < 2 or opts.max_length ~= math.floor(opts.max_length)) then
    args.usage_error("--max-length must be an integer >= 2, got " .. tostring(opts.max_length))
  end
  local dir, herr = require("moonbert.hub").model_arg(opts.model) -- a folder, or a hub name (fetched)
  if not dir then args.fail(herr) end
  local ok, tok = pcall(require("moonbert.tokenizer").load, dir)
  if not ok then args.fail(args.clean(tok)) end
  local enc_opts = { padding = false, truncation = not opts.no_truncation, max_length = opts.max_length }
  local out = io.stdout
  out:setvbuf("full")
  local chunk = {}
  local function flush()
    if #chunk == 0 then return end
    local b = tok:encode_batch(chunk, enc_opts)
    for i = 1, #chunk do
      local ids = b.input_ids[i]
      if opts.tokens then ids = tok:convert_ids_to_tokens(ids) end
      out:write(table.concat(ids, " "), "\n")
    end
    chunk = {}
  end
  for line in io.stdin:lines() do
    chunk[#chunk + 1] = line
    if #chunk >= CHUNK then flush() end
  end
  flush()
  out:flush()
  tok:free()
  return 0
end

return M
