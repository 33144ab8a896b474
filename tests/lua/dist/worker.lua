-- Run by test_dist.lua under `mpirun -np 2`: each rank checks the collectives and prints one line
-- "rank R: N passed, N failed" (the test reads both).
local lab = require "attnlab"
local dist = lab.dist
local r, n = dist.rank(), dist.world_size()
local passed, failed = 0, 0
local function ok(cond, what)
  if cond then passed = passed + 1 else failed = failed + 1 io.stderr:write("rank " .. r .. ": " .. what .. "\n") end
end
ok(n == 2 and (r == 0 or r == 1), "two ranks")
ok(dist.active() and dist.is_main() == (r == 0), "active, rank 0 is the main one")
local t = lab.tensor({ r + 1, 10 * (r + 1), 0.5 })
dist.all_reduce(t, "sum")
ok(t:totable()[1] == 3 and t:totable()[2] == 30 and t:totable()[3] == 1, "all_reduce sum")
local m = lab.tensor({ { r, 2 * r } }, "float64")
dist.all_reduce(m)
ok(m:totable()[1][1] == 0.5 and m:totable()[1][2] == 1, "all_reduce mean, float64")
ok(dist.mean(r * 4.0) == 2, "mean of numbers")
local b = lab.tensor({ 7 * (r + 1), 1 })
dist.broadcast(b, 1)
ok(b:totable()[1] == 14, "broadcast from rank 1")
local x = lab.tensor({ { 1 }, { 2 }, { 3 }, { 4 } })
ok(dist.shard(x, 1):totable()[1][1] == 2 * r + 1 and dist.shard(x, 1):size(1) == 2, "shard: this rank's half")
local okerr, err = pcall(dist.shard, lab.zeros{ 3, 2 }, 1)
ok(not okerr and tostring(err):find("does not divide by the 2 ranks", 1, true), "shard: an odd size is refused")
-- gradients: the mean over the ranks, including a parameter that has no gradient on one rank
local p, q = lab.zeros{ 2 }:requires_grad(true), lab.zeros{ 1 }:requires_grad(true)
local loss = (p * (r + 1)):sum()
if r == 1 then loss = loss + q:sum() * 4 end
loss:backward()
dist.average_gradients({ p, q })
ok(p.grad:totable()[1] == 1.5 and q.grad ~= nil and q.grad:totable()[1] == 2, "average_gradients")
print(string.format("rank %d: %d passed, %d failed", r, passed, failed))
