-- moonbert.safetensors (mb.safetensors): read and write safetensors files.
--
--   local fx, meta = mb.safetensors.load("../shared/fixtures/distilbert-tiny/cases.safetensors")
--   fx.logits            -- float32 tensor [4,6]; F16/BF16/F64 load as float32, integers as int32
--   meta.sentences       -- the file's __metadata__ (string values)
--   mb.safetensors.save("features.safetensors", {X = X, y = y}, {note = "train split"})
--
-- Files are mapped and their header is validated before any tensor is read: a
-- truncated file, overlapping offsets or an unknown dtype is an error naming the
-- file and the tensor. Written files hold float32 and int32 tensors with names in
-- sorted order; Hugging Face safetensors and transformers read them.
local core = require("moonbert.core").safetensors

local M = {}

function M.load(path)
  if type(path) ~= "string" then
    error("bad argument #1 to 'load' (string expected, got " .. type(path) .. ")", 2)
  end
  return core.load(path)
end

function M.save(path, tensors, metadata)
  if type(path) ~= "string" then
    error("bad argument #1 to 'save' (string expected, got " .. type(path) .. ")", 2)
  end
  if type(tensors) ~= "table" then
    error("bad argument #2 to 'save' (table of tensors expected, got " .. type(tensors) .. ")", 2)
  end
  if metadata ~= nil and type(metadata) ~= "table" then
    error("bad argument #3 to 'save' (table of strings expected, got " .. type(metadata) .. ")", 2)
  end
  return core.save(path, tensors, metadata)
end

return M
