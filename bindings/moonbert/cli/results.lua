-- moonbert results: list, show, compare, best, export and delete runs of the results store; gc.
--
-- Reads the store through mb.store (never creates one: a missing file is an
-- error). Opening it reaps dead runs, so a run whose process died shows up
-- as killed here rather than running forever. Exit codes: 0 ok, 1 a store or
-- run that does not exist (message on stderr), 2 a usage error.
local args = require "moonbert.args"

local STATUSES = { "running", "completed", "failed", "killed", "pruned", "interrupted" }

local SPEC = {
  { "--store", "PATH", "results store: a SQLite file or postgresql://user@host:port/db (default: $MOONBERT_STORE, else results/moonbert.db)",
    default = require("moonbert.store").default_path },
  { "--experiment", "E", "only runs of experiment E (list, export; required by best)" },
  { "--status", "S", "only runs with status S: running, completed, failed, killed, pruned, interrupted",
    choices = STATUSES },
  { "--metric", "KEY", "metric to rank runs by (best), e.g. val/accuracy" },
  { "--mode", "MODE", "max or min (best)", default = "max", choices = { "max", "min" } },
  { "--format", "FMT", "csv or json (export)", choices = { "csv", "json" } },
  { "--output", "FILE", "write the export to FILE instead of standard output" },
  { "--stale-after", "SECONDS", "reap runs of other hosts silent this long", type = "number", default = 60 },
  { "--dry-run", nil, "delete, gc: print what would be removed, remove nothing" },
  { "--from", "STORE", "push: the store to copy runs from (default results/moonbert.db)" },
  { "--to", "STORE", "push: the store to copy them into, e.g. postgresql://user@host:port/db" },
}

local M = { summary = "list, show, compare, best and export runs from the results store" }

M.usage = args.usage(SPEC, [[
usage: moonbert results COMMAND [ARGS] [options]

commands:
  list [--experiment E] [--status S]     one line per run
  show RUN                               a run (id or UUID): provenance, params, tags, final metrics,
                                         confusion matrices, artifacts, error
  compare RUN RUN...                     params and final metrics side by side
  best --experiment E --metric KEY       the completed run with the best final value
       [--mode max|min]
  export --format csv|json               every run (filtered by --experiment/--status):
       [--output FILE]                   csv: one row per run (params, final metrics);
                                         json: runs with params, tags and metric series
  delete RUN...                          delete runs and everything logged to them (not
                                         running ones); their files go with gc
  gc                                     remove the folders of deleted runs (runs/<id>
                                         beside the store)
  push --to STORE [--from STORE]         copy the runs of one store (a node's SQLite file)
       [--experiment E]                  into another (the central PostgreSQL), each run
                                         with all it logged; runs are known by UUID, so
                                         pushing again adds nothing; running runs wait
                                         for a later push

The final value of a metric is the last one logged. Times are Unix seconds in exports.

options:]])

-- An error the user can act on: printed without a traceback, exit code 1.
local fail = args.fail

local function fmt_num(v)
  if v == nil then return "" end
  if type(v) ~= "number" then return tostring(v) end
  if v ~= v then return "nan" end
  if math.type(v) == "integer" then return tostring(v) end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
  return string.format("%.6g", v)
end

-- a parameter's value as sweeps write it (the shortest text that reads back the same number)
local fmt_param = require("moonbert.sweep").format_value

local function fmt_time(t)
  if not t then return "" end
  return os.date("%Y-%m-%d %H:%M:%S", math.floor(t))
end

local function fmt_duration(r)
  local stop = r.end_time or (r.status == "running" and require("moonbert.store").now()) or r.heartbeat
  if not stop then return "" end
  local d = stop - r.start_time
  if d < 60 then return string.format("%.1fs", d) end
  if d < 3600 then return string.format("%dm%02ds", d // 60, math.floor(d % 60)) end
  return string.format("%dh%02dm", d // 3600, math.floor(d % 3600) // 60)
end

local print_table = require("moonbert.columns").print

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function one_line(s, max)
  s = tostring(s or ""):gsub("\n.*", "")
  if #s > max then s = s:sub(1, max - 3) .. "..." end
  return s
end

local function open_store(opts)
  local mb_store = require "moonbert.store"
  local ok, store = pcall(mb_store.open, opts.store, { create = false, stale_after = opts.stale_after })
  if not ok then fail(tostring(store)) end
  return store
end

local function run_id_arg(s)
  if type(s) == "string" and s:match("^%x+%-%x+%-%x+%-%x+%-%x+$") then return s:lower() end -- a UUID
  local id = tonumber(s)
  if not id or math.type(id) ~= "integer" and id ~= math.floor(id) or id <= 0 then
    args.usage_error("run id must be a positive integer, got '" .. tostring(s) .. "'")
  end
  return math.tointeger(id)
end

local function get_run(store, id)
  local r, msg = store:get_run(id)
  if not r then fail(msg) end
  return r
end

-- ---- commands ---------------------------------------------------------------

local function cmd_list(store, opts)
  local runs = store:runs { experiment = opts.experiment, status = opts.status }
  if #runs == 0 then
    print("no runs" .. (opts.experiment and (" of experiment '" .. opts.experiment .. "'") or "") ..
          (opts.status and (" with status " .. opts.status) or "") .. " in " .. store:path())
    return 0
  end
  local rows = { { "ID", "EXPERIMENT", "NAME", "STATUS", "STARTED", "DURATION", "NOTE" } }
  for _, r in ipairs(runs) do
    rows[#rows + 1] = { tostring(r.id), r.experiment, r.name or "", r.status, fmt_time(r.start_time),
                        fmt_duration(r), r.pruned_rung and ("pruned at rung " .. r.pruned_rung) or one_line(r.error, 60) }
  end
  print_table(rows)
  return 0
end

local function print_confusion(c)
  local labels = c.labels
  local n = #c.matrix[1]
  local header = { "  true \\ predicted" }
  for j = 1, n do header[j + 1] = labels[j] or tostring(j - 1) end
  local rows = { header }
  for i, row in ipairs(c.matrix) do
    local line = { "  " .. (labels[i] or tostring(i - 1)) }
    for j = 1, n do line[j + 1] = fmt_num(row[j]) end
    rows[#rows + 1] = line
  end
  print(string.format("confusion matrix (%s%s):", c.split or "no split",
                      c.epoch and (", epoch " .. fmt_num(c.epoch)) or ""))
  print_table(rows)
end

local function cmd_show(store, opts, rest)
  if #rest ~= 1 then args.usage_error("show takes one run id (moonbert results show RUN)") end
  local r = get_run(store, run_id_arg(rest[1]))
  print(string.format("run %d  %s%s", r.id, r.experiment, r.name and (" / " .. r.name) or ""))
  local git = r.git_commit and (r.git_commit .. (r.git_dirty and " (dirty)" or r.git_dirty == false and " (clean)" or ""))
  local info = {
    { "uuid", r.uuid or "" },
    { "status", r.status .. (r.pruned_rung and (" at rung " .. r.pruned_rung) or "") },
    { "started", fmt_time(r.start_time) },
    { "ended", r.end_time and (fmt_time(r.end_time) .. "  (" .. fmt_duration(r) .. ")") or "" },
    { "seed", r.seed and tostring(r.seed) or "" },
    { "host", (r.host or "") .. (r.pid and (" (pid " .. r.pid .. ")") or "") },
    { "git", git or "" },
    { "script", r.script_path and (r.script_path .. (r.script_hash and ("  sha256 " .. r.script_hash:sub(1, 16)) or "")) or "" },
    { "dataset", r.dataset_hash or "" },
    { "model", r.model_hash or "" },
    { "device", r.device or "" },
  }
  local rows = {}
  for _, kv in ipairs(info) do if kv[2] ~= "" then rows[#rows + 1] = { "  " .. kv[1], kv[2] } end end
  print_table(rows)
  if r.error then print((r.status == "interrupted" and "interrupted:" or "error:") .. "\n  " .. r.error:gsub("\n", "\n  ")) end
  local events = store:run_events(r.id)
  if #events > 0 then
    print("events:")
    rows = {}
    for _, e in ipairs(events) do
      rows[#rows + 1] = { "  " .. fmt_time(e.time), e.kind, (e.host or "") .. (e.pid and (" (pid " .. e.pid .. ")") or ""),
                          one_line(e.message, 60) }
    end
    print_table(rows)
  end
  local params = store:params(r.id)
  if next(params) then
    print("params:")
    rows = {}
    for _, k in ipairs(sorted_keys(params)) do rows[#rows + 1] = { "  " .. k, fmt_param(params[k]) } end
    print_table(rows)
  end
  local tags = store:tags(r.id)
  if next(tags) then
    print("tags:")
    rows = {}
    for _, k in ipairs(sorted_keys(tags)) do rows[#rows + 1] = { "  " .. k, tags[k] } end
    print_table(rows)
  end
  local final = store:final_metrics(r.id)
  if next(final) then
    print("metrics (last value):")
    rows = {}
    for _, k in ipairs(sorted_keys(final)) do
      local m = final[k]
      local n = #store:metrics(r.id, k)
      local where = {}
      if m.epoch then where[#where + 1] = "epoch " .. fmt_num(m.epoch) end
      if m.step then where[#where + 1] = "step " .. m.step end
      if m.split then where[#where + 1] = m.split end
      where[#where + 1] = n .. (n == 1 and " point" or " points")
      rows[#rows + 1] = { "  " .. k, fmt_num(m.value), table.concat(where, ", ") }
    end
    print_table(rows)
  end
  for _, c in ipairs(store:confusion(r.id)) do print_confusion(c) end
  local arts = store:artifacts(r.id)
  if #arts > 0 then
    print("artifacts:")
    rows = {}
    for _, a in ipairs(arts) do rows[#rows + 1] = { "  " .. a.kind, a.path, a.hash and a.hash:sub(1, 16) or "" } end
    print_table(rows)
  end
  return 0
end

local function cmd_compare(store, opts, rest)
  if #rest < 2 then args.usage_error("compare takes two or more run ids (moonbert results compare RUN RUN...)") end
  local runs, params, finals, pkeys, mkeys = {}, {}, {}, {}, {}
  for i, s in ipairs(rest) do
    runs[i] = get_run(store, run_id_arg(s))
    params[i] = store:params(runs[i].id)
    finals[i] = store:final_metrics(runs[i].id)
    for k in pairs(params[i]) do pkeys[k] = true end
    for k in pairs(finals[i]) do mkeys[k] = true end
  end
  local header = { "" }
  for i, r in ipairs(runs) do header[i + 1] = "run " .. r.id end
  local rows = { header }
  local function add(label, get)
    local row, first, differs = { label }, nil, false
    for i = 1, #runs do
      row[i + 1] = get(i)
      if i == 1 then first = row[2] elseif row[i + 1] ~= first then differs = true end
    end
    if differs then row[1] = "* " .. label else row[1] = "  " .. label end
    rows[#rows + 1] = row
  end
  add("experiment", function(i) return runs[i].experiment end)
  add("name", function(i) return runs[i].name or "" end)
  add("status", function(i) return runs[i].status end)
  add("seed", function(i) return runs[i].seed and tostring(runs[i].seed) or "" end)
  for _, k in ipairs(sorted_keys(pkeys)) do
    add("param " .. k, function(i) return params[i][k] ~= nil and fmt_param(params[i][k]) or "-" end)
  end
  for _, k in ipairs(sorted_keys(mkeys)) do
    add("metric " .. k, function(i) return finals[i][k] and fmt_num(finals[i][k].value) or "-" end)
  end
  print_table(rows)
  print("(* marks rows that differ; metrics are last logged values)")
  return 0
end

local function cmd_best(store, opts, rest)
  if #rest > 0 then args.usage_error("best takes no positional arguments") end
  if not opts.experiment then args.usage_error("best needs --experiment E") end
  if not opts.metric then args.usage_error("best needs --metric KEY (e.g. val/accuracy)") end
  local r, msg = store:best { experiment = opts.experiment, metric = opts.metric, mode = opts.mode,
                              status = opts.status or "completed" }
  if not r then fail(msg) end
  print(string.format("run %d%s: %s = %s (%s over %s runs of '%s')", r.id, r.name and (" (" .. r.name .. ")") or "",
                      opts.metric, fmt_num(r.value), opts.mode, opts.status or "completed", opts.experiment))
  local params = store:params(r.id)
  local rows = {}
  for _, k in ipairs(sorted_keys(params)) do rows[#rows + 1] = { "  " .. k, fmt_param(params[k]) } end
  if #rows > 0 then print("params:"); print_table(rows) end
  return 0
end

local RUN_COLUMNS = { "id", "uuid", "experiment", "name", "status", "start_time", "end_time", "seed", "host", "pid",
                      "git_commit", "git_dirty", "script_path", "script_hash", "dataset_hash", "model_hash",
                      "device", "error", "pruned_rung" }

local function csv_cell(v)
  if v == nil then return "" end
  local s
  if type(v) == "number" then
    if v ~= v then s = "nan"
    elseif math.type(v) == "integer" then s = tostring(v)
    else
      s = string.format("%.15g", v)
      if tonumber(s) ~= v then s = string.format("%.17g", v) end
    end
  else
    s = tostring(v)
  end
  if s:find('[,"\r\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function cmd_export(store, opts, rest)
  if #rest > 0 then args.usage_error("export takes no positional arguments") end
  if not opts.format then args.usage_error("export needs --format csv or --format json") end
  local runs = store:runs { experiment = opts.experiment, status = opts.status }
  local text
  if opts.format == "json" then
    local out = {}
    for i, r in ipairs(runs) do
      r.params = store:params(r.id)
      r.tags = store:tags(r.id)
      r.metrics, r.final_metrics = {}, {}
      for _, m in ipairs(store:metrics(r.id)) do
        local series = r.metrics[m.key] or {}
        r.metrics[m.key] = series
        series[#series + 1] = { value = m.value, step = m.step, epoch = m.epoch, split = m.split, time = m.time }
        r.final_metrics[m.key] = m.value
      end
      r.confusion = store:confusion(r.id)
      r.artifacts = store:artifacts(r.id)
      out[i] = r
    end
    text = args.json(out, { indent = true }) .. "\n" -- keys in a stable order
    if #out == 0 then text = "[]\n" end
  else
    local params, finals, pkeys, mkeys = {}, {}, {}, {}
    for i, r in ipairs(runs) do
      params[i], finals[i] = store:params(r.id), store:final_metrics(r.id)
      for k in pairs(params[i]) do pkeys[k] = true end
      for k in pairs(finals[i]) do mkeys[k] = true end
    end
    pkeys, mkeys = sorted_keys(pkeys), sorted_keys(mkeys)
    local header = {}
    for _, c in ipairs(RUN_COLUMNS) do header[#header + 1] = csv_cell(c) end
    for _, k in ipairs(pkeys) do header[#header + 1] = csv_cell("param:" .. k) end
    for _, k in ipairs(mkeys) do header[#header + 1] = csv_cell("metric:" .. k) end
    local lines = { table.concat(header, ",") }
    for i, r in ipairs(runs) do
      local cells = {}
      for _, c in ipairs(RUN_COLUMNS) do
        local v = r[c]
        if type(v) == "boolean" then v = v and 1 or 0 end
        cells[#cells + 1] = csv_cell(v)
      end
      for _, k in ipairs(pkeys) do cells[#cells + 1] = csv_cell(params[i][k]) end
      for _, k in ipairs(mkeys) do cells[#cells + 1] = csv_cell(finals[i][k] and finals[i][k].value) end
      lines[#lines + 1] = table.concat(cells, ",")
    end
    text = table.concat(lines, "\r\n") .. "\r\n" -- RFC 4180 line ends
  end
  if opts.output then
    local f, err = io.open(opts.output, "wb")
    if not f then fail("cannot write " .. tostring(err)) end
    f:write(text)
    f:close()
    io.stderr:write(string.format("wrote %d runs to %s\n", #runs, opts.output))
  else
    io.stdout:write(text)
  end
  return 0
end

local function cmd_delete(store, opts, rest)
  if #rest == 0 then args.usage_error("delete takes one or more run ids (moonbert results delete RUN...)") end
  local runs = {}
  for i, s in ipairs(rest) do
    runs[i] = get_run(store, run_id_arg(s)) -- every id checked before anything is deleted
    if runs[i].status == "running" then
      fail(string.format("run %d is running: stop it first (or wait for it to end); nothing deleted", runs[i].id))
    end
  end
  for _, r in ipairs(runs) do
    if not opts.dry_run then store:delete_run(r.id) end
    print(string.format("%s run %d (%s, %s)", opts.dry_run and "would delete" or "deleted", r.id, r.experiment, r.status))
  end
  if not opts.dry_run then print("their files stay until `moonbert results gc`") end
  return 0
end

-- Bytes below path (files only).
local function tree_size(path)
  local lfs = require "lfs"
  local a = lfs.symlinkattributes(path)
  if not a then return 0 end
  if a.mode ~= "directory" then return a.size or 0 end
  local n = 0
  for name in lfs.dir(path) do
    if name ~= "." and name ~= ".." then n = n + tree_size(path .. "/" .. name) end
  end
  return n
end

local function cmd_gc(store, opts, rest)
  if #rest > 0 then args.usage_error("gc takes no positional arguments") end
  local lfs = require "lfs"
  local base = store:artifact_root() .. "/runs"
  if lfs.attributes(base, "mode") ~= "directory" then
    print("nothing to remove: no run folders in " .. base)
    return 0
  end
  local live = {}
  for _, r in ipairs(store:runs {}) do live[r.id] = true end
  local gone, bytes = {}, 0
  for name in lfs.dir(base) do
    local id = math.tointeger(tonumber(name:match("^(%d+)$")))
    if id and not live[id] then gone[#gone + 1] = id end
  end
  table.sort(gone)
  for _, id in ipairs(gone) do
    local dir = base .. "/" .. id
    local size = tree_size(dir)
    bytes = bytes + size
    if not opts.dry_run then require("moonbert.checkpoint").rmtree(dir) end
    print(string.format("%s %s (%.1f MB)", opts.dry_run and "would remove" or "removed", dir, size / 1e6))
  end
  print(string.format("%d folder%s of deleted runs, %.1f MB%s", #gone, #gone == 1 and "" or "s", bytes / 1e6,
    opts.dry_run and " (dry run)" or " freed"))
  return 0
end

-- push: copy runs between stores, idempotently (runs are matched by UUID).
local function cmd_push(opts, rest)
  if #rest > 0 then args.usage_error("push takes no positional arguments") end
  if not opts.to then args.usage_error("push needs --to STORE (e.g. postgresql://user@host:port/db)") end
  local from_path = opts.from or "results/moonbert.db"
  local mb_store = require "moonbert.store"
  local src, dst
  local ok, rc = pcall(function()
    local okf, s = pcall(mb_store.open, from_path, { create = false, stale_after = opts.stale_after })
    if not okf then fail(tostring(s)) end
    src = s
    local okt, d = pcall(mb_store.open, opts.to, { stale_after = opts.stale_after })
    if not okt then fail(tostring(d)) end
    dst = d
    if src:path() == dst:path() then fail("--from and --to are the same store (" .. src:path() .. ")") end
    local runs = src:runs { experiment = opts.experiment }
    local copied, present, waiting = 0, 0, 0
    local bar = #runs > 20 and require("moonbert.progress").new { total = #runs, label = "push" } or nil
    for _, r in ipairs(runs) do
      if r.status == "running" or r.status == "interrupted" then
        waiting = waiting + 1 -- pushed by a later push, once it has ended
      else
        local okc, _, was_copied = pcall(src.copy_run, src, r.id, dst)
        if not okc then fail(tostring(_)) end
        if was_copied then copied = copied + 1 else present = present + 1 end
      end
      if bar then bar:advance(1) end
    end
    if bar then bar:done() end
    print(string.format("pushed %d run%s from %s to %s (%d already there, %d still running: push again when they end)",
                        copied, copied == 1 and "" or "s", src:path(), dst:path(), present, waiting))
    return 0
  end)
  if src then src:close() end
  if dst then dst:close() end
  if not ok then error(rc, 0) end
  return rc
end

local COMMANDS = { list = cmd_list, show = cmd_show, compare = cmd_compare, best = cmd_best, export = cmd_export,
                   delete = cmd_delete, gc = cmd_gc }

function M.main(argv)
  local opts, rest = args.parse(argv, SPEC)
  local sub = table.remove(rest, 1)
  if not sub then args.usage_error("which command? list, show, compare, best, export, delete, gc or push (--help explains)") end
  if sub == "push" then return cmd_push(opts, rest) end
  local cmd = COMMANDS[sub]
  if not cmd then args.usage_error("unknown command '" .. sub .. "' (list, show, compare, best, export, delete, gc, push)") end
  local store
  local ok, rc = pcall(function()
    store = open_store(opts)
    return cmd(store, opts, rest)
  end)
  if store then store:close() end
  if not ok then error(rc, 0) end -- after closing the store; the dispatcher prints args.fail's message
  return rc
end

return M
