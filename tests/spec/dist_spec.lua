-- dist_spec.lua: data-parallel training under a real mpirun (Open MPI on loopback), 2 ranks x 1
-- thread, on the tiny fixture (tests/spec/dist/fit.lua: 40 emotion texts, global batch 8, so 5
-- AdamW steps per epoch):
--   parity: after 5 steps the weights of 2 ranks equal one process's (same global batch, dropout
--     off) within 1e-6 relative (norm of the difference over the norm of the weights; element-wise
--     within 1e-5, under the fixture's own float32-vs-float64 spread of 1.2e-5)
--   resume: a checkpoint of 2 ranks resumed by 1 process ends where one process ends (same
--     tolerance); a 2-rank run stopped after epoch 1 and resumed by 2 ranks ends bit for bit where
--     the uninterrupted 2-rank run ends (dropout on: each rank's RNG stream is restored)
--   srun --mpi=pmix -n 2 on a real one-node SLURM (tests/services/slurm.sh) ends bit for bit where
--     mpirun -np 2 ends (the rank-ordered sum does not depend on the launcher); srun without PMIx
--     is a one-line error
--   faults: rank 1 killed with SIGKILL mid-run, or stopped (SIGSTOP: a hang) with --dist-timeout
--     2 s: the job ends, rank 0's error names rank 1, the store run is marked failed, no process
--     is left; one rank's weights changed mid-run: the next weight check fails naming the step
-- Skips with the reason where mpirun, the CLI or ../shared is absent.
local mb = require "moonbert"
local support = require "tests.spec.support"

local SHARED = os.getenv("MOONBERT_SHARED") or "../shared"
local TINY = SHARED .. "/fixtures/distilbert-tiny"
local BIN = os.getenv("MOONBERT_BIN")
local have_shared = io.open(TINY .. "/vocab.txt") ~= nil and io.open(SHARED .. "/data/emotion/train.txt") ~= nil
local have_mpirun = os.execute("command -v mpirun >/dev/null 2>&1") == true
local root = support.run("id -u"):match("^0") ~= nil
local SCRIPT = "tests/spec/dist/fit.lua"

local function rmtree(d) require("moonbert.checkpoint").rmtree(d) end

-- the fine-tune alone, or under mpirun with n ranks; returns output, exit code, seconds
local function run(n, ...)
  local args = {}
  for i, a in ipairs { ... } do args[i] = support.q(a) end
  local cmd = string.format("%s run %s %s", support.q(BIN), SCRIPT, table.concat(args, " "))
  if n then
    -- mpirun itself without make sanitize's ASan preload (the ranks are the sanitized CLI)
    cmd = string.format("env -u LD_PRELOAD mpirun %s-np %d -x MOONBERT_THREADS=1 -x MOONBERT_SHARED %s run %s %s",
      root and "--allow-run-as-root " or "", n, support.q(BIN), SCRIPT, table.concat(args, " "))
  end
  local t0 = mb.store.now()
  local out, code = support.run("MOONBERT_THREADS=1 timeout 120 " .. cmd)
  return out, code, mb.store.now() - t0
end

-- norm relative difference, the largest element-wise difference, and how many elements differ
local function compare(path_a, path_b)
  local a, b = mb.safetensors.load(path_a), mb.safetensors.load(path_b)
  local num, den, maxabs, ndiff, n = 0, 0, 0, 0, 0
  for name, ta in pairs(a) do
    local x = ta:reshape { ta:numel() }:totable()
    local y = b[name]:reshape { ta:numel() }:totable()
    for i = 1, #x do
      local d = math.abs(x[i] - y[i])
      num, den, n = num + d * d, den + x[i] * x[i], n + 1
      if d > 0 then ndiff = ndiff + 1 end
      if d > maxabs then maxabs = d end
    end
  end
  return math.sqrt(num / den), maxabs, ndiff, n
end

local function leftover_ranks(tag)
  -- without make sanitize's ASan preload: ps deadlocks under it
  local out = support.run("env -u LD_PRELOAD ps -eo args | grep -F " .. support.q(tag) .. " | grep -v grep || true")
  return out
end

local describe_mpi = describe
if not BIN then
  describe_mpi = function(name) pending(name .. " (MOONBERT_BIN not built)") end
elseif not have_mpirun then
  describe_mpi = function(name) pending(name .. " (no mpirun here: apt-get install openmpi-bin, or make deps)") end
elseif not have_shared then
  describe_mpi = function(name) pending(name .. " (needs " .. TINY .. " and the emotion data; ../shared is absent)") end
end

describe("--distributed without a launcher", function()
  if not BIN then pending("MOONBERT_BIN not built") return end
  it("is one line naming the option, exit 2", function()
    local out, code = support.run("env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u SLURM_NTASKS " .. support.q(BIN) ..
      " run experiments/baseline_vs_finetune.lua --distributed --quick")
    assert.are.equal(2, code, out)
    assert.are.equal("baseline_vs_finetune: --distributed: no MPI launcher found (none of OMPI_COMM_WORLD_SIZE, " ..
      "PMI_SIZE, SLURM_NTASKS is set); start moonbert with mpirun -np N or srun -n N\n", out)
  end)
end)

describe_mpi("data parallel training under mpirun -np 2", function()
  local work
  setup(function() work = support.tmpdir() end)
  teardown(function() if work then rmtree(work) end end)

  local function dir(tag)
    local d = work .. "/" .. tag
    require("lfs").mkdir(d)
    return d
  end

  it("matches one process after 5 AdamW steps, and a 2-rank checkpoint resumes in 1 process", function()
    local one, two = dir("one"), dir("two")
    local out, code = run(nil, "out=" .. one)
    assert.are.equal(0, code, out)
    out, code = run(2, "out=" .. two, "stop_after=1")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("rank 1 of 2: 5 steps", 1, true), out)
    local rel, maxabs, ndiff, n = compare(one .. "/checkpoints/checkpoint-5/model.safetensors",
      two .. "/checkpoints/checkpoint-5/model.safetensors")
    print(string.format("\n[dist] parity after 5 steps: ||w2-w1||/||w1|| = %.3g, max |w2-w1| = %.3g (%d of %d elements differ)",
      rel, maxabs, ndiff, n))
    assert.is_true(rel <= 1e-6, "relative difference " .. rel)
    assert.is_true(maxabs <= 1e-5, "largest difference " .. maxabs)
    assert.is_true(ndiff > 0, "two ranks cannot be bit-identical to one BLAS call over the whole batch")
    -- the evaluation was sharded and gathered: the same validation metrics
    local h1 = support.read(one .. "/history.txt"):match("^[^\n]+")
    local h2 = support.read(two .. "/history.txt"):match("^[^\n]+")
    local e1 = { h1:match("^(%d+) (%d+) (%S+) (%S+) (%S+)") }
    local e2 = { h2:match("^(%d+) (%d+) (%S+) (%S+) (%S+)") }
    assert.are.equal(e1[2], e2[2])
    assert.is_true(math.abs(tonumber(e1[3]) - tonumber(e2[3])) <= 1e-6 * math.abs(tonumber(e1[3])), h1 .. " / " .. h2)
    assert.is_true(math.abs(tonumber(e1[4]) - tonumber(e2[4])) <= 1e-6 * math.abs(tonumber(e1[4])), h1 .. " / " .. h2)
    assert.are.equal(e1[5], e2[5])
    -- N = 2 -> M = 1: the 2-rank checkpoint continued by one process
    out, code = run(nil, "out=" .. two, "resume=1")
    assert.are.equal(0, code, out)
    rel, maxabs = compare(one .. "/final.safetensors", two .. "/final.safetensors")
    print(string.format("[dist] 2 ranks -> 1 process resume, after 10 steps: relative %.3g, max %.3g", rel, maxabs))
    assert.is_true(rel <= 1e-6, "relative difference " .. rel)
  end)

  local full_run -- the uninterrupted 2-rank run with dropout (the SLURM test compares with it)

  it("resumes a 2-rank run with 2 ranks bit for bit (dropout on)", function()
    local full, half = dir("full"), dir("half")
    full_run = full
    local out, code = run(2, "out=" .. full, "dropout=1")
    assert.are.equal(0, code, out)
    out, code = run(2, "out=" .. half, "dropout=1", "stop_after=1")
    assert.are.equal(0, code, out)
    out, code = run(2, "out=" .. half, "dropout=1", "resume=1")
    assert.are.equal(0, code, out)
    local rel, maxabs, ndiff = compare(full .. "/final.safetensors", half .. "/final.safetensors")
    assert.are.equal(0, ndiff, string.format("%d elements differ (max %.3g)", ndiff, maxabs))
    assert.are.equal(support.read(full .. "/history.txt"), support.read(half .. "/history.txt"))
    assert.are.equal(0, rel)
  end)

  it("trains under srun --mpi=pmix -n 2 (a real one-node SLURM) bit for bit as under mpirun", function()
    local services = require "tests.spec.services"
    local slurm, why = services.slurm()
    if not slurm then pending(why or "SLURM did not start") return end
    local ok, err = pcall(function()
      local d = dir("srun")
      local srun = slurm.env .. "MOONBERT_THREADS=1 timeout 120 srun -n 2 --mpi=%s " .. support.q(BIN) .. " run " ..
        SCRIPT .. " dropout=1 out=" .. support.q(d)
      local out, code = support.run(string.format(srun, "pmix"))
      assert.are.equal(0, code, out)
      assert.truthy(out:find("rank 1 of 2: 10 steps", 1, true), out)
      assert.truthy(full_run, "needs the 2-rank run of the resume test")
      local _, maxabs, ndiff = compare(full_run .. "/final.safetensors", d .. "/final.safetensors")
      assert.are.equal(0, ndiff, string.format("%d elements differ from mpirun's run (max %.3g)", ndiff, maxabs))
      -- tasks started without PMIx: Open MPI cannot join them; one line saying what to do
      out, code = support.run(string.format(srun, "none"))
      assert.are_not.equal(0, code, out)
      assert.truthy(out:find("under SLURM start them with srun --mpi=pmix", 1, true), out)
    end)
    slurm.remove()
    if not ok then error(err, 0) end
  end)

  it("ends every rank when one is killed with SIGKILL, and marks the run failed", function()
    local db = work .. "/kill.db"
    local out, code, secs = run(2, "db=" .. db, "kill_at=3", "tag=kill-" .. work)
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find("mb.dist: the gradient sum at step 4: rank 0 of 2", 1, true), out)
    assert.truthy(out:find("for rank 1", 1, true), out)
    assert.is_true(secs < 30, "took " .. secs .. " s")
    local store = mb.store.open(db)
    local runs = store:runs { experiment = "dist_spec" }
    assert.are.equal(1, #runs)
    assert.are.equal("failed", runs[1].status)
    assert.truthy(tostring(runs[1].error):find("rank 1", 1, true), tostring(runs[1].error))

    assert.are.equal("", leftover_ranks("tag=kill-" .. work))
  end)

  it("ends within --dist-timeout when a rank hangs, naming it", function()
    local out, code, secs = run(2, "stop_at=2", "timeout=2", "tag=hang-" .. work)
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find("rank 0 of 2 waited 2 s (--dist-timeout) for rank 1, which died or hangs", 1, true), out)
    assert.is_true(secs < 30, "took " .. secs .. " s")
    assert.are.equal("", leftover_ranks("tag=hang-" .. work))
  end)

  it("runs experiments/baseline_vs_finetune.lua: rank 0 alone prints and writes one run with its world size", function()
    local db = work .. "/ex.db"
    local cmd = string.format("MOONBERT_THREADS=1 timeout 120 env -u LD_PRELOAD mpirun %s-np 2 -x MOONBERT_THREADS=1 " ..
      "-x MOONBERT_SHARED %s run experiments/baseline_vs_finetune.lua --model %s --quick --limit 32 --batch-size 16 " ..
      "--store %s --no-report", root and "--allow-run-as-root " or "", support.q(BIN), support.q(TINY), support.q(db))
    local out, code = support.run(cmd)
    assert.are.equal(0, code, out)
    assert.are.equal(1, support.count(out, "== Summary: baseline_vs_finetune"), out)
    local store = mb.store.open(db)
    local runs = store:runs { experiment = "baseline_vs_finetune" }
    assert.are.equal(1, #runs)
    assert.are.equal("completed", runs[1].status)
    assert.are.equal("2", tostring(store:params(runs[1].id).world_size))
    -- several ranks on GPUs need NCCL: without it, one line and exit 1 (the library made absent by name)
    local absent = support.tmppath("nccl") .. "/libnccl.so.2" -- a fresh path: nothing there to open
    out, code = support.run("MOONBERT_NCCL_LIB=" .. support.q(absent) .. " " .. cmd:gsub("%-x MOONBERT_THREADS=1",
      "-x MOONBERT_THREADS=1 -x MOONBERT_NCCL_LIB") .. " --device cuda")
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find("baseline_vs_finetune: --device cuda: several ranks with --device cuda need NCCL", 1, true), out)
  end)

  it("stops at the first weight check after the ranks' weights diverge, naming the step", function()
    local out, code = run(2, "skew_at=3", "check_every=2")
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find("the weight check at step 4: the weights differ across ranks: rank 1 has a checksum", 1,
      true), out)
  end)
end)
