-- attnlab.analysis: measurements and interventions on attention maps, as the analysis papers use
-- them (attention-variants.md section 19).  A map is a (B, H, N, M) tensor whose rows sum to 1,
-- e.g. the second result of lab.attention(q, k, v, {weights = true}) or MultiHeadAttention's
-- m.weights with m.record = true.
local lab = require "attnlab"
local raise = lab.raise

local analysis = {}

local function check_map(w, fn)
  if not lab.is_tensor(w) or w:dim() ~= 4 then
    raise(fn .. ": expects a (B, H, N, M) attention map (got " .. (lab.is_tensor(w) and w:shape_string() or type(w)) .. ")")
  end
  return w
end

-- Entropy of each query's row, in nats, (B, H, N): 0 for a one-hot row, log M for a uniform one.
-- (0 log 0 is taken as 0.)
function analysis.entropy(w)
  check_map(w, "entropy")
  local safe = lab.where(w:gt(0), w, 1)            -- log 1 = 0 where p = 0
  return -(w * safe:log()):sum(4)
end

-- Mean row entropy per head, (H): the usual "how focused is this head" figure.
function analysis.head_entropy(w)
  return analysis.entropy(w):mean(3):mean(1)
end

-- Mean attention mass on key position pos (default 1, the first token), per head (H): attention
-- sinks show as heads whose mass on the first token is far above 1/M.
function analysis.sink_mass(w, pos)
  check_map(w, "sink_mass")
  pos = pos or 1
  if type(pos) ~= "number" or pos < 1 or pos > w:size(4) or pos ~= math.floor(pos) then
    raise(string.format("sink_mass: key position %s is out of range 1..%d", tostring(pos), w:size(4)))
  end
  return w:narrow(4, pos, 1):mean(4):mean(3):mean(1)
end

-- SoftPAG-style interpolation toward the identity map (N = M): (1 - alpha) w + alpha I.
function analysis.interpolate_identity(w, alpha)
  check_map(w, "interpolate_identity")
  if w:size(3) ~= w:size(4) then raise("interpolate_identity: needs a square map (N = M), got " .. w:shape_string()) end
  if type(alpha) ~= "number" then raise("interpolate_identity: alpha must be a number") end
  local eye = lab.eye(w:size(3), w:dtype())
  return w * (1 - alpha) + eye * alpha
end

-- The attention output for a given (possibly replaced or edited) map: map (B, H, N, M) times
-- v (B, H, M, dv), differentiable in both.
function analysis.apply_map(map, v)
  check_map(map, "apply_map")
  return map:matmul(v)
end

return analysis
