-- safetensors_spec.lua: mb.safetensors load/save round trips, the fixtures,
-- and malformed files as clear errors.
local mb = require "moonbert"
local T = mb.tensor

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"

local function tmpfile()
  local p = os.tmpname()
  return p
end

local function write_raw(path, header, data)
  local f = assert(io.open(path, "wb"))
  f:write(string.pack("<I8", #header), header, data or "")
  f:close()
end

describe("mb.safetensors", function()
  it("saves and loads float32 and int32 tensors with metadata", function()
    local path = tmpfile()
    local a = T.from({ { 1.5, -2 }, { 3, 4.25 } })
    local b = T.from({ 7, -8, 9 }, { dtype = "int32" })
    mb.safetensors.save(path, { weights = a, ids = b }, { note = "hi" })
    local t, meta = mb.safetensors.load(path)
    assert.are.equal("hi", meta.note)
    assert.are.equal("float32", t.weights:dtype())
    assert.are.equal("int32", t.ids:dtype())
    assert.are.same({ { 1.5, -2 }, { 3, 4.25 } }, t.weights:totable())
    assert.are.same({ 7, -8, 9 }, t.ids:totable())
    os.remove(path)
  end)

  it("writes non-contiguous views as their values", function()
    local path = tmpfile()
    local a = T.from({ { 1, 2, 3 }, { 4, 5, 6 } })
    mb.safetensors.save(path, { t = a:transpose() })
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, mb.safetensors.load(path).t:totable())
    os.remove(path)
  end)

  it("converts F16, BF16, F64 and I64 on load", function()
    local path = tmpfile()
    local header = '{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},' ..
                   '"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},' ..
                   '"d":{"dtype":"F64","shape":[1],"data_offsets":[6,14]},' ..
                   '"i":{"dtype":"I64","shape":[1],"data_offsets":[14,22]}}'
    write_raw(path, header, string.pack("<I2I2I2di8", 0x3c00, 0xc000, 0x3f80, 0.25, -5))
    local t = mb.safetensors.load(path)
    assert.are.same({ 1, -2 }, t.h:totable())
    assert.are.same({ 1 }, t.b:totable())
    assert.are.same({ 0.25 }, t.d:totable())
    assert.are.same({ -5 }, t.i:totable())
    os.remove(path)
  end)

  it("rejects malformed files with a message naming the problem", function()
    local path = tmpfile()
    local cases = {
      { '{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
        string.rep("\0", 12), "overlap" },
      { '{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', string.rep("\0", 8), "runs past the end" },
      { '{"x":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}', "\0", "unknown dtype 'Q8'" },
      { '{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', string.rep("\0", 8), "need 12" },
      { '{"x": [', "", "not valid JSON" },
    }
    for _, c in ipairs(cases) do
      write_raw(path, c[1], c[2])
      local ok, err = pcall(mb.safetensors.load, path)
      assert.is_false(ok)
      assert.truthy(err:find(c[3], 1, true), err)
      assert.truthy(err:find(path, 1, true), "message names the file: " .. err)
    end
    -- truncated: fewer bytes than the 8-byte length prefix says
    local f = assert(io.open(path, "wb"))
    f:write(string.pack("<I8", 1000), "{}")
    f:close()
    local ok, err = pcall(mb.safetensors.load, path)
    assert.is_false(ok)
    assert.truthy(err:find("truncated", 1, true), err)
    os.remove(path)
    ok, err = pcall(mb.safetensors.load, path)
    assert.truthy(err:find("cannot open", 1, true), err)
  end)

  it("checks its arguments", function()
    assert.has_error(function() mb.safetensors.load(nil) end, "bad argument #1 to 'load' (string expected, got nil)")
    assert.has_error(function() mb.safetensors.save("/tmp/x", 5) end,
      "bad argument #2 to 'save' (table of tensors expected, got number)")
    local ok, err = pcall(mb.safetensors.save, "/tmp/x", { a = 1 })
    assert.truthy(err:find("'a' is not a live moonbert.Tensor", 1, true), err)
  end)

  local fixture = SHARED .. "/fixtures/distilbert-tiny/cases.safetensors"
  if io.open(fixture) then
    it("reads the fixture cases with their metadata", function()
      local fx, meta = mb.safetensors.load(fixture)
      assert.are.same({ 4, 44 }, fx.input_ids:shape())
      assert.are.equal("int32", fx.input_ids:dtype())
      assert.are.same({ 4, 6 }, fx.logits:shape())
      assert.are.equal("1234", meta.seed)
    end)
  else
    pending("fixture reading needs " .. fixture)
  end
end)
