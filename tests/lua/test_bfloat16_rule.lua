-- test_bfloat16_rule.lua -- bfloat16, for every function of the C core's public header: given a
-- bfloat16 tensor on the (emulated) CUDA device, a function either is made for it (conversions and
-- copies, the fused attention), or works on its metadata only (views, introspection), or refuses it
-- with an error that says "bfloat16" (or, without a CUDA kernel, "cuda"); none reads its 2-byte elements as another dtype's.  That
-- failure would be a silent wrong number on a GPU; here the tensor's pages are PROT_NONE
-- (al_unreadable_device_tensor), so any read is a crash, which names the function.  It runs on the
-- emulated CUDA build (build/cuda-emulated/attnlab), where the CUDA ops reach their kernels.
local check = dofile("tests/lua/check.lua")("bfloat16_rule")
local lab = require "attnlab"
local ffi = require "ffi"
local core = require "attnlab.core"
local C = core.C

-- Run by the CPU build (make test), it hands itself to the emulated one, where bfloat16 tensors exist.
if C.al_cuda_available() == 0 then
  local emulated = (os.getenv("BUILD") or "build") .. "/cuda-emulated/attnlab"
  local f = io.open(emulated, "rb")
  if not f or os.getenv("ATTNLAB_BFLOAT16_RULE_HANDED_OVER") then
    if f then f:close() end
    check.skip(1, "no CUDA backend here and no " .. emulated .. " (the CUDA emulation is built on x86-64 only)")
    os.exit(check.report())
  end
  f:close()
  local status = os.execute("ATTNLAB_BFLOAT16_RULE_HANDED_OVER=1 ATTNLAB_HOME=\"$PWD\" '" .. emulated .. "' tests/lua/test_bfloat16_rule.lua")
  os.exit(status == 0 and 0 or 1)
end

-- What may read a bfloat16 tensor's memory: the functions made for it.  Each is checked on real
-- data in tests/cuda/test_cuda_attention.c (bfloat16 section) and below.
local READS_BFLOAT16 = { al_to_dtype = true, al_clone = true, al_copy_ = true, al_fill_ = true, al_pad = true,
                         al_set_grad = true, al_attention = true, al_backward = true, al_to_device = true,
                         al_item = true, al_get = true, al_copy_to_doubles = true }
-- What may succeed without reading it: views and introspection (the device rule's list).
local METADATA = {}
for name in ("al_retain al_release al_ndim al_size al_stride al_numel al_dtype_of al_device_of al_is_contiguous " ..
             "al_shape_string al_reshape al_transpose al_permute al_narrow al_select al_unsqueeze al_squeeze " ..
             "al_expand al_contiguous al_detach al_set_requires_grad al_requires_grad al_is_leaf al_grad_fn_name " ..
             "al_grad al_zero_grad"):gmatch("%S+") do METADATA[name] = true end

local shape = ffi.new("int64_t[3]", { 2, 3, 4 })
local function bfloat16_tensor(dtype)
  local t = C.al_unreadable_device_tensor(3, shape, dtype or 3)
  assert(t.p ~= nil, "al_unreadable_device_tensor failed: " .. ffi.string(C.al_last_error()))
  return t
end
-- a refusal: of bfloat16, or of the device by the ops without a CUDA kernel (test_device_rule.lua)
local outcome = dofile("tests/lua/header_sweep.lua")(bfloat16_tensor, function(message)
  return message:match("bfloat16") ~= nil or message:match("cuda") ~= nil or message:match("CUDA") ~= nil
end)
check.ok(#outcome.functions > 100, "the header declares the functions that take tensors", tostring(#outcome.functions))

local function outside(list, allowed)
  local bad = {}
  for _, entry in ipairs(list) do
    if not allowed[entry:match("^(%S+)")] then bad[#bad + 1] = entry end
  end
  return table.concat(bad, ", ")
end
check.ok(outside(outcome.crashed, READS_BFLOAT16) == "", "only the functions made for bfloat16 read its memory",
  outside(outcome.crashed, READS_BFLOAT16))
local may_work = {}
for k in pairs(METADATA) do may_work[k] = true end
for k in pairs(READS_BFLOAT16) do may_work[k] = true end
check.ok(outside(outcome.worked, may_work) == "", "what works on bfloat16 without an error is a view, an introspection or made for it",
  outside(outcome.worked, may_work))
check.ok(#outcome.refused >= #outcome.functions / 2, "most functions refuse bfloat16 or the device, saying so", tostring(#outcome.refused))
print("note: " .. #outcome.refused .. " functions refuse bfloat16 or the device; read it (made for it): " .. table.concat(outcome.crashed, " ") ..
  "; worked without reading: " .. table.concat(outcome.worked, " "))
if #outcome.other > 0 then
  print("note: stopped before the dtype check by their other arguments: " .. table.concat(outcome.other, " "))
end

-- The Lua side, on real data: making, converting, attention forward and backward, what refuses.
do
  local function rounded(t) return t:to("cuda"):to("bfloat16"):to("float32") end
  local shape = { 2, 3, 20, 16 }
  local q0, k0, v0 = lab.randn(shape), lab.randn(shape), lab.randn(shape)
  local q = q0:to("cuda"):to("bfloat16"):detach():requires_grad(true)
  local k, v = k0:to("cuda"):to("bfloat16"), v0:to("cuda"):to("bfloat16")
  check.ok(q:dtype() == "bfloat16" and q:device() == "cuda", "to(\"bfloat16\") of a CUDA tensor", q:dtype())
  check.fails(function() return lab.randn{ 2 }:to("bfloat16") end, "bfloat16 tensors live on the CUDA device only",
    "a CPU tensor cannot be bfloat16")
  check.fails(function() return q:sum() end, "sum: no kernel for bfloat16", "sum refuses bfloat16 by name")
  check.fails(function() return q:to("cpu") end, "convert with to(\"float32\")", "bfloat16 does not leave the device")
  lab.reset_cuda_memory_peak()
  local o = lab.attention(q, k, v, { causal = true })
  check.ok(o:dtype() == "bfloat16", "attention on bfloat16 gives bfloat16", o:dtype())
  local want = lab.attention(rounded(q0), rounded(k0), rounded(v0), { causal = true })
  local diff = (o:to("float32") - want):abs():max():item()
  check.near(diff, 0, 2e-2, "the output agrees with float32 attention on the rounded inputs to bfloat16's precision")
  o:backward(lab.ones(shape):to("cuda"):to("bfloat16"))
  check.ok(q.grad ~= nil and q.grad:dtype() == "bfloat16", "the leaf's gradient is bfloat16")
  check.ok(lab.cuda_memory().peak > 0 and lab.cuda_memory().in_use > 0, "lab.cuda_memory counts the device's tensors")
  print(string.format("note: bfloat16 attention against float32 on the rounded inputs: max |diff| %.2g", diff))
end

os.exit(check.report())
