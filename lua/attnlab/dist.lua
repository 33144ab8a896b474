-- attnlab.dist: data-parallel training over MPI ranks, one process per rank.
--
--   mpirun -np 2 attnlab run experiments/icl_regression.lua
--
-- Under mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE) the first call here initialises MPI; anywhere
-- else there is one rank and every function is a no-op that returns its input, so a script written
-- with these helpers runs unchanged on one process.  What a data-parallel step needs:
--
--   local dist = lab.dist
--   local b = draw_whole_batch()              -- every rank draws the same batch (same seed) ...
--   local mine = dist.shard(b.x, 1)           -- ... and keeps its share of dimension 1
--   loss:backward()
--   dist.average_gradients(params)            -- the mean of the ranks' gradients, on every rank
--   opt:step()
--   window = window + dist.mean(loss:item())  -- the whole batch's loss, for the log
--
-- Drawing the whole batch on every rank and keeping a share keeps the generator in step on every
-- rank, so the run sees the same data as one process with the whole batch and the loss curve is
-- the same to float tolerance (the test checks it); a script that would rather draw only its share
-- seeds its data generator with dist.seed(base) (base + rank).  Only rank 0 writes the run
-- directory (lab.run.start asks dist.is_main()); a script error on any rank aborts every rank
-- (lua/script_errors.c calls dist.abort), so no rank waits forever in an all-reduce.
--
-- MPI is reached through the FFI, by the symbols of Debian's Open MPI (libmpi.so.40), so nothing
-- is linked at build time and the package is needed only where mpirun is: `apt-get install
-- openmpi-bin`.
local lab = require "attnlab"
local core, args = require "attnlab.core", require "attnlab.args"
local ffi = require "ffi"

local dist = {}

local mpi            -- the loaded library, once initialised
local world          -- MPI_COMM_WORLD
local rank, size = 0, 1
local finalizer      -- a userdata whose __gc finalises MPI when the Lua state closes

local function raise(msg) core.raise("dist." .. msg) end

-- Open MPI's predefined handles are the addresses of global objects (MPI_FLOAT is
-- &ompi_mpi_float): declared as char arrays, LuaJIT hands back their addresses.
local DECLS = [[
int MPI_Init(int *argc, char ***argv);
int MPI_Initialized(int *flag);
int MPI_Finalized(int *flag);
int MPI_Finalize(void);
int MPI_Abort(void *comm, int errorcode);
int MPI_Comm_rank(void *comm, int *rank);
int MPI_Comm_size(void *comm, int *size);
int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, void *datatype, void *op, void *comm);
int MPI_Bcast(void *buffer, int count, void *datatype, int root, void *comm);
int MPI_Barrier(void *comm);
extern char ompi_mpi_comm_world[1];
extern char ompi_mpi_float[1];
extern char ompi_mpi_double[1];
extern char ompi_mpi_op_sum[1];
]]
local IN_PLACE = ffi.cast("void *", 1)   -- Open MPI's MPI_IN_PLACE

-- Under mpirun?  Open MPI's launcher sets OMPI_COMM_WORLD_SIZE in every rank's environment.
local function launched_by_mpirun()
  local n = tonumber(os.getenv("OMPI_COMM_WORLD_SIZE") or "")
  return n ~= nil and n >= 1
end

local initialised = false
local function init()
  if initialised then return end
  initialised = true
  if not launched_by_mpirun() then return end
  local ok, lib = pcall(ffi.load, "libmpi.so.40", true)
  if not ok then
    error("dist: this process was started by mpirun but Open MPI's libmpi.so.40 cannot be loaded (" ..
      tostring(lib) .. "); install it with apt-get install openmpi-bin", 0)
  end
  pcall(ffi.cdef, DECLS)     -- (declared once per Lua state; a second cdef of the same names fails)
  mpi = lib
  local flag = ffi.new("int[1]")
  mpi.MPI_Initialized(flag)
  if flag[0] == 0 and mpi.MPI_Init(nil, nil) ~= 0 then error("dist: MPI_Init failed", 0) end
  world = ffi.cast("void *", mpi.ompi_mpi_comm_world)
  local r, s = ffi.new("int[1]"), ffi.new("int[1]")
  mpi.MPI_Comm_rank(world, r)
  mpi.MPI_Comm_size(world, s)
  rank, size = r[0], s[0]
  -- MPI_Finalize when the Lua state closes (the attnlab program closes it on every normal exit)
  finalizer = newproxy(true)
  getmetatable(finalizer).__gc = function()
    local done = ffi.new("int[1]")
    mpi.MPI_Finalized(done)
    if done[0] == 0 then mpi.MPI_Finalize() end
  end
end

-- This process's rank (0-based, as MPI counts: rank 0 is the one that writes) and the number of ranks.
function dist.rank() init() return rank end
function dist.world_size() init() return size end
function dist.is_main() init() return rank == 0 end
-- true when there is more than one rank
function dist.active() init() return size > 1 end

-- A seed for this rank's own data: base + rank (the same on one process as base).
function dist.seed(base)
  args.check_int(base, "dist.seed", "base")
  init()
  return base + rank
end

local function datatype(t)
  return ffi.cast("void *", t:dtype() == "float32" and mpi.ompi_mpi_float or mpi.ompi_mpi_double)
end

-- checked on one process too, so that a script fails the same way before it goes to mpirun
local function check_tensor(t, fn, what)
  if not core.is_tensor(t) then raise(fn .. ": " .. what .. " must be a tensor (got " .. type(t) .. ")") end
  if t:dtype() ~= "float32" and t:dtype() ~= "float64" then
    raise(fn .. ": " .. what .. " must be float32 or float64 (got " .. t:dtype() .. " of shape " .. t:shape_string() .. ")")
  end
  if not t:is_contiguous() then
    raise(fn .. ": " .. what .. " of shape " .. t:shape_string() .. " must be contiguous (call :contiguous() first)")
  end
end

-- The largest count one MPI call takes (an int); longer tensors go in pieces.
local MAX_COUNT = 2 ^ 30

local function each_piece(t, f)
  local n, esize = t:numel(), t:dtype() == "float32" and 4 or 8
  local base = ffi.cast("char *", core.host_data(t, "dist"))   -- MPI reads host memory
  local done = 0
  while done < n do
    local count = math.min(n - done, MAX_COUNT)
    f(base + done * esize, count)
    done = done + count
  end
end

-- t summed (op "sum") or averaged (op "mean", the default) over the ranks, in place, on every
-- rank; returns t.  t: a contiguous float tensor of the same shape on every rank.
function dist.all_reduce(t, op)
  check_tensor(t, "all_reduce", "t")
  op = op or "mean"
  if op ~= "sum" and op ~= "mean" then raise("all_reduce: op must be 'sum' or 'mean' (got " .. tostring(op) .. ")") end
  init()
  if size == 1 then return t end
  local dt = datatype(t)
  local sum = ffi.cast("void *", mpi.ompi_mpi_op_sum)
  each_piece(t, function(ptr, count)
    local rc = mpi.MPI_Allreduce(IN_PLACE, ptr, count, dt, sum, world)
    if rc ~= 0 then raise("all_reduce: MPI_Allreduce failed with code " .. rc .. " (shape " .. t:shape_string() .. ")") end
  end)
  if op == "mean" then t:mul_(1 / size) end
  return t
end

-- t overwritten with rank `root`'s t (default 0) on every rank, in place; returns t.
function dist.broadcast(t, root)
  check_tensor(t, "broadcast", "t")
  root = root or 0
  init()
  if type(root) ~= "number" or root ~= math.floor(root) or root < 0 or root >= size then
    raise("broadcast: root must be a rank from 0 to " .. (size - 1) .. " (got " .. tostring(root) .. ")")
  end
  if size == 1 then return t end
  local dt = datatype(t)
  each_piece(t, function(ptr, count)
    local rc = mpi.MPI_Bcast(ptr, count, dt, root, world)
    if rc ~= 0 then raise("broadcast: MPI_Bcast failed with code " .. rc .. " (shape " .. t:shape_string() .. ")") end
  end)
  return t
end

-- A number averaged (or summed) over the ranks: the whole batch's loss from each rank's share.
function dist.mean(x) return dist.reduce_number(x, "mean") end
function dist.reduce_number(x, op)
  if type(x) ~= "number" then raise("mean: x must be a number (got " .. type(x) .. ")") end
  init()
  if size == 1 then return x end
  return dist.all_reduce(lab.tensor({ x }, "float64"), op or "mean"):item()
end

-- Every parameter's gradient replaced by the mean over the ranks (call after backward, before
-- the optimiser's step).  One all-reduce over all the gradients packed in one buffer: a call per
-- parameter would pay MPI's latency once per tensor.  A parameter without a gradient on this rank
-- counts as zeros, so the ranks always send the same buffer.
function dist.average_gradients(params)
  if type(params) ~= "table" then raise("average_gradients: params must be a list of tensors (got " .. type(params) .. ")") end
  init()
  if size == 1 then return end
  local by_dtype = {}
  for i, p in ipairs(params) do
    if not core.is_tensor(p) then raise("average_gradients: params[" .. i .. "] is a " .. type(p) .. ", not a tensor") end
    local dt = p:dtype()
    by_dtype[dt] = by_dtype[dt] or {}
    table.insert(by_dtype[dt], p)
  end
  for dt, ps in pairs(by_dtype) do
    local n = 0
    for _, p in ipairs(ps) do n = n + p:numel() end
    local flat = lab.zeros({ n }, dt)
    local at = 1
    for _, p in ipairs(ps) do
      local pg = p.grad
      if pg then flat:narrow(1, at, pg:numel()):copy_(pg:reshape{ -1 }) end
      at = at + p:numel()
    end
    dist.all_reduce(flat, "mean")
    at = 1
    for _, p in ipairs(ps) do
      local g = flat:narrow(1, at, p:numel()):reshape(p:shape())
      local pg = p.grad
      if pg then pg:copy_(g) else p:set_grad(g:clone()) end
      at = at + p:numel()
    end
  end
end

-- Every parameter set to rank 0's values (after initialisation, so that the ranks start equal
-- even if their generators were seeded differently).
function dist.broadcast_parameters(params)
  if type(params) ~= "table" then raise("broadcast_parameters: params must be a list of tensors (got " .. type(params) .. ")") end
  init()
  if size == 1 then return end
  for _, p in ipairs(params) do
    if p:is_contiguous() then dist.broadcast(p:detach())
    else p:detach():copy_(dist.broadcast(p:detach():contiguous())) end
  end
end

-- This rank's share of t along dim: t:narrow(dim, rank * n / size + 1, n / size).  The size of
-- that dimension must divide by the number of ranks (so every rank's loss is a mean over as
-- many examples, and their mean is the whole batch's).
function dist.shard(t, dim)
  if not core.is_tensor(t) then raise("shard: t must be a tensor (got " .. type(t) .. ")") end
  dim = dim or 1
  if type(dim) ~= "number" or dim ~= math.floor(dim) or dim < 1 or dim > t:dim() then
    raise("shard: dim must be a dimension of t, 1 to " .. t:dim() .. " (got " .. tostring(dim) .. " for shape " .. t:shape_string() .. ")")
  end
  init()
  if size == 1 then return t end
  local n = t:size(dim)
  if n % size ~= 0 then
    raise(string.format("shard: dimension %d of shape %s (%d) does not divide by the %d ranks", dim, t:shape_string(), n, size))
  end
  local share = math.floor(n / size)
  return t:narrow(dim, rank * share + 1, share)
end

function dist.barrier()
  init()
  if size > 1 then mpi.MPI_Barrier(world) end
end

-- Ends every rank at once with `code` (the attnlab program calls it when a script fails on a rank,
-- so that the others do not wait forever in an all-reduce).  A no-op on one process.
function dist.abort(code)
  if code ~= nil then args.check_int(code, "dist.abort", "code") end
  if not initialised or size == 1 then return end
  io.stderr:flush()
  mpi.MPI_Abort(world, code or 1)
end

return dist
