-- test_attention_options.lua -- the variants' own options as the C core's descriptors declare and
-- check them (core/attention/option_check.c): lab.attention.describe lists each variant's options
-- with kind, expected value and summary; every option is refused by every variant that does not own
-- it, naming its owners; a key no variant takes is refused, listing the variant's own; a value out of
-- kind or range says what it must be; a required option is asked for; a default given explicitly
-- changes nothing; lsa's norm divides as it says; MultiHeadAttention's by-name options are the
-- descriptors' non-tensor ones.
--   ./build/attnlab tests/lua/test_attention_options.lua
local check = dofile("tests/lua/check.lua")("attention_options")
local lab = lab or require "attnlab"

lab.seed(3)
local function max_abs_diff(a, b) return (a - b):abs():max():item() end
local q = lab.randn({ 1, 1, 4, 2 }, "float64")
local variants = lab.attention.variants()

---------------------------------------------------------------------------------------------------
-- what describe says
---------------------------------------------------------------------------------------------------
local kinds = { integer = true, number = true, tensor = true, choice = true, ["per-axis integer"] = true, grid = true,
                ["per-axis booleans"] = true }
local owners = {}   -- option name -> set of the variants that take it
local described, odd = 0, {}
for _, name in ipairs(variants) do
  local d = lab.attention.describe(name)
  if d.name ~= name or #d.summary < 20 or type(d.takes_bias) ~= "boolean" then odd[#odd + 1] = name end
  for _, o in ipairs(d.options) do
    described = described + 1
    owners[o.name] = owners[o.name] or {}
    owners[o.name][name] = true
    if not kinds[o.kind] or o.expects == "" or o.summary == "" or type(o.required) ~= "boolean" then
      odd[#odd + 1] = name .. "." .. o.name
    end
  end
end
check.ok(#odd == 0, "every variant has a name and summary, every option a known kind, what it expects and a summary",
  table.concat(odd, ", "))
check.ok(described >= 40, "the descriptors declare the variants' options (" .. described .. ")")
local window = lab.attention.describe("sliding_window").options[1]
check.ok(window.name == "window" and window.kind == "integer" and window.expects == "an integer >= 1" and window.required,
  "sliding_window's window: a required integer >= 1")
check.ok(not lab.attention.describe("delta").takes_bias and lab.attention.describe("softmax").takes_bias,
  "takes_bias: delta refuses a bias, softmax takes one")
check.fails(function() lab.attention.describe("nope") end, "attention.describe: unknown variant 'nope' (known: softmax, lsa")
check.fails(function() lab.attention.describe(3) end, "attention.describe: name must be a variant's name (got number)")

---------------------------------------------------------------------------------------------------
-- ownership: each option is its owners' only
---------------------------------------------------------------------------------------------------
for option, own in pairs(owners) do
  local named = {}
  for _, v in ipairs(variants) do if own[v] then named[#named + 1] = v end end
  local wrong = {}
  for _, v in ipairs(variants) do
    if not own[v] then
      local value = option == "causal" and { true } or 1      -- causal is every variant's, as a table only the grids'
      local ok, e = pcall(lab.attention, q, q, q, { variant = v, [option] = value })
      local want = option .. (option == "causal" and " as a table (one boolean per axis)" or "") ..
        " is an option of the variant(s) " .. table.concat(named, " ") .. ", not of '" .. v .. "'"
      if ok or not tostring(e):find(want, 1, true) then wrong[#wrong + 1] = v .. ": " .. tostring(e) end
    end
  end
  check.ok(#wrong == 0, option .. " is refused by every variant but " .. table.concat(named, ", ") .. ", naming them",
    table.concat(wrong, "; "))
end
-- and each owner knows it: a value of no option's kind fails on the value, not on the name
for _, name in ipairs(variants) do
  local wrong = {}
  for _, o in ipairs(lab.attention.describe(name).options) do
    local opts, want = { variant = name, [o.name] = print }, "opts." .. o.name .. " must be " .. o.expects .. " (got function: "
    if o.name == "causal" then   -- causal reaches a variant only as a table, one entry per grid axis
      opts, want = { variant = name, causal = { 7 }, grid = { 4 } }, "opts.causal[1] must be true or false (got 7)"
    end
    local ok, e = pcall(lab.attention, q, q, q, opts)
    if ok or not tostring(e):find(want, 1, true) then
      wrong[#wrong + 1] = o.name .. ": " .. tostring(e)
    end
  end
  check.ok(#wrong == 0, name .. " takes its options and checks their values", table.concat(wrong, "; "))
end
check.fails(function() lab.attention(q, q, q, { bogus = 1 }) end,
  "attention: unknown option 'bogus' (valid: variant, causal, scale, bias, mask, weights; the options of variant 'softmax': kernel)")
check.fails(function() lab.attention(q, q, q, { variant = "linear", windw = 3 }) end,
  "attention: unknown option 'windw' (valid: variant, causal, scale, bias, mask, weights; variant 'linear' has no options of its own)")

---------------------------------------------------------------------------------------------------
-- kinds, ranges, required options
---------------------------------------------------------------------------------------------------
local function fails(opts, needle) check.fails(function() lab.attention(q, q, q, opts) end, needle) end
fails({ variant = "sliding_window", window = 0 }, "attention: opts.window must be an integer >= 1 (got 0)")
fails({ variant = "sliding_window", window = 2 ^ 53 }, "opts.window must be an integer >= 1 (got 9.007199254741e+15)")
fails({ variant = "sliding_window", window = "2" }, "opts.window must be an integer >= 1 (got 2)")
fails({ variant = "local_linear", ridge = -1 }, "opts.ridge must be a finite number > 0 (got -1)")
fails({ variant = "local_linear", ridge = math.huge }, "opts.ridge must be a finite number > 0 (got inf)")
fails({ variant = "lsa", norm = 0 }, "opts.norm must be a finite number > 0 (got 0)")
fails({ variant = "power", causal = true, local_blocks = 4097 }, "opts.local_blocks must be an integer >= 1 and <= 4096 (got 4097)")
fails({ variant = "relative", rel_key = 3 }, "opts.rel_key must be a tensor (got 3)")
fails({ kernel = 1 }, "opts.kernel must be 'auto', 'dense' or 'tiled' (got 1)")
fails({ variant = "neighborhood", kernel_size = 1, grid = { 2, "x" } }, "opts.grid[2] must be an integer >= 1 (got x)")
fails({ variant = "neighborhood", kernel_size = { 1, 0 }, grid = { 2, 2 } }, "opts.kernel_size[2] must be an integer >= 1 (got 0)")
fails({ variant = "neighborhood", kernel_size = { 1, 1 } },
  "opts.kernel_size as a table needs opts.grid with as many axes (got 2 entries, grid not given)")
fails({ variant = "neighborhood" },
  "attention: variant 'neighborhood' needs opts.kernel_size: an integer >= 1 or a table of one per grid axis")
fails({ variant = "sliding_window" }, "attention: variant 'sliding_window' needs opts.window: an integer >= 1")
-- the first bad option in name order is the one reported, whatever the table's order
fails({ variant = "hyper", samples = -1, block_size = 0 }, "opts.block_size must be an integer >= 1 (got 0)")
-- an option of another variant is reported before a bad value of the variant's own
fails({ variant = "hyper", block_size = 0, window = 3 }, "window is an option of the variant(s) sliding_window, not of 'hyper'")

---------------------------------------------------------------------------------------------------
-- defaults: not given is the default given
---------------------------------------------------------------------------------------------------
local k, v = lab.randn({ 1, 1, 12, 2 }, "float64"), lab.randn({ 1, 1, 12, 3 }, "float64")
local q12 = lab.randn({ 1, 1, 12, 2 }, "float64")
local function seeded(opts) lab.seed(17) return lab.attention(q12, k, v, opts) end
check.near(max_abs_diff(seeded{ variant = "power", causal = true },
  seeded{ variant = "power", causal = true, block_size = 1, local_blocks = 1 }), 0, 0, "power's defaults: block_size 1, local_blocks 1")
check.near(max_abs_diff(seeded{ variant = "hyper", block_size = 4 },
  seeded{ variant = "hyper", block_size = 4, samples = 4, lsh_bits = 7 }), 0, 0, "hyper's defaults: samples = block_size, lsh_bits 7")
check.near(max_abs_diff(seeded{ variant = "hyper" }, seeded{ variant = "hyper", block_size = 64 }), 0, 0, "hyper's block_size 64")
check.near(max_abs_diff(seeded{ variant = "local_linear" }, seeded{ variant = "local_linear", ridge = 1e-2 }), 0, 0,
  "local_linear's ridge 1e-2")
-- lsa: norm divides instead of the key count M = 12
local plain, normed = lab.attention(q12, k, v, { variant = "lsa" }), lab.attention(q12, k, v, { variant = "lsa", norm = 3 })
check.near(max_abs_diff(normed, plain * (12 / 3)), 0, 1e-12, "lsa's norm 3 is the key count's output times 12 / 3")
fails({ norm = 3 }, "norm is an option of the variant(s) lsa, not of 'softmax'")

---------------------------------------------------------------------------------------------------
-- MultiHeadAttention hands on by name exactly the descriptors' options that are not tensors and
-- that no module entry takes as its own
---------------------------------------------------------------------------------------------------
local nn = lab.nn
local module_options = {}
for _, entry in pairs(nn.attention_variant_modules) do
  for _, key in ipairs(entry.options or {}) do module_options[key] = true end
end
local expected = {}
for option, own in pairs(owners) do
  local tensor = false
  for variant in pairs(own) do
    for _, o in ipairs(lab.attention.describe(variant).options) do tensor = tensor or (o.name == option and o.kind == "tensor") end
  end
  if not tensor and not module_options[option] and option ~= "norm" and option ~= "causal" then expected[option] = true end
end
local listed, wrong = {}, {}
for _, name in ipairs(nn.attention_option_names) do
  listed[name] = true
  if not expected[name] then wrong[#wrong + 1] = name .. " (not expected)" end
end
for name in pairs(expected) do if not listed[name] then wrong[#wrong + 1] = name .. " (missing)" end end
check.ok(#wrong == 0 and listed.window and listed.top_k, "nn.attention_option_names: the descriptors' plain options",
  table.concat(wrong, ", "))
local m = nn.MultiHeadAttention{ dim = 4, heads = 1, variant = "power", causal = true, block_size = 2 }
check.ok(m.attention_opts.block_size == 2, "MultiHeadAttention hands block_size to lab.attention")
lab.seed(4)
local x = lab.randn{ 1, 6, 4 }
check.ok(m(x):shape_string() == "{1,6,4}", "a power module runs with its block_size")
local soft = nn.MultiHeadAttention{ dim = 4, heads = 1, block_size = 2 }
check.fails(function() soft(x) end, "block_size is an option of the variant(s) power hyper, not of 'softmax'")
-- every entry is a lab.attention variant's or a module-only one's
local stray = {}
local known = {}
for _, name in ipairs(variants) do known[name] = true end
for name, entry in pairs(nn.attention_variant_modules) do
  if not known[name] and not entry.module_only then stray[#stray + 1] = name end
end
check.ok(#stray == 0, "each entry of nn.attention_variant_modules belongs to a variant", table.concat(stray, ", "))

os.exit(check.report())
