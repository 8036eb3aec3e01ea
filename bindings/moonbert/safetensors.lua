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
local check = require "moonbert.check"

local M = {}

function M.load(path)
  if type(path) ~= "string" then
    check.arg(1, "load", "string expected, got " .. type(path))
  end
  return core.load(path)
end

function M.save(path, tensors, metadata)
  if type(path) ~= "string" then
    check.arg(1, "save", "string expected, got " .. type(path))
  end
  if type(tensors) ~= "table" then
    check.arg(2, "save", "table of tensors expected, got " .. type(tensors))
  end
  if metadata ~= nil and type(metadata) ~= "table" then
    check.arg(3, "save", "table of strings expected, got " .. type(metadata))
  end
  return core.save(path, tensors, metadata)
end

return M
