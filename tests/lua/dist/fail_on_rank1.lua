-- Run by test_dist.lua under `mpirun -np 2`: rank 1 fails while rank 0 waits in an all-reduce; the
-- attnlab program must end both (dist.abort) rather than leave rank 0 waiting forever.
local lab = require "attnlab"
local dist = lab.dist
if dist.rank() == 1 then error("rank 1 fails on purpose") end
dist.all_reduce(lab.tensor({ 1 }))
print("rank 0 passed the all-reduce: wrong")
