-- bench/gpt_step.lua -- ms per training step of a GPT-2-style decoder on 4 x 4-digit
-- multiplication (no chain of thought), built as a user builds it (lab.nn.Embedding, TransformerBlock
-- {causal = true}, LayerNorm, a head tied to the token embedding, lab.cross_entropy) and timed the
-- way bench/torch_ref/mult_transformer.py times PyTorch: a pool of 8 batches drawn beforehand;
-- zero_grad, forward, loss, backward and the AdamW step inside the timed region; the median of the
-- per-step times after `warmup` steps.
--   attnlab bench/gpt_step.lua [config=2x128x4] [steps=50] [warmup=10] [batch=64] [T=40] [profile=0]
-- config is LAYERSxWIDTHxHEADS.  profile=N prints lab.profile's table over N further steps.
local lab = require "attnlab"

local cfg = { config = "2x128x4", steps = 50, warmup = 10, batch = 64, T = 40, seed = 1, profile = 0 }
dofile("bench/stats.lua").args("gpt_step", cfg)
local layers, width, heads = cfg.config:match("^(%d+)x(%d+)x(%d+)$")
if not layers then error("gpt_step: config must be LAYERSxWIDTHxHEADS (got " .. cfg.config .. ")") end
layers, width, heads = tonumber(layers), tonumber(width), tonumber(heads)

-- the vocabulary of mult_transformer.py, as 1-based ids: digit d is d + 1
local VOCAB, STAR, EQ, EOS, PAD, BOS = 16, 11, 12, 13, 14, 15
local T = cfg.T

local function digits(n, k, out)
  for _ = 1, k do out[#out + 1] = n % 10 + 1; n = math.floor(n / 10) end
  return out
end

-- inputs (batch, T) and targets (batch, T), 0 = ignored: only c0..c7 and EOS are scored
local function make_batch(batch)
  local x, y = {}, {}
  for i = 1, batch do
    local a, b = math.random(1000, 9999), math.random(1000, 9999)
    local s = { BOS }
    digits(a, 4, s); s[#s + 1] = STAR; digits(b, 4, s); s[#s + 1] = EQ; digits(a * b, 8, s); s[#s + 1] = EOS
    while #s < T + 1 do s[#s + 1] = PAD end
    local xi, yi = {}, {}
    for t = 1, T do
      xi[t] = s[t]
      yi[t] = (t + 1 >= 12 and t + 1 <= 20) and s[t + 1] or 0
    end
    x[i], y[i] = xi, yi
  end
  return lab.tensor(x, "int64"), lab.tensor(y, "int64")
end

-- the process's peak resident memory (VmHWM), in MiB: compared with PyTorch's ru_maxrss
local function rss_peak_mb()
  local f = io.open("/proc/self/status")
  local kb = f and f:read("*a"):match("VmHWM:%s*(%d+)")
  if f then f:close() end
  return kb and tonumber(kb) / 1024 or 0
end

lab.seed(cfg.seed)
math.randomseed(cfg.seed + 1)
local rss_before = rss_peak_mb()
local nn = lab.nn
local GPT = nn.class("GPT")
function GPT:init()
  self.wte = self:add_child("wte", nn.Embedding(VOCAB, width))
  self.wpe = self:add_child("wpe", nn.Embedding(T, width))
  self.blocks = {}
  for i = 1, layers do
    self.blocks[i] = self:add_child("h" .. i, nn.TransformerBlock{ dim = width, heads = heads, causal = true })
  end
  self.ln_f = self:add_child("ln_f", nn.LayerNorm(width))
  self.positions = lab.arange(1, T + 1):reshape{ 1, T }:to("int64")
end
function GPT:forward(ids, targets)
  local x = self.wte(ids) + self.wpe(self.positions)
  for _, block in ipairs(self.blocks) do x = block(x) end
  local logits = lab.linear(self.ln_f(x), self.wte.weight)    -- tied to the token embedding
  return lab.cross_entropy(logits, targets, { ignore = 0 })
end
local model = GPT()
for _, pair in ipairs(model:named_parameters()) do              -- GPT-2's initialisation
  local name, p = pair[1], pair[2]
  if name:match("weight$") and p:dim() == 2 then
    local std = (name:match("attn%.o%.weight$") or name:match("mlp%.fc2%.weight$")) and 0.02 / math.sqrt(2 * layers) or 0.02
    p:copy_(lab.randn(p:shape()) * std)
  elseif name:match("bias$") and not name:match("ln") then
    p:fill_(0)
  end
end

local decay, no_decay = {}, {}
for _, p in ipairs(model:parameters()) do
  if p:dim() >= 2 then decay[#decay + 1] = p else no_decay[#no_decay + 1] = p end
end
local opt_decay = lab.optim.AdamW(decay, { lr = 1e-3, betas = { 0.9, 0.95 }, weight_decay = 0.1 })
local opt_rest = lab.optim.AdamW(no_decay, { lr = 1e-3, betas = { 0.9, 0.95 }, weight_decay = 0 })

local pool = {}
for i = 1, 8 do pool[i] = { make_batch(cfg.batch) } end

local function step(i)
  local batch = pool[(i - 1) % #pool + 1]
  opt_decay:zero_grad(); opt_rest:zero_grad()
  local loss = model(batch[1], batch[2])
  loss:backward()
  opt_decay:step(); opt_rest:step()
  return loss
end

lab.reset_memory_peak()
local times, loss = {}, nil
for i = 1, cfg.warmup + cfg.steps do
  local t0 = lab.time()
  loss = step(i)
  lab.synchronize()   -- on the GPU: the step's kernels, not their launches
  local dt = (lab.time() - t0) * 1e3
  if i > cfg.warmup then times[#times + 1] = dt end
end
table.sort(times)
local median = times[math.floor((#times + 1) / 2)]
local mem = lab.memory()

if cfg.profile > 0 then
  local i = cfg.warmup + cfg.steps
  io.stderr:write(lab.profile(function()
    for _ = 1, cfg.profile do i = i + 1; step(i) end
  end):report() .. "\n")
end

local blas_kernel, _, linear_kernel = lab.blas_kernel()
print(string.format('{"workload": "gpt_step", "impl": "attnlab", "config": "%s", "batch": %d, "T": %d, "params": %d, ' ..
  '"threads": %d, "steps": %d, "ms_per_step_median": %.3f, "ms_min": %.3f, "final_loss": %.4f, "tensor_peak_mb": %.1f, ' ..
  '"rss_peak_mb": %.1f, "rss_before_model_mb": %.1f, "blas_kernel": "%s", "linear_kernel": "%s"}',
  cfg.config, cfg.batch, T, model:num_parameters(), lab.num_threads(), cfg.steps, median, times[1], loss:item(),
  mem.peak / 2 ^ 20, rss_peak_mb(), rss_before, blas_kernel, linear_kernel))
