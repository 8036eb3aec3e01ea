-- check_spec.lua: moonbert.check, the argument checker of the Lua modules. Its messages are
-- compared with lauxlib's own (string.rep's luaL_checklstring, a C binding's luaL_checkudata),
-- and the position it reports is the line that called the checked function.
local check = require "moonbert.check"
local T = require "moonbert.tensor"

local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(e)
end

local function strip(e) return (e:gsub("^[^:]+:%d+: ", "")) end

describe("moonbert.check", function()
  it("words a type error as lauxlib does, with the __name of a typed value", function()
    local want = err_of(string.rep, {}, 1) -- lauxlib: "bad argument #1 to 'string.rep' (string expected, got table)"
    local name = want:match("to '([^']+)'")
    assert.are.equal(want, strip(err_of(function() check.type({}, "string", 1, name) end)))
    local t = T.zeros({ 2 })
    local want_t = err_of(string.rep, t, 1)
    assert.truthy(want_t:find("got moonbert.Tensor", 1, true), want_t)
    assert.are.equal(want_t, strip(err_of(function() check.type(t, "string", 1, name) end)))
    assert.are.equal("bad argument #2 to 'fit' (table expected, got nil)",
      strip(err_of(function() check.type(nil, "table", 2, "fit") end)))
  end)

  it("blames the line that called the checked function, or the first frame outside a file", function()
    local function api(x) check.type(x, "number", 1, "api") end
    local line = debug.getinfo(1, "l").currentline + 1
    local e = err_of(function() api("x") end)
    assert.truthy(e:find(":" .. line .. ": bad argument #1 to 'api' (number expected, got string)", 1, true), e)
    local here = debug.getinfo(1, "S").source
    local function deep(x) check.arg(1, "deep", "no", here) end
    e = err_of(function() deep() end)
    assert.truthy(e:find("^%[C%]") or not e:find("check_spec.lua", 1, true), e)
  end)

  it("options tables, integer and number fields", function()
    assert.are.same({}, check.opts(nil, 2, "f"))
    assert.are.equal("bad argument #2 to 'f' (options table expected, got number)",
      strip(err_of(function() check.opts(3, 2, "f") end)))
    assert.are.equal(5, check.field_int({ n = 5 }, "n", 1, "f", nil, 1))
    assert.are.equal(7, check.field_int({}, "n", 1, "f", 7, 1))
    assert.are.equal("bad argument #1 to 'f' (field 'n' must be an integer >= 1, got 0)",
      strip(err_of(function() check.field_int({ n = 0 }, "n", 1, "f", nil, 1) end)))
    assert.are.equal("bad argument #1 to 'f' (field 'lr' is invalid (-1))",
      strip(err_of(function() check.field_num({ lr = -1 }, "lr", 1, "f", nil, function(v) return v >= 0 end) end)))
  end)

  it("renames a C binding's argument error for the Lua function that wraps it", function()
    local c_err = err_of(T.zeros, "x") -- raised by luaL_* in bindings/tensor.c
    assert.truthy(c_err:match("^bad argument #%d+ to '[^']*' %(.*%)$"), c_err)
    local reason = check.reason(c_err)
    assert.are.equal(c_err:match("%((.*)%)$"), reason)
    assert.are.equal("bad argument #2 to 'adamw' (" .. reason .. ")", check.rename(c_err, 2, "adamw"))
    assert.are.equal("plain message", check.reason("x.lua:3: plain message"))
  end)
end)
