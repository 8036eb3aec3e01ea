-- readme_spec.lua: the README cannot drift. Every shell command in its ```sh blocks that ends
-- with "# quick" is run (a block's quick lines in order, in one shell, from the repository root)
-- and must exit 0; and the complete example of "Classical learners and metrics" must print the
-- line the README says it prints (needs ../shared: the tiny fixture model and the emotion data).
local support = require "tests.spec.support"
local lfs = require "lfs"

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/tests/spec/[^/]*$") or ".")
if not ROOT:match("^/") then ROOT = lfs.currentdir() .. "/" .. ROOT end
local BIN = os.getenv("MOONBERT_BIN") or (ROOT .. "/build/bin/moonbert")
local SHARED = os.getenv("MOONBERT_SHARED") or (ROOT .. "/../shared")
local README = support.read(ROOT .. "/README.md")

-- {{line, line, ...}, ...}: the quick commands of each ```sh block
local function quick_blocks()
  local blocks, cur = {}, nil
  for line in (README .. "\n"):gmatch("(.-)\n") do
    if line:match("^```sh%s*$") then cur = {}
    elseif line:match("^```") then
      if cur and #cur > 0 then blocks[#blocks + 1] = cur end
      cur = nil
    elseif cur then
      local cmd = line:match("^(.-)%s*#%s*quick%s*$")
      if cmd then cur[#cur + 1] = cmd end
    end
  end
  return blocks
end

describe("README.md", function()
  it("every shell command marked # quick exits 0", function()
    if lfs.attributes(BIN, "mode") ~= "file" then pending("needs " .. BIN) return end
    local blocks = quick_blocks()
    local n = 0
    for _, b in ipairs(blocks) do n = n + #b end
    assert.is_true(n >= 6, "only " .. n .. " quick commands found")
    for _, b in ipairs(blocks) do
      local script = { "set -e", "cd " .. support.q(ROOT) }
      for _, cmd in ipairs(b) do
        -- the build folder under test (build-san under make sanitize) stands in for build/
        script[#script + 1] = (cmd:gsub("build/bin/moonbert", BIN):gsub("%$PWD/build/lib", ROOT .. "/" ..
                              (BIN:match("/([^/]+)/bin/moonbert$") or "build") .. "/lib"))
      end
      local out, err, code = support.sh("sh -c " .. support.q(table.concat(script, "\n")))
      assert.are.equal(0, code, table.concat(b, "\n") .. "\n-> " .. out .. err)
    end
  end)

  it("the complete logistic-regression example prints what the README says", function()
    if lfs.attributes(BIN, "mode") ~= "file" then pending("needs " .. BIN) return end
    if not lfs.attributes(SHARED .. "/fixtures/distilbert-tiny/model.safetensors") then
      pending("needs " .. SHARED .. "/fixtures/distilbert-tiny (../shared absent?)") return
    end
    local i = README:find("A complete example", 1, true)
    assert.is_truthy(i)
    local code = README:match("```lua\n(.-)```", i)
    local said = README:match("It prints `([^`]+)` and the L%-BFGS iteration count", i)
    assert.is_truthy(code)
    assert.is_truthy(said)
    local dir = support.tmpdir()
    support.write(dir .. "/example.lua", (code:gsub('"%.%./shared/', '"' .. SHARED .. "/")))
    local out, err, rc = support.sh("cd " .. support.q(dir) .. " && " .. support.q(BIN) .. " run example.lua")
    os.execute("rm -rf " .. support.q(dir))
    assert.are.equal(0, rc, err)
    assert.truthy(out:find("^" .. said:gsub("%p", "%%%0") .. "  %(%d+ L%-BFGS iterations%)\n$"), out)
  end)
end)
