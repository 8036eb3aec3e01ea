-- hub_spec.lua: moonbert.hub and the commands that fetch through it, against a real HTTP server
-- on loopback with the Hugging Face Hub's URL layout (tests/spec/hub_server.py, /usr/bin/python3):
-- a good download, a wrong sha256, a truncated transfer, a resumed transfer, the server gone,
-- HF_HUB_OFFLINE=1, and `moonbert predict --model ORG/NAME` fetching into MOONBERT_CACHE.
-- The served repository is ../shared/fixtures/distilbert-tiny when present, else a tiny model
-- this spec saves itself. Expected sha256 come from mb.store (C), the client checks with sha256sum.
local mb = require "moonbert"
local hub = require "moonbert.hub"
local support = require "tests.spec.support"
local lfs = require "lfs"
local q, sh = support.q, support.sh

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local BIN = os.getenv("MOONBERT_BIN") or "build/bin/moonbert"
local ROOT_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/tests/spec/[^/]*$") or ".")
local SERVER = ROOT_DIR .. "/tests/spec/hub_server.py"
local PY = "/usr/bin/python3"
local REPO = "tiny-org/tiny-bert"
local FILES = { "config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors" }

local function exists(p) return lfs.attributes(p, "mode") ~= nil end

-- The repository the server holds: ROOT/<REPO>/<file>.
local function make_repo(root)
  local dir = root .. "/" .. REPO
  assert(require("moonbert.fs").mkdir_p(dir))
  local tiny = SHARED .. "/fixtures/distilbert-tiny"
  if exists(tiny .. "/model.safetensors") then
    for _, f in ipairs(FILES) do support.write(dir .. "/" .. f, support.read(tiny .. "/" .. f)) end
  else
    local words = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "am", "happy", "sad", "today", "so" }
    local m = mb.distilbert.new({ dim = 32, n_layers = 1, n_heads = 2, hidden_dim = 64, vocab_size = #words,
                                  max_position_embeddings = 64 },
                                { seed = 7, num_labels = 2, id2label = { "sad", "happy" } })
    m:save(dir)
    support.write(dir .. "/vocab.txt", table.concat(words, "\n") .. "\n")
    support.write(dir .. "/tokenizer_config.json", '{"do_lower_case": true, "model_max_length": 64}')
  end
  return dir
end

local function start_server(root)
  local portf = root .. "/port"
  -- env -u LD_PRELOAD: under `make sanitize` the specs run with libasan preloaded, which an
  -- uninstrumented python3 must not get (its server then hung in its first request)
  local pid = sh("env -u LD_PRELOAD " .. PY .. " " .. q(SERVER) .. " " .. q(root) .. " >" .. q(portf) .. " 2>" .. q(root .. "/server.err") ..
                 " & echo $!"):match("(%d+)")
  for _ = 1, 100 do
    local f = io.open(portf)
    local port = f and f:read("l")
    if f then f:close() end
    if port and port:match("^%d+$") then return pid, tonumber(port) end
    os.execute("sleep 0.05")
  end
  os.execute("kill " .. pid)
  error("hub_server.py did not start: " .. (support.read(root .. "/server.err") or ""))
end

local function requests(root)
  local f = io.open(root .. "/requests.log")
  if not f then return {} end
  local out = {}
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

local have_python = os.execute(PY .. " -c 'import http.server' 2>/dev/null") == true
local describe_hub = have_python and describe or function(name)
  describe(name, function() it("needs " .. PY, function() pending(PY .. " is missing: loopback hub tests skipped") end) end)
end

describe_hub("moonbert.hub against a loopback hub", function()
  local root, repo_dir, pid, port, cache, entry
  local saved_env

  -- An entry with the sizes and sha256 of the served files (what KNOWN holds for real repositories).
  local function make_entry(wrong_sha_for)
    local files = {}
    for _, f in ipairs(FILES) do
      local path = repo_dir .. "/" .. f
      local sha = mb.store.hash_file(path)
      if f == wrong_sha_for then sha = string.rep("0", 64) end
      files[#files + 1] = { name = f, size = lfs.attributes(path, "size"), sha256 = sha }
    end
    return { kind = "model", repo = REPO, fetch = "scripts/fetch-model " .. REPO, files = files }
  end

  local function set_faults(t)
    support.write(root .. "/faults.json", next(t) and require("dkjson").encode(t) or "{}")
  end

  before_each(function()
    root = support.tmpdir()
    repo_dir = make_repo(root)
    pid, port = start_server(root)
    cache = support.tmpdir()
    saved_env = hub.env
    hub.env = { HF_ENDPOINT = "http://127.0.0.1:" .. port, MOONBERT_CACHE = cache, HF_HUB_OFFLINE = "0" }
  end)

  after_each(function()
    hub.env = saved_env
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    os.execute("rm -rf " .. q(root) .. " " .. q(cache))
  end)

  it("downloads a repository into the cache, byte for byte, with nothing left half-written", function()
    local dir, err = hub.ensure(REPO, { entry = make_entry(), quiet = true })
    assert.is_truthy(dir, err)
    assert.are.equal(cache .. "/models/" .. REPO, dir)
    for _, f in ipairs(FILES) do
      assert.are.equal(mb.store.hash_file(repo_dir .. "/" .. f), mb.store.hash_file(dir .. "/" .. f), f)
      assert.is_false(exists(dir .. "/" .. f .. ".incomplete"))
    end
    local log = requests(root)
    assert.are.equal(#FILES, #log)
    assert.are.equal("GET /" .. REPO .. "/resolve/main/config.json -", log[1])
    -- a second call finds it in the cache and makes no request
    assert.are.equal(dir, hub.ensure(REPO, { entry = make_entry(), quiet = true }))
    assert.are.equal(#FILES, #requests(root))
    -- the loaded model is the served one
    local m = mb.distilbert.load(dir)
    assert.is_truthy(m)
    m:free()
  end)

  it("takes sizes and sha256 from the hub's X-Linked headers for a repository it does not know", function()
    local dir, err = hub.ensure(REPO, { quiet = true })
    assert.is_truthy(dir, err)
    for _, f in ipairs(FILES) do
      assert.are.equal(mb.store.hash_file(repo_dir .. "/" .. f), mb.store.hash_file(dir .. "/" .. f), f)
    end
    local heads = 0
    for _, l in ipairs(requests(root)) do if l:find("^HEAD ") then heads = heads + 1 end end
    assert.is_true(heads >= #FILES)
  end)

  it("refuses a file whose sha256 is wrong and keeps nothing of it", function()
    local dir, err, kind = hub.ensure(REPO, { entry = make_entry("model.safetensors"), quiet = true })
    assert.is_nil(dir)
    assert.are.equal("integrity", kind)
    assert.truthy(err:find("model.safetensors has sha256 " .. mb.store.hash_file(repo_dir .. "/model.safetensors") ..
                           ", expected " .. string.rep("0", 64), 1, true), err)
    local d = cache .. "/models/" .. REPO
    assert.is_false(exists(d .. "/model.safetensors"))
    assert.is_false(exists(d .. "/model.safetensors.incomplete"))
  end)

  it("resumes a truncated transfer with an HTTP Range request", function()
    local path = "/" .. REPO .. "/resolve/main/model.safetensors"
    set_faults { [path] = { truncate = 4096, times = 1 } }
    local dir, err = hub.ensure(REPO, { entry = make_entry(), quiet = true })
    assert.is_truthy(dir, err)
    assert.are.equal(mb.store.hash_file(repo_dir .. "/model.safetensors"), mb.store.hash_file(dir .. "/model.safetensors"))
    local gets = {}
    for _, l in ipairs(requests(root)) do if l:find(path, 1, true) then gets[#gets + 1] = l end end
    assert.are.same({ "GET " .. path .. " -", "GET " .. path .. " bytes=4096-" }, gets)
  end)

  it("keeps a partial file when the transfer keeps failing, and a later run resumes it", function()
    local path = "/" .. REPO .. "/resolve/main/model.safetensors"
    set_faults { [path] = { truncate = 1000 } } -- every response stops after 1000 bytes
    local dir, err, kind = hub.ensure(REPO, { entry = make_entry(), quiet = true })
    assert.is_nil(dir)
    assert.are.equal("interrupted", kind)
    assert.truthy(err:find("run the same command again to resume", 1, true), err)
    local part = cache .. "/models/" .. REPO .. "/model.safetensors.incomplete"
    assert.are.equal(3000, lfs.attributes(part, "size")) -- three attempts, each resumed
    assert.is_false(exists(cache .. "/models/" .. REPO .. "/model.safetensors"))
    set_faults {}
    dir, err = hub.ensure(REPO, { entry = make_entry(), quiet = true })
    assert.is_truthy(dir, err)
    local log = requests(root)
    assert.are.equal("GET " .. path .. " bytes=3000-", log[#log])
    assert.are.equal(mb.store.hash_file(repo_dir .. "/model.safetensors"), mb.store.hash_file(dir .. "/model.safetensors"))
    assert.is_false(exists(part))
  end)

  it("says the hub cannot be reached when the server is gone, and writes nothing", function()
    os.execute("kill " .. pid)
    os.execute("sleep 0.2")
    pid = nil
    local dir, err, kind = hub.ensure(REPO, { entry = make_entry(), quiet = true })
    assert.is_nil(dir)
    assert.are.equal("unreachable", kind)
    assert.truthy(err:find("cannot reach http://127.0.0.1:" .. port, 1, true), err)
    assert.is_false(exists(cache .. "/models/" .. REPO .. "/config.json"))
  end)

  it("reports a file the hub does not have (HTTP 404) and writes nothing", function()
    local e = { kind = "dataset", repo = "someone/data", fetch = "scripts/fetch-data someone/data",
                files = { { name = "train.txt", size = 10, sha256 = string.rep("1", 64) } } }
    local dir, err, kind = hub.ensure("someone/data", { entry = e, quiet = true })
    assert.is_nil(dir)
    assert.are.equal("http", kind)
    assert.truthy(err:find("/datasets/someone/data/resolve/main/train.txt: HTTP 404", 1, true), err)
    assert.are.same({ "GET /datasets/someone/data/resolve/main/train.txt -" }, requests(root))
    assert.is_nil(lfs.attributes(cache .. "/datasets/someone/data/train.txt"))
    assert.is_nil(lfs.attributes(cache .. "/datasets/someone/data/train.txt.incomplete"))
  end)

  it("scripts/fetch-model downloads; with HF_HUB_OFFLINE=1 it makes no request", function()
    local env = "HF_ENDPOINT=http://127.0.0.1:" .. port .. " MOONBERT_CACHE=" .. q(cache) .. " "
    local _, err, code = sh(env .. "HF_HUB_OFFLINE=1 " .. q(ROOT_DIR .. "/scripts/fetch-model") .. " " .. REPO)
    assert.are.equal(1, code)
    assert.are.equal(1, support.count(err, "\n"), err)
    assert.truthy(err:find("HF_HUB_OFFLINE", 1, true), err)
    assert.are.equal(0, #requests(root))
    _, err, code = sh(env .. "HF_HUB_OFFLINE=0 " .. q(ROOT_DIR .. "/scripts/fetch-model") .. " " .. REPO)
    assert.are.equal(0, code, err)
    assert.truthy(err:find(REPO .. " is in " .. cache .. "/models/" .. REPO, 1, true), err)
  end)

  it("scripts/fetch-data fetches the emotion splits against the sizes and sha256 hub.lua records", function()
    local src = SHARED .. "/data/emotion"
    if not exists(src .. "/train.txt") then pending("needs " .. src .. " (../shared absent?)") return end
    local d = root .. "/datasets/dair-ai/emotion"
    assert(require("moonbert.fs").mkdir_p(d))
    for _, f in ipairs { "train.txt", "validation.txt", "test.txt" } do support.write(d .. "/" .. f, support.read(src .. "/" .. f)) end
    local env = "HF_ENDPOINT=http://127.0.0.1:" .. port .. " MOONBERT_CACHE=" .. q(cache) .. " HF_HUB_OFFLINE=0 "
    local _, err, code = sh(env .. q(ROOT_DIR .. "/scripts/fetch-data"))
    assert.are.equal(0, code, err)
    assert.truthy(err:find("(3 files, sizes and sha256 checked)", 1, true), err)
    for _, f in ipairs { "train.txt", "validation.txt", "test.txt" } do
      assert.are.equal(mb.store.hash_file(src .. "/" .. f), mb.store.hash_file(cache .. "/datasets/dair-ai/emotion/" .. f))
    end
    local data = mb.data.load_emotion(cache .. "/datasets/dair-ai/emotion")
    assert.are.same({ 16000, 2000, 2000 }, { #data.train, #data.validation, #data.test })
    _, err, code = sh(env .. q(ROOT_DIR .. "/scripts/fetch-data"))
    assert.are.equal(0, code, err)
    assert.truthy(err:find("already in the cache", 1, true), err)
  end)

  it("moonbert predict --model ORG/NAME fetches the model; offline it names the fetch command", function()
    if not exists(BIN) then pending("needs " .. BIN) return end
    local env = "HF_ENDPOINT=http://127.0.0.1:" .. port .. " MOONBERT_CACHE=" .. q(cache) .. " "
    local _, err, code = sh(env .. "HF_HUB_OFFLINE=1 " .. q(BIN) .. " predict --model " .. REPO .. " 'i am happy'")
    assert.are.equal(1, code)
    assert.are.equal("moonbert predict: " .. REPO .. " is not in the cache (" .. cache .. "/models/" .. REPO ..
                     "; missing config.json, model.safetensors, vocab.txt or tokenizer.json) and HF_HUB_OFFLINE is set:" ..
                     " fetch it with scripts/fetch-model " .. REPO .. "\n", err)
    assert.are.equal(0, #requests(root))
    local out
    out, err, code = sh(env .. "HF_HUB_OFFLINE=0 " .. q(BIN) .. " predict --json --model " .. REPO .. " 'i am happy'")
    assert.are.equal(0, code, err)
    local r = require("dkjson").decode(out)
    assert.are.equal("i am happy", r.text)
    assert.is_truthy(r.label)
    assert.truthy(exists(cache .. "/models/" .. REPO .. "/model.safetensors"))
  end)
end)
