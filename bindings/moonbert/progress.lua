-- moonbert.progress: the one progress display for long work, on stderr.
--
--   local p = progress.new{label = "features train", total = #split}   -- counted work
--   for ... do ...; p:advance(batch_size) end
--   p:done()
--
--   local p = progress.training{mode = nil, out = io.stderr, log_every = 10}   -- mb.trainer.fit's
--   p:update{epoch=, epochs=, step=, total=, k=, nbatches=, loss=, lr=, grad_norm=, tokens_per_s=, eta=}
--   p:eval_tick(k, n); p:end_epoch(); p:line("[train] ...")
--
-- mode: nil picks "bar" on a terminal (stderr), else "log"; false is silent. A bar redraws one
-- line (at most every 0.1 s); a log writes plain lines: counted work at every 10%, training
-- every log_every steps and at each epoch's end, so that logs stay short.
-- Also progress.fmt_time(seconds) ("mm:ss" / "h:mm:ss") and progress.stderr_is_terminal().
local M = {}

local function now() return require("moonbert.core").store.now() end

--- stderr is a terminal: TERM set (not "dumb") and `test -t 2` in a shell that inherits our stderr.
function M.stderr_is_terminal()
  local term = os.getenv("TERM")
  if not term or term == "" or term == "dumb" then return false end
  return os.execute("test -t 2") == true
end

--- Seconds as "mm:ss" or "h:mm:ss"; "--:--" for a time not known yet (NaN, inf, negative).
function M.fmt_time(s)
  if s ~= s or s < 0 or s == math.huge then return "--:--" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return string.format("%02d:%02d", s // 60, s % 60)
end
local fmt_time = M.fmt_time

local function pick_mode(mode)
  if mode == nil then return M.stderr_is_terminal() and "bar" or "log" end
  return mode
end

local function bar(width, frac)
  local filled = math.floor(width * frac)
  return string.rep("=", filled) .. string.rep(" ", width - filled)
end

-- ---- counted work ------------------------------------------------------------------------------

local Progress = {}
Progress.__index = Progress

function M.new(o)
  return setmetatable({ label = o.label or "", total = o.total or 0, unit = o.unit or "ex", count = 0,
                        start = now(), last = -1, next_log = 0.1, mode = pick_mode(o.mode), out = o.out or io.stderr },
                      Progress)
end

function Progress:advance(n)
  self.count = self.count + (n or 1)
  if self.mode == false or self.total <= 0 then return end
  local t = now()
  local frac = math.min(1, self.count / self.total)
  local rate = self.count / math.max(t - self.start, 1e-9)
  local eta = (self.total - self.count) / math.max(rate, 1e-9)
  if self.mode == "bar" then
    if t - self.last < 0.1 and self.count < self.total then return end
    self.last = t
    self.out:write(string.format("\r%s [%s] %d/%d %.0f %s/s ETA %s  ", self.label, bar(24, frac), self.count,
      self.total, rate, self.unit, fmt_time(eta)))
  elseif frac >= self.next_log or self.count >= self.total then
    while self.next_log <= frac do self.next_log = self.next_log + 0.1 end
    self.out:write(string.format("[%s] %d/%d (%d%%) %.0f %s/s ETA %s\n", self.label, self.count, self.total,
      math.floor(100 * frac + 0.5), rate, self.unit, fmt_time(eta)))
  end
  self.out:flush()
end

function Progress:done()
  if self.mode == "bar" then self.out:write("\n"); self.out:flush() end
end

-- ---- training ------------------------------------------------------------------------------------

local Training = {}
Training.__index = Training

function M.training(o)
  return setmetatable({ mode = pick_mode(o.mode), out = o.out or io.stderr, log_every = o.log_every, last = 0,
                        smooth = nil, beta = 0.98, updates = 0 }, Training)
end

-- s: epoch, epochs, step, total, k, nbatches, loss, lr, grad_norm, tokens_per_s, eta
function Training:update(s)
  -- bias-corrected exponential moving average of the loss
  self.updates = self.updates + 1
  self.smooth = (self.smooth or 0) * self.beta + (1 - self.beta) * s.loss
  local smooth = self.smooth / (1 - self.beta ^ self.updates)
  if self.mode == "bar" then
    local t = now()
    if t - self.last < 0.1 and s.k < s.nbatches then return end
    self.last = t
    self.out:write(string.format("\repoch %d/%d [%s] %d/%d loss %.4f %.0f tok/s ETA %s  ", s.epoch, s.epochs,
      bar(24, s.k / s.nbatches), s.step, s.total, smooth, s.tokens_per_s, fmt_time(s.eta)))
    self.out:flush()
    self.open = true
  elseif self.mode == "log" and (s.step % self.log_every == 0 or s.k == s.nbatches or s.step == s.total) then
    self.out:write(string.format("[train] epoch %d/%d step %d/%d loss %.4f lr %.3g grad_norm %.3g %.0f tok/s ETA %s\n",
      s.epoch, s.epochs, s.step, s.total, smooth, s.lr, s.grad_norm, s.tokens_per_s, fmt_time(s.eta)))
    self.out:flush()
  end
end

-- "evaluating k/n" on the bar's line while an evaluation runs (terminal only)
function Training:eval_tick(k, n)
  if self.mode ~= "bar" then return end
  local t = now()
  if t - self.last < 0.1 and k < n then return end
  self.last = t
  self.out:write(string.format("\r[eval] batch %d/%d%s", k, n, string.rep(" ", 40)))
  self.out:flush()
  self.open = true
end

-- The epoch's last bar stays on screen.
function Training:end_epoch()
  if self.open then self.out:write("\n"); self.open = false end
end

-- A message line; it replaces a transient line (eval batches) on a terminal.
function Training:line(text)
  if self.mode == false then return end
  if self.open then self.out:write("\r", string.rep(" ", 79), "\r"); self.open = false end
  self.out:write(text, "\n")
  self.out:flush()
end

return M
