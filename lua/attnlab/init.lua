-- attnlab: the Lua module over the C core (libattnlab) through the LuaJIT FFI.  This file is its
-- front door only: it gathers into one table, `lab`, what the module's rooms define.
--
--   core.lua, args.lua   the shared layer every file stands on (as lauxlib is Lua's): loading the
--                        core, raise and the one error shape, ownership of returned tensors, the
--                        1-based conversions; the argument checks
--   tensor.lua           the tensor metatype: methods and operators (lab.Tensor)
--   creation.lua         lab.tensor, zeros, randn, ..., the generator's seed and state
--   functions.lua        cat, stack, where, linear, the losses, ...; the autograd scopes
--   attention.lua        lab.attention and its primitives;  vision.lua  the image ops
--   files.lua            save, load, images, atomic writes;  runtime.lua  threads, memory, clock
--
-- Every file of the module reaches the shared layer with a plain require("attnlab.core") and
-- require("attnlab.args"); none is handed helpers by another, and none reads a private field of
-- lab.  The larger parts (nn, optim, run, viz, ...) are loaded on first use, below.
local core = require "attnlab.core"
local Tensor = require "attnlab.tensor"

local lab = {}

-- the shared layer's public faces
lab.C = core.C                              -- the core's functions, 0-based (the profiler wraps them)
lab.ffi_declarations = core.ffi_declarations
lab.root = core.root
lab.version = core.version
lab.raise = core.raise
lab.is_tensor = core.is_tensor
lab.Tensor = Tensor

-- The functions of each room, copied into lab; a name two rooms define is a mistake caught here.
local function add_functions_of(part)
  for name, value in pairs(require("attnlab." .. part)) do
    assert(lab[name] == nil, "attnlab: lab." .. name .. " is defined twice (" .. part .. ".lua)")
    lab[name] = value
  end
end
add_functions_of("creation")
add_functions_of("functions")
add_functions_of("vision")
add_functions_of("files")
add_functions_of("runtime")
lab.attention = require "attnlab.attention"

-- `attnlab run --device cuda`: everything the script makes (data, parameters) is made on the GPU
-- (the program has checked that there is one).
if (rawget(_G, "ATTNLAB_CLI") or {}).device == "cuda" then lab.set_default_device("cuda") end

-- The reference (docs/reference.md) from a script or the prompt: help(lab.nn.Linear), help("Tensor:narrow");
-- help_text returns the entry's text instead (or nil and why).  See lua/attnlab/help.lua.
function lab.help(x) return require("attnlab.help").help(x) end
function lab.help_text(x) return require("attnlab.help").text(x) end

-- Submodules, loaded on first use so that `require "attnlab"` stays cheap.
setmetatable(lab, {
  __index = function(t, k)
    local sub = ({ nn = "attnlab.nn", optim = "attnlab.optim", run = "attnlab.run", json = "attnlab.json",
                   analysis = "attnlab.analysis", viz = "attnlab.viz", profile = "attnlab.profile",
                   dist = "attnlab.dist", plot = "attnlab.plot", sweep = "attnlab.sweep",
                   scanpath = "attnlab.scanpath" })[k]
    if sub then
      local m = require(sub)
      rawset(t, k, m)
      return m
    end
  end,
})

return lab
