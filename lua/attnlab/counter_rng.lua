-- attnlab.counter_rng: counter-based random numbers for the data generators (the multiplication
-- problems, the visual-search stimuli).  A draw is a hash of its coordinates (seed, stream, index,
-- ...), splitmix64's finaliser chained over them, not a step of lab's global generator, so a data
-- set depends on nothing but its seed and the coordinates: the same whatever else the script draws
-- (initialisation, dropout), and a generator's whole state is a counter a checkpoint can hold.
local ffi = require "ffi"
local bit = require "bit"

local M = {}

local U64 = ffi.typeof("uint64_t")
local bxor, rshift = bit.bxor, bit.rshift
local GOLDEN = 0x9e3779b97f4a7c15ULL

-- splitmix64's output function (Steele et al. 2014): a bijection on 64 bits that mixes well
local function mix64(z)
  z = z + GOLDEN
  z = bxor(z, rshift(z, 30)) * 0xbf58476d1ce4e5b9ULL
  z = bxor(z, rshift(z, 27)) * 0x94d049bb133111ebULL
  return bxor(z, rshift(z, 31))
end
M.mix64 = mix64

-- key then v: mix64(key xor v), one more coordinate
function M.extend(key, v) return mix64(bxor(key, U64(v))) end

-- the hash of (seed, c1, c2, ...) as a uint64: mix64(seed), then each coordinate folded in
function M.hash(seed, ...)
  local key = mix64(U64(seed))
  for i = 1, select("#", ...) do key = mix64(bxor(key, U64((select(i, ...))))) end
  return key
end

-- a uint64 as a uniform number in [0, 1) with 53 random bits
function M.to_uniform(z) return tonumber(rshift(z, 11)) / 2 ^ 53 end

-- uniform in [0, 1) at the coordinates (seed, c1, c2, ...)
function M.uniform(seed, ...) return M.to_uniform(M.hash(seed, ...)) end

-- a stream of uniform numbers in [0, 1) keyed by (seed, c1, c2, ...): the function it returns gives
-- draw k = to_uniform(extend(key, k)) at its k-th call, so a stream depends on its key alone
function M.stream(seed, ...)
  local key = M.hash(seed, ...)
  local k = 0
  return function()
    k = k + 1
    return M.to_uniform(M.extend(key, k))
  end
end

return M
