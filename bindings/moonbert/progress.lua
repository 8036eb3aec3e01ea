-- moonbert.progress: progress for long loops that are not training (features, predictions).
--
--   local p = progress.new{label = "features train", total = #split}
--   for ... do ...; p:advance(batch_size) end
--   p:done()
--
-- On a terminal (stderr) it redraws one line with count, rate and ETA; otherwise it writes a
-- plain line at every 10% so that logs stay short. The trainer has its own bar (loss, lr).
local M = {}

local function now()
  local ok, system = pcall(require, "system")   -- lua-system (a busted dependency) has a monotonic clock
  if ok and system.monotime then return system.monotime() end
  return os.time()
end

function M.stderr_is_terminal()
  local term = os.getenv("TERM")
  if not term or term == "" or term == "dumb" then return false end
  return os.execute("test -t 2") == true
end

local Progress = {}
Progress.__index = Progress

local function fmt_time(s)
  if s ~= s or s < 0 or s == math.huge then return "--:--" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return string.format("%02d:%02d", s // 60, s % 60)
end

function M.new(o)
  local mode = o.mode
  if mode == nil then mode = M.stderr_is_terminal() and "bar" or "log" end
  return setmetatable({ label = o.label or "", total = o.total or 0, unit = o.unit or "ex", count = 0,
                        start = now(), last = -1, next_log = 0.1, mode = mode, out = o.out or io.stderr }, Progress)
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
    local width = 24
    local filled = math.floor(width * frac)
    self.out:write(string.format("\r%s [%s%s] %d/%d %.0f %s/s ETA %s  ", self.label, string.rep("=", filled),
      string.rep(" ", width - filled), self.count, self.total, rate, self.unit, fmt_time(eta)))
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

return M
