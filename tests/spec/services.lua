-- tests/spec/services.lua: real PostgreSQL and SLURM servers for the specs (not a spec file itself).
--
--   local services = require "tests.spec.services"
--   local pg, why = services.postgres()   -- nil, reason when the server cannot start
--   pg.url                                 -- postgresql://postgres@127.0.0.1:PORT/moonbert
--   pg.new_schema()                        -- that URL with a fresh, empty schema (search_path)
--   pg.sql("SELECT ...")                   -- psql -At output
--   pg.restart(), pg.stop(), pg.start()    -- pg_ctl (stop keeps the folder, start reopens it)
--   pg.remove()                            -- stop and delete the folder
--   local slurm, why = services.slurm()    -- munged + slurmctld + slurmd
--   slurm.env                              -- "SLURM_CONF=/tmp/.../slurm.conf " to prefix commands
--   slurm.remove()
--
-- Both run on loopback in a temporary folder (tests/services/*.sh do the work; they
-- are also what a developer runs by hand).
local support = require "tests.spec.support"
local lfs = require "lfs"

local M = {}
local ROOT = lfs.currentdir()
local q = support.q

local function mktemp(tag)
  return (support.sh("mktemp -d /tmp/moonbert-" .. tag .. "-XXXXXX"):gsub("%s+$", ""))
end

local function script(name) return q(ROOT .. "/tests/services/" .. name) end

function M.postgres()
  local dir = mktemp("pg")
  local out, err, code = support.sh(script("postgres.sh") .. " start " .. q(dir))
  if code ~= 0 then
    os.execute("rm -rf " .. q(dir))
    return nil, "PostgreSQL could not start: " .. err:gsub("%s+$", "")
  end
  local pg = { url = out:match("(%S+)"), dir = dir }
  pg.port = tonumber(pg.url:match(":(%d+)/"))
  local n = 0
  function pg.sql(sql)
    local o, e, c = support.sh("env -u LD_PRELOAD psql -h 127.0.0.1 -p " .. pg.port .. " -U postgres -d moonbert -At -c " .. q(sql))
    assert(c == 0, "psql: " .. e)
    return (o:gsub("%s+$", ""))
  end
  function pg.new_schema()
    n = n + 1
    local name = "spec_" .. n
    pg.sql("CREATE SCHEMA " .. name)
    return pg.url .. "?options=-csearch_path%3D" .. name, name
  end
  function pg.restart() return support.sh(script("postgres.sh") .. " restart " .. q(dir)) end
  function pg.stop() return support.sh(script("postgres.sh") .. " stop " .. q(dir)) end
  function pg.start() return support.sh(script("postgres.sh") .. " restart " .. q(dir)) end
  function pg.remove()
    pg.stop()
    os.execute("rm -rf " .. q(dir))
  end
  return pg
end

function M.slurm()
  local dir = mktemp("slurm")
  local out, err, code = support.sh(script("slurm.sh") .. " start " .. q(dir))
  if code ~= 0 then
    support.sh(script("slurm.sh") .. " stop " .. q(dir))
    os.execute("rm -rf " .. q(dir))
    return nil, "SLURM could not start: " .. err:gsub("%s+$", "")
  end
  local s = { conf = out:match("(%S+)"), dir = dir }
  s.env = "SLURM_CONF=" .. q(s.conf) .. " "
  function s.remove()
    support.sh(script("slurm.sh") .. " stop " .. q(dir))
    os.execute("rm -rf " .. q(dir))
  end
  return s
end

return M
