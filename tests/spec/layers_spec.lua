-- The dependency rules of runtime/ and bindings/ (scripts/check-layers): no include or call
-- cycle, runtime core < runtime model < bindings, no prototypes of another file's functions
-- inside a .c file, and the glue shared by bindings only in bindings/core.c with luamb.h.
local support = require "tests.spec.support"

local function check(root)
  return support.sh("lua5.4 scripts/check-layers " .. support.q(root))
end

-- A small tree with the given files (path -> text).
local function tree(files)
  local dir = support.tmpdir()
  for path, s in pairs(files) do
    local parent = (dir .. "/" .. path):match("^(.*)/")
    support.run("mkdir -p " .. support.q(parent))
    support.write(dir .. "/" .. path, s)
  end
  return dir
end

describe("the layers of the C code", function()
  it("hold in this tree: no cycle, no layer reached from below, no binding calls another", function()
    local out, err, code = check(".")
    assert.are.equal("", err)
    assert.is_truthy(out:match("include graph: %d+ modules, %d+ edges, 0 cycles, 0 problems"), out)
    assert.are.equal(0, code, out)
    -- the graph is really read: dozens of modules and edges
    local modules, edges = out:match("(%d+) modules, (%d+) edges")
    assert.is_true(tonumber(modules) > 30 and tonumber(edges) > 60, out)
  end)

  it("finds a planted include cycle, a core header reaching up, a prototype and shared glue", function()
    local dir = tree({
      ["runtime/a.h"] = '#include "b.h"\n',
      ["runtime/b.h"] = '#include "a.h"\n',
      ["runtime/distilbert.h"] = "typedef int mb_distilbert;\n",
      ["runtime/folder.h"] = '#include "distilbert.h"\n',
      ["runtime/lower.c"] = "int mb_lower(void) {\n    return 1;\n}\n",
      ["runtime/upper.c"] = "int mb_lower(void);\nint mb_upper(void) { return mb_lower(); }\n",
      ["runtime/lua_here.c"] = "#include <lauxlib.h>\n",
      ["bindings/luamb.h"] = "int mb_lua_glue(void);\n",
      ["bindings/core.c"] = '#include "luamb.h"\nint mb_lua_core_ok(void) { return mb_lua_glue(); }\n',
      ["bindings/tensor.c"] = '#include "luamb.h"\nint mb_lua_glue(void) {\n    return 0;\n}\n' ..
                              "MB_LUA_MODULE(tensor) { return 1; }\n",
    })
    local out, _, code = check(dir)
    support.run("rm -rf " .. support.q(dir))
    assert.are.equal(1, code, out)
    assert.is_truthy(out:find("cycle: runtime/a, runtime/b", 1, true), out)
    assert.is_truthy(out:find("layer: runtime/folder.h:1 (runtime core) includes runtime/distilbert.h", 1, true), out)
    assert.is_truthy(out:find("prototype: runtime/upper.c:1 declares mb_lower() of runtime/lower.c", 1, true), out)
    assert.is_truthy(out:find("runtime/lua_here.c:1 includes <lauxlib.h>", 1, true), out)
    assert.is_truthy(out:find("glue: bindings/tensor.c:2 defines mb_lua_glue()", 1, true), out)
    -- core.c calls tensor.c's glue and tensor.c includes core's header: a cycle of bindings
    assert.is_truthy(out:find("cycle: bindings/core, bindings/tensor", 1, true), out)
    assert.is_falsy(out:find("MB_LUA_MODULE", 1, true), out)
    assert.is_truthy(out:match("2 cycles, 6 problems"), out)
  end)

  it("lets the files of one binding module share a function, and no other module call it", function()
    local dir = tree({
      ["bindings/luamb.h"] = "int mb_lua_glue(void);\n",
      ["bindings/core.c"] = '#include "luamb.h"\nint mb_lua_glue(void) { return 0; }\n',
      ["bindings/store_impl.h"] = "void store_push_run(void);\n",
      ["bindings/store_run.c"] = '#include "store_impl.h"\nvoid store_push_run(void) {\n}\n',
      ["bindings/store.c"] = '#include "store_impl.h"\nMB_LUA_MODULE(store) { store_push_run(); return 1; }\n',
    })
    local out, _, code = check(dir)
    assert.are.equal(0, code, out)
    assert.is_truthy(out:match("0 cycles, 0 problems"), out)
    support.write(dir .. "/bindings/metrics.c", '#include "luamb.h"\nMB_LUA_MODULE(metrics) { store_push_run(); return 1; }\n')
    out, _, code = check(dir)
    support.run("rm -rf " .. support.q(dir))
    assert.are.equal(1, code, out)
    assert.is_truthy(out:find("glue: bindings/metrics.c calls store_push_run() of bindings/store_run.c, " ..
                              "which is private to bindings/store", 1, true), out)
    assert.is_truthy(out:match("0 cycles, 1 problem\n"), out)
  end)
end)
