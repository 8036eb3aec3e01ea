-- moonbert.tokenizer (mb.tokenizer): Hugging Face BERT WordPiece tokenizers in C.
--
--   local tok = mb.tokenizer.load("../shared/models/distilbert-base-uncased")
--   local e = tok:encode("I am so excited today!")      -- {input_ids=, attention_mask=, tokens=}
--   tok:encode("first", "second", {max_length=16})       -- a pair: [CLS] A [SEP] B [SEP]
--   local b = tok:encode_batch(texts, {padding="longest", truncation=true, max_length=512})
--   b.input_ids, b.attention_mask                        -- int32 tensors [B,T]; b.lengths int32 [B]
--   tok:lengths(texts)                                   -- ids per text (with [CLS]/[SEP]), no tensors
--   tok:decode(e.input_ids, {skip_special_tokens=true}) -- "i am so excited today!"
--   tok:convert_ids_to_tokens(ids), tok:convert_tokens_to_ids(tokens), tok:convert_tokens_to_string(tokens)
--   tok.vocab_size, tok.model_max_length, tok.model_input_names, tok:special_tokens()
--
-- Loading reads tokenizer.json when present, else vocab.txt + tokenizer_config.json.
-- Token ids are the 0-based vocabulary ids (as Hugging Face), stored as values.
-- Truncation is on by default at model_max_length (HF's truncation=True, longest_first
-- for pairs): a 600-token text becomes [CLS] + 510 pieces + [SEP].
-- padding=false in encode_batch gives lists of lists (ragged) instead of tensors.
-- encode(text, {return_offsets=true}) (or return_offsets_mapping) adds offsets: 1-based inclusive
-- byte spans {first, last} into the text the token came from ({0, 0} for [CLS]/[SEP]), so that
-- text:sub(first, last) is the token's text. Every encoding has sequence_ids: 0 for the first text,
-- 1 for the pair, -1 for [CLS]/[SEP] (HF's None); token_type_ids where the model takes them (BERT).
-- truncation: true (longest_first, as HF's fast tokenizer), false, "only_first" or "only_second"
-- (encode and encode_batch); only_* fail with a message when that text cannot give enough.
--   tok:encode(question, context, {truncation="only_second", max_length=384, stride=128,
--              return_overflowing_tokens=true, return_offsets_mapping=true})
-- returns a list of encodings, one per window of the context: each window holds the question and
-- up to max_length - 3 - #question context tokens, and starts (that many - stride) tokens after
-- the previous one, as HF's overflowing tokens.
-- Input text is any bytes: invalid UTF-8 is read as U+FFFD, which the normalizer drops.
-- The implementation is C (runtime/tokenizer*.c, bindings/tokenizer.c).
local core = require("moonbert.core").tokenizer

local M = {}

--- Load a Hugging Face tokenizer directory; raises an error naming the file on failure.
M.load = core.load

--- Seconds on a monotonic wall clock (for benchmarks).
M.wall_clock = core.wall_clock

return M
