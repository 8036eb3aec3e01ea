-- moonbert.fs: the few file-system helpers the Lua modules share (over LuaFileSystem).
--
--   fs.mkdir_p(dir)                 -> true | nil, message   (like mkdir -p)
--   fs.read_file(path)              -> contents | nil, message
--   fs.write_file_atomic(path, s)   -> true | nil, message   (temp file, fsync, rename: durable)
--   fs.shell_quote(s)               -> s quoted for /bin/sh
local lfs = require "lfs"

local M = {}

function M.mkdir_p(dir)
  local prefix = dir:sub(1, 1) == "/" and "/" or ""
  for part in dir:gmatch("[^/]+") do
    prefix = prefix .. part
    if not lfs.attributes(prefix, "mode") then
      local ok, err = lfs.mkdir(prefix)
      if not ok and lfs.attributes(prefix, "mode") ~= "directory" then
        return nil, "cannot create folder " .. prefix .. ": " .. tostring(err)
      end
    end
    prefix = prefix .. "/"
  end
  return true
end

function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- The one atomic write: bindings/checkpoint.c's write_file over runtime/fsutil.c (a temp file of
-- its own, fsync, rename, fsync of the folder), which checkpoints use too.
function M.write_file_atomic(path, text)
  return require("moonbert.core").checkpoint.write_file(path, text)
end

function M.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

return M
