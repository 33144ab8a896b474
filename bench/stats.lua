-- bench/stats.lua -- what the bench scripts share: the median of a list (the mean of the two middle
-- values for an even count; the list is not changed).  dofile("bench/stats.lua") from the repository
-- root, where bench/run.sh runs them.
local stats = {}
function stats.median(t)
  if not t or #t == 0 then return nil end
  local c = {}
  for i, x in ipairs(t) do c[i] = x end
  table.sort(c)
  return #c % 2 == 1 and c[(#c + 1) / 2] or (c[#c / 2] + c[#c / 2 + 1]) / 2
end
return stats
