-- bench/stats.lua -- what the bench scripts share: their key=value arguments, the JSON lines a table
-- script reads, the median of a list.  dofile("bench/stats.lua") from the repository root, where
-- bench/run.sh runs them.
local stats = {}

-- cfg's defaults overwritten by the script's key=value arguments: a number where the default is
-- one; a key the script does not have is an error naming the script and its keys
function stats.args(script, cfg)
  for _, a in ipairs(arg or {}) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if not k or cfg[k] == nil then
      local keys = {}
      for key in pairs(cfg) do keys[#keys + 1] = key end
      table.sort(keys)
      error(string.format("%s: unknown argument '%s' (valid: %s)", script, a, table.concat(keys, ", ")))
    end
    if type(cfg[k]) == "number" then
      cfg[k] = tonumber(v) or error(string.format("%s: %s must be a number (got '%s')", script, k, v))
    else
      cfg[k] = v
    end
  end
  return cfg
end

-- a comma-separated list, numbers as numbers: "256,512" -> {256, 512}
function stats.list(s)
  local t = {}
  for x in tostring(s):gmatch("[^,]+") do t[#t + 1] = tonumber(x) or x end
  return t
end

-- The lines of the file=FILE.jsonl argument of a table script, decoded, each with its OpenBLAS
-- kernel choice ("blas": "env" as the environment sets it, "own" OpenBLAS's choice for the CPU;
-- "env" where bench/run.sh did not tag it)
function stats.table_lines(script)
  local path = (arg and arg[1] or ""):match("^file=(.+)$")
  if not path then error("usage: attnlab bench/" .. script .. " file=FILE.jsonl") end
  local json, lines = require "attnlab.json", {}
  for line in io.lines(path) do
    local r = json.decode(line)
    r.blas = r.blas or "env"
    lines[#lines + 1] = r
  end
  return lines
end
-- A table row's kernel column: the kernel attnlab ran (and PyTorch's, where it differs) and how it
-- was chosen
function stats.kernel_label(blas, attnlab_kernel, torch_kernel)
  local name = attnlab_kernel or "?"
  if torch_kernel and torch_kernel ~= name then name = name .. " / PyTorch " .. torch_kernel end
  return name .. (blas == "own" and " (OpenBLAS's choice)" or " (as the environment sets)")
end

-- prints a Markdown table's header row and its separator
function stats.print_header(columns)
  print("| " .. table.concat(columns, " | ") .. " |")
  print(string.rep("|---", #columns) .. "|")
end

-- the median of a list (the mean of the two middle values for an even count; the list is not changed)
function stats.median(t)
  if not t or #t == 0 then return nil end
  local c = {}
  for i, x in ipairs(t) do c[i] = x end
  table.sort(c)
  return #c % 2 == 1 and c[(#c + 1) / 2] or (c[#c / 2] + c[#c / 2 + 1]) / 2
end
return stats
