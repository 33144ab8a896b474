-- attnlab.attention: lab.attention(q, k, v [, opts]), lab.attention.variants() and .describe(name),
-- and the catalogue's primitives (merge, topk_mask, grouped_softmax, skew/unskew,
-- relative_gather/scatter, routing_update).  The options every variant shares (variant, causal,
-- scale, bias, mask, weights) are checked here; every other key goes to C as it is, tagged with its
-- type, and the C core checks it against the variant's descriptor (which variant takes it, its kind,
-- its range), so this file keeps no list of any variant's options.  init.lua hands this table to
-- lab as lab.attention.
local ffi = require "ffi"
local core, args = require "attnlab.core", require "attnlab.args"

local C, raise, wrap, wrap_slot = core.C, core.raise, core.wrap, core.wrap_slot
local cdim, ref_array = core.cdim, core.ref_array
local typename, expect_tensor, check_int, check_number = args.typename, args.expect_tensor, args.check_int, args.check_number

-- lab.attention(q, k, v [, opts]) and lab.attention.variants()
local causal_modes = { [false] = 0, [true] = 1, top_left = 1, bottom_right = 2, none = 0 }
local attention_opts = ffi.typeof("al_attention_opts")
local option_array, value_array = ffi.typeof("al_attention_option[?]"), ffi.typeof("al_value[?]")
-- the keys every variant takes; causal as a table (one boolean per grid axis) is a variant's own
local shared = { variant = true, causal = true, scale = true, bias = true, mask = true, weights = true }

-- x as an al_value in slot, the way the caller gave it: the C core decides whether it fits.  keep
-- holds what the slot points at (strings, entry arrays) until the call returns.
local function encode(slot, x, keep, nested)
  local kind = type(x)
  if kind == "number" then
    slot.type, slot.number = C.AL_VALUE_NUMBER, x
  elseif kind == "boolean" then
    slot.type, slot.number = C.AL_VALUE_BOOLEAN, x and 1 or 0
  elseif kind == "string" then
    slot.type, slot.string = C.AL_VALUE_STRING, x
  elseif core.is_tensor(x) then
    slot.type, slot.tensor = C.AL_VALUE_TENSOR, x
    return                                  -- the core spells a tensor by its shape
  elseif kind == "table" and not nested then
    local n = #x
    local items = value_array(math.max(n, 1))
    keep[#keep + 1] = items
    for i = 1, n do encode(items[i - 1], x[i], keep, true) end
    slot.type, slot.count, slot.items = C.AL_VALUE_LIST, n, items
    return                                  -- ... and a table by its length
  else
    slot.type = C.AL_VALUE_OTHER
  end
  local spelling = tostring(x)
  keep[#keep + 1] = spelling
  slot.spelling = spelling
end

-- the scale's range: 0 would mean "the default" to the core, so a 0 given is refused rather than
-- silently replaced (leave the option out for the default)
local function nonzero_finite(x, what, default_text)
  if x == nil then return 0 end
  check_number(x, "attention", "opts." .. what, { finite = true })
  if x == 0 then raise("attention: opts." .. what .. " must not be 0 (leave it out for the default, " .. default_text .. ")") end
  return x
end

local attention   -- the table this file returns (made below; check_known_keys asks it)

-- A key that no variant takes (a typo such as `casual`) is refused here, naming the shared keys
-- and the variant's own; a key that another variant takes goes on to C, whose error names the
-- variants that take it.
local every_option
local function check_known_keys(opts)
  if not every_option then
    every_option = {}
    for i = 0, C.al_attention_variant_count() - 1 do
      for _, opt in ipairs(attention.describe(ffi.string(C.al_attention_variant_name(i))).options) do every_option[opt.name] = true end
    end
  end
  local unknown = {}
  for key in pairs(opts) do
    if not shared[key] and not every_option[key] then unknown[#unknown + 1] = "'" .. tostring(key) .. "'" end
  end
  if #unknown == 0 then return end
  table.sort(unknown)
  local own = {}
  local ok, d = pcall(attention.describe, opts.variant or "softmax")
  if ok then for _, opt in ipairs(d.options) do own[#own + 1] = opt.name end end
  local variant = tostring(opts.variant or "softmax")
  raise(string.format("attention: unknown option%s %s (valid: variant, causal, scale, bias, mask, weights%s)",
    #unknown > 1 and "s" or "", table.concat(unknown, ", "),
    not ok and "" or #own > 0 and "; the options of variant '" .. variant .. "': " .. table.concat(own, ", ")
      or "; variant '" .. variant .. "' has no options of its own"))
end

local weights_out = ref_array(1)
attention = setmetatable({}, {
  __call = function(_, q, k, v, opts)
    expect_tensor(q, "attention", "q"); expect_tensor(k, "attention", "k"); expect_tensor(v, "attention", "v")
    opts = args.options_table(opts, "attention", "{variant=, causal=, ...}")
    check_known_keys(opts)
    local o = attention_opts()
    if type(opts.variant or "") ~= "string" then raise("attention: opts.variant must be a string (got " .. typename(opts.variant) .. ")") end
    o.variant = opts.variant or "softmax"
    if type(opts.causal) ~= "table" then
      local causal = causal_modes[opts.causal or false]
      if causal == nil then
        raise("attention: opts.causal must be true, false, 'top_left', 'bottom_right' or, with opts.grid, a table of "
          .. "booleans per axis (got " .. tostring(opts.causal) .. ")")
      end
      o.causal = causal
    end
    o.scale = nonzero_finite(opts.scale, "scale", "1/sqrt(d)")
    if opts.bias ~= nil then o.bias = expect_tensor(opts.bias, "attention", "opts.bias") end
    if opts.mask ~= nil then o.mask = expect_tensor(opts.mask, "attention", "opts.mask") end
    -- the variant's own options, in a fixed order (so that the first error is always the same one)
    local names = {}
    for key, x in pairs(opts) do
      if not shared[key] or (key == "causal" and type(x) == "table") then names[#names + 1] = tostring(key) end
    end
    local keep = {}
    if #names > 0 then
      table.sort(names)
      local options = option_array(#names)
      for i, name in ipairs(names) do
        options[i - 1].name = name
        local x = opts[name]
        if x == nil then x = opts[tonumber(name)] end   -- a numeric key, spelled as a string
        encode(options[i - 1].value, x, keep)
      end
      o.n_options, o.options = #names, options
      keep[#keep + 1] = options
    end
    local want = opts.weights and true or false
    local out = wrap(C.al_attention(q, k, v, o, want and weights_out or nil), "attention")
    keep = nil
    -- a variant without a (B, H, N, M) map (e.g. "tensor") leaves the slot empty: nil
    if want then return out, weights_out[0].p ~= nil and wrap_slot(weights_out[0], "attention") or nil end
    return out
  end,
})
-- Maps larger than this are recomputed in the backward instead of kept (default 64 MiB).
function attention.set_map_limit(bytes)
  check_number(bytes, "attention.set_map_limit", "bytes", { 0, 2^62 })
  C.al_attention_set_map_limit(bytes)
end
function attention.variants()
  local names = {}
  for i = 0, C.al_attention_variant_count() - 1 do names[#names + 1] = ffi.string(C.al_attention_variant_name(i)) end
  return names
end
-- What the C core's descriptor says of a variant: {name, summary, takes_bias, options = {{name,
-- kind, expects, summary, required}, ...}} (the options in the descriptor's order).
local variant_info, option_info = ffi.new("al_attention_variant_info"), ffi.new("al_attention_option_info")
function attention.describe(name)
  if type(name) ~= "string" then raise("attention.describe: name must be a variant's name (got " .. typename(name) .. ")") end
  for i = 0, C.al_attention_variant_count() - 1 do
    if ffi.string(C.al_attention_variant_name(i)) == name then
      C.al_attention_describe(i, variant_info)
      local d = { name = name, summary = ffi.string(variant_info.summary), takes_bias = variant_info.takes_bias ~= 0,
                  options = {} }
      for j = 0, variant_info.n_options - 1 do
        C.al_attention_describe_option(i, j, option_info)
        d.options[j + 1] = { name = ffi.string(option_info.name), kind = ffi.string(option_info.kind),
                             expects = ffi.string(option_info.expects), summary = ffi.string(option_info.summary),
                             required = option_info.required ~= 0 }
      end
      return d
    end
  end
  raise("attention.describe: unknown variant '" .. name .. "' (known: " .. table.concat(attention.variants(), ", ") .. ")")
end
-- The primitives of the variants (see attnlab.h); dims 1-based or negative, as everywhere.
local second_out = ref_array(1)
function attention.merge(o1, lse1, o2, lse2)
  local o = wrap(C.al_attention_merge(expect_tensor(o1, "attention.merge", "o1"), expect_tensor(lse1, "attention.merge", "lse1"),
    expect_tensor(o2, "attention.merge", "o2"), expect_tensor(lse2, "attention.merge", "lse2"), second_out), "attention.merge")
  return o, wrap_slot(second_out[0], "attention.merge")
end
function attention.topk_mask(scores, k, d)
  expect_tensor(scores, "attention.topk_mask", "scores")
  local kk = check_int(k, "attention.topk_mask", "k")
  local masked = wrap(C.al_topk_mask(scores, kk, cdim(d or -1, "attention.topk_mask", scores:dim()), second_out), "attention.topk_mask")
  return masked, wrap_slot(second_out[0], "attention.topk_mask")
end
function attention.grouped_softmax(x, groups, d)
  expect_tensor(x, "attention.grouped_softmax", "x"); expect_tensor(groups, "attention.grouped_softmax", "groups")
  return wrap(C.al_grouped_softmax(x, groups, cdim(d or -1, "attention.grouped_softmax", x:dim())), "attention.grouped_softmax")
end
function attention.skew(x) return wrap(C.al_relative_skew(expect_tensor(x, "attention.skew", "x")), "attention.skew") end
function attention.unskew(x) return wrap(C.al_relative_unskew(expect_tensor(x, "attention.unskew", "x")), "attention.unskew") end
-- out[i][j] = r[i][clip(j - i - shift, -k, k) + k + 1] over M keys (r (..., N, 2k+1)); scatter is its adjoint
function attention.relative_gather(r, M, shift)
  return wrap(C.al_relative_gather(expect_tensor(r, "attention.relative_gather", "r"),
    check_int(M, "attention.relative_gather", "M"), check_int(shift or 0, "attention.relative_gather", "shift")), "attention.relative_gather")
end
function attention.relative_scatter(g, width, shift)
  return wrap(C.al_relative_scatter(expect_tensor(g, "attention.relative_scatter", "g"),
    check_int(width, "attention.relative_scatter", "width"), check_int(shift or 0, "attention.relative_scatter", "shift")), "attention.relative_scatter")
end
-- the "routing" variant's centroids after one EMA k-means step on q and k (decay default 0.999)
function attention.routing_update(centroids, q, k, decay)
  decay = args.opt_number(decay, 0.999, "attention.routing_update", "decay", { 0, 1 })
  return wrap(C.al_routing_update(expect_tensor(centroids, "attention.routing_update", "centroids"),
    expect_tensor(q, "attention.routing_update", "q"), expect_tensor(k, "attention.routing_update", "k"), decay), "attention.routing_update")
end
return attention
