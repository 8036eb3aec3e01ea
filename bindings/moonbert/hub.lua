-- moonbert.hub: models and data fetched the way from_pretrained and load_dataset do it.
--
--   local hub = require "moonbert.hub"
--   local dir, err = hub.ensure("distilbert-base-uncased")   -- a folder with the files, downloaded if need be
--   local dir = hub.find("emotion")                           -- the cached folder, or nil (never downloads)
--   hub.is_repo_name("distilbert-base-uncased") --> true;  hub.fetch_command("emotion") --> "scripts/fetch-data"
--
-- Where things go and come from (the names Hugging Face's own tools read):
--   MOONBERT_CACHE   cache folder, default ~/.cache/moonbert: models/<repo>/<file>, datasets/<repo>/<file>
--   HF_ENDPOINT      the hub, default https://huggingface.co; URLs are <endpoint>/<repo>/resolve/<rev>/<file>
--                    (<endpoint>/datasets/<repo>/resolve/<rev>/<file> for data sets)
--   HF_HUB_OFFLINE=1 never touch the network: only what is in the cache counts
--   MOONBERT_HUB_REVISION  the revision, default main
--
-- Each file is downloaded with the `curl` command (Debian's curl; see README "Models and data"):
-- into <file>.incomplete, resumed from where an earlier try stopped (HTTP Range, `curl -C -`),
-- with curl's progress bar on a terminal, then checked against its expected size and sha256 and
-- renamed into place, so a file in the cache is always whole and verified. Expected sizes and
-- sha256 come from the table KNOWN below for the repositories the experiments use; for other
-- model repositories from the hub's own headers (X-Linked-Size and X-Linked-Etag, the LFS sha256,
-- as huggingface_hub reads them), and the size alone where the hub gives no sha256.
local lfs = require "lfs"
local fs = require "moonbert.fs"

local M = {}

-- Settings are read from the environment; M.env (a table) overrides it in-process (tests).
M.env = {}
local function env(k)
  local v = M.env[k]
  if v ~= nil then return v end
  return os.getenv(k)
end

-- Repositories with their files' sizes and sha256. distilbert-base-uncased: the Git LFS pointer
-- of model.safetensors and the byte copies of the small files (../shared/models/*/README.md).
-- emotion: the three splits as the Hugging Face loader's original text files
-- (../shared/data/emotion/README.md); optional = a file a folder may lack.
M.KNOWN = {
  ["distilbert-base-uncased"] = {
    kind = "model", repo = "distilbert-base-uncased", fetch = "scripts/fetch-model",
    files = {
      { name = "config.json", size = 483, sha256 = "69c94b0222d5d1f4b0ad027ca7416cdafb98378cbbb8305d0bf47c9365c60c83" },
      { name = "tokenizer_config.json", size = 48, sha256 = "a025160ef0431f1a392f6f050c1310f4c5d9fb6f275932dbccba73c4d214bf10" },
      { name = "vocab.txt", size = 231508, sha256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3" },
      { name = "tokenizer.json", size = 466062, sha256 = "ce64fce797c24f68df90b40a3f74f579b336a493db14bd583fd520ea0d8c9a98" },
      { name = "model.safetensors", size = 267954768, sha256 = "5e3f1108e3cb34ee048634875d8482665b65ac713291a7e32396fb18f6ff0063" },
    },
  },
  emotion = {
    kind = "dataset", repo = "dair-ai/emotion", fetch = "scripts/fetch-data",
    files = {
      { name = "train.txt", size = 1658616, sha256 = "3ab03d945a6cb783d818ccd06dafd52d2ed8b4f62f0f85a09d7d11870865b190" },
      { name = "validation.txt", size = 204240, sha256 = "34faaa31962fe63cdf5dbf6c132ef8ab166c640254ab991af78f3aea375e79ef" },
      { name = "test.txt", size = 206760, sha256 = "60f531690d20127339e7f054edc299a82c627b5ec0dd5d552d53d544e0cfcc17" },
    },
  },
}
M.KNOWN["dair-ai/emotion"] = M.KNOWN.emotion

-- The files of any other model repository: a DistilBERT folder as from_pretrained reads it.
M.MODEL_FILES = {
  { name = "config.json" }, { name = "tokenizer_config.json", optional = true },
  { name = "special_tokens_map.json", optional = true }, { name = "vocab.txt", optional = true },
  { name = "tokenizer.json", optional = true }, { name = "model.safetensors" },
}

-- ---- settings ------------------------------------------------------------------------------------

function M.cache_dir()
  local c = env("MOONBERT_CACHE")
  if c and c ~= "" then return c end
  local home = os.getenv("HOME")
  return (home and home ~= "" and home or ".") .. "/.cache/moonbert"
end

function M.endpoint()
  local e = env("HF_ENDPOINT")
  if not e or e == "" then e = "https://huggingface.co" end
  return (e:gsub("/+$", ""))
end

function M.offline()
  local v = (env("HF_HUB_OFFLINE") or ""):lower()
  return v == "1" or v == "true" or v == "yes" or v == "on"
end

function M.revision()
  local r = env("MOONBERT_HUB_REVISION")
  return (r and r ~= "") and r or "main"
end

-- A name as from_pretrained takes it ("distilbert-base-uncased", "org/name"), not a path.
function M.is_repo_name(s)
  if type(s) ~= "string" or s == "" or s:find("^%.") or s:find("^/") or s:find("^~") then return false end
  return s:match("^[%w][%w%._%-]*$") ~= nil or s:match("^[%w][%w%._%-]*/[%w][%w%._%-]*$") ~= nil
end

-- The entry for a name: a known one, else a generic model repository.
function M.entry(name)
  local e = M.KNOWN[name]
  if e then return e end
  return { kind = "model", repo = name, fetch = "scripts/fetch-model " .. name, files = M.MODEL_FILES }
end

function M.local_dir(name)
  local e = type(name) == "table" and name or M.entry(name)
  return M.cache_dir() .. "/" .. (e.kind == "dataset" and "datasets" or "models") .. "/" .. e.repo
end

function M.url(e, file)
  local prefix = e.kind == "dataset" and "/datasets/" or "/"
  return M.endpoint() .. prefix .. e.repo .. "/resolve/" .. M.revision() .. "/" .. file
end

function M.fetch_command(name) return M.entry(name).fetch end

local function size_of(path) return lfs.attributes(path, "size") end

-- Is a folder complete for an entry? -> true | false, {missing required file names}
function M.complete(e, dir)
  local missing = {}
  for _, f in ipairs(e.files) do
    local sz = size_of(dir .. "/" .. f.name)
    if not f.optional and (not sz or (f.size and sz ~= f.size)) then missing[#missing + 1] = f.name end
  end
  if e.kind == "model" and e.files == M.MODEL_FILES and not size_of(dir .. "/vocab.txt") and
     not size_of(dir .. "/tokenizer.json") then
    missing[#missing + 1] = "vocab.txt or tokenizer.json"
  end
  return #missing == 0, missing
end

--- find(name) -> the cached folder when it holds every required file, else nil, missing list.
function M.find(name)
  local e = M.entry(name)
  local dir = M.local_dir(e)
  local ok, missing = M.complete(e, dir)
  if ok then return dir end
  return nil, missing
end

-- ---- one file --------------------------------------------------------------------------------------

local function sh_ok(cmd) local ok = os.execute(cmd) return ok == true end

local function have_curl() return sh_ok("command -v curl >/dev/null 2>&1") end

-- curl itself; without a preloaded AddressSanitizer (`make sanitize` preloads libasan into the
-- test runner, and curl hung under it).
local function curl()
  local pre = os.getenv("LD_PRELOAD")
  return (pre and pre:find("asan", 1, true)) and "env -u LD_PRELOAD curl" or "curl"
end

--- sha256(path) -> hex digest (coreutils sha256sum, so that the fetch scripts work before `make`)
function M.sha256(path)
  local p = io.popen("sha256sum " .. fs.shell_quote(path) .. " 2>/dev/null")
  local out = p and p:read("a") or ""
  if p then p:close() end
  return out:match("^(%x+)")
end

local function stderr_is_tty() return sh_ok("test -t 2") end

local function human(n)
  if not n then return "? bytes" end
  if n >= 1e9 then return string.format("%.1f GB", n / 1e9) end
  if n >= 1e6 then return string.format("%.1f MB", n / 1e6) end
  if n >= 1e3 then return string.format("%.1f kB", n / 1e3) end
  return n .. " bytes"
end
M.human = human

-- What the hub says about a file before it is fetched: HTTP status, size and the LFS sha256
-- (huggingface.co answers a HEAD on resolve/ with X-Linked-Size and X-Linked-Etag).
function M.head(url)
  local cmd = curl() .. " -sS -I -L --connect-timeout 10 --max-time 60 " .. fs.shell_quote(url) .. " 2>&1"
  local p = io.popen(cmd)
  local text = p:read("a")
  local _, _, code = p:close()
  if code ~= 0 then return nil, (text:gsub("%s+$", ""):gsub("^curl: %(%d+%) ", "")), code end
  local info = {}
  for line in text:gmatch("[^\r\n]+") do
    local st = line:match("^HTTP/[%d%.]+ (%d+)")
    if st then info.status = tonumber(st) end
    local k, v = line:match("^([%w%-]+):%s*(.-)%s*$")
    if k then
      k = k:lower()
      if k == "x-linked-size" then info.size = tonumber(v)
      elseif k == "x-linked-etag" then info.sha256 = v:gsub('"', ""):gsub("^W/", ""):match("^%x+$")
      elseif k == "content-length" and not info.size then info.content_length = tonumber(v) end
    end
  end
  info.size = info.size or info.content_length
  if info.sha256 and #info.sha256 ~= 64 then info.sha256 = nil end
  return info
end

-- curl's exit codes that mean "the hub cannot be reached" and "the transfer stopped midway".
local UNREACHABLE = { [5] = true, [6] = true, [7] = true, [28] = true, [35] = true, [60] = true }
local INTERRUPTED = { [18] = true, [52] = true, [55] = true, [56] = true, [92] = true }

--- download(url, dest, {size=, sha256=, label=, quiet=, attempts=3})
--  -> true | nil, message, kind ("unreachable" | "http" | "integrity" | "interrupted" | "local")
-- Fetches url into dest.incomplete (resuming what is there), verifies size and sha256 where
-- known, then renames it to dest. On a failed check the partial file is removed.
function M.download(url, dest, o)
  o = o or {}
  local label = o.label or dest
  local part = dest .. ".incomplete"
  local dir = dest:match("^(.*)/[^/]*$")
  if dir then
    local ok, err = fs.mkdir_p(dir)
    if not ok then return nil, err, "local" end
  end
  if not have_curl() then return nil, "the curl command is missing (apt-get install curl)", "local" end
  local tty = not o.quiet and stderr_is_tty()
  local attempts = o.attempts or 3
  local last_err, last_kind
  for attempt = 1, attempts do
    local have = size_of(part) or 0
    if o.size and have > o.size then os.remove(part); have = 0 end
    if not (o.size and have == o.size) then
      if not o.quiet then
        io.stderr:write(string.format("hub: %s %s (%s) from %s\n", have > 0 and "resuming" or "downloading",
                                      label, have > 0 and (human(have) .. " of " .. human(o.size)) or human(o.size),
                                      M.endpoint()))
      end
      local errf = os.tmpname()
      -- a transfer that stalls (under 1 byte/s for 60 s) is cut and resumed like a broken one
      local cmd = curl() .. " -f -L --connect-timeout 10 --speed-limit 1 --speed-time 60 --retry 0 -C - " .. (tty and "--progress-bar" or "-sS") ..
          " -o " .. fs.shell_quote(part) .. " -w '%{http_code}' " .. fs.shell_quote(url) .. (tty and "" or (" 2>" .. fs.shell_quote(errf)))
      local p = io.popen(cmd)
      local status = tonumber((p:read("a") or ""):match("(%d+)%s*$"))
      local _, _, code = p:close()
      local errtext = fs.read_file(errf) or ""
      os.remove(errf)
      errtext = errtext:gsub("%s+$", ""):gsub("^curl: %(%d+%) ", "")
      if code ~= 0 then
        if UNREACHABLE[code] then
          return nil, "cannot reach " .. M.endpoint() .. " (" .. errtext .. ")", "unreachable"
        elseif code == 22 then
          os.remove(part)
          return nil, url .. ": HTTP " .. tostring(status), "http", status
        elseif code == 33 or (status == 416) then
          os.remove(part) -- the server cannot resume: start again from the first byte
          last_err, last_kind = "the server cannot resume " .. label, "interrupted"
        elseif INTERRUPTED[code] then
          last_err = string.format("download of %s interrupted at %s of %s (%s)", label,
                                   human(size_of(part) or 0), human(o.size), errtext)
          last_kind = "interrupted"
        else
          return nil, "download of " .. label .. " failed: " .. errtext .. " (curl exit " .. code .. ")", "http"
        end
        goto continue
      end
    end
    do
      local got = size_of(part) or 0
      if o.size and got ~= o.size then
        if got < o.size then
          last_err, last_kind = string.format("download of %s stopped at %s of %s", label, human(got), human(o.size)),
              "interrupted"
          goto continue
        end
        os.remove(part)
        return nil, string.format("%s is %d bytes, expected %d (removed; changed upstream?)", label, got, o.size),
            "integrity"
      end
      if o.sha256 then
        local sum = M.sha256(part)
        if sum ~= o.sha256 then
          os.remove(part)
          return nil, string.format("%s has sha256 %s, expected %s (removed; run again to download it anew)",
                                    label, tostring(sum), o.sha256), "integrity"
        end
      end
      local ok, err = os.rename(part, dest)
      if not ok then return nil, "cannot move " .. part .. " into place: " .. tostring(err), "local" end
      return true
    end
    ::continue::
  end
  return nil, last_err .. "; run the same command again to resume", last_kind
end

-- ---- a repository --------------------------------------------------------------------------------

--- ensure(name, {quiet=, entry=}) -> folder | nil, message, kind
-- The cached folder for name, downloading what is missing unless HF_HUB_OFFLINE is set.
-- o.entry replaces the KNOWN entry (tests and private repositories with their own checksums).
function M.ensure(name, o)
  o = o or {}
  local e = o.entry or M.entry(name)
  local dir = M.local_dir(e)
  local done, missing = M.complete(e, dir)
  if done then return dir end
  if M.offline() then
    return nil, string.format("%s is not in the cache (%s; missing %s) and HF_HUB_OFFLINE is set: fetch it with %s",
                              name, dir, table.concat(missing, ", "), e.fetch), "offline"
  end
  -- Is the hub there at all? One HEAD first, so that an unreachable hub is one line, not a
  -- "downloading" line followed by the error (quiet callers, such as the tests, skip it).
  if not o.quiet then
    local _, herr, hcode = M.head(M.url(e, e.files[1].name))
    if hcode and UNREACHABLE[hcode] then
      return nil, "cannot reach " .. M.endpoint() .. " (" .. herr .. ")", "unreachable"
    end
  end
  for _, f in ipairs(e.files) do
    local dest = dir .. "/" .. f.name
    local have = size_of(dest)
    if not have or (f.size and have ~= f.size) then
      local url = M.url(e, f.name)
      local size, sha = f.size, f.sha256
      if not size and not sha then -- a repository we hold no checksums for: ask the hub
        local info, herr, hcode = M.head(url)
        if not info then
          if UNREACHABLE[hcode] then
            return nil, "cannot reach " .. M.endpoint() .. " (" .. herr .. ")", "unreachable"
          end
          return nil, herr, "http"
        end
        if info.status and info.status >= 400 then
          if f.optional and info.status == 404 then goto next_file end
          return nil, string.format("%s: HTTP %d (is %s a model on %s?)", url, info.status, name, M.endpoint()),
              "http"
        end
        size, sha = info.size, info.sha256
      end
      local ok, err, kind, status = M.download(url, dest, { size = size, sha256 = sha, label = e.repo .. "/" .. f.name,
                                                            quiet = o.quiet })
      if not ok then
        if status == 404 and e.kind == "dataset" then
          err = err .. " (huggingface.co serves " .. e.repo .. " as Parquet only: set HF_ENDPOINT to a mirror " ..
              "with the text files, or pass --data DIR)"
        end
        return nil, err, kind
      end
    end
    ::next_file::
  end
  done, missing = M.complete(e, dir)
  if not done then return nil, name .. ": the hub has no " .. table.concat(missing, ", "), "http" end
  return dir
end

-- ---- for the commands ----------------------------------------------------------------------------

--- model_arg(s) -> folder | nil, message: a --model value as from_pretrained takes it. An existing
-- folder is used as it is; a repository name that is not a folder comes from the cache, downloaded
-- first when missing (unless HF_HUB_OFFLINE is set).
function M.model_arg(s)
  if lfs.attributes(s, "mode") == "directory" or not M.is_repo_name(s) then return s end
  local dir, err = M.ensure(s)
  if not dir then
    if err:find("^cannot reach") then err = s .. " is not in the cache and " .. err .. ": fetch it with " ..
                                          M.fetch_command(s) .. " where the hub is reachable" end
    return nil, err
  end
  return dir
end

--- architecture(dir) -> config.json's architectures[1] (e.g. "DistilBertForMaskedLM"), or nil
function M.architecture(dir)
  local text = fs.read_file(dir .. "/config.json")
  if not text then return nil end
  local ok, json = pcall(require, "dkjson")
  local cfg = ok and json.decode(text) or nil
  if type(cfg) ~= "table" then return nil end
  return type(cfg.architectures) == "table" and cfg.architectures[1] or nil, cfg
end

--- main(kind, argv): scripts/fetch-model and scripts/fetch-data. Exit code.
function M.main(kind, argv)
  local default = kind == "dataset" and "emotion" or "distilbert-base-uncased"
  local names = {}
  for _, a in ipairs(argv or {}) do
    if a == "-h" or a == "--help" then
      local what = kind == "dataset" and "a data set (emotion: train.txt, validation.txt, test.txt)"
          or "a model repository (config.json, tokenizer files, model.safetensors)"
      print(table.concat({
        "usage: scripts/" .. (kind == "dataset" and "fetch-data" or "fetch-model") .. " [NAME...]   (default " ..
          default .. ")",
        "",
        "Downloads " .. what .. "",
        "into the cache (MOONBERT_CACHE, default ~/.cache/moonbert), where moonbert finds it.",
        "Resumes a partial download (run it again), checks each file's size and sha256, and",
        "renames each file into place only when whole. HF_ENDPOINT names the hub (default",
        "https://huggingface.co); with HF_HUB_OFFLINE=1 it only says what is missing.",
      }, "\n"))
      return 0
    end
    names[#names + 1] = a
  end
  if #names == 0 then names[1] = default end
  local script = kind == "dataset" and "fetch-data" or "fetch-model"
  for _, name in ipairs(names) do
    if not M.is_repo_name(name) then
      io.stderr:write(script, ": '", name, "' is not a repository name (NAME or ORG/NAME)\n")
      return 2
    end
    local e = M.entry(name)
    if e.kind ~= kind then
      io.stderr:write(script, ": ", name, " is a ", e.kind, "; use ", e.fetch, "\n")
      return 2
    end
    local cached = M.find(name)
    local dir, err = cached, nil
    if not dir then dir, err = M.ensure(name) end
    if not dir then
      io.stderr:write(script, ": ", err, "\n")
      return 1
    end
    if cached then
      io.stderr:write(script, ": ", name, " is in ", dir, " (already in the cache)\n")
    else
      io.stderr:write(script, ": ", name, " is in ", dir, " (", #e.files, " files, sizes",
                      e.files[1].sha256 and " and sha256" or "", " checked)\n")
    end
  end
  return 0
end

return M
