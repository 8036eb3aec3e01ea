-- moonbert.search: how a sweep (moonbert.sweep) chooses its trials and spends its budget:
-- the `sampler`, `pruner`, `max_trials` and `max_minutes` fields of a sweep spec.
--
--   sampler = "grid" | "random" | "tpe"     -- default: "grid" with grid = {...}, else "random"
--   random = { lr = { log_uniform = { 1e-5, 1e-3 } }, ... }   -- the space of random and tpe
--   trials = 40, seed = 1,                   -- tpe: how many trials in all, and the stream
--   tpe = { n_startup_trials = 10, n_ei_candidates = 24 },    -- optional (moonbert.tpe)
--   pruner = { asha = { min_resource = 1, reduction_factor = 3, resource = "epoch" } },
--   max_trials = 20,                         -- start at most this many trials in this run
--   max_minutes = 30,                        -- then start none; stop the ones still running
--
-- TPE draws each point when a trial slot frees, from the trials of the sweep that the store
-- holds (completed and pruned ones, oldest first; failed ones are not observations). Trial
-- number k of a sweep is drawn from (seed, k, the finished trials), so rerunning a sweep
-- after a crash first runs the trials that have no completed or pruned run again (the same
-- points), then draws the next ones exactly as the uninterrupted sweep would have done with
-- one job. With several jobs (or several machines on one store) a point depends on which
-- trials had finished when it was drawn, as in Optuna. Drawn floats are rounded to 3
-- significant digits like random search's (readable keys); a point whose key the sweep
-- already holds is drawn again from another stream (attempt 1, 2, ...; after 100 of them, at
-- random, so that a small discrete space is used up). On SLURM each array
-- task draws its own trial with search.draw_tpe (moonbert.sweep_slurm). A trial's number is
-- recorded as its runs' tag trial_number (MOONBERT_TRIAL_NUMBER).
local tpe = require "moonbert.tpe"

local M = {}

local function spec_error(path, msg) error("sweep spec " .. path .. ": " .. msg, 0) end

local function round3(x)
  if x == 0 then return 0 end
  return tonumber(string.format("%.3g", x))
end

--- search.check(s, path): checks and fills the search fields of a spec (s is a copy the
-- caller owns); raises "sweep spec PATH: ..." on a mistake.
function M.check(s, path)
  if s.sampler == nil then s.sampler = s.grid ~= nil and "grid" or "random" end
  if s.sampler ~= "grid" and s.sampler ~= "random" and s.sampler ~= "tpe" then
    spec_error(path, "field 'sampler' must be \"grid\", \"random\" or \"tpe\", got " .. tostring(s.sampler))
  end
  if s.sampler == "grid" and s.grid == nil then spec_error(path, "sampler \"grid\" needs a 'grid' table") end
  if s.sampler ~= "grid" and s.random == nil then
    spec_error(path, "sampler \"" .. s.sampler .. "\" draws from a 'random' table of option = distribution")
  end
  if s.tpe ~= nil then
    if s.sampler ~= "tpe" or type(s.tpe) ~= "table" then spec_error(path, "field 'tpe' is a table of TPE settings (with sampler = \"tpe\")") end
    for k, v in pairs(s.tpe) do
      if tpe.defaults[k] == nil then spec_error(path, "tpe." .. tostring(k) .. ": unknown setting") end
      if type(v) ~= type(tpe.defaults[k]) then spec_error(path, "tpe." .. k .. " must be a " .. type(tpe.defaults[k])) end
    end
  end
  if s.pruner ~= nil then
    s.pruner = require("moonbert.asha").check_pruner(s.pruner, function(msg) spec_error(path, msg) end)
  end
  if s.max_trials ~= nil and (math.type(s.max_trials) ~= "integer" or s.max_trials < 1) then
    spec_error(path, "field 'max_trials' must be a positive integer")
  end
  if s.max_minutes ~= nil and (type(s.max_minutes) ~= "number" or not (s.max_minutes > 0)) then
    spec_error(path, "field 'max_minutes' must be a positive number of minutes")
  end
  return s
end

-- ---- the store's view of a sweep -----------------------------------------------------------

--- search.parse_key(spec, key) -> options | nil: a trial key back into option values,
-- using the search space to read each value (numbers; choices by their text).
function M.parse_key(spec, key)
  local space = spec.random or spec.grid
  local names = {}
  for k in pairs(space) do names[#names + 1] = k end
  table.sort(names)
  local format_value = require("moonbert.sweep").format_value
  local options, pos = {}, 1
  for i, name in ipairs(names) do
    local prefix = name .. "="
    if key:sub(pos, pos + #prefix - 1) ~= prefix then return nil end
    pos = pos + #prefix
    local stop = #key
    if i < #names then
      local nxt = key:find("," .. names[i + 1] .. "=", pos, true)
      if not nxt then return nil end
      stop = nxt - 1
    end
    local text = key:sub(pos, stop)
    local d = space[name]
    local choices = (d.choice or (#d > 0 and d)) or (spec.grid and d)
    local value
    if choices then
      for _, c in ipairs(choices) do if format_value(c) == text then value = c end end
    else
      value = math.tointeger(tonumber(text)) or tonumber(text)
    end
    if value == nil then return nil end
    options[name] = value
    pos = stop + 2
  end
  return options
end

local FINISHED = { completed = 3, pruned = 2, failed = 1 }

--- search.trials_in_store(store, spec) -> array, oldest first, of
--   {key=, options=, state= "completed"|"pruned"|"failed"|"running"|"unfinished", value=,
--    step= (pruned: the rung), first_id=, number= (the tag trial_number: the TPE trial number
--    that drew it, when recorded)}
-- one per trial key of the sweep; a key's state is its best run's (completed > pruned >
-- failed; "running" while a run of it is running; else "unfinished": killed, interrupted).
-- value: the final spec.metric of that run (for a pruned run, the value where it stopped).
function M.trials_in_store(store, spec)
  local by_key, list = {}, {}
  for _, r in ipairs(store:runs { experiment = spec.experiment }) do
    local tags = store:tags(r.id)
    if tags.sweep == spec.name and tags.trial then
      local t = by_key[tags.trial]
      if not t then
        t = { key = tags.trial, first_id = r.id, state = "unfinished", rank = 0 }
        by_key[tags.trial] = t
        list[#list + 1] = t
      end
      t.number = t.number or math.tointeger(tonumber(tags.trial_number or ""))
      local rank = FINISHED[r.status] or (r.status == "running" and 0.5) or 0
      if rank > t.rank then
        t.rank, t.state, t.run_id = rank, r.status == "running" and "running" or r.status, r.id
        if FINISHED[r.status] then
          local m = store:final_metrics(r.id)[spec.metric]
          t.value = m and m.value
          t.step = r.pruned_rung
        end
      end
    end
  end
  table.sort(list, function(a, b) return a.first_id < b.first_id end)
  for _, t in ipairs(list) do t.options = M.parse_key(spec, t.key) end
  return list
end

-- ---- drawing TPE trials ---------------------------------------------------------------------

local function key_of(options) return require("moonbert.sweep").key(options) end

local function rounded(spec, point)
  local o = {}
  for k, v in pairs(point) do
    local kind = next(spec.random[k])
    o[k] = (type(v) == "number" and math.type(v) == "float" and kind ~= "choice") and round3(v) or v
  end
  return o
end

--- search.draw_tpe(spec, recorded, number, taken) -> options, key | nil
-- Trial `number` of the sweep, drawn by TPE from the finished trials in `recorded`
-- (search.trials_in_store); `taken` = {key = true} of keys in use. After 100 draws of keys in
-- use, random draws; nil when 100 of those gave keys in use too (the space is exhausted).
function M.draw_tpe(spec, recorded, number, taken)
  local history = {}
  for _, t in ipairs(recorded) do
    -- a pruned trial counts without a value too (ranked after those that have one, as Optuna)
    if t.options and ((t.state == "completed" and t.value ~= nil) or t.state == "pruned") then
      history[#history + 1] = { params = t.options, value = t.value, state = t.state, step = t.step }
    end
  end
  local opts = { seed = spec.seed, trial = number, mode = spec.mode }
  for k, v in pairs(spec.tpe or {}) do opts[k] = v end
  for attempt = 0, 199 do
    opts.attempt = attempt
    -- after 100 TPE draws of keys in use (in a small discrete space TPE keeps drawing its
    -- favourite), 100 random ones find the points left
    if attempt == 100 then opts.n_startup_trials = math.huge end
    local options = rounded(spec, tpe.suggest(spec.random, history, opts))
    local key = key_of(options)
    if not taken[key] then return options, key end
  end
  return nil
end

--- search.tpe_queue(spec, store_path) -> a list-like table of the trials left to run
-- (#queue and queue[i] as moonbert.sweep's todo list): first the sweep's recorded trials
-- that have no completed, pruned or running run, then new TPE draws, up to spec.trials
-- trials in all. queue[i] draws when it is first read, from what the store holds then.
-- queue.recorded: how many trials the store held at the start (the sweep's "skipped").
function M.tpe_queue(spec, store_path, exists)
  local mb_store = require "moonbert.store"
  local function read()
    -- (a PostgreSQL URL is no file: io.open cannot tell whether it exists)
    if not mb_store.is_url(store_path) and not exists(store_path) then return {} end
    local store = mb_store.open(store_path)
    local ok, rec = pcall(M.trials_in_store, store, spec)
    store:close()
    if not ok then error(rec, 0) end
    return rec
  end
  local recorded = read()
  local items, taken, n_known = {}, {}, #recorded
  local done = 0
  for _, t in ipairs(recorded) do
    taken[t.key] = true
    if t.state == "completed" or t.state == "pruned" then
      done = done + 1
    elseif t.state ~= "running" and t.options then
      items[#items + 1] = { key = t.key, options = t.options, number = t.number }
    end
  end
  local fixed = #items
  local total = fixed + math.max(0, spec.trials - n_known)
  local q = { skipped = done, total_trials = done + total }
  local drawn = 0
  return setmetatable(q, {
    __len = function() return total end,
    __index = function(self, i)
      if math.type(i) ~= "integer" or i < 1 or i > total then return nil end
      local item = items[i]
      if not item then
        local rec = read()
        for _, t in ipairs(rec) do taken[t.key] = true end
        drawn = drawn + 1
        local options, key = M.draw_tpe(spec, rec, n_known + drawn, taken)
        if not options then
          total = i - 1 -- the space is exhausted: no more trials
          return nil
        end
        taken[key] = true
        item = { key = key, options = options, number = n_known + drawn }
      end
      item.index = done + i
      rawset(self, i, item)
      return item
    end,
  })
end

-- ---- what the sweep prints and passes on -----------------------------------------------------

--- search.describe(spec) -> "" or a line naming the sampler, pruner and budgets
function M.describe(spec)
  local parts = {}
  if spec.sampler == "tpe" then
    local n = (spec.tpe and spec.tpe.n_startup_trials) or tpe.defaults.n_startup_trials
    parts[#parts + 1] = string.format("sampler tpe (seed %d, %d random trials first)", spec.seed, n)
  end
  if spec.pruner then parts[#parts + 1] = "pruner " .. require("moonbert.asha").describe(spec.pruner) end
  if spec.max_trials then parts[#parts + 1] = string.format("at most %d trials now", spec.max_trials) end
  if spec.max_minutes then parts[#parts + 1] = string.format("at most %g minutes", spec.max_minutes) end
  if #parts == 0 then return "" end
  return "  " .. table.concat(parts, "; ") .. "\n"
end

--- search.trial_env(spec, quote) -> " MOONBERT_PRUNER=..." (or ""): what a trial process needs
-- to take pruning decisions (moonbert.asha reads it).
function M.trial_env(spec, quote)
  if not spec.pruner then return "" end
  return " MOONBERT_PRUNER=" .. quote(require("moonbert.asha").encode_env(spec))
end

local Budget = {}
Budget.__index = Budget

--- search.budget(spec) -> budget: budget.started (trials started, counted by the caller),
-- budget:check(out) -> true once max_trials trials started or max_minutes passed (it says
-- so once on out); budget.spent; budget.out_of_time (max_minutes passed: stop what runs).
function M.budget(spec)
  return setmetatable({ started = 0, t0 = require("moonbert.store").now(), spec = spec, spent = false }, Budget)
end

function Budget:check(out)
  local function say(why)
    if out then out:write("budget spent (" .. why .. ")\n"); out:flush() end
  end
  if not self.spent and self.spec.max_trials and self.started >= self.spec.max_trials then
    self.spent = true
    say(string.format("max_trials: %d trials started", self.started))
  end
  if not self.out_of_time and self.spec.max_minutes and
     require("moonbert.store").now() - self.t0 >= self.spec.max_minutes * 60 then
    self.spent, self.out_of_time = true, true
    say(string.format("max_minutes: %g minutes passed; trials still running are stopped", self.spec.max_minutes))
  end
  return self.spent
end

return M
