-- attnlab.sweep_collect: the points' summary.json merged into one table (lab.sweep.collect).
--
-- Each summary is flattened to its numeric leaves with dotted names ({"test_mse": 0.2, "ov_mu":
-- [0.3, -0.3], "length": [{"L": 10, "model": 0.1}]} gives test_mse, ov_mu.1, ov_mu.2, length.1.L,
-- length.1.model; booleans, strings and nulls are left out).  Points that differ only in the seed
-- form one setting (`over`, default "seed": any axis can be the one averaged over), and each
-- metric is reported as the mean and the sample standard deviation (n - 1 in the denominator; none
-- for a single point) over the setting's finished points.  The setting's columns are the axes with
-- more than one value; n is how many of its points had a summary.
--
-- Written into the sweep directory as results.md (Markdown, mean ± sd, 4 significant digits) and
-- results.csv (<axes>, n, then <metric>.mean and <metric>.sd for each metric, numbers in full).
local json = require "attnlab.json"
local read = require("attnlab.core").read_file

local M = {}

-- Dotted names in natural order: "ov_mu.2" before "ov_mu.10", "a.b" after "a".
local function name_less(a, b)
  local pa, pb = {}, {}
  for part in a:gmatch("[^.]+") do pa[#pa + 1] = part end
  for part in b:gmatch("[^.]+") do pb[#pb + 1] = part end
  for i = 1, math.min(#pa, #pb) do
    local x, y = pa[i], pb[i]
    if x ~= y then
      local nx, ny = tonumber(x), tonumber(y)
      if nx and ny then return nx < ny end
      if nx or ny then return nx ~= nil end
      return x < y
    end
  end
  return #pa < #pb
end

-- {["a.b"] = number} of every numeric leaf of a decoded JSON value.
function M.flatten(value, prefix, out)
  out = out or {}
  if type(value) == "number" then
    if prefix and value == value then out[prefix] = value end
  elseif type(value) == "table" then
    for k, v in pairs(value) do
      M.flatten(v, prefix and (prefix .. "." .. tostring(k)) or tostring(k), out)
    end
  end
  return out
end

local function mean_sd(xs)
  local n = #xs
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  local mean = s / n
  if n < 2 then return mean, nil end
  local ss = 0
  for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
  return mean, math.sqrt(ss / (n - 1))
end

local function csv_cell(s)
  s = tostring(s)
  if s:find('[,"\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function short(x) return string.format("%.4g", x) end

-- A setting's row of the Markdown table or of the CSV, as a list of cells: value(v) of each column,
-- the number of points, then stat_cells(cells, stats) appends each metric's cells (stats nil when no
-- point of the setting has the metric).
local function setting_row(s, columns, metrics, value, stat_cells)
  local cells = {}
  for _, k in ipairs(columns) do cells[#cells + 1] = value(s.values[k]) end
  cells[#cells + 1] = tostring(s.n)
  for _, m in ipairs(metrics) do stat_cells(cells, s.stats[m]) end
  return cells
end

-- The metrics wanted: every name when `metrics` is empty, else those equal to an entry or under it
-- (test_mse, or length_generalisation for all of length_generalisation.*).
local function wanted(name, metrics)
  if not metrics or #metrics == 0 then return true end
  for _, m in ipairs(metrics) do
    if name == m or name:sub(1, #m + 1) == m .. "." then return true end
  end
  return false
end

-- manifest: a refreshed manifest (lab.sweep.status); dir: the sweep directory.  opts.over (the
-- key averaged over), opts.metrics (a list of names or prefixes).  Returns {columns =, settings =
-- {{values = {key = value}, n =, points = {...}, stats = {metric = {mean =, sd =, n =}}}},
-- metrics = {...}, markdown =, csv =, missing = {point names without a summary}}.
function M.collect(manifest, dir, opts)
  opts = opts or {}
  local over = opts.over or "seed"
  local columns = {}
  for _, ax in ipairs(manifest.axes) do
    if #ax.values > 1 and ax.key ~= over then columns[#columns + 1] = ax.key end
  end
  local settings, by_key, missing, seen_metric, metrics = {}, {}, {}, {}, {}
  for _, p in ipairs(manifest.points) do
    local values, parts = {}, {}
    for _, k in ipairs(columns) do values[k] = p.overrides[k]; parts[#parts + 1] = k .. "=" .. tostring(p.overrides[k]) end
    local key = table.concat(parts, "\0")
    local s = by_key[key]
    if not s then
      s = { values = values, n = 0, points = {}, samples = {} }
      by_key[key] = s
      settings[#settings + 1] = s
    end
    s.points[#s.points + 1] = p.dir
    local text = p.status == "finished" and read(dir .. "/" .. p.dir .. "/summary.json")
    local ok, summary = false, nil
    if text then ok, summary = pcall(json.decode, text) end
    if ok and type(summary) == "table" then
      s.n = s.n + 1
      for name, x in pairs(M.flatten(summary)) do
        if wanted(name, opts.metrics) then
          if not seen_metric[name] then seen_metric[name] = true; metrics[#metrics + 1] = name end
          s.samples[name] = s.samples[name] or {}
          table.insert(s.samples[name], x)
        end
      end
    else
      missing[#missing + 1] = p.dir .. " (" .. tostring(p.status) .. ")"
    end
  end
  table.sort(metrics, name_less)
  for _, s in ipairs(settings) do
    s.stats = {}
    for name, xs in pairs(s.samples) do
      local mean, sd = mean_sd(xs)
      s.stats[name] = { mean = mean, sd = sd, n = #xs }
    end
    s.samples = nil
  end

  -- Markdown
  local md = {}
  local over_axis = false
  for _, ax in ipairs(manifest.axes) do if ax.key == over and #ax.values > 1 then over_axis = true end end
  md[#md + 1] = string.format("Sweep of %s: %d points, %d with a summary; %s.",
    manifest.experiment or manifest.script, #manifest.points, #manifest.points - #missing,
    over_axis and ("mean ± sample sd over " .. over .. " per setting") or ("no " .. over .. " axis, so one point per setting"))
  if #missing > 0 then md[#md + 1] = "No summary: " .. table.concat(missing, ", ") .. "." end
  md[#md + 1] = ""
  local head, rule = {}, {}
  for _, k in ipairs(columns) do head[#head + 1] = k end
  head[#head + 1] = "n"
  for _, m in ipairs(metrics) do head[#head + 1] = m end
  for i = 1, #head do rule[i] = "---" end
  md[#md + 1] = "| " .. table.concat(head, " | ") .. " |"
  md[#md + 1] = "|" .. table.concat(rule, "|") .. "|"
  for _, s in ipairs(settings) do
    local row = setting_row(s, columns, metrics, tostring, function(cells, st)
      cells[#cells + 1] = not st and "" or st.sd and (short(st.mean) .. " ± " .. short(st.sd)) or short(st.mean)
    end)
    md[#md + 1] = "| " .. table.concat(row, " | ") .. " |"
  end

  -- CSV
  local csv = {}
  local chead = {}
  for _, k in ipairs(columns) do chead[#chead + 1] = csv_cell(k) end
  chead[#chead + 1] = "n"
  for _, m in ipairs(metrics) do chead[#chead + 1] = csv_cell(m .. ".mean"); chead[#chead + 1] = csv_cell(m .. ".sd") end
  csv[#csv + 1] = table.concat(chead, ",")
  for _, s in ipairs(settings) do
    local row = setting_row(s, columns, metrics, csv_cell, function(cells, st)
      cells[#cells + 1] = st and json.encode(st.mean) or ""
      cells[#cells + 1] = st and st.sd and json.encode(st.sd) or ""
    end)
    csv[#csv + 1] = table.concat(row, ",")
  end
  return { columns = columns, settings = settings, metrics = metrics, missing = missing, over = over,
           markdown = table.concat(md, "\n") .. "\n", csv = table.concat(csv, "\n") .. "\n" }
end

return M
