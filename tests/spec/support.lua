-- tests/spec/support.lua: helpers shared by the specs that run commands (not a spec itself).
--
--   local support = require "tests.spec.support"
--   local out, err, code = support.sh("ls /", optional_stdin)
--   local out, code = support.run("cmd")        -- stdout and stderr together
--   support.q("it's") --> shell-quoted
--   support.tmpdir()      a new empty folder;  support.tmppath(tag)  a fresh path, not created
--                         (both removed when the spec file is done; MOONBERT_KEEP_TMP=1 keeps them)
--   support.read(path), support.write(path, s), support.count(s, pattern)
--   support.report(fmt, ...)    a line on stderr when MOONBERT_VERBOSE is set (measured errors)
--   support.check_close(name, got, ref, rel [, atol])   max |got - ref| within a fixture's tolerance
--   support.emotion_fit(tokenizer_dir, emotion_dir)     the trainer specs' small fine-tune
local M = {}

M.q = require("moonbert.fs").shell_quote

-- Run a shell command line; returns stdout, stderr and the exit code. stdin (a string) is fed
-- through a temporary file.
function M.sh(cmdline, stdin)
  local errf, inf = os.tmpname(), nil
  if stdin then
    inf = os.tmpname()
    local f = assert(io.open(inf, "w"))
    f:write(stdin)
    f:close()
    cmdline = cmdline .. " < " .. M.q(inf)
  end
  local p = assert(io.popen(cmdline .. " 2>" .. M.q(errf) .. "; echo \"__rc=$?\""))
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("__rc=(%d+)\n?$"))
  out = out:gsub("__rc=%d+\n?$", "")
  local f = assert(io.open(errf))
  local err = f:read("a")
  f:close()
  os.remove(errf)
  if inf then os.remove(inf) end
  return out, err, code
end

-- Run a shell command line with stderr merged into stdout; returns the output and exit code.
function M.run(cmdline)
  local f = assert(io.popen(cmdline .. " 2>&1"))
  local out = f:read("a")
  local _, _, code = f:close()
  return out, code
end

-- Every folder tmpdir made and every path tmppath gave is removed, with what is in it, when this
-- module is collected (after its spec file, or when busted closes the Lua state at exit).
-- MOONBERT_KEEP_TMP=1 keeps them, to look at after a failure.
local made = {}
M._remove_made = setmetatable({}, { __gc = function()
  if os.getenv("MOONBERT_KEEP_TMP") == "1" then return end
  local rmtree = require("moonbert.checkpoint").rmtree
  for _, d in ipairs(made) do pcall(rmtree, d) end
end })

function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(require("lfs").mkdir(d))
  made[#made + 1] = d
  return d
end

-- A path nobody uses yet, for a folder that the code under test creates.
function M.tmppath(tag)
  local d = os.tmpname()
  os.remove(d)
  made[#made + 1] = d .. "_" .. tag
  return d .. "_" .. tag
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Occurrences of a Lua pattern in s.
function M.count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

local verbose = os.getenv("MOONBERT_VERBOSE")

-- A line on stderr when MOONBERT_VERBOSE is set: the errors a parity spec measured.
function M.report(fmt, ...)
  if verbose then io.stderr:write(string.format(fmt, ...), "\n") end
end

-- Asserts max |got - ref| <= atol, or <= rel * max|ref| without atol (the fixture READMEs'
-- tolerances); reports the error under MOONBERT_VERBOSE and returns it.
function M.check_close(name, got, ref, rel, atol)
  local err = (got - ref):abs():max()
  local scale = ref:abs():max()
  local bound = atol or rel * scale
  M.report("%-62s max abs err %.3e (relative %.3e, bound %.1e)", name, err, scale > 0 and err / scale or err, bound)
  assert(err <= bound, string.format("%s: max abs error %.3e exceeds %.3e", name, err, bound))
  return err
end

-- The trainer specs' small fine-tune (trainer_spec, cuda_spec): fx.load(), from a setup block,
-- reads the tokenizer in tokenizer_dir and 200 training and 64 validation texts of the emotion
-- data (fx.tok, fx.train, fx.val); fx.fit(model, extra) runs mb.trainer.fit on them for 2 epochs
-- (batch 50, lr 1e-3, seed 11, max_length 48, no progress), extra's options replacing these.
function M.emotion_fit(tokenizer_dir, emotion_dir)
  local mb = require "moonbert"
  local fx = {}
  function fx.load()
    fx.tok = mb.tokenizer.load(tokenizer_dir)
    local data = mb.data.load_emotion(emotion_dir)
    fx.train = data.train:head(200)
    fx.val = data.validation:head(64)
  end
  function fx.fit(model, extra)
    local o = { model = model, tokenizer = fx.tok, train = fx.train, eval = fx.val, epochs = 2, batch_size = 50,
                lr = 1e-3, seed = 11, max_length = 48, progress = false }
    for k, v in pairs(extra or {}) do o[k] = v end
    return mb.trainer.fit(o)
  end
  return fx
end

return M
