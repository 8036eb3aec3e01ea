-- moonbert.dist (mb.dist): data-parallel training over MPI ranks (NCCL where the parameters are on
-- a GPU). docs/distributed.md says how it works; runtime/dist.h is the C half.
--
--   mpirun -np 2 moonbert run experiments/baseline_vs_finetune.lua --batch-size 64
--
--   local dist = mb.dist.setup{distributed = nil, timeout = 300}
--     -- reads the launcher's variables (OMPI_COMM_WORLD_SIZE, PMI_SIZE, SLURM_NTASKS); with more
--     -- than one rank opens Open MPI and joins the others. distributed = true: a launcher must be
--     -- there (error otherwise). One process alone: nothing is loaded, everything as before.
--   dist.rank(), dist.size(), dist.active(), dist.is_main()   (rank 0 writes the store and checkpoints)
--   dist.share(n [, rank, size]) -> first, count: rank's contiguous share of n rows (1-based)
--   dist.share_batch(b) -> this rank's rows of a global batch (views), or nil when it has none
--   dist.sum(tensor, scale, what)      tensor := scale * sum over ranks (rank order, same bits everywhere)
--   dist.sum_numbers({x, y, ...}, what) -> the element-wise sums, in rank order
--   dist.allgather(string, what) -> {string of rank 0, of rank 1, ...}
--   dist.broadcast_value(v, what) -> rank 0's v (a string, number, boolean or nil) on every rank
--   dist.barrier(what), dist.check_weights(model, what)
--   dist.fit_context(o) -> the hooks mb.trainer.fit uses (nil when not distributed)
--
-- Every collective waits at most dist.timeout() seconds (--dist-timeout) for the others; a rank
-- that died or hangs becomes an error naming it ("... waited 300 s for rank 1, which died or
-- hangs"), and the communicator is then unusable: the process should end (it does, through the
-- error). The script's end finalizes MPI; a script that fails leaves without finalizing, so mpirun
-- stops the other ranks at once.
local core = require("moonbert.core")
local cd = core.dist

local M = {}

-- A failed collective (a rank dead or hung, weights that differ) is raised as "mb.dist: <what>:
-- <why>", without the position of this file.
local function raise(err) error("mb.dist: " .. tostring(err):gsub("^[^:\n]*%.lua:%d+: ", ""), 0) end
local function call(fn, ...)
  local ok, a, b = pcall(fn, ...)
  if not ok then raise(a) end
  return a, b
end

function M.detect() return cd.detect() end
function M.rank() return cd.rank() end
function M.size() return cd.size() end
function M.active() return cd.active() end
function M.is_main() return cd.rank() == 0 end
function M.timeout() return cd.timeout() end

local finalizer -- kept in the module table: collected by lua_close at the end of the script

--- Join the other ranks (idempotent). o.distributed: require a launcher; o.timeout: seconds.
function M.setup(o)
  o = o or {}
  if o.timeout ~= nil then
    if type(o.timeout) ~= "number" or o.timeout <= 0 then
      error(string.format("bad argument #1 to 'setup' (field 'timeout' must be a number of seconds > 0, got %s)",
        tostring(o.timeout)), 2)
    end
    cd.set_timeout(o.timeout)
  end
  call(cd.init, o.distributed and true or false)
  if cd.active() and not finalizer then
    -- a collective polls this while it waits: mpirun's SIGTERM (a peer died) ends the wait
    cd.set_interrupt(function() return (core.signal.pending()) end)
    finalizer = setmetatable({}, { __gc = function()
      -- after a script error, leave without MPI_Finalize: mpirun then stops the other ranks
      -- at once instead of letting them wait for a rank that will never come
      if debug.getregistry()["moonbert.script_error"] == nil and not cd.broken() then M.finish() end
    end })
    M._finalizer = finalizer
  end
  return M
end

--- The end of a distributed script on every rank: wait for all (no deadline: rank 0 may still be
-- writing its report; a rank that dies makes mpirun stop the job), then MPI_Finalize.
function M.finish()
  if not cd.active() or cd.broken() then return end
  cd.set_timeout(1e9)
  call(cd.barrier, "waiting for every rank to finish")
  cd.finalize()
end

--- An experiment's ranks other than 0 after fit: rank 0 goes on alone (final metrics, the saved
-- model, the report); this rank waits for it and ends the process (exit 0).
function M.worker_done()
  if not cd.active() or cd.rank() == 0 then return end
  M.finish()
  io.stdout:flush()
  os.exit(0)
end

--- Rank r's contiguous share of n rows: first (1-based) and count. The shares of ranks 0..size-1
-- are disjoint, in order, and cover 1..n (counts differ by at most one).
function M.share(n, rank, size)
  rank, size = rank or cd.rank(), size or cd.size()
  local lo, hi = n * rank // size, n * (rank + 1) // size
  return lo + 1, hi - lo
end

local function narrow_rows(t, first, count)
  return t:narrow(1, first, count)
end

--- This rank's rows of a global batch (views sharing its storage), or nil when its share is empty.
function M.share_batch(b)
  if not cd.active() then return b end
  local n = b.size or #b.indices
  local first, count = M.share(n)
  if count == 0 then return nil end
  local s = {}
  for k, v in pairs(b) do
    if type(v) == "userdata" and v.narrow and v:dim() >= 1 and v:size(1) == n then
      s[k] = narrow_rows(v, first, count)
    end
  end
  s.indices = table.move(b.indices, first, first + count - 1, 1, {})
  s.size = count
  return s
end

function M.sum(t, scale, what) call(cd.sum, t, scale or 1.0, what) end

--- Element-wise sums of a list of numbers over the ranks, added in rank order (the same on all).
function M.sum_numbers(list, what)
  if not cd.active() then return list end
  local fmt = "<" .. string.rep("d", #list)
  local parts = call(cd.allgather, string.pack(fmt, table.unpack(list)), what or "sum")
  local out = {}
  for r, s in ipairs(parts) do
    local vals = { string.unpack(fmt, s) }
    for i = 1, #list do out[i] = r == 1 and vals[i] or out[i] + vals[i] end
  end
  return out
end

function M.allgather(s, what) return call(cd.allgather, s, what) end

--- Every rank's rows of a float32 [r, D] tensor, concatenated in rank order ([0, k] for none).
function M.allgather_rows(t, what) return call(cd.allgather_rows, t, what) end
function M.barrier(what) call(cd.barrier, what) end

--- Rank 0's value on every rank (strings, numbers, booleans, nil).
function M.broadcast_value(v, what)
  if not cd.active() then return v end
  local enc = v == nil and "n" or type(v) == "boolean" and (v and "t" or "f")
    or type(v) == "number" and ("d" .. string.pack("<d", v)) or ("s" .. tostring(v))
  local all = call(cd.allgather, cd.rank() == 0 and enc or "", what or "broadcast")
  local e = all[1]
  local tag = e:sub(1, 1)
  if tag == "n" then return nil elseif tag == "t" then return true elseif tag == "f" then return false
  elseif tag == "d" then return (string.unpack("<d", e, 2)) end
  return e:sub(2)
end

--- Compare the model's parameters across ranks (a 64-bit checksum each); an error names the
-- ranks that differ. Returns this rank's checksum (hex).
function M.check_weights(model, what)
  return call(cd.check_same, model:parameter_block().params, what or "weight check")
end

-- ---- the trainer's hooks --------------------------------------------------------------------------

--- The hooks mb.trainer.fit uses when the run is distributed (nil otherwise): o.check_every (steps
-- between weight checks, default 50).
function M.fit_context(o)
  if not cd.active() then return nil end
  local rank, size = cd.rank(), cd.size()
  local grads = nil
  local agreed_signal, agreed_signo
  local ctx = { rank = rank, size = size, main = rank == 0, check_every = o and o.check_every or 50 }

  --- this rank's part of global batch b (nil: none)
  function ctx.share(b) return M.share_batch(b) end

  --- the hook between backward and clipping: gradients of the mean loss over the global batch
  -- (each rank's mean over its share, weighted by share/global, summed in rank order), the global
  -- mean loss, and whether any rank was asked to stop (so all stop after the same step).
  function ctx.reducer(model, n_local, n_global, step)
    return function(loss)
      grads = grads or model:parameter_block().grads
      local what = string.format("the gradient sum at step %d", step)
      local pending = core.signal.pending()
      local s = M.sum_numbers({ n_local > 0 and loss * n_local or 0, pending and 1 or 0 }, what)
      if s[2] > 0 then
        agreed_signal, agreed_signo = pending or "SIGTERM", select(2, core.signal.pending()) or 15
      end
      call(cd.sum, grads, n_local / n_global, what)
      return s[1] / n_global
    end
  end

  --- a step's part for this rank: its share of global batch b (nil: none), the share's labels
  -- (b.labels, or a labels tensor of the batch's rows: masked-LM [B, T] with -100 where unscored)
  -- and the reduction hook, weighting each rank by its rows (or its scored tokens)
  function ctx.share_step(model, b, labels, step)
    local n = b.size or #b.indices
    local share = M.share_batch(b)
    local sl = nil
    if share then
      if labels == b.labels then sl = share.labels
      else sl = labels:narrow(1, M.share(n)) end
    end
    local function weight(t, rows)
      if not t or t:dim() ~= 2 then return rows end
      local c = 0
      for _, row in ipairs(t:totable()) do for _, v in ipairs(row) do if v >= 0 then c = c + 1 end end end
      return c
    end
    local w_local, w_global = share and weight(sl, share.size) or 0, weight(labels, n)
    if w_local == 0 then share, sl = nil, nil end -- nothing scored here (a mean over nothing is NaN)
    return share, sl, ctx.reducer(model, w_local, math.max(w_global, 1), step)
  end

  --- after a step: the signal all ranks agreed on in the step's reduction
  function ctx.signal() return agreed_signal, agreed_signo end

  --- at a point where every rank checks for signals outside a step (epoch end): agree
  function ctx.agree_signal(sig, signo)
    local s = M.sum_numbers({ sig and 1 or 0 }, "agreeing on a stop")
    if s[1] > 0 then return sig or agreed_signal or "SIGTERM", signo or agreed_signo or 15 end
    return nil
  end

  --- weight checksums compared every check_every steps (and at the end: last = true)
  function ctx.after_step(model, step, last)
    if last or (ctx.check_every > 0 and step % ctx.check_every == 0) then
      M.check_weights(model, string.format("the weight check at step %d", step))
    end
  end

  --- every rank's dropout RNG state (hex), for a checkpoint that resumes bit for bit
  function ctx.gather_rng(hex) return call(cd.allgather, hex, "gathering the RNG states") end

  function ctx.agree(v, what) return M.broadcast_value(v, what) end

  --- at the start of fit: rank 0's parameters on every rank (as PyTorch's DDP does), so that a
  -- rank that initialised or loaded differently cannot train a different model
  function ctx.sync_start(model)
    local params = model:parameter_block().params
    if params:device() ~= "cpu" then return end -- GPU ranks: each loads the same weights (no NCCL broadcast yet)
    call(cd.broadcast, params, 0, "sharing rank 0's initial weights")
  end

  --- after a resume (rank 0's RNG state already restored): a checkpoint of the same world size
  -- gives every rank its own stream back (bit-exact resume); another size: ranks past rank 0
  -- draw from seed + rank
  function ctx.restore_rng(model, state, seed)
    local list = state.model_rng_ranks
    if type(list) == "table" and math.tointeger(state.world_size) == size and list[rank + 1] then
      model:set_rng_state((list[rank + 1]:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)))
    elseif rank > 0 then
      model:seed(seed + rank)
    end
  end

  --- evaluation rows of a global batch: each rank's lists, concatenated in rank order
  function ctx.gather_eval(pred, labels, losses, probs)
    local parts = {}
    local C = probs and probs[1] and #probs[1] or 0
    local buf = { string.pack("<i4i4", #pred, C) }
    for j = 1, #pred do
      buf[#buf + 1] = string.pack("<i4i4d", pred[j], labels[j], losses[j])
      for c = 1, C do buf[#buf + 1] = string.pack("<d", probs[j][c]) end
    end
    parts = call(cd.allgather, table.concat(buf), "gathering the evaluation")
    local P, L, Lo, Pr = {}, {}, {}, {}
    for _, s in ipairs(parts) do
      local n, c, pos = string.unpack("<i4i4", s)
      for _ = 1, n do
        local p, y, l
        p, y, l, pos = string.unpack("<i4i4d", s, pos)
        local k = #P + 1
        P[k], L[k], Lo[k] = p, y, l
        if c > 0 then
          local row = {}
          for i = 1, c do row[i], pos = string.unpack("<d", s, pos) end
          Pr[k] = row
        end
      end
    end
    return P, L, Lo, probs and Pr or nil
  end

  return ctx
end

return M
