-- attnlab.runtime: the process the module runs in -- the core's threads, its memory (the
-- allocator's counts and limit), Ctrl-C and SIGTERM, and the monotonic clock.  init.lua hands what
-- this returns to lab.
local ffi = require "ffi"
local core, args = require "attnlab.core", require "attnlab.args"

local C, raise = core.C, core.raise
local check_int, check_number = args.check_int, args.check_number

local lab = {}   -- the functions this file gives lab

-- (the core would take n < 1 as 1: refused rather than silently changed)
function lab.set_num_threads(n)
  check_int(n, "set_num_threads", "n")
  if n < 1 then raise("set_num_threads: n must be an integer >= 1 (got " .. n .. ")") end
  C.al_set_num_threads(n)
end
function lab.num_threads() return C.al_get_num_threads() end

-- the OpenBLAS kernel that runs the matrix products, nil or a sentence saying this CPU has faster
-- ones, and what runs nn.Linear's products ("attnlab-avx512" or "openblas"; core/blas_info.c)
function lab.blas_kernel()
  local advice, linear = C.al_blas_advice(), C.al_linear_kernel()
  if linear == nil then raise("blas_kernel: " .. ffi.string(C.al_last_error())) end
  return ffi.string(C.al_blas_kernel()), advice ~= nil and ffi.string(advice) or nil, ffi.string(linear)
end
function lab.memory()
  return { in_use = tonumber(C.al_bytes_in_use()), peak = tonumber(C.al_bytes_peak()),
           limit = tonumber(C.al_get_memory_limit()),
           tensors = tonumber(C.al_live_tensors()), nodes = tonumber(C.al_live_nodes()) }
end
-- empties the allocator's cache and restarts lab.memory().peak from the bytes live now
function lab.reset_memory_peak() C.al_reset_peak() end
-- GPU memory held by tensors (bytes) and its peak since the start or lab.reset_cuda_memory_peak();
-- zeros without a CUDA device in use
function lab.cuda_memory()
  return { in_use = tonumber(C.al_cuda_bytes_in_use()), peak = tonumber(C.al_cuda_bytes_peak()) }
end
function lab.reset_cuda_memory_peak() C.al_cuda_reset_peak() end
function lab.set_memory_limit(bytes)
  check_number(bytes, "set_memory_limit", "bytes", { 0, 2^62, lo_open = true })
  C.al_set_memory_limit(bytes)
end
function lab.interrupted() return C.al_interrupted() ~= 0 end
-- the signal that asked (2 SIGINT, 15 SIGTERM), or nil
function lab.interrupt_signal() local sig = C.al_interrupted() return sig ~= 0 and sig or nil end
function lab.catch_interrupts(on) C.al_catch_interrupts(on == false and 0 or 1) end

ffi.cdef [[
  struct attnlab_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clk, struct attnlab_timespec *ts);
]]
local ts = ffi.new("struct attnlab_timespec")
function lab.time()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- waits for the GPU's queued work (a no-op without one), so that lab.time() around it times the
-- work and not its launches
function lab.synchronize()
  if C.al_cuda_synchronize() ~= 0 then raise(core.core_message("synchronize")) end
end

return lab
