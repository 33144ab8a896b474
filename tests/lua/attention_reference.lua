-- attention_reference.lua -- the float64 dense reference the variant tests compare with: an
-- explicit (B, H, N, M) logit array from plain ops, a 0/1 mask built here from a Lua predicate,
-- softmax, product with v.  Not a test itself (run_all.sh runs test_*.lua only).
--   local ref = dofile("tests/lua/attention_reference.lua")
local lab = lab or require "attnlab"
local ref = {}

-- k or v with Hkv heads repeated to H query heads (query head h reads kv head floor(h Hkv / H))
function ref.repeat_heads(t, H)
  local Hkv = t:size(2)
  if Hkv == H then return t end
  local parts = {}
  for h = 1, H do
    local src = math.floor((h - 1) * Hkv / H) + 1
    parts[h] = t:narrow(2, src, 1)
  end
  return lab.cat(parts, 2)
end

-- a float64 (B, H, N, ...) tensor whose row (b, h, i) (1-based) is row(b, h, i), a table (the
-- references written out per query build their outputs and maps with it)
function ref.per_query(B, H, N, row)
  local t = {}
  for b = 1, B do
    t[b] = {}
    for h = 1, H do
      t[b][h] = {}
      for i = 1, N do t[b][h][i] = row(b, h, i) end
    end
  end
  return lab.tensor(t, "float64")
end

-- a float64 (B, H, N, M) tensor of 1 where allowed(b, h, i, j) (1-based indices) is true, else 0
function ref.mask(B, H, N, M, allowed)
  return ref.per_query(B, H, N, function(b, h, i)
    local row = {}
    for j = 1, M do row[j] = allowed(b, h, i, j) and 1 or 0 end
    return row
  end)
end

-- softmax(scale q k^T + bias, mask) v and the map; opts: scale, bias, mask (0/1 tensor, 0 = excluded)
function ref.attention(q, k, v, opts)
  opts = opts or {}
  local H = q:size(2)
  k, v = ref.repeat_heads(k, H), ref.repeat_heads(v, H)
  local S = q:matmul(k:transpose(3, 4)) * (opts.scale or 1 / math.sqrt(q:size(4)))
  if opts.bias then S = S + opts.bias end
  if opts.mask then S = lab.where(opts.mask:expand(S:shape()), S, -math.huge) end
  local P = S:softmax(4)
  return P:matmul(v), P
end

function ref.max_abs_diff(a, b) return (a - b):abs():max():item() end

-- Runs a variant (opts, float64 inputs) and checks its output and map against the reference
-- (r, rw) within 1e-12, then in float32 (every tensor option converted) within 1e-5.  Returns the map.
function ref.check_variant(check, label, q, k, v, opts, r, rw)
  opts.weights = true
  local out, w = lab.attention(q, k, v, opts)
  check.ok(ref.max_abs_diff(out, r) < 1e-12, label .. ": output equals the float64 reference", tostring(ref.max_abs_diff(out, r)))
  check.ok(ref.max_abs_diff(w, rw) < 1e-12, label .. ": map equals the reference map", tostring(ref.max_abs_diff(w, rw)))
  local o32 = {}
  for key, val in pairs(opts) do o32[key] = lab.is_tensor(val) and val:dtype() == "float64" and val:to("float32") or val end
  local out32 = lab.attention(q:to("float32"), k:to("float32"), v:to("float32"), o32)
  check.ok(ref.max_abs_diff(out32:to("float64"), r) < 1e-5, label .. ": float32 within 1e-5",
    tostring(ref.max_abs_diff(out32:to("float64"), r)))
  return w
end

-- causal predicate for N queries over M keys: top_left j <= i, bottom_right j <= i + M - N
function ref.causal(N, M, mode)
  local shift = mode == "bottom_right" and M - N or 0
  return function(_, _, i, j) return j <= i + shift end
end

return ref
