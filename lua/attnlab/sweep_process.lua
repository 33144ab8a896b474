-- attnlab.sweep_process: child processes for the sweep -- start one with its output going to a
-- file, ask without blocking whether it has ended, run a command and read what it printed.
--
-- posix_spawn, not fork: the sweeping process has the attnlab core loaded (OpenMP, OpenBLAS), and
-- a forked copy of a process with threads must not run their code (lua/viewer_launch.c spawns the
-- viewer the same way).  The child is /bin/sh, which changes directory, redirects, and execs the command,
-- so the pid returned is the command's own; the arguments travel as sh's positional parameters,
-- never pasted into the shell text, so no quoting can go wrong.
local ffi = require "ffi"
local bit = require "bit"

local M = {}

for _, decl in ipairs{
  "int posix_spawn(int *pid, const char *path, const void *file_actions, const void *attrp, char *const argv[], char *const envp[]);",
  "int waitpid(int pid, int *status, int options);",
  "int kill(int pid, int sig);",
  "long sysconf(int name);",
  "int gethostname(char *name, size_t len);",
  "int access(const char *path, int mode);",
  "int poll(void *fds, unsigned long nfds, int timeout);",
  "int getpid(void);",
  "extern char **environ;",
} do pcall(ffi.cdef, decl) end

local WNOHANG = 1
local SC_NPROCESSORS_ONLN = 84   -- glibc's value on Linux
local X_OK = 1
local ESRCH = 3

-- The text after `sh -c`: $1 the directory, $2 stdout's file, $3 stderr's file ("" = the same as
-- stdout), $4 "a" to append; the command follows.  stdin is /dev/null: a point never reads the
-- terminal the sweep was started from.
local SHELL = 'cd "$1" || exit 126; out=$2; err=$3; app=$4; shift 4; '
  .. 'if [ "$app" = a ]; then exec 1>>"$out"; else exec 1>"$out"; fi; '
  .. 'if [ -n "$err" ]; then exec 2>"$err"; else exec 2>&1; fi; exec "$@" </dev/null'

-- Starts argv (a list of strings; argv[1] found on PATH by sh's exec) in opts.cwd (default "."),
-- stdout to opts.stdout (default /dev/null, appended when opts.append), stderr to opts.stderr
-- (default: with stdout).  Returns the pid, or nil and why.
function M.spawn(argv, opts)
  opts = opts or {}
  local args = { "/bin/sh", "-c", SHELL, "sh", opts.cwd or ".", opts.stdout or "/dev/null", opts.stderr or "",
                 opts.append and "a" or "w" }
  for _, a in ipairs(argv) do args[#args + 1] = tostring(a) end
  local cargs = ffi.new("char *[?]", #args + 1)
  for i, a in ipairs(args) do cargs[i - 1] = ffi.cast("char *", a) end -- `args` keeps the strings alive
  local pid = ffi.new("int[1]")
  local rc = ffi.C.posix_spawn(pid, "/bin/sh", nil, nil, cargs, ffi.C.environ)
  if rc ~= 0 then return nil, string.format("cannot start %s (posix_spawn error %d)", tostring(argv[1]), rc) end
  return pid[0]
end

-- Has pid ended?  nil while it runs; else its exit code (128 + the signal if a signal ended it) and
-- the signal (nil for a normal exit).  Collects the child, so call it until it answers.
function M.ended(pid)
  local status = ffi.new("int[1]")
  local r = ffi.C.waitpid(pid, status, WNOHANG)
  if r == 0 then return nil end
  if r < 0 then return 255, nil end -- not our child any more: nothing more can be known
  local s = status[0]
  local sig = bit.band(s, 0x7f)
  if sig == 0 then return bit.band(bit.rshift(s, 8), 0xff), nil end
  return 128 + sig, sig
end

-- Waits for pid (polling every 50 ms, so that a caught Ctrl-C is noticed); returns as ended().
function M.wait(pid)
  while true do
    local code, sig = M.ended(pid)
    if code then return code, sig end
    M.sleep(50)
  end
end

-- Is a process with this pid alive (on this machine)?
function M.alive(pid)
  if type(pid) ~= "number" or pid <= 0 then return false end
  if ffi.C.kill(pid, 0) == 0 then return true end
  return ffi.errno() ~= ESRCH -- EPERM: it exists, it is someone else's
end

function M.sleep(ms) ffi.C.poll(nil, 0, ms) end

function M.cores()
  local n = tonumber(ffi.C.sysconf(SC_NPROCESSORS_ONLN))
  return (n and n >= 1) and n or 1
end

function M.hostname()
  local buf = ffi.new("char[256]")
  if ffi.C.gethostname(buf, 255) ~= 0 then return "localhost" end
  return ffi.string(buf)
end

function M.pid() return ffi.C.getpid() end

-- The path of an executable named `name` on PATH, or nil.
function M.which(name)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local path = dir .. "/" .. name
    if ffi.C.access(path, X_OK) == 0 then return path end
  end
  return nil
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs argv to its end; returns the exit code, its stdout and its stderr (as text).
function M.run(argv, opts)
  opts = opts or {}
  local out, err = os.tmpname(), os.tmpname()
  local pid, why = M.spawn(argv, { cwd = opts.cwd, stdout = out, stderr = err })
  if not pid then
    os.remove(out) os.remove(err)
    return 127, "", why
  end
  local code = M.wait(pid)
  local o, e = read_all(out), read_all(err)
  os.remove(out) os.remove(err)
  return code, o, e
end

return M
