-- attnlab.attention: lab.attention(q, k, v [, opts]), its options (checked here for type, in C for
-- meaning: which variant takes which, shapes), lab.attention.variants() and the catalogue's
-- primitives (merge, topk_mask, grouped_softmax, skew/unskew, relative_gather/scatter,
-- routing_update).  init.lua loads it with the helpers the two share.
local ffi = require "ffi"

return function(lab, helpers)
  local C, raise, wrap, wrap_slot = helpers.C, helpers.raise, helpers.wrap, helpers.wrap_slot
  local args, cdim, ref_array = helpers.args, helpers.cdim, helpers.ref_array
  local typename, expect_tensor, check_int, check_number = args.typename, args.expect_tensor, args.check_int, args.check_number

  -- lab.attention(q, k, v [, opts]) and lab.attention.variants()
  local causal_modes = { [false] = 0, [true] = 1, top_left = 1, bottom_right = 2, none = 0 }
  local kernel_kinds = { auto = 0, dense = 1, tiled = 2 }
  local attention_opts = ffi.typeof("al_attention_opts")
  -- The options of power, dynamic_mask, landmark, routing, hyper, relative, flashbias and pointer:
  -- integers (with their least value) and tensors; which variant takes which is checked in C.
  local variant_int_options = { block_size = 1, local_blocks = 1, top_k = 1, cluster_size = 1, samples = 0, lsh_bits = -1 }
  local variant_tensor_options = { "dt_proj", "dt_a", "landmarks", "centroids", "rel_key", "rel_value", "bias_q", "bias_k",
                                   "pointer_w1", "pointer_w2", "pointer_v" }
  local function set_variant_options(o, opts)
    for name, least in pairs(variant_int_options) do
      local x = opts[name]
      if x ~= nil then
        if type(x) ~= "number" or x ~= math.floor(x) or x < least or x >= 2^53 or (name == "lsh_bits" and x == 0) then
          raise(string.format("attention: opts.%s must be an integer >= %d%s (got %s)", name, least,
            name == "lsh_bits" and ", not 0 (-1: one bucket)" or "", tostring(x)))
        end
        o[name] = (name == "samples" and x == 0) and -1 or x   -- C: samples 0 is the default, -1 none
      end
    end
    for _, name in ipairs(variant_tensor_options) do
      if opts[name] ~= nil then o[name] = expect_tensor(opts[name], "attention", "opts." .. name) end
    end
  end
  -- The neighborhood variants' layout: opts.grid = {H, W} (1 to 3 axes, row-major, product N = M);
  -- kernel_size, stride and dilation each an integer >= 1 for every axis or, with a grid, a table of
  -- one per axis; causal, with a grid, may be a table of booleans, one per axis.
  local function positive_int(x) return type(x) == "number" and x == math.floor(x) and x >= 1 and x < 2^53 end
  local function set_neighborhood_options(o, opts)
    local grid = opts.grid
    if grid ~= nil then
      if type(grid) ~= "table" or #grid < 1 or #grid > 3 then
        raise("attention: opts.grid must be a table of 1 to 3 axis lengths {H, W} (got " .. typename(grid) ..
          (type(grid) == "table" and " of " .. #grid .. " entries" or "") .. ")")
      end
      for a = 1, #grid do
        if not positive_int(grid[a]) then
          raise(string.format("attention: opts.grid[%d] must be an integer >= 1 (got %s)", a, tostring(grid[a])))
        end
        o.grid[a - 1] = grid[a]
      end
      o.grid_ndim = #grid
    end
    for _, name in ipairs{ "kernel_size", "stride", "dilation" } do
      local x = opts[name]
      if type(x) == "table" then
        if grid == nil or #x ~= #grid then
          raise(string.format("attention: opts.%s as a table needs opts.grid with as many axes (got %d entries, grid %s)",
            name, #x, grid and "of " .. #grid .. " axes" or "not given"))
        end
        for a = 1, #x do
          if not positive_int(x[a]) then
            raise(string.format("attention: opts.%s[%d] must be an integer >= 1 (got %s)", name, a, tostring(x[a])))
          end
          o["axis_" .. name][a - 1] = x[a]
        end
      elseif x ~= nil then
        if not positive_int(x) then
          raise("attention: opts." .. name .. " must be an integer >= 1" .. (grid and " or a table of one per grid axis" or "") ..
            " (got " .. tostring(x) .. ")")
        end
        o[name] = x
      end
    end
  end
  -- causal per axis (a neighborhood on a grid): {true, false}
  local function set_axis_causal(o, causal, grid)
    if type(grid) ~= "table" or #causal ~= #grid then
      raise(string.format("attention: opts.causal as a table (one boolean per axis) needs opts.grid with as many axes "
        .. "(got %d entries, grid %s)", #causal, type(grid) == "table" and "of " .. #grid .. " axes" or "not given"))
    end
    for a = 1, #causal do
      if type(causal[a]) ~= "boolean" then
        raise(string.format("attention: opts.causal[%d] must be true or false (got %s)", a, tostring(causal[a])))
      end
      o.axis_causal[a - 1] = causal[a] and 1 or 0
    end
  end
  -- Every option lab.attention takes (which variant takes which is checked in C); any other key is
  -- an error naming these, as a misspelt option would otherwise be silently ignored.
  local option_names = { "variant", "causal", "scale", "bias", "mask", "weights", "norm", "window", "grid", "kernel_size",
                         "stride", "dilation", "kernel", "beta", "gate", "agents", "agent_count", "k2", "v2", "gates", "ridge" }
  for _, name in ipairs{ "block_size", "local_blocks", "top_k", "cluster_size", "samples", "lsh_bits" } do
    assert(variant_int_options[name]); option_names[#option_names + 1] = name
  end
  for _, name in ipairs(variant_tensor_options) do option_names[#option_names + 1] = name end
  -- the scale and norm ranges: 0 would mean "the default" to the core, so a 0 given is refused
  -- rather than silently replaced (leave the option out for the default)
  local function nonzero_finite(x, what, default_text)
    if x == nil then return 0 end
    check_number(x, "attention", "opts." .. what, { finite = true })
    if x == 0 then raise("attention: opts." .. what .. " must not be 0 (leave it out for the default, " .. default_text .. ")") end
    return x
  end
  local weights_out = ref_array(1)
  local attention = setmetatable({ _option_names = option_names }, {
    __call = function(_, q, k, v, opts)
      expect_tensor(q, "attention", "q"); expect_tensor(k, "attention", "k"); expect_tensor(v, "attention", "v")
      opts = args.options_table(opts, "attention", "{variant=, causal=, ...}")
      args.check_options(opts, "attention", option_names)
      local o = attention_opts()
      if type(opts.variant or "") ~= "string" then raise("attention: opts.variant must be a string (got " .. typename(opts.variant) .. ")") end
      o.variant = opts.variant or "softmax"
      if type(opts.causal) == "table" then
        set_axis_causal(o, opts.causal, opts.grid)
      else
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
      if opts.norm ~= nil then check_number(opts.norm, "attention", "opts.norm", { 0, math.huge, lo_open = true, hi_open = true }) end
      o.linear_norm = opts.norm or 0
      if opts.window ~= nil and (type(opts.window) ~= "number" or opts.window ~= math.floor(opts.window) or opts.window < 1 or opts.window >= 2^53) then
        raise("attention: opts.window must be an integer >= 1 (got " .. tostring(opts.window) .. ")")
      end
      o.window = opts.window or 0
      set_neighborhood_options(o, opts)
      local kernel = kernel_kinds[opts.kernel or "auto"]
      if kernel == nil then raise("attention: opts.kernel must be 'auto', 'dense' or 'tiled' (got " .. tostring(opts.kernel) .. ")") end
      o.kernel = kernel
      -- linear-family and module-level variants' options (docs/attention-linear-family.md)
      for _, name in ipairs{ "beta", "gate", "agents", "k2", "v2" } do
        if opts[name] ~= nil then o[name] = expect_tensor(opts[name], "attention", "opts." .. name) end
      end
      if opts.gates ~= nil then o.head_gates = expect_tensor(opts.gates, "attention", "opts.gates") end
      if opts.agent_count ~= nil and (type(opts.agent_count) ~= "number" or opts.agent_count ~= math.floor(opts.agent_count)
          or opts.agent_count < 1 or opts.agent_count >= 2^53) then
        raise("attention: opts.agent_count must be an integer >= 1 (got " .. tostring(opts.agent_count) .. ")")
      end
      o.agent_count = opts.agent_count or 0
      if opts.ridge ~= nil and (type(opts.ridge) ~= "number" or not (opts.ridge > 0) or opts.ridge == math.huge) then
        raise("attention: opts.ridge must be a finite number > 0 (got " .. tostring(opts.ridge) .. ")")
      end
      o.ridge = opts.ridge or 0
      set_variant_options(o, opts)
      local want = opts.weights and true or false
      local out = wrap(C.al_attention(q, k, v, o, want and weights_out or nil), "attention")
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
end
