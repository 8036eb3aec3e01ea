-- moonbert.tpe (mb.tpe): the Tree-structured Parzen Estimator sampler of Bergstra et al.
-- (NeurIPS 2011), with the choices and defaults of Optuna 3.1's TPESampler (univariate by default).
--
--   local tpe = require "moonbert.tpe"
--   local space = { lr = { log_uniform = { 1e-5, 1e-3 } }, warmup = { int_uniform = { 0, 100 } },
--                   wd = { uniform = { 0, 0.1 } }, opt = { choice = { "adamw", "sgd" } } }
--   local history = {            -- finished trials, oldest first
--     { params = { lr = 2e-5, ... }, value = 0.91 },                       -- completed
--     { params = { ... }, value = 0.52, state = "pruned", step = 3 },      -- pruned at resource 3
--   }
--   local point = tpe.suggest(space, history, { seed = 1, trial = #history + 1, mode = "max" })
--
-- How a point is drawn. While fewer than n_startup_trials (10) trials are finished, every
-- parameter is drawn at random (uniform; log-uniform in log space; integers uniformly).
-- Afterwards the finished trials are ranked (completed trials by value, then pruned ones,
-- those that went further first, each group by its last value) and split: the best
-- gamma(n) = min(ceil(n / 10), 25) are "good", the rest "bad". A Parzen estimator l(x) is
-- fitted to the good trials and g(x) to the bad ones, n_ei_candidates (24) points are drawn
-- from l and the one with the largest l(x)/g(x) wins.
--
-- multivariate = false (the default, as Optuna 3.1's TPESampler): each parameter on its own,
-- its kernel widths from the data: an observation's sigma is the larger gap to its sorted
-- neighbours (the range ends count as neighbours, except for the outermost observations:
-- consider_endpoints = false); equal observations are sorted as numpy.argsort sorts them,
-- as in Optuna (see tpe.argsort).
-- multivariate = true (Optuna's TPESampler(multivariate=True), after Falkner et al.'s BOHB):
-- l and g are each one mixture over all parameters, a component per trial that is the product
-- of one kernel per parameter, so a candidate takes every parameter from the same good trial's
-- neighbourhood. Kernel widths follow Scott's rule: sigma = 0.2 * n^(-1/(d+4)) * range for n
-- trials in the group and d parameters, clipped as below.
-- In both, each mixture has a prior component (the middle of the range, sigma = the range,
-- weight prior_weight = 1), sigmas are clipped to [range / min(100, 1 + components), range]
-- (the "magic clip"), observations older than the last 25 weigh less (a linear ramp from 1/n
-- to 1, Optuna's default_weights), integers are widened by 0.5 each side and scored by the
-- probability mass of [x - 0.5, x + 0.5], and choices are categorical (each observation: its
-- choice +1 over a flat prior_weight/(n+1)).
-- Both modes draw from the same distribution as Optuna 3.1 with the same settings:
-- `scripts/bench-tpe --check-scores 5` fits both samplers' estimators to the histories of
-- Optuna's own TPE searches and compares the split, sigmas, weights and log densities (agreed
-- to 5e-14); `scripts/bench-tpe --check-draws 300` compares the next draw from one fixed
-- history, 300 seeds each, per parameter (two-sample Kolmogorov-Smirnov distance under the 1%
-- critical value). On scripts/bench-tpe over moonbert seeds 100..199 (median best value),
-- multivariate did better at 30 trials and worse at 100: branin4 at 30 trials 1.912 against
-- 2.325 univariate, at 100 0.847 against 0.773; hartmann4 at 30 -2.811 against -2.732, at 100
-- -3.078 against -3.083. The default is Optuna 3.1's, univariate, so that a sweep's TPE is the
-- sampler users of Optuna know; set tpe = { multivariate = true } for the other.
-- A continuous kernel's density is Optuna 3.1's: the truncated normal's exp(-z^2/2) over its
-- mass, without the 1/sigma of a normalised density (optuna/optuna#5109), so that wide
-- kernels (the prior, isolated observations) weigh more; normalize_kernels = true gives the
-- normalised mixture instead. On scripts/bench-tpe (univariate, seeds 0..29, median best
-- value) Optuna 3.1's form did better in all 4 settings: hartmann4 at 100 trials -3.092 against
-- -3.054 normalised, at 30 -2.717 against -2.651; branin4 at 30 2.092 against 2.211, at 100
-- 0.690 against 0.807.
--
-- Determinism: the random numbers come from a generator seeded with (seed, trial, attempt)
-- only, so the same seed, trial number and finished trials give the same point in any
-- process, which is what lets a resumed or distributed sweep continue the same search.
-- The generator is its own (SplitMix64); math.random is left alone.
--
-- Limits: no constant liar for running trials, no "group" decomposition (a multivariate
-- mixture counts only trials that have every parameter).
local M = {}

M.defaults = {
  n_startup_trials = 10, n_ei_candidates = 24, prior_weight = 1.0,
  consider_endpoints = false, consider_magic_clip = true, normalize_kernels = false,
  multivariate = false,
}

--- tpe.gamma(n) -> how many of n finished trials count as good (Optuna's default_gamma)
function M.gamma(n) return math.min(math.ceil(0.1 * n), 25) end

--- tpe.weights(n) -> {w1..wn}: older observations weigh less once there are more than 25
function M.weights(n)
  local w = {}
  if n < 25 then
    for i = 1, n do w[i] = 1.0 end
    return w
  end
  local ramp = n - 25
  for i = 1, ramp do -- numpy.linspace(1/n, 1, ramp)
    w[i] = ramp == 1 and 1 / n or (1 / n + (1 - 1 / n) * (i - 1) / (ramp - 1))
  end
  for i = ramp + 1, n do w[i] = 1.0 end
  return w
end

-- ---- random numbers -----------------------------------------------------------------------

local Rng = {}
Rng.__index = Rng

local function splitmix(state)
  state = state + 0x9E3779B97F4A7C15
  local z = state
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return state, z ~ (z >> 31)
end

--- tpe.rng(...) -> a generator seeded with the integers given (SplitMix64)
function M.rng(...)
  local state = 0x6A09E667F3BCC908
  for i = 1, select("#", ...) do
    local v = math.tointeger(select(i, ...)) or 0
    local _, mixed = splitmix(state ~ v)
    state = mixed
  end
  return setmetatable({ state = state }, Rng)
end

--- rng:uniform() -> float in [0, 1)
function Rng:uniform()
  local z
  self.state, z = splitmix(self.state)
  return (z >> 11) * (1.0 / 9007199254740992.0)
end

--- rng:integer(a, b) -> integer in [a, b]
function Rng:integer(a, b)
  return a + math.min(b - a, math.floor(self:uniform() * (b - a + 1)))
end

--- rng:normal() -> a standard normal draw (Box-Muller)
function Rng:normal()
  local u1 = self:uniform()
  while u1 <= 0 do u1 = self:uniform() end
  return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * self:uniform())
end

-- ---- the normal distribution in log space -----------------------------------------------------

local SQRT2 = math.sqrt(2)
local LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

-- log(1 + y) without losing y's digits to the rounding of 1 + y (Goldberg's correction)
local function log1p(y)
  local u = 1 + y
  if u == 1 then return y end
  return math.log(u) * y / (u - 1)
end

local SQRT_PI = math.sqrt(math.pi)

-- log erfc(x) for x >= 0, to about 1e-14, in log space (no underflow): below 2 from
-- erf(x) = 2x/sqrt(pi) exp(-x^2) sum_k (2x^2)^k / (1*3*...*(2k+1)), a series of positive
-- terms; from 2 on from the continued fraction
-- erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))),
-- evaluated by Lentz's method (at most 60 terms at x = 2, fewer further out).
local function log_erfc_pos(x)
  local x2 = x * x
  if x < 2 then
    local term, sum, k = 1, 1, 0
    repeat
      k = k + 1
      term = term * 2 * x2 / (2 * k + 1)
      sum = sum + term
    until term < 1e-17 * sum
    return log1p(-2 * x / SQRT_PI * math.exp(-x2) * sum)
  end
  local f, c, d = x, x, 0
  for k = 1, 200 do
    d = 1 / (x + 0.5 * k * d)
    c = x + 0.5 * k / c
    local delta = c * d
    f = f * delta
    if math.abs(delta - 1) < 1e-16 then break end
  end
  return -x2 - math.log(SQRT_PI * f)
end

local function erfc(x)
  if x >= 0 then return math.exp(log_erfc_pos(x)) end
  return 2 - math.exp(log_erfc_pos(-x))
end

local function ndtr(a) return 0.5 * erfc(-a / SQRT2) end

local function log_ndtr(a)
  if a < 0 then return math.log(0.5) + log_erfc_pos(-a / SQRT2) end
  return log1p(-0.5 * erfc(a / SQRT2))
end

-- log(exp(lp) - exp(lq)), lp >= lq
local function log_diff(lp, lq)
  if lq == -math.huge then return lp end
  local d = lq - lp
  if d >= 0 then return -math.huge end
  return lp + log1p(-math.exp(d))
end

--- tpe.log_gauss_mass(a, b) -> log P(a <= Z <= b) for a standard normal Z (a <= b)
function M.log_gauss_mass(a, b)
  if b - a < 1e-2 then -- a narrow interval: the midpoint rule is exact to O(width^3)
    local m = 0.5 * (a + b)
    return -0.5 * m * m - LOG_SQRT_2PI + math.log(b - a) + math.log(1 + (m * m - 1) * (b - a) ^ 2 / 24)
  end
  if b <= 0 then return log_diff(log_ndtr(b), log_ndtr(a)) end
  if a > 0 then return log_diff(log_ndtr(-a), log_ndtr(-b)) end
  return log1p(-ndtr(a) - ndtr(-b))
end

local function logsumexp(xs)
  local m = -math.huge
  for _, x in ipairs(xs) do if x > m then m = x end end
  if m == -math.huge then return m end
  local s = 0
  for _, x in ipairs(xs) do s = s + math.exp(x - m) end
  return m + math.log(s)
end

-- ---- numpy's argsort --------------------------------------------------------------------------

-- Equal observations (an integer parameter's, mostly) share a place in the sorted order, and
-- the kernel widths come from the gaps between sorted neighbours: of a run of equal values the
-- first gets the gap below, the last the gap above, the others the smallest width. Which
-- observation is first or last matters once observations weigh differently (more than 25).
-- Optuna takes that order from numpy.argsort's default sort, an introsort that is not stable,
-- so moonbert sorts the same way: numpy 1.24's (Debian 12's, under Optuna 3.1) median-of-3
-- quicksort over index ranges, insertion sort for ranges of up to 16, and a heapsort for a
-- range that is still unsorted after 2 * floor(log2(n)) partitions. tpe_spec.lua compares
-- the order with numpy's on arrays full of ties, and scripts/bench-tpe --check-scores the
-- sigmas it gives with Optuna's. (The order is numpy's choice, not part of TPE: other numpy
-- versions may order equal values otherwise, and Optuna with them.)

local function lt(a, b) return a < b or (b ~= b and a == a) end -- NaN sorts last

-- heapsort of idx[base + 1 .. base + n] by v[idx[.]]
local function heapsort_range(v, idx, base, n)
  local function sift(i, top, x)
    local j = 2 * i
    while j <= top do
      if j < top and lt(v[idx[base + j]], v[idx[base + j + 1]]) then j = j + 1 end
      if not lt(v[x], v[idx[base + j]]) then break end
      idx[base + i] = idx[base + j]
      i, j = j, 2 * j
    end
    idx[base + i] = x
  end
  for l = n // 2, 1, -1 do sift(l, n, idx[base + l]) end
  for top = n, 2, -1 do
    local x = idx[base + top]
    idx[base + top] = idx[base + 1]
    sift(1, top - 1, x)
  end
end

--- tpe.argsort(v) -> the 1-based indices that sort v ascending, equal values in the order
-- numpy.argsort (kind "quicksort", numpy 1.24) gives them
function M.argsort(v)
  local n = #v
  local idx = {}
  for i = 1, n do idx[i] = i end
  local floor_log2 = 0
  while (1 << (floor_log2 + 1)) <= n do floor_log2 = floor_log2 + 1 end
  local pending = {} -- ranges left to sort: {lo, hi, depth budget}
  local lo, hi, budget = 1, n, 2 * floor_log2
  while true do
    if budget < 0 then
      heapsort_range(v, idx, lo - 1, hi - lo + 1)
    else
      while hi - lo > 15 do
        local mid = lo + ((hi - lo) >> 1)
        if lt(v[idx[mid]], v[idx[lo]]) then idx[mid], idx[lo] = idx[lo], idx[mid] end
        if lt(v[idx[hi]], v[idx[mid]]) then idx[hi], idx[mid] = idx[mid], idx[hi] end
        if lt(v[idx[mid]], v[idx[lo]]) then idx[mid], idx[lo] = idx[lo], idx[mid] end
        local pivot = v[idx[mid]]
        idx[mid], idx[hi - 1] = idx[hi - 1], idx[mid]
        local i, j = lo, hi - 1
        while true do
          repeat i = i + 1 until not lt(v[idx[i]], pivot)
          repeat j = j - 1 until not lt(pivot, v[idx[j]])
          if i >= j then break end
          idx[i], idx[j] = idx[j], idx[i]
        end
        idx[i], idx[hi - 1] = idx[hi - 1], idx[i]
        budget = budget - 1
        if i - lo < hi - i then -- go on with the smaller side, the larger waits
          pending[#pending + 1] = { i + 1, hi, budget }
          hi = i - 1
        else
          pending[#pending + 1] = { lo, i - 1, budget }
          lo = i + 1
        end
      end
      for i = lo + 1, hi do
        local x = idx[i]
        local j = i
        while j > lo and lt(v[x], v[idx[j - 1]]) do idx[j] = idx[j - 1]; j = j - 1 end
        idx[j] = x
      end
    end
    local top = table.remove(pending)
    if not top then break end
    lo, hi, budget = top[1], top[2], top[3]
  end
  return idx
end

-- ---- parameters in the estimators' space ------------------------------------------------------

-- A parameter's kind and bounds where the estimators live: log space for log_uniform,
-- integers widened by 0.5 each side, choices as 1-based indices.
local function param_info(d)
  local kind, a = next(d)
  if #d > 0 then kind, a = "choice", d end
  if kind == "choice" then return { kind = "choice", choices = a, k = #a } end
  if kind == "uniform" then return { kind = "float", low = a[1], high = a[2], lo = a[1], hi = a[2] } end
  if kind == "log_uniform" then
    return { kind = "log", low = math.log(a[1]), high = math.log(a[2]), lo = a[1], hi = a[2] }
  end
  if kind == "int_uniform" then
    local lo, hi = math.ceil(a[1]), math.floor(a[2])
    return { kind = "int", low = lo - 0.5, high = hi + 0.5, lo = math.tointeger(lo), hi = math.tointeger(hi) }
  end
  error("moonbert.tpe: unknown distribution '" .. tostring(kind) .. "'", 0)
end

-- external value -> internal (nil when it is not in the space)
local function to_internal(info, v)
  if info.kind == "choice" then
    for i, c in ipairs(info.choices) do if c == v then return i end end
    return nil
  end
  if type(v) ~= "number" then return nil end
  if info.kind == "log" then return v > 0 and math.log(v) or nil end
  return v
end

local function from_internal(info, x)
  if info.kind == "choice" then return info.choices[x] end
  if info.kind == "log" then return math.min(info.hi, math.max(info.lo, math.exp(x))) end
  if info.kind == "int" then
    return math.tointeger(math.min(info.hi, math.max(info.lo, math.floor(x + 0.5))))
  end
  return x
end

-- A random value of one parameter (the startup trials).
local function draw_random(info, rng)
  if info.kind == "choice" then return info.choices[rng:integer(1, info.k)] end
  if info.kind == "int" then return math.tointeger(rng:integer(info.lo, info.hi)) end
  if info.kind == "log" then return math.exp(info.low + (info.high - info.low) * rng:uniform()) end
  return info.low + (info.high - info.low) * rng:uniform()
end

-- ---- the Parzen estimator -------------------------------------------------------------------

-- obs: internal values, oldest first. -> {weights, mus, sigmas} (numeric) or
-- {weights, rows} (choice); the last component is the prior.
local function estimator(info, obs, o)
  local n = #obs
  local w = M.weights(n)
  w[n + 1] = o.prior_weight
  local total = 0
  for i = 1, n + 1 do total = total + w[i] end
  for i = 1, n + 1 do w[i] = w[i] / total end
  local e = { weights = w }
  if info.kind == "choice" then
    local flat = o.prior_weight / (n + 1)
    e.rows = {}
    for i = 1, n + 1 do
      local row, s = {}, 0
      for c = 1, info.k do row[c] = flat + ((i <= n and obs[i] == c) and 1 or 0); s = s + row[c] end
      for c = 1, info.k do row[c] = row[c] / s end
      e.rows[i] = row
    end
    return e
  end
  local low, high = info.low, info.high
  local range = high - low
  local mus = {}
  for i = 1, n do mus[i] = obs[i] end
  mus[n + 1] = 0.5 * (low + high)
  local m = n + 1
  local order = M.argsort(mus) -- numpy's order: which of equal values gets which gap matters
  local sorted = { [0] = low }
  for j = 1, m do sorted[j] = mus[order[j]] end
  sorted[m + 1] = high
  local sig = {}
  for j = 1, m do sig[j] = math.max(sorted[j] - sorted[j - 1], sorted[j + 1] - sorted[j]) end
  if not o.consider_endpoints and m >= 2 then
    sig[1] = sorted[2] - sorted[1]
    sig[m] = sorted[m] - sorted[m - 1]
  end
  if o.sigma0 then -- multivariate: one bandwidth for all (Scott's rule, as Optuna)
    for j = 1, m do sig[j] = o.sigma0 * range end
  end
  local minsigma = o.consider_magic_clip and range / math.min(100, 1 + m) or 1e-12
  local sigmas = {}
  for j = 1, m do sigmas[order[j]] = math.min(range, math.max(minsigma, sig[j])) end
  sigmas[m] = range -- the prior
  e.mus, e.sigmas, e.normalize_kernels = mus, sigmas, o.normalize_kernels
  -- log of each component's mass inside [low, high]
  e.log_z = {}
  for i = 1, m do e.log_z[i] = M.log_gauss_mass((low - mus[i]) / sigmas[i], (high - mus[i]) / sigmas[i]) end
  return e
end

local function pick_component(e, rng)
  local u, acc = rng:uniform(), 0
  for i, w in ipairs(e.weights) do
    acc = acc + w
    if u < acc then return i end
  end
  return #e.weights
end

-- A draw from component i of the estimator, in internal space (choices: an index).
local function sample_component(info, e, i, rng)
  if info.kind == "choice" then
    local u, acc = rng:uniform(), 0
    for c, p in ipairs(e.rows[i]) do
      acc = acc + p
      if u < acc then return c end
    end
    return info.k
  end
  -- a truncated normal by rejection: mu lies in [low, high] and sigma <= the range, so at
  -- least a third of the draws are accepted
  local mu, sigma = e.mus[i], e.sigmas[i]
  for _ = 1, 1000 do
    local x = mu + sigma * rng:normal()
    if x >= info.low and x <= info.high then
      if info.kind == "int" then x = math.min(info.hi, math.max(info.lo, math.floor(x + 0.5))) end
      return x
    end
  end
  return math.min(info.high, math.max(info.low, mu))
end

-- A draw from the estimator, in internal space (choices: an index).
local function sample(info, e, rng)
  return sample_component(info, e, pick_component(e, rng), rng)
end

-- each component's log density (log mass for integers) of internal value x, unweighted
local function component_log_pdfs(info, e, x)
  local terms = {}
  if info.kind == "choice" then
    for i in ipairs(e.weights) do terms[i] = math.log(e.rows[i][x]) end
    return terms
  end
  for i in ipairs(e.weights) do
    local mu, s = e.mus[i], e.sigmas[i]
    local lp
    if info.kind == "int" then
      local lo, hi = math.max(x - 0.5, info.low), math.min(x + 0.5, info.high)
      lp = M.log_gauss_mass((lo - mu) / s, (hi - mu) / s) - e.log_z[i]
    else
      local z = (x - mu) / s
      lp = -0.5 * z * z - LOG_SQRT_2PI - e.log_z[i]
      if e.normalize_kernels then lp = lp - math.log(s) end
    end
    terms[i] = lp
  end
  return terms
end

-- log density (log mass for integers) of internal value x under the estimator
-- (an integer's or a choice's is kept: the candidates repeat the few values there are)
local function log_pdf(info, e, x)
  local discrete = info.kind == "int" or info.kind == "choice"
  if discrete and e.memo and e.memo[x] then return e.memo[x] end
  local terms = component_log_pdfs(info, e, x)
  for i, w in ipairs(e.weights) do terms[i] = terms[i] + math.log(w) end
  local lp = logsumexp(terms)
  if discrete then
    e.memo = e.memo or {}
    e.memo[x] = lp
  end
  return lp
end

--- tpe.parzen(distribution, values [, opts]) -> estimator: the Parzen estimator that suggest
-- fits to some observed values (oldest first) of one parameter. estimator.weights, .mus,
-- .sigmas (in the estimator's space: log space for log_uniform; the prior last);
-- estimator:log_pdf(value) (log mass for integers, log density in the estimator's space
-- otherwise); estimator:sample(rng) -> a value. For tests and for seeing what TPE believes.
function M.parzen(d, values, opts)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  local info = param_info(d)
  local obs = {}
  for i, v in ipairs(values) do
    obs[i] = to_internal(info, v)
    if obs[i] == nil then error("moonbert.tpe.parzen: value " .. tostring(v) .. " is outside the distribution", 2) end
  end
  local e = estimator(info, obs, o)
  e.log_pdf = function(self, v) return log_pdf(info, self, to_internal(info, v)) end
  e.sample = function(self, rng) return from_internal(info, sample(info, self, rng)) end
  return e
end

-- ---- splitting the history and suggesting ------------------------------------------------------

--- tpe.split(history, mode) -> good, bad: arrays of history indices, oldest first
-- Ranked by (completed before pruned, pruned by larger step first, then by value), ties
-- kept in history order; the first gamma(n) are good.
function M.split(history, mode)
  local sign = mode == "max" and -1 or 1
  local keys = {}
  for i, h in ipairs(history) do
    local stage, loss
    if h.state == "pruned" then
      if h.value == nil then stage, loss = 1, 0
      else stage, loss = -(h.step or 0), h.value ~= h.value and math.huge or sign * h.value end
    else
      stage, loss = -math.huge, sign * h.value
    end
    keys[i] = { stage = stage, loss = loss, i = i }
  end
  table.sort(keys, function(a, b)
    if a.stage ~= b.stage then return a.stage < b.stage end
    if a.loss ~= b.loss then return a.loss < b.loss end
    return a.i < b.i
  end)
  local n_good = M.gamma(#history)
  local good, bad = {}, {}
  for j, k in ipairs(keys) do
    if j <= n_good then good[#good + 1] = k.i else bad[#bad + 1] = k.i end
  end
  table.sort(good)
  table.sort(bad)
  return good, bad
end

local function sorted_names(space)
  local names = {}
  for k in pairs(space) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- The history entries that count: completed with a finite value, or pruned.
local function usable(history)
  local out = {}
  for _, h in ipairs(history) do
    local state = h.state or "completed"
    if state == "pruned" then out[#out + 1] = h
    elseif state == "completed" and type(h.value) == "number" and h.value == h.value then out[#out + 1] = h end
  end
  return out
end

--- tpe.suggest(space, history, opts) -> {name = value}
-- space: name = {uniform = {lo, hi}} | {log_uniform = {lo, hi}} | {int_uniform = {lo, hi}} |
-- {choice = {...}} (or a plain list of choices). history: finished trials, oldest first:
-- {params = {...}, value = number, state = "completed" (default) | "pruned" | "failed",
-- step = the last resource of a pruned trial}; failed ones and values that are not numbers
-- are ignored. opts: seed (0), trial (#history + 1: numbers the random stream), attempt (0:
-- another stream for the same trial, to draw again), mode ("min" | "max"), and the
-- settings in tpe.defaults.
function M.suggest(space, history, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  local hist = usable(history or {})
  local rng = M.rng(o.seed or 0, o.trial or (#(history or {}) + 1), o.attempt or 0)
  local names = sorted_names(space)
  local point = {}
  local n = #hist
  if n < o.n_startup_trials or n == 0 then
    for _, name in ipairs(names) do
      local info = param_info(space[name])
      point[name] = (info.kind ~= "choice" and info.lo == info.hi) and info.lo or draw_random(info, rng)
    end
    return point
  end
  local good, bad = M.split(hist, o.mode or "min")
  if o.multivariate then return M._suggest_joint(space, names, hist, good, bad, o, rng) end
  for _, name in ipairs(names) do
    local info = param_info(space[name])
    if info.kind ~= "choice" and info.lo == info.hi then
      point[name] = info.lo
    else
      local function observations(idx)
        local obs = {}
        for _, i in ipairs(idx) do
          local x = to_internal(info, hist[i].params[name])
          if x ~= nil then obs[#obs + 1] = x end
        end
        return obs
      end
      local l = estimator(info, observations(good), o)
      local g = estimator(info, observations(bad), o)
      local best, best_score
      for _ = 1, o.n_ei_candidates do
        local x = sample(info, l, rng)
        local score = log_pdf(info, l, x) - log_pdf(info, g, x)
        if best_score == nil or score > best_score then best, best_score = x, score end
      end
      point[name] = from_internal(info, best)
    end
  end
  return point
end

-- The joint estimator over the free parameters for some rows (internal values by name):
-- one estimator per parameter, all with sigma0 = tpe.scott_sigma0(#rows, #free).
local function joint_estimator(infos, free, rows, o)
  local oo = {}
  for k, v in pairs(o) do oo[k] = v end
  oo.sigma0 = M.scott_sigma0(#rows, #free)
  local est = {}
  for _, name in ipairs(free) do
    local obs = {}
    for j, row in ipairs(rows) do obs[j] = row[name] end
    est[name] = estimator(infos[name], obs, oo)
  end
  return est, oo.sigma0
end

local function joint_log_pdf(infos, free, est, x)
  local total
  for _, name in ipairs(free) do
    local terms = component_log_pdfs(infos[name], est[name], x[name])
    if not total then total = terms
    else for i = 1, #terms do total[i] = total[i] + terms[i] end end
  end
  local weights = est[free[1]].weights
  for i, w in ipairs(weights) do total[i] = total[i] + math.log(w) end
  return logsumexp(total)
end

--- tpe.scott_sigma0(n, d) -> 0.2 * max(n, 1)^(-1/(d+4)): the multivariate kernel width, as a
-- fraction of each parameter's range, for n observations of d parameters (Scott's rule, as
-- Optuna's _ParzenEstimator._precompute_sigmas0).
function M.scott_sigma0(n, d) return 0.2 * math.max(n, 1) ^ (-1 / (d + 4)) end

--- tpe.joint_parzen(space, points [, opts]) -> estimator: the multivariate Parzen estimator
-- that suggest fits (multivariate = true) to some observed points (oldest first, each a
-- {name = value} with every parameter of space). estimator.sigma0, .mus[name], .sigmas[name]
-- (the estimators' space, the prior last), .weights; estimator:log_pdf(point). For tests.
function M.joint_parzen(space, points, opts)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  local names, infos = sorted_names(space), {}
  for _, name in ipairs(names) do infos[name] = param_info(space[name]) end
  local rows = {}
  for i, p in ipairs(points) do
    rows[i] = {}
    for _, name in ipairs(names) do
      rows[i][name] = to_internal(infos[name], p[name])
      if rows[i][name] == nil then error("moonbert.tpe.joint_parzen: " .. name .. " of point " .. i .. " is outside the space", 2) end
    end
  end
  local est, sigma0 = joint_estimator(infos, names, rows, o)
  local e = { sigma0 = sigma0, mus = {}, sigmas = {}, weights = est[names[1]].weights }
  for _, name in ipairs(names) do e.mus[name], e.sigmas[name] = est[name].mus, est[name].sigmas end
  function e.log_pdf(_, point)
    local x = {}
    for _, name in ipairs(names) do x[name] = to_internal(infos[name], point[name]) end
    return joint_log_pdf(infos, names, est, x)
  end
  return e
end

-- Multivariate TPE (Optuna's multivariate = true, after Falkner et al.'s BOHB): one mixture
-- over all parameters at once, each component a product of one kernel per parameter around
-- one finished trial, with one bandwidth sigma0 * range per group (Scott's rule,
-- sigma0 = 0.2 * n^(-1 / (d + 4))), magic-clipped as above; the prior is the product of the
-- priors. Candidates pick a component and draw every parameter from it, so correlations
-- between parameters of good trials are kept. Only trials that have every parameter count.
function M._suggest_joint(space, names, hist, good, bad, o, rng)
  local infos, free = {}, {}
  local point = {}
  for _, name in ipairs(names) do
    infos[name] = param_info(space[name])
    local info = infos[name]
    if info.kind ~= "choice" and info.lo == info.hi then point[name] = info.lo
    else free[#free + 1] = name end
  end
  if #free == 0 then return point end
  local function group(idx)
    local rows = {}
    for _, i in ipairs(idx) do
      local row, ok = {}, true
      for _, name in ipairs(free) do
        row[name] = to_internal(infos[name], hist[i].params[name])
        if row[name] == nil then ok = false end
      end
      if ok then rows[#rows + 1] = row end
    end
    return (joint_estimator(infos, free, rows, o))
  end
  local l, g = group(good), group(bad)
  local best, best_score
  for _ = 1, o.n_ei_candidates do
    local i = pick_component(l[free[1]], rng)
    local x = {}
    for _, name in ipairs(free) do x[name] = sample_component(infos[name], l[name], i, rng) end
    local score = joint_log_pdf(infos, free, l, x) - joint_log_pdf(infos, free, g, x)
    if best_score == nil or score > best_score then best, best_score = x, score end
  end
  for _, name in ipairs(free) do point[name] = from_internal(infos[name], best[name]) end
  return point
end

return M
