-- bench/attention_long.lua -- memory and time of causal softmax attention on a long sequence,
-- forward and backward: N = 16,384, B = 1, H = 4, d = 64 (the dense map would be 4 GiB).
-- Peak RSS growth is measured after q, k, v exist; it covers o, the output gradient, dq, dk, dv
-- and whatever the kernel keeps (the tiled kernel: one log-sum-exp per row and a few tiles).
--   ./attnlab bench/attention_long.lua
local lab = lab or require "attnlab"
local function hwm() local f = io.open("/proc/self/status"); local s = f:read("*a"); f:close(); return tonumber(s:match("VmHWM:%s*(%d+)")) end
local N, H, d = 16384, 4, 64
local q = lab.randn{ 1, H, N, d }:requires_grad(true)
local k = lab.randn{ 1, H, N, d }:requires_grad(true)
local v = lab.randn{ 1, H, N, d }:requires_grad(true)
collectgarbage()
local rss0, peak0 = hwm(), lab.memory().peak
local t0 = lab.time()
local out = lab.attention(q, k, v, { causal = true })
local t1 = lab.time()
out:sum():backward()
local t2 = lab.time()
local grown = (hwm() - rss0) / 1024
local own = 5 * N * H * d * 4 / 1048576   -- o, its gradient, dq, dk, dv
print(string.format("N=%d B=1 H=%d d=%d causal: forward %.1f s, backward %.1f s; peak RSS grew %.1f MiB = o, dO, dq, dk, dv (%.1f MiB) + %.1f MiB beyond them (the dense map would be %.0f MiB)",
  N, H, d, t1 - t0, t2 - t1, grown, own, grown - own, N * N * H * 4 / 1048576))
