-- attnlab.run_dir: a run's directory -- a fresh one under runs/<name>/, refusing one that already
-- holds a run (unless the run resumes in it, or --force deletes the old run's files), and the
-- files-and-directories helpers run.lua needs.  docs/run-directory.md states what goes in it.
local lab = require "attnlab"
local core = require "attnlab.core"
local json = require "attnlab.json"
local ffi = require "ffi"

local M = {}

local function fail(msg) core.raise("run: " .. msg) end

-- what a run writes into its directory: a directory holding any of these holds a run, and --force
-- deletes exactly these (a script's own files, a table.md say, are overwritten by the new run or left)
local RUN_FILES = { "config.json", "metrics.jsonl", "records.bin", "summary.json", "status.json",
                    "checkpoint.safetensors", "final.safetensors", "commands" }

pcall(ffi.cdef, "int mkdir(const char *path, unsigned int mode);")
pcall(ffi.cdef, "char *realpath(const char *path, char *resolved_path);")

local function mkdir_p(dir)
  local prefix = dir:sub(1, 1) == "/" and "/" or ""
  for part in dir:gmatch("[^/]+") do
    prefix = prefix .. part
    if ffi.C.mkdir(prefix, 493) ~= 0 and ffi.errno() ~= 17 then -- 0755; 17 = EEXIST
      fail("cannot create directory '" .. prefix .. "' (errno " .. ffi.errno() .. ")")
    end
    prefix = prefix .. "/"
  end
end

local exists = core.file_exists

-- The canonical path of an existing directory (symlinks, "." and ".." resolved), else the path.
local function canonical(path)
  local buf = ffi.new("char[?]", 4097)
  if ffi.C.realpath(path, buf) == nil then return path end
  return ffi.string(buf)
end

-- The run files present in dir, in RUN_FILES order ({} when none).
local function run_files_in(dir)
  local found = {}
  for _, f in ipairs(RUN_FILES) do
    if f ~= "commands" and exists(dir .. "/" .. f) then found[#found + 1] = f end
  end
  return found
end

local function random_hex4()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(2)
  if f then f:close() end
  if bytes and #bytes == 2 then return string.format("%02x%02x", bytes:byte(1, 2)) end
  -- not lab's RNG: drawing from it would shift the seeded stream of the experiment
  return string.format("%04x", math.floor((lab.time() * 1e6) % 65536))
end

-- When a resumed run writes into its checkpoint's directory, metrics logged after the checkpoint
-- (by a run that crashed rather than stopped cleanly) would repeat; drop them.
local function truncate_metrics(path, last_step)
  local f = io.open(path, "rb")
  if not f then return end
  local kept = {}
  for line in f:lines() do
    local ok, rec = pcall(json.decode, line)
    if ok and type(rec) == "table" and type(rec.step) == "number" and rec.step <= last_step then
      kept[#kept + 1] = line .. "\n"
    end
  end
  f:close()
  lab.write_file_atomic(path, table.concat(kept))
end

-- Refuses a directory that already holds a run, unless this run resumes from a checkpoint in it
-- (it continues in place) or force says to start afresh (the old run's files are deleted first).
local function claim_dir(dir, force, resume_dir)
  local found = run_files_in(dir)
  if #found == 0 then return end
  local in_place = resume_dir ~= nil and canonical(dir) == canonical(resume_dir)
  if in_place and force then
    fail(string.format("--force starts afresh, but resume= continues the run in '%s': give one of them", dir))
  end
  if in_place then return end
  if not force then
    local has_ckpt = exists(dir .. "/checkpoint.safetensors")
    fail(string.format("'%s' already holds a run (%s): give another --out, %sor --force to delete that run's files and start afresh",
      dir, found[1] .. (#found > 1 and " and more" or ""),
      has_ckpt and "continue it with resume=" .. dir .. "/checkpoint.safetensors, " or ""))
  end
  for _, f in ipairs(RUN_FILES) do
    local path = dir .. "/" .. f
    if exists(path) then
      local ok, err = os.remove(path)
      if not ok then fail("--force: cannot delete '" .. path .. "': " .. tostring(err)) end
    end
  end
end

-- A new directory's path for a run named name: runs/<name>/<date>-<time>-<4 hex digits>, one that
-- holds no run yet (not made here: mkdir_p does, once the directory is claimed).
function M.fresh(name)
  local base = "runs/" .. name .. "/" .. os.date("%Y%m%d-%H%M%S") .. "-"
  local dir
  repeat dir = base .. random_hex4() until not exists(dir .. "/config.json")
  return dir
end

M.mkdir_p, M.exists, M.truncate_metrics, M.claim_dir = mkdir_p, exists, truncate_metrics, claim_dir
return M
