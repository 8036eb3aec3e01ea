-- cli_newcomer_spec.lua: the command line as a newcomer meets it: every subcommand's --help
-- (version too), JSON with a stable key order, `make install PREFIX=...` giving a moonbert that
-- works from anywhere, and a local sweep dividing the cores among its trials (MOONBERT_THREADS).
local mb = require "moonbert"
local support = require "tests.spec.support"
local lfs = require "lfs"
local q, sh = support.q, support.sh

local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/tests/spec/[^/]*$") or ".")
if not ROOT:match("^/") then ROOT = lfs.currentdir() .. "/" .. ROOT end
local have_bin = lfs.attributes(BIN, "mode") == "file"
local describe_cli = have_bin and describe or function(name)
  describe(name, function() it("needs " .. BIN, function() pending("no " .. BIN .. " (run make)") end) end)
end

local COMMANDS = { "run", "repl", "sweep", "results", "report", "predict", "fill-mask", "tokenize", "bench", "version" }

describe_cli("the moonbert command", function()
  it("lists every command, and each one's --help prints its usage and exits 0", function()
    local out = sh(q(BIN) .. " --help")
    for _, c in ipairs(COMMANDS) do
      assert.truthy(out:find("\n  " .. c .. " ", 1, true), c)
      local h, err, code = sh(q(BIN) .. " " .. c .. " --help")
      assert.are.equal(0, code, c .. ": " .. err)
      assert.truthy(h:find("usage: moonbert " .. c, 1, true), c .. ": " .. h)
    end
  end)

  it("writes JSON with the same key order every time", function()
    local tmp = support.tmpdir()
    local words = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "am", "happy" }
    local cfg = { dim = 16, n_layers = 1, n_heads = 2, hidden_dim = 32, vocab_size = #words, max_position_embeddings = 32 }
    local m = mb.distilbert.new(cfg, { seed = 1, num_labels = 3, id2label = { "a", "b", "c" } })
    m:save(tmp .. "/clf")
    local mlm = mb.distilbert.new_masked_lm(cfg, { seed = 1 })
    mlm:save(tmp .. "/mlm")
    for _, d in ipairs { "/clf", "/mlm" } do support.write(tmp .. d .. "/vocab.txt", table.concat(words, "\n") .. "\n") end
    local outs = {}
    for i = 1, 3 do outs[i] = sh(q(BIN) .. " predict --json --model " .. q(tmp .. "/clf") .. " 'i am happy'") end
    assert.are.equal(outs[1], outs[2])
    assert.are.equal(outs[1], outs[3])
    assert.truthy(outs[1]:find('^{"text":"i am happy","label":"%a","scores":%[{"label":"%a","score":'), outs[1])
    local f = sh(q(BIN) .. " fill-mask --json --model " .. q(tmp .. "/mlm") .. " 'i am [MASK]'")
    assert.truthy(f:find('^%[{"score":[^,]+,"token":%d+,"token_str":"[^"]*","sequence":"'), f)
    os.execute("rm -rf " .. q(tmp))
  end)

  it("make install PREFIX=... gives a moonbert that runs from any folder", function()
    local prefix = support.tmpdir()
    local build = (os.getenv("MOONBERT_BIN") or ""):match("^.*/([^/]+)/bin/moonbert$") or "build"
    local out, code = support.run("make -s -C " .. q(ROOT) .. " install BUILD=" .. q(build) .. " PREFIX=" .. q(prefix) .. " 2>&1")
    if not lfs.attributes(prefix .. "/bin/moonbert") then
      os.execute("rm -rf " .. q(prefix))
      error("make install failed: " .. out)
    end
    local v, err
    v, err, code = sh("cd / && env -u LUA_PATH -u LUA_CPATH " .. q(prefix .. "/bin/moonbert") .. " version")
    assert.are.equal(0, code, err)
    assert.truthy(v:find("^moonbert %d"), v)
    v, err, code = sh("cd / && env -u LUA_PATH -u LUA_CPATH " .. q(prefix .. "/bin/moonbert") .. " run -",
                      "print(mb.tensor.from{1, 2}:sum(1))\n")
    assert.are.equal(0, code, err)
    assert.truthy(v:find("3.0", 1, true), v)
    v, err, code = sh("cd / && env -u LUA_PATH -u LUA_CPATH " .. q(prefix .. "/bin/moonbert") .. " bench --help")
    assert.are.equal(0, code, err)
    assert.truthy(v:find("matmul", 1, true), v) -- the benchmarks are found in the installed tree
    assert.truthy(lfs.attributes(prefix .. "/share/moonbert/lua/moonbert/hub.lua"))
    os.execute("rm -rf " .. q(prefix))
  end)
end)

describe("a local sweep divides the cores", function()
  local sweep = require "moonbert.sweep"
  it("gives each of J trials max(1, C / J) threads", function()
    if os.getenv("MOONBERT_THREADS") then pending("MOONBERT_THREADS is set here") return end
    assert.are.equal(2, sweep.trial_threads(1, 2))
    assert.are.equal(1, sweep.trial_threads(2, 2))
    assert.are.equal(1, sweep.trial_threads(3, 2))
    assert.are.equal(4, sweep.trial_threads(4, 16))
    assert.are.equal(8, sweep.trial_threads(2, 17))
  end)

  it("sets MOONBERT_THREADS in the trials, and leaves the user's alone", function()
    if not have_bin then pending("needs " .. BIN) return end
    local dir = support.tmpdir()
    support.write(dir .. "/trial.lua", [[
local args = require "moonbert.args"
local opts = args.parse(arg, { { "--x", "N", "x", type = "number" }, { "--store", "PATH", "store" } })
local store = mb.store.open(opts.store)
local run = store:start_run { experiment = "threads", params = { x = opts.x, env = os.getenv("MOONBERT_THREADS") or "unset",
                                                                threads = mb.threads() } }
run:log_metric("m", opts.x)
run:finish()
]])
    support.write(dir .. "/th.lua", 'return { script = "trial.lua", grid = { x = { 1, 2 } }, metric = "m", ' ..
                  'experiment = "threads", store = "' .. dir .. '/r.db" }')
    local p = io.popen("nproc")
    local cores = tonumber(p:read("a"))
    p:close()
    local function params_of_runs()
      local store = mb.store.open(dir .. "/r.db")
      local out = {}
      for _, r in ipairs(store:runs { experiment = "threads" }) do out[#out + 1] = store:params(r.id) end
      store:close()
      return out
    end
    local out, code = support.run("cd " .. q(dir) .. " && env -u MOONBERT_THREADS " .. q(BIN) .. " sweep th.lua --jobs 2")
    assert.are.equal(0, code, out)
    local runs = params_of_runs()
    assert.are.equal(2, #runs)
    for _, pr in ipairs(runs) do
      assert.are.equal(tostring(math.max(1, cores // 2)), tostring(pr.env))
      assert.are.equal(math.max(1, cores // 2), math.tointeger(tonumber(pr.threads)))
    end
    os.remove(dir .. "/r.db")
    out, code = support.run("cd " .. q(dir) .. " && MOONBERT_THREADS=3 " .. q(BIN) .. " sweep th.lua --jobs 2")
    assert.are.equal(0, code, out)
    for _, pr in ipairs(params_of_runs()) do assert.are.equal("3", tostring(pr.env)) end
    os.execute("rm -rf " .. q(dir))
  end)
end)
