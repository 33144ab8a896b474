-- test_reference.lua -- docs/reference.md documents every public name of the module (and names
-- nothing that does not exist), help() finds its entries from a script, the prompt and the command
-- line, and every lab.nn constructor that takes an options table rejects a key it does not know.
--   ./build/attnlab tests/lua/test_reference.lua
local check = dofile("tests/lua/check.lua")("reference")
local lab = lab or require "attnlab"
local H = require "attnlab.help"
local nn = lab.nn

local ATTNLAB = os.getenv("ATTNLAB") or "./attnlab"

---------------------------------------------------------------------------------------------------
-- every public name is documented
---------------------------------------------------------------------------------------------------
local documented = assert(H.documented())
local walked = {}          -- exact lookup key -> true, for every public name
local tables_walked = {}   -- table -> true
local missing = {}
for _, entry in ipairs(H.public_tables()) do
  tables_walked[entry[2]] = true
  for _, pair in ipairs(H.names_of(entry)) do
    local name = pair[1]
    walked[H.key_of(name, true)] = true
    if not documented[H.key_of(name, true)] then missing[#missing + 1] = name end
  end
end
table.sort(missing)
for _, name in ipairs(missing) do print("not in docs/reference.md: " .. name) end
check.ok(#missing == 0, "docs/reference.md documents every public name", #missing .. " missing: " .. table.concat(missing, ", "))
local count = 0
for _ in pairs(walked) do count = count + 1 end
check.ok(count > 250, "the walk saw the public tables (" .. count .. " names)")

-- the walk enters every table lab hands out (a new lab.foo = {...} must be walked, and documented)
local keys = {}
for k, v in pairs(lab) do
  if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "table" and k ~= "C" then keys[#keys + 1] = k end
end
table.sort(keys)
for _, k in ipairs(keys) do
  check.ok(tables_walked[lab[k]], "the walk enters lab." .. k, "add it to public_tables in lua/attnlab/help.lua")
end
-- and every file of the module: a table the walk enters, or one of the module's internals
local internal = { init = lab, attention = lab.attention, help = true,
                   -- the shared layer every file requires (loading, raise, the argument checks)
                   core = true, args = true,
                   -- the rooms init.lua gathers into lab (walked with lab and lab.Tensor)
                   tensor = lab.Tensor, creation = lab, functions = lab, files = lab, runtime = lab,
                   vision = lab, vision_options = true,
                   -- the rooms nn.lua gathers into lab.nn (walked with lab.nn and its classes)
                   nn_module = true, nn_layers = true, nn_attention = true, nn_variants = true, nn_vision = true,
                   gpt = true,
                   -- the parts of lab.run (run.lua keeps what is public of them)
                   run_config = true, run_checkpoint = true, run_dir = true, run_commands = true,
                   -- the parts of lab.sweep (sweep.lua re-exports what is public of them)
                   sweep_grid = true, sweep_manifest = true, sweep_local = true, sweep_process = true, sweep_slurm = true,
                   sweep_collect = true, sweep_cli = true,
                   raster = true,  -- the stimuli's drawing helpers (docs/visual_search.md), not part of lab
                   counter_rng = true }  -- the data generators' counter-based hash, not part of lab
local p = io.popen('ls "' .. lab.root .. '/lua/attnlab"')
local files = 0
for f in p:lines() do
  local name = f:match("^([%w_]+)%.lua$")
  if name then
    files = files + 1
    local covered = internal[name] ~= nil or (lab[name] ~= nil and tables_walked[lab[name]])
    check.ok(covered, "lua/attnlab/" .. f .. " is walked by the reference test",
      "a new module: add its table to public_tables in lua/attnlab/help.lua and its names to docs/reference.md")
  end
end
p:close()
check.ok(files >= 10, "found the module's files (" .. files .. ")")
check.ok(#H.task_modules() >= 2, "the task modules are walked (" .. table.concat(H.task_modules(), ", ") .. ")")

-- and the reference names nothing that does not exist (a stale entry after a rename)
local extra = { ["Tensor"] = true, ["Tensor.grad"] = true }   -- the section, and the property t.grad
for k in pairs(walked) do
  local prefix = k:match("^(.*)%.[^.]+$")
  while prefix do extra[prefix] = true; prefix = prefix:match("^(.*)%.[^.]+$") end
end
local stale = {}
for k in pairs(documented) do if not walked[k] and not extra[k] then stale[#stale + 1] = k end end
table.sort(stale)
check.ok(#stale == 0, "every name docs/reference.md documents exists", table.concat(stale, ", "))

-- the index convention is stated at the top, randint's ids among it
local ref = check.read_file(lab.root .. "/docs/reference.md")
local conventions = ref:match("## Conventions.-\n## ")
check.ok(conventions and conventions:find("count from 1", 1, true) and conventions:find("lab.randint(V, shape)", 1, true)
  and conventions:find("both ends included", 1, true), "the reference states the index convention, randint's ids included, first")
check.ok(ref:find("## Conventions", 1, true) < ref:find("### `lab.tensor`", 1, true), "the conventions come before the entries")
-- ... and what it says of randint is what randint does: ids 1 .. V, ranges with both ends
lab.seed(3)
local draws = lab.randint(0, 3, { 2000 })
check.ok(draws:min():item() == 0 and draws:max():item() == 3, "randint(0, 3) draws 0 .. 3, as the reference says")
local ids = lab.randint(4, { 2000 })
check.ok(ids:min():item() == 1 and ids:max():item() == 4, "randint(V) draws the ids 1 .. V, as the reference says")
check.fails(function() lab.embedding(lab.randn{ 4, 2 }, lab.tensor({ 0 }, "int64")) end, "out of range",
  "an id 0 into embedding is an error, as the reference says")
local logits = lab.randn{ 2, 3 }
check.near(lab.cross_entropy(logits, lab.tensor({ 0, 2 }, "int64"), { ignore = 0 }):item(),
  lab.cross_entropy(logits:narrow(1, 2, 1), lab.tensor({ 2 }, "int64")):item(), 1e-6,
  "cross_entropy{ignore = 0} leaves out the positions whose target is 0, as the reference says")

---------------------------------------------------------------------------------------------------
-- help
---------------------------------------------------------------------------------------------------
local block = lab.help_text("nn.TransformerBlock")
check.ok(block and block:find("^### `lab.nn.TransformerBlock`"), "help_text('nn.TransformerBlock') is that entry", tostring(block))
check.ok(block and block:find("mlp = false", 1, true) and block:find("attention-only", 1, true),
  "the TransformerBlock entry documents mlp = false")
check.ok(block and not block:find("\n### ", 1, true) and not block:find("\n## ", 1, true), "an entry stops at the next heading")
check.ok(lab.help_text(lab.nn.TransformerBlock) == block, "help_text(lab.nn.TransformerBlock): the same entry, by value")
check.ok(lab.help_text("TransformerBlock") == block, "help_text('TransformerBlock'): by the last part of the name")
check.ok(lab.help_text("lab.nn.TransformerBlock") == block, "help_text('lab.nn.TransformerBlock'): with the prefix")
check.ok(lab.help_text(lab.nn.TransformerBlock{ dim = 8, heads = 2 }) == block, "help_text(a block): its class's entry")
check.ok((lab.help_text(lab.optim.Adam(nn.Linear(2, 2))) or ""):find("^## `lab.optim`"), "help_text(an optimiser): lab.optim")
local mqar = require "attnlab.tasks.mqar"
check.ok((lab.help_text(mqar.Model{ vocab = 8, dim = 8, heads = 2, layers = 1 }) or ""):find("^### `attnlab.tasks.mqar.Model`"),
  "help_text(a task's model): its class's entry")
local linear = lab.help_text("Linear")
check.ok(linear and linear:find("^### `lab.nn.Linear`"), "help_text('Linear') is nn.Linear (the case decides first)", tostring(linear))
local flinear = lab.help_text("linear")
check.ok(flinear and flinear:find("^### `lab.linear`"), "help_text('linear') is lab.linear", tostring(flinear))
local narrow = lab.help_text("tensor.NARROW")
check.ok(narrow and narrow:find("`Tensor:narrow`", 1, true) and narrow:find("1-based", 1, true),
  "help_text('tensor.NARROW'): Tensor:narrow, case and separator ignored")
check.ok(lab.help_text(lab.Tensor.narrow) == narrow, "help_text(lab.Tensor.narrow): by value")
local randn = lab.help_text(lab.randn)
check.ok(randn and randn:find("`lab.randn`", 1, true) and randn:find("```lua", 1, true), "help_text(lab.randn) has an example")
local randint = lab.help_text("randint")
check.ok(randint and randint:find("both ends included", 1, true), "help_text('randint') says both ends are included")
local tensor_section = lab.help_text(lab.randn{ 2 })
check.ok(tensor_section and tensor_section:find("`lab.Tensor`", 1, true) and tensor_section:find("Entries", 1, true),
  "help_text(a tensor): the Tensor section and its entries")
local nn_section = lab.help_text("nn")
check.ok(nn_section and nn_section:find("Entries", 1, true) and nn_section:find("lab.nn.Linear;", 1, true)
  and nn_section:find("unknown option", 1, true),
  "help_text('nn'): the section's text and the list of its entries")
check.ok(lab.help_text("run:log") and lab.help_text("run:log"):find("`Run:log`", 1, true), "help_text('run:log') finds Run:log")
check.ok(lab.help_text("profile") and lab.help_text("profile"):find(":report", 1, true), "help_text('profile') is lab.profile")
check.ok(lab.help_text("attnlab.tasks.mqar.batch") and lab.help_text("mqar.batch") == lab.help_text("attnlab.tasks.mqar.batch"),
  "help_text finds the task helpers with or without attnlab.tasks")
local none, why = lab.help_text("no_such_name_xyz")
check.ok(none == nil and why and why:find("no entry for 'no_such_name_xyz'", 1, true), "an unknown name: nil and why", tostring(why))
local _, near = lab.help_text("set_head")
check.ok(near and near:find("MultiHeadAttention:set_head_scale", 1, true), "an unknown name: the near names", tostring(near))
local several, which = lab.help_text("load_state_dict")
check.ok(several == nil and which and which:find("Module:load_state_dict", 1, true) and which:find("Optimizer:load_state_dict", 1, true),
  "a last part that names several entries: they are listed", tostring(which))
local conv = lab.help_text("conventions")
check.ok(conv and conv:find("^## Conventions") and conv:find("randint", 1, true), "help_text('conventions'): a section by its title")
check.ok(lab.help_text("attention") == lab.help_text(lab.attention) and lab.help_text("attention"):find("^### `lab.attention`"),
  "help_text('attention') is the function lab.attention, not the section of that title")
local index = lab.help_text()
check.ok(index and index:find("Sections", 1, true) and index:find("lab.nn", 1, true), "help_text(): the index of sections")
local _, not_found = lab.help_text(function() end)
check.ok(not_found and not_found:find("help: no entry for this function", 1, true), "help_text(a function of the user's): why not")

-- lab.help prints the entry and returns nothing (the prompt would print a result a second time)
local printed = {}
local real_print = print
print = function(...) printed[#printed + 1] = table.concat({ ... }, "\t") end
local nres = select("#", lab.help("nn.Linear"))
lab.help("no_such_name_xyz")
print = real_print
check.ok(nres == 0 and printed[1] == linear, "lab.help prints the entry and returns nothing")
check.ok(printed[2] and printed[2]:find("no entry", 1, true), "lab.help of an unknown name prints why")
check.ok(rawget(_G, "help") == lab.help, "inside the attnlab program, help is a global")

-- from the command line and the prompt
local function sh(cmd)
  local out_file = os.tmpname()
  local err_file = os.tmpname()
  local ok, _, rc = os.execute(cmd .. " >" .. out_file .. " 2>" .. err_file)
  if type(ok) == "number" then rc = ok / 256 end   -- LuaJIT without 5.2 compat: the raw status
  local out, err = check.read_file(out_file), check.read_file(err_file)
  os.remove(out_file); os.remove(err_file)
  return rc, out, err
end
local rc, out, err = sh(ATTNLAB .. " help nn.TransformerBlock")
check.ok(rc == 0 and out:find("### `lab.nn.TransformerBlock`", 1, true) and out:find("mlp = false", 1, true) and err == "",
  "attnlab help nn.TransformerBlock prints the entry", tostring(rc) .. " " .. tostring(err))
rc, out, err = sh(ATTNLAB .. " help no_such_name_xyz")
check.ok(rc == 1 and out == "" and err:find("^attnlab: help: no entry for 'no_such_name_xyz'"),
  "attnlab help of an unknown name: one line on stderr, status 1", tostring(rc) .. " " .. tostring(err))
rc, out = sh(ATTNLAB .. " help")
check.ok(rc == 0 and out:find("Sections", 1, true), "attnlab help: the index")
rc, out, err = sh(ATTNLAB .. " help a b")
check.ok(rc == 2 and err:find("unexpected argument 'b'", 1, true), "attnlab help takes one name", tostring(err))
rc, out = sh("printf 'help(\"nn.Linear\")\\nhelp(lab.nn.MLP)\\n' | " .. ATTNLAB)
local _, n_linear = out:gsub("### `lab.nn.Linear`", "")
check.ok(rc == 0 and n_linear == 1 and out:find("### `lab.nn.MLP`", 1, true), "help(...) at the prompt prints each entry once",
  tostring(rc) .. " " .. out:sub(1, 200))
rc, out = sh(ATTNLAB .. " -e 'help(\"randint\")'")
check.ok(rc == 0 and out:find("`lab.randint`", 1, true), "help(...) in a -e chunk")

-- attnlab --help lists every flag, the viewer's among them; attnlab view --help is the viewer's usage
rc, out, err = sh(ATTNLAB .. " --help")
for _, flag in ipairs{ "--out", "--view", "--device", "--threads", "--screenshot", "--step", "--layout", "--diff", "--layer",
                       "--head", "--query", "--log-y", "--size", "--scale", "--compare", "--font", "--follow", "--events",
                       "--print-layout", "--bench-frames", "--version", "-e", "help" } do
  check.ok(rc == 0 and out:find(flag, 1, true), "attnlab --help lists " .. flag)
end
rc, out, err = sh(ATTNLAB .. " view --help")
check.ok(rc == 0 and out:find("usage: attnlab view RUN_DIR", 1, true) and err == "", "attnlab view --help prints the viewer's usage",
  tostring(rc) .. " " .. tostring(err))
for _, flag in ipairs{ "--screenshot", "--step", "--layout", "--diff", "--layer", "--head", "--query", "--log-y", "--size",
                       "--scale", "--compare" } do
  check.ok(out:find(flag, 1, true), "attnlab view --help describes " .. flag)
end
rc, out, err = sh(ATTNLAB .. " view -h")
check.ok(rc == 0 and out:find("usage: attnlab view", 1, true), "attnlab view -h too")
rc, _, err = sh(ATTNLAB .. " view /nonexistent --step")
check.ok(rc == 2 and err:find("--step needs a value", 1, true) and err:find("attnlab view --help", 1, true),
  "a viewer flag without its value still says so, pointing at --help", tostring(err))

-- the README points at the shipped reference, not at ../shared/API.md (users' clones have no ../shared)
check.ok(not check.read_file(lab.root .. "/README.md"):find("../shared/API.md", 1, true), "README does not point at ../shared/API.md")
check.ok(check.read_file(lab.root .. "/README.md"):find("docs/reference.md", 1, true), "README links to docs/reference.md")

---------------------------------------------------------------------------------------------------
-- every nn constructor that takes an options table rejects an unknown key
---------------------------------------------------------------------------------------------------
-- how to call each constructor of lab.nn with opts as its options table; those that take none
local with_options = {
  Linear = function(o) return nn.Linear(4, 3, o) end,
  LayerNorm = function(o) return nn.LayerNorm(4, o) end,
  MLP = function(o) o.dims = o.dims or { 4, 8, 2 } return nn.MLP(o) end,
  MultiHeadAttention = function(o) o.dim, o.heads = o.dim or 8, o.heads or 2 return nn.MultiHeadAttention(o) end,
  TransformerBlock = function(o) o.dim, o.heads = o.dim or 8, o.heads or 2 return nn.TransformerBlock(o) end,
  Conv2d = function(o) return nn.Conv2d(3, 4, 3, o) end,
  MaxPool2d = function(o) return nn.MaxPool2d(2, o) end,
  AvgPool2d = function(o) return nn.AvgPool2d(2, o) end,
  EccPool2d = function(o) o.slope, o.deg2px = o.slope or 0.07, o.deg2px or 8 return nn.EccPool2d(o) end,
  GPT = function(o)
    o.vocab, o.context, o.layers, o.width, o.heads = o.vocab or 10, o.context or 8, o.layers or 1, o.width or 8, o.heads or 2
    return nn.GPT(o)
  end,
}
local without_options = { Embedding = true, Sequential = true, ReLU = true, GELU = true, Tanh = true, Sigmoid = true,
                          Module = true, class = true }
local helpers = { check_options = true, check_positive_int = true, uniform = true, split_heads = true, moh_gates = true,
                  attention_module_options = true, check_input = true }
local constructors = {}
for k, v in pairs(nn) do
  if type(k) == "string" and (H.is_class(v) or (type(v) == "function" and k:match("^%u"))) then constructors[#constructors + 1] = k end
end
table.sort(constructors)
check.ok(#constructors >= 11, "found the nn constructors (" .. table.concat(constructors, ", ") .. ")")
for _, name in ipairs(constructors) do
  local make = with_options[name]
  check.ok(make or without_options[name], "lab.nn." .. name .. " is known to this test",
    "a new constructor: add it to with_options (it takes an options table) or without_options")
  if make then
    local ok, e = pcall(make, { bogus_option = 3 })
    check.ok(not ok and tostring(e):find(name .. ": unknown option 'bogus_option' (valid: ", 1, true),
      "lab.nn." .. name .. " rejects an unknown option, naming itself and the valid keys", tostring(e))
    check.ok(not ok and tostring(e):find("^[^\n]*test_reference%.lua:%d+: "), name .. "'s error points at the caller's line", tostring(e))
    check.ok(pcall(make, {}), "lab.nn." .. name .. " still builds with its valid options")
  end
end
for k, v in pairs(nn) do
  if type(v) == "function" and not k:match("^%u") then
    check.ok(helpers[k] or without_options[k], "lab.nn." .. k .. " is known to this test (a helper, not a constructor)")
  end
end
check.fails(function() mqar.Model{ vocab = 8, dim = 8, heads = 2, layers = 1, layer = 2 } end,
  "mqar.Model: unknown option 'layer' (valid: vocab, dim, heads, layers, variant, attention)")
check.fails(function() require("attnlab.tasks.oat").Model{ rows = 2, cols = 3, layer = 2 } end,
  "oat.Model: unknown option 'layer' (valid: n, rows, cols, patch,")
check.fails(function() require("attnlab.tasks.visual_search").Net{ channel = { 4, 8, 8 } } end,
  "SearchNet: unknown option 'channel' (valid: channels, size, classes)")
-- the message lists the valid keys
check.fails(function() nn.Linear(4, 3, { bais = false }) end, "Linear: unknown option 'bais' (valid: bias)")
check.fails(function() nn.LayerNorm(4, { epsilon = 1e-6 }) end, "LayerNorm: unknown option 'epsilon' (valid: eps, bias)")
check.fails(function() nn.MLP{ dims = { 2, 3 }, act = "relu" } end, "MLP: unknown option 'act' (valid: dims, in, hidden, out, activation, bias)")
check.fails(function() nn.TransformerBlock{ dim = 8, heads = 2, mlp = false, bogus_option = 3 } end,
  "TransformerBlock: unknown option 'bogus_option' (valid: dim, heads, head_dim, kv_heads, variant, causal, bias, scale, norm, attention, mlp,")
check.fails(function() nn.MultiHeadAttention{ dim = 8, zzz = 1, aaa = 2 } end, "MultiHeadAttention: unknown options 'aaa', 'zzz' (valid: dim, heads,")
-- a MultiHeadAttention option given to the block by name: where it goes
check.fails(function() nn.TransformerBlock{ dim = 8, heads = 2, variant = "relative", max_relative = 4 } end,
  "MultiHeadAttention's option max_relative goes in attention = {max_relative = ...}")
-- lab.attention's options, though, the block takes by name (the C core's descriptors list them)
check.ok(pcall(nn.TransformerBlock, { dim = 8, heads = 2, variant = "dynamic_mask", top_k = 4 }),
  "TransformerBlock takes lab.attention's top_k by name")
check.fails(function() nn.TransformerBlock{ dim = 8, heads = 2, attention = { bogus_option = 1 } } end,
  "TransformerBlock: unknown option 'bogus_option' in attention = {...} (valid: dim, heads,")

-- every key accepted before stays accepted: none of MultiHeadAttention's or TransformerBlock's valid
-- options is refused as unknown (values of the wrong kind may fail otherwise, never as unknown)
local function not_unknown(make, key, what)
  local ok, e = pcall(make, { [key] = 1 })
  check.ok(ok or not tostring(e):find("unknown option", 1, true), what .. " accepts the option " .. key, tostring(e))
end
local mha_valid = nn.attention_module_options()
for _, key in ipairs{ "dim", "heads", "head_dim", "kv_heads", "out_dim", "context_dim", "variant", "causal", "scale", "norm",
                      "bias", "record", "attention", "window", "kernel_size", "stride", "dilation", "grid", "kernel",
                      "block_size", "local_blocks", "top_k", "cluster_size", "samples", "lsh_bits", "landmarks", "bias_q",
                      "bias_k", "max_relative", "clusters", "routing_decay", "pointer_hidden", "agent_count", "gated",
                      "ridge", "rank", "global_query", "shared_heads", "active_heads", "qk_mean", "qk_std" } do
  not_unknown(with_options.MultiHeadAttention, key, "MultiHeadAttention")
  local listed = false
  for _, k in ipairs(mha_valid) do listed = listed or k == key end
  check.ok(listed, "nn.attention_module_options() lists " .. key)
end
for _, key in ipairs{ "dim", "heads", "head_dim", "kv_heads", "variant", "causal", "bias", "scale", "norm", "attention",
                      "mlp", "mlp_ratio", "activation", "dropout", "window", "kernel_size", "stride", "dilation", "grid",
                      "kernel", "block_size", "local_blocks", "top_k", "cluster_size", "samples", "lsh_bits" } do
  not_unknown(with_options.TransformerBlock, key, "TransformerBlock")
end
-- options of a variant other than the module's are still accepted (one table for every variant)
check.ok(pcall(nn.MultiHeadAttention, { dim = 8, heads = 2, variant = "flow", shared_heads = 1, active_heads = 1, agent_count = 3 }),
  "MultiHeadAttention takes another variant's options (as a shared table of options)")
check.ok(pcall(nn.TransformerBlock, { dim = 8, heads = 4, variant = "moh", attention = { shared_heads = 1, active_heads = 2 } }),
  "TransformerBlock{attention = {...}} still takes MultiHeadAttention options")

---------------------------------------------------------------------------------------------------
-- TransformerBlock{mlp = false}: attention only
---------------------------------------------------------------------------------------------------
lab.seed(5)
local ao = nn.TransformerBlock{ dim = 8, heads = 2, causal = true, mlp = false }
check.ok(ao.mlp == nil and ao.ln2 == nil and ao.children.mlp == nil and ao.children.ln2 == nil,
  "mlp = false: no ln2 and no mlp children")
local names = {}
for _, pair in ipairs(ao:named_parameters()) do names[#names + 1] = pair[1] end
local joined = table.concat(names, " ")
check.ok(not joined:find("mlp", 1, true) and not joined:find("ln2", 1, true) and joined:find("attn.q.weight", 1, true),
  "mlp = false: the parameters are ln1's and attn's", joined)
local full = nn.TransformerBlock{ dim = 8, heads = 2, causal = true }
check.ok(full.mlp ~= nil and full.ln2 ~= nil, "the default block keeps its MLP")
check.ok(ao:num_parameters() == full:num_parameters() - full.mlp:num_parameters() - full.ln2:num_parameters(),
  "mlp = false removes exactly the MLP's and ln2's parameters")
local x = lab.randn{ 2, 5, 8 }
local y = ao(x)
local by_hand = x + ao.attn(ao.ln1(x))
check.ok((y - by_hand):abs():max():item() == 0, "mlp = false: forward is x + attn(ln1(x))")
check.ok(y:shape_string() == "{2,5,8}", "mlp = false: (B, N, dim) in and out")
y:sum():backward()
check.ok(ao.attn.q.weight.grad ~= nil and ao.ln1.weight.grad ~= nil, "mlp = false: gradients reach attn and ln1")
check.ok(tostring(ao):find("attention only", 1, true), "describe() says the block is attention-only", tostring(ao))
check.ok(pcall(nn.TransformerBlock, { dim = 8, heads = 2, mlp = true }), "mlp = true is the default block")
check.fails(function() nn.TransformerBlock{ dim = 8, heads = 2, mlp = "no" } end,
  "TransformerBlock: mlp must be true or false (false: an attention-only block; got no)")
-- an attention-only block saves and loads its state like any module
local sd = ao:state_dict()
local ao2 = nn.TransformerBlock{ dim = 8, heads = 2, causal = true, mlp = false }
ao2:load_state_dict(sd)
check.ok((ao2(x) - ao(x)):abs():max():item() == 0, "an attention-only block's state dict loads into another")

check.cleanup()
os.exit(check.report(), true)
