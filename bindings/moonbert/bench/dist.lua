-- moonbert bench dist: data-parallel figures on this machine (docs/distributed.md).
--
--   step       one training step (forward, loss, backward, gradient sum, clipping, AdamW) of the
--              full-size DistilBERT config (66 M parameters, random init) on a global batch of 16
--              synthetic sequences padded to 64 tokens: 1 process x 2 threads against mpirun -np 2
--              x 1 thread (each rank 8 sequences, gradients summed in rank order); the ranks'
--              compute and gradient-sum parts are given apart
--   allreduce  the sum of a 67 M-element float32 gradient (268 MB) across 2 ranks: moonbert's
--              rank-ordered sum (mb.dist.sum) and MPI_Allreduce, over Open MPI's shared memory
--              (its default on one node) and over TCP on the loopback interface (--mca btl
--              tcp,self), as seconds, algorithm bandwidth (bytes / s) and bus bandwidth
--              (2 (N-1)/N bytes / s, what each rank moves)
--   model      the scaling model from these figures: step time against node count 1..64 at 25 and
--              100 Gbit/s, T(N) = B t_ex / N + 2 (N-1)/N S / BW (t_ex: measured compute seconds
--              per sequence, S: gradient bytes), and the break-even global batch B* = 2 S / (BW t_ex):
--              going from N to 2N nodes shortens a step only while B > B* (the same B* for every N
--              under the ring-allreduce cost)
-- Needs mpirun (openmpi-bin); without it the 2-rank rows are skipped with the reason. The load
-- average is given beside the figures (the machine is shared). --quick: a tiny model, 1 M
-- elements (for tests). MOONBERT_BENCH_STEPS: timed steps (default 3, after one warm-up).
local M = { summary = "data parallel: step time 2 ranks x 1 thread vs 1 process x 2 threads, allreduce bytes/s, scaling model" }

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return nil end
  local s = f:read("l")
  f:close()
  return s and s:match("^(%S+ %S+ %S+)")
end

local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  return c[(#c + 1) // 2]
end

local B, T = 16, 64

local function setup_model(mb, quick)
  local tb = require "moonbert.bench.train"
  local cfg = quick and tb.QUICK or tb.FULL
  local model = mb.distilbert.new(cfg, { seed = 42, num_labels = 6 })
  local batch = tb.make_batch(mb, 1, B, T, cfg.vocab_size)
  local labels = {}
  for b = 1, B do labels[b] = (b - 1) % 6 end
  batch.labels = mb.tensor.from(labels, { dtype = "int32" })
  batch.indices, batch.size = {}, B
  for b = 1, B do batch.indices[b] = b end
  local trainer = require "moonbert.trainer"
  local opt = mb.optim.adamw(trainer.optimizer_params(model), { lr = 1e-5, weight_decay = 0.01 })
  return model, batch, opt, trainer
end

local function steps_wanted() return math.tointeger(tonumber(os.getenv("MOONBERT_BENCH_STEPS") or "3")) or 3 end

-- one rank of `mpirun -np 2 moonbert bench dist`: rank 0's table is the JSON printed
local function worker(mb, opts)
  local dist = mb.dist.setup { timeout = 600 }
  local clock = mb.store.now
  local out = { ranks = dist.size(), threads = mb.threads() }
  if os.getenv("MOONBERT_BENCH_DIST_STEP") ~= "0" then
    local model, batch, opt, trainer = setup_model(mb, opts.quick)
    local share = dist.share_batch(batch)
    local ctx = dist.fit_context {}
    local times, reduce_times = {}, {}
    for i = 1, steps_wanted() + 1 do
      local inner = ctx.reducer(model, share.size, B, i)
      local tr = 0
      local t0 = clock()
      trainer.step(model, opt, share, share.labels, { reduce = function(loss)
        local r0 = clock()
        local l = inner(loss)
        tr = clock() - r0
        return l
      end })
      if i > 1 then times[#times + 1], reduce_times[#reduce_times + 1] = clock() - t0, tr end
    end
    out.step_s, out.gradient_sum_s = median(times), median(reduce_times)
    out.compute_s = out.step_s - out.gradient_sum_s
    out.parameters = model:num_parameters()
    model = nil
    collectgarbage()
  end
  local n = opts.quick and 1000000 or 67000000
  local g = mb.tensor.zeros { n }
  local bytes = 4 * n
  local function measure(fn)
    fn()
    local ts = {}
    for i = 1, 3 do
      local t0 = clock()
      fn()
      ts[i] = clock() - t0
    end
    local s = median(ts)
    return { seconds = s, algorithm_bytes_per_s = bytes / s, bus_bytes_per_s = 2 * (dist.size() - 1) / dist.size() * bytes / s }
  end
  out.allreduce = {
    elements = n, bytes = bytes,
    rank_ordered = measure(function() dist.sum(g, 1.0, "bench") end),
    mpi_allreduce = measure(function() require("moonbert.core").dist.allreduce_mpi(g, "bench") end),
  }
  g:free()
  if not dist.is_main() then
    dist.finish()
    os.exit(0)
  end
  return out
end

local function spawn(mb, opts, extra, env)
  local fs = require "moonbert.fs"
  local q = fs.shell_quote
  -- this very moonbert (the CLI running the bench)
  local self_bin = io.popen("readlink -f /proc/" .. require("moonbert.core").signal.pid() .. "/exe"):read("l")
  local root = (io.popen("id -u"):read("l") == "0") and "--allow-run-as-root " or ""
  local cmd = string.format("%s MOONBERT_THREADS=1 mpirun %s--oversubscribe -np 2 -x MOONBERT_THREADS %s %s bench dist%s 2>/dev/null",
    env or "", root, extra or "", q(self_bin), opts.quick and " --quick" or "")
  local p = io.popen(cmd)
  local text = p:read("a")
  local ok = p:close()
  local json = text:match("(%b{})%s*$")
  if not ok or not json then return { skipped = "mpirun failed: " .. cmd } end
  local t = require("dkjson").decode(json)
  return t and t.dist or { skipped = "no JSON from " .. cmd }
end

function M.run(opts)
  opts = opts or {}
  local mb = require "moonbert"
  if mb.dist.detect().size > 1 then return worker(mb, opts) end
  local clock = mb.store.now
  local res = { load_average_before = loadavg(), global_batch = B, seq_len = T }
  -- 1 process x 2 threads
  local threads0 = mb.threads()
  mb.set_threads(2)
  do
    local model, batch, opt, trainer = setup_model(mb, opts.quick)
    local times = {}
    for i = 1, steps_wanted() + 1 do
      local t0 = clock()
      trainer.step(model, opt, batch, batch.labels, {})
      if i > 1 then times[#times + 1] = clock() - t0 end
    end
    res.one_process_2_threads = { step_s = median(times), parameters = model:num_parameters() }
    model:free()
  end
  collectgarbage()
  mb.set_threads(threads0)
  if os.execute("command -v mpirun >/dev/null 2>&1") ~= true then
    res.two_ranks_1_thread = { skipped = "no mpirun here (apt-get install openmpi-bin)" }
  else
    res.two_ranks_1_thread = spawn(mb, opts)
    res.allreduce_tcp_loopback = spawn(mb, opts, "--mca btl tcp,self --mca btl_tcp_if_include lo",
      "MOONBERT_BENCH_DIST_STEP=0").allreduce
  end
  res.load_average_after = loadavg()

  -- the scaling model
  local one = res.one_process_2_threads.step_s
  local t_ex = one / B
  local S = 4 * (res.one_process_2_threads.parameters or 0)
  local model = { compute_s_per_sequence = t_ex, gradient_bytes = S, global_batch = 64, rows = {} }
  for _, gbit in ipairs { 25, 100 } do
    local bw = gbit * 1e9 / 8
    local rows = {}
    for _, n in ipairs { 1, 2, 4, 8, 16, 32, 64 } do
      local comm = 2 * (n - 1) / n * S / bw
      local step = 64 * t_ex / n + comm
      rows[#rows + 1] = { nodes = n, step_s = step, compute_s = 64 * t_ex / n, allreduce_s = comm,
                          speedup = (64 * t_ex) / step }
    end
    model.rows[gbit .. "gbit"] = rows
    model["break_even_batch_" .. gbit .. "gbit"] = 2 * S / (bw * t_ex)
  end
  res.scaling_model = model
  return res
end

return M
