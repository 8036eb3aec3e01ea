-- cli_spec.lua: the moonbert command-line host (bindings/cli/main.c) and the dispatcher.
--
-- Runs the built binary ($MOONBERT_BIN, set by scripts/run-tests) as a user would:
-- help and version, `run` with arguments and failing scripts, and `repl` fed through a pipe.
local BIN = os.getenv("MOONBERT_BIN")
local have_bin = BIN and io.open(BIN, "r") ~= nil

local support = require "tests.spec.support"
local shell_quote = support.q

local run = support.sh

local function mb(args, stdin) return run(shell_quote(BIN) .. " " .. args, stdin) end

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local describe_cli = have_bin and describe or function(name) pending(name .. " (MOONBERT_BIN not built)") end

describe_cli("moonbert command line", function()
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. shell_quote(dir)))
  end)
  teardown(function() os.execute("rm -rf " .. shell_quote(dir)) end)

  it("prints help listing the commands", function()
    local out, _, code = mb("--help")
    assert.equal(0, code)
    assert.truthy(out:find("usage: moonbert COMMAND", 1, true))
    for _, c in ipairs { "run", "repl", "bench", "version", "help" } do
      assert.truthy(out:find("\n  " .. c .. " ", 1, true), "lists " .. c)
    end
  end)

  it("prints the version", function()
    local out, _, code = mb("version")
    assert.equal(0, code)
    assert.truthy(out:match("^moonbert %d+%.%d+%.%d+ %(Lua 5%.4%)\n$"), out)
  end)

  it("prints help for one command", function()
    local out, _, code = mb("help run")
    assert.equal(0, code)
    assert.truthy(out:find("usage: moonbert run SCRIPT", 1, true))
    local _, err, code2 = mb("help nosuchcommand")
    assert.equal(2, code2)
    assert.truthy(err:find("unknown command 'nosuchcommand'", 1, true))
  end)

  it("rejects an unknown command with exit code 2", function()
    local _, err, code = mb("frobnicate")
    assert.equal(2, code)
    assert.truthy(err:find("unknown command 'frobnicate'", 1, true))
  end)

  it("runs a script with mb loaded and arg set as lua5.4 does", function()
    local script = dir .. "/args.lua"
    write_file(script, [[
print(arg[0], arg[1], arg[2], #arg, select("#", ...), ...)
print(type(mb), type(mb.tensor), tostring(mb.tensor.from{{1, 2}}:sum()))
]])
    local out, err, code = mb("run " .. shell_quote(script) .. " one 'two words'")
    assert.equal(0, code, err)
    assert.equal(script .. "\tone\ttwo words\t2\t2\tone\ttwo words\ntable\ttable\t3.0\n", out)
  end)

  it("runs a script from stdin with -", function()
    local out, _, code = mb("run -", "print(40 + 2)\n")
    assert.equal(0, code)
    assert.equal("42\n", out)
  end)

  it("prints a traceback with file:line and exits 1 when a script fails", function()
    local script = dir .. "/fail.lua"
    write_file(script, "local function inner()\n  error('went wrong')\nend\ninner()\n")
    local out, err, code = mb("run " .. shell_quote(script))
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(err:find(script .. ":2: went wrong", 1, true), err)
    assert.truthy(err:find("stack traceback:", 1, true), err)
    assert.truthy(err:find(script .. ":4: in main chunk", 1, true), err)
  end)

  it("reports a tensor misuse from a script as an error, not a crash", function()
    local script = dir .. "/misuse.lua"
    write_file(script, "local t = mb.tensor.zeros{2, 3}\nt:free()\nprint(t:sum())\n")
    local _, err, code = mb("run " .. shell_quote(script))
    assert.equal(1, code)
    assert.truthy(err:find(script .. ":3: calling 'sum' on bad self (tensor is freed)", 1, true), err)
  end)

  it("exits 1 when the script is missing or has a syntax error", function()
    local _, err, code = mb("run " .. shell_quote(dir .. "/missing.lua"))
    assert.equal(1, code)
    assert.truthy(err:find("cannot open", 1, true), err)
    local bad = dir .. "/syntax.lua"
    write_file(bad, "print(\n")
    local _, err2, code2 = mb("run " .. shell_quote(bad))
    assert.equal(1, code2)
    assert.truthy(err2:find("syntax.lua:2:", 1, true), err2)
  end)

  it("evaluates piped REPL input without prompts, printing values readably", function()
    local input = table.concat({
      "1+1",
      "mb.tensor.from{{1,2},{3,4}}",
      "x = 10",
      "x * 2, 'text'",
      "{1, 2, name = 'a', sub = {3}}",
      "for i = 1, 2 do",
      "  print('loop', i)",
      "end",
      "error('oops')",
      "mb.tensor.zeros{2}:matmul(nil)",
      "'still running'",
    }, "\n") .. "\n"
    local out, err, code = mb("repl", input)
    assert.equal(0, code)
    assert.equal(table.concat({
      "2",
      "tensor([[1.0000, 2.0000],",
      "        [3.0000, 4.0000]], shape=[2,2], dtype=float32)",
      "20\ttext",
      '{1, 2, name = "a", sub = {...}}',
      "loop\t1",
      "loop\t2",
      "still running",
    }, "\n") .. "\n", out)
    assert.truthy(err:find("stdin:1: oops", 1, true), err)
    assert.truthy(err:find("bad argument #1 to 'matmul' (moonbert.Tensor expected, got nil)", 1, true), err)
  end)

  it("reports an unfinished chunk at the end of piped input", function()
    local out, err, code = mb("repl", "for i = 1, 2 do\n")
    assert.equal(0, code)
    assert.equal("", out)
    assert.truthy(err:find("'end' expected", 1, true), err)
  end)

  it("benchmarks matmul as JSON", function()
    local out, err, code = mb("bench matmul --quick --threads 1")
    assert.equal(0, code, err)
    local json = require "dkjson"
    local res = assert(json.decode(out))
    assert.equal(1, res.threads)
    assert.equal(4, #res.matmul.shapes)
    for _, s in ipairs(res.matmul.shapes) do
      assert(s.gflops > 0 and s.seconds > 0, s.name)
      assert(math.abs(s.gflops - 2 * s.m * s.n * s.k / s.seconds / 1e9) < 1e-6 * s.gflops)
    end
  end)
end)
