-- test_viz.lua -- lab.viz and the run record stream: records written and read back exactly, rate
-- limits, commands parsed and applied by the run loop, misuse and damaged files giving one clear
-- error.  (The viewer's pixels and its live interaction are test_viewer.lua's.)
local check = dofile("tests/lua/check.lua")("viz")
local lab = require "attnlab"
local viz = lab.viz

local fresh_dir, read_file, write_file = check.tmpdir, check.read_file, check.write_file
local tmp = fresh_dir("scratch") .. "/"   -- a folder for the files that are not run directories

-- ---- no run: every call is a cheap no-op -------------------------------------------------------
viz.close()
check.ok(not viz.enabled(), "no stream before open")
check.ok(viz.attention("L1", lab.eye(3)) == false, "attention without a run is a no-op")
local called = 0
check.ok(viz.matrix("W", function() called = called + 1 return lab.eye(2) end) == false and called == 0,
  "a lazy value is not computed without a run")
check.ok(#viz.poll() == 0, "poll without a run returns no commands")

-- ---- records written and read back -------------------------------------------------------------
local dir = fresh_dir("records")
viz.open(dir, { interval = 0 })
viz.set_step(7)
local map = lab.tensor{ { 0.5, 0.5, 0 }, { 0.25, 0.25, 0.5 } }
check.ok(viz.attention("L1", map, { layer = 2, head = 3, tokens = { queries = { "a", "b" }, keys = { "x", "y", "z" } } }),
  "attention published")
viz.set_step(8)
viz.attention("L2", lab.stack({ lab.eye(2), lab.eye(2) * 0.5 }, 1), { tokens = { "p", "q" } })
viz.attention("L3", lab.ones{ 2, 2, 3, 3 }, { batch = 2 })
viz.matrix("KQ", lab.tensor{ { 1, -2 }, { 3, -4 } }, { head = 1 })
viz.matrix("OV", lab.tensor({ 1, 2, 3 }, "float64"), { head = 2 })
viz.scalar("loss", lab.tensor{ 0.125 })
viz.reference("loss", "ridge", 0.0625)
viz.image("scene", lab.full({ 4, 5, 3 }, 0.5), { points = { { 1, 2 }, { 3, 4 } }, heat = lab.ones{ 2, 2 } })
check.ok(viz.tokens("L2", { "p", "q" }) == false, "unchanged tokens are not written again")
local recs = viz.read(dir)
check.ok(#recs == 14, "14 records written", #recs .. " records")
local by = {}
for _, r in ipairs(recs) do by[#by + 1] = string.format("%d:%s:%d:%d:%d", r.kind, r.name, r.step, r.layer, r.head) end
local expected = { "5:L1:7:0:0", "1:L1:7:2:3", "5:L2:8:0:0", "1:L2:8:1:1", "1:L2:8:1:2", "1:L3:8:1:1", "1:L3:8:1:2",
  "2:KQ:8:0:1", "2:OV:8:0:2", "3:loss:8:0:0", "8:loss:ridge:8:0:0", "4:scene:8:0:0", "6:scene:8:0:0", "7:scene:8:0:0" }
check.ok(table.concat(by, " ") == table.concat(expected, " "), "kinds, names, steps, layers, heads in order",
  table.concat(by, " "))
check.ok(recs[1].text == "a\nb\nx\ny\nz" and recs[1].shape[1] == 2 and recs[1].shape[2] == 3,
  "query and key tokens with their counts")
local r = recs[2]
check.ok(r.shape[1] == 2 and r.shape[2] == 3 and r.values[2] == 0.5 and r.values[4] == 0.25 and r.values[6] == 0.5,
  "an attention map's shape and values")
check.ok(recs[5].values[1] == 0.5 and recs[5].values[4] == 0.5 and recs[5].values[2] == 0, "the second head of (H, N, M)")
check.ok(recs[6].shape[1] == 3 and recs[6].values[9] == 1, "batch element 2 of (B, H, N, M)")
check.ok(recs[8].values[4] == -4 and recs[9].values[3] == 3 and #recs[9].shape == 1, "matrices (float64 stored as float32)")
check.ok(recs[10].values[1] == 0.125 and #recs[10].shape == 0, "a scalar")
check.ok(recs[11].values[1] == 0.0625, "a reference line")
check.ok(recs[12].shape[3] == 3 and recs[13].values[3] == 3 and recs[14].shape[1] == 2, "an image, its points, its heat map")

viz.set_step(9)
viz.attention("QK", lab.ones{ 2, 3, 4 }, { q = lab.ones{ 2, 3, 6 } * 2, k = lab.ones{ 2, 4, 6 } * 3 })
local qk = {}
for _, r in ipairs(viz.read(dir)) do
  if r.name == "QK" then qk[#qk + 1] = string.format("%d:%d:%s:%g", r.kind, r.head, table.concat(r.shape, "x"), r.values[1]) end
end
check.ok(table.concat(qk, " ") == "1:1:3x4:1 9:1:3x6:2 10:1:4x6:3 1:2:3x4:1 9:2:3x6:2 10:2:4x6:3",
  "q and k go beside each head's map", table.concat(qk, " "))

-- ---- rate limits ----------------------------------------------------------------------------------
viz.set_rate{ interval = 3600 }
check.ok(viz.scalar("slow", 1) == true, "first record of a name is due")
check.ok(viz.scalar("slow", 2) == false, "second within the interval is not")
called = 0
check.ok(viz.matrix("lazy", function() called = called + 1 return lab.eye(2) end) == true and called == 1,
  "a lazy value is computed when due")
check.ok(viz.matrix("lazy", function() called = called + 1 return lab.eye(2) end) == false and called == 1,
  "and not computed when not due")
check.ok(viz.matrix("lazy", lab.eye(2), { head = 2 }) == true, "each head of a name has its own rate")
check.ok(viz.scalar("slow", 3, { force = true }) == true, "force publishes regardless")
viz.set_rate{ every = 5 }
local published = 0
for step = 1, 20 do
  viz.set_step(step)
  if viz.scalar("stepped", step) then published = published + 1 end
end
check.ok(published == 4, "every = 5 over 20 steps publishes 4 times", published)
local n0 = viz.count()
local t0 = lab.time()
viz.set_rate{ interval = 0.25 }
for step = 1, 20000 do viz.set_step(step) viz.attention("fast", function() return lab.eye(8) end) end
local per_call = (lab.time() - t0) / 20000
check.ok(viz.count() - n0 <= 2, "a time-limited name publishes at most once or twice in a fast loop", viz.count() - n0)
check.ok(per_call < 20e-6, "a call that is not due costs under 20 us", string.format("%.2f us", per_call * 1e6))

-- ---- commands: parsing and polling ---------------------------------------------------------------
local function parsed(line) local c = viz.parse_command(line) return c.op, c.layer, c.head, c.scale end
check.ok(select(1, parsed("pause")) == "pause" and select(1, parsed("resume")) == "resume" and select(1, parsed("step")) == "step",
  "pause, resume, step")
local op, l, h, s = parsed("ablate 1 2")
check.ok(op == "ablate" and l == 1 and h == 2 and s == 0, "ablate L H")
op, l, h, s = parsed("scale 2 3 0.5")
check.ok(op == "scale" and l == 2 and h == 3 and s == 0.5, "scale L H S")
op, l, h, s = parsed("restore 1 2")
check.ok(op == "restore" and l == 1 and h == 2 and s == 1, "restore L H")
check.ok(parsed("restore") == "restore", "restore (all)")
for _, bad in ipairs{ "ablate", "ablate 0 1", "ablate 1 x", "scale 1 1", "scale 1 1 nan", "scale 1 1 inf", "pause now", "fly 1 2",
                     "ablate 1.5 2" } do
  check.ok(parsed(bad) == "invalid", "'" .. bad .. "' is invalid")
end
viz.send(dir, "pause")
local f = assert(io.open(dir .. "/commands", "ab"))
f:write("ablate 1 2\nscale 1 1 0.5\nresu") -- the last line is still being written
f:close()
local cmds = viz.poll()
check.ok(#cmds == 3 and cmds[1].op == "pause" and cmds[2].op == "ablate" and cmds[3].op == "scale",
  "poll returns the complete lines in order", #cmds)
check.ok(#viz.poll() == 0, "a partial line waits")
f = assert(io.open(dir .. "/commands", "ab"))
f:write("me\n")
f:close()
cmds = viz.poll()
check.ok(#cmds == 1 and cmds[1].op == "resume", "and is read once complete")
check.fails(function() viz.send(dir, "two\nlines") end, "viz.send", "send refuses a line with a newline")
viz.close()

-- ---- commands applied by the run loop ------------------------------------------------------------
local rdir = fresh_dir("run")
viz.send(rdir, "ablate 1 1") -- before the run starts: not replayed
local run = lab.run.start{ name = "viz_test", config = { steps = 6 }, out = rdir }
local mha = lab.nn.MultiHeadAttention{ dim = 4, heads = 2 }
run:track{ model = mha }
local scales = {}
for step in run:steps(6) do
  if step == 2 then viz.send(rdir, "ablate 1 2") end
  if step == 3 then viz.send(rdir, "pause") viz.send(rdir, "resume") viz.send(rdir, "scale 1 1 0.5") end
  if step == 4 then viz.send(rdir, "ablate 3 1") viz.send(rdir, "ablate 1 9") viz.send(rdir, "jump") end
  if step == 5 then viz.send(rdir, "restore") end
  scales[step] = mha.head_scale and table.concat(mha.head_scale:reshape{ 2 }:totable(), ",") or "none"
  run:log(step, { loss = 1 })
end
run:finish()
check.ok(scales[1] == "none" and scales[2] == "none", "commands sent before the run are not replayed", scales[1])
check.ok(scales[3] == "1,0", "ablate 1 2 applied before the next step", scales[3])
check.ok(scales[4] == "0.5,0", "scale 1 1 0.5 applied", scales[4])
check.ok(scales[6] == "none", "restore clears every head", scales[6])
-- each event: its name and fields (what the viewer reads), and its text for people
local events, texts = {}, {}
for line in read_file(rdir .. "/metrics.jsonl"):gmatch("[^\n]+") do
  local e = lab.json.decode(line)
  if e.event then
    local fields = {}
    for _, k in ipairs{ "layer", "head", "scale", "command", "reason" } do
      if e[k] ~= nil then fields[#fields + 1] = k .. "=" .. tostring(e[k]) end
    end
    events[#events + 1] = e.step .. " " .. e.event .. (#fields > 0 and " " .. table.concat(fields, " ") or "")
    texts[#texts + 1] = e.text
  end
end
local want = { "2 ablate layer=1 head=2 scale=0", "3 pause", "3 resume", "3 scale layer=1 head=1 scale=0.5",
  "4 ignored command=ablate 3 1 reason=no attention layer 3 (the run has 1)",
  "4 ignored command=ablate 1 9 reason=layer 1 has 2 heads", "4 ignored command=jump reason=not a command", "5 restore_all" }
check.ok(table.concat(events, "|") == table.concat(want, "|"), "each command is logged in metrics.jsonl as an event with its fields",
  table.concat(events, "|"))
local want_texts = { "ablate layer 1 head 2", "pause", "resume", "scale layer 1 head 1 by 0.5",
  "ignored 'ablate 3 1': no attention layer 3 (the run has 1)", "ignored 'ablate 1 9': layer 1 has 2 heads",
  "ignored command 'jump'", "restore all heads" }
check.ok(table.concat(texts, "|") == table.concat(want_texts, "|"), "and with a text for people", table.concat(texts, "|"))
check.ok(read_file(rdir .. "/records.bin") ~= nil, "a run opens its record stream")

-- ---- misuse: one clear error naming the function ---------------------------------------------------
viz.open(dir, { interval = 0 })
check.fails(function() viz.attention("L1", lab.ones{ 2, 2, 2, 2, 2 }) end, "viz.attention: map must be (N, M), (H, N, M) or (B, H, N, M)")
check.fails(function() viz.attention("L1", lab.ones{ 3 }) end, "got shape {3}")
check.fails(function() viz.attention("L1", lab.ones{ 1, 2, 2, 2 }, { batch = 2 }) end, "opts.batch 2 is beyond the batch of 1")
check.fails(function() viz.attention("L1", lab.eye(2), { layer = 0 }) end, "opts.layer must be a positive integer")
check.fails(function() viz.attention(string.rep("x", 256), lab.eye(2)) end, "viz.attention: name must be a string of 1..255 bytes")
check.fails(function() viz.attention(42, lab.eye(2)) end, "got number")
check.fails(function() viz.matrix("W", "nope") end, "viz.matrix: w must be a tensor or a table of numbers")
check.fails(function() viz.matrix("W", lab.ones{ 2, 2, 2 }) end, "viz.matrix: w must be 1-d or 2-d")
check.fails(function() viz.scalar("s", "high") end, "viz.scalar: value must be a number")
check.fails(function() viz.image("i", lab.ones{ 2, 2, 7 }) end, "viz.image: img must have 1 to 4 channels")
check.fails(function() viz.image("i", lab.ones{ 2, 2 }, { points = lab.ones{ 3 } }) end, "opts.points must be (K, 2)")
check.fails(function() viz.tokens("t", { {} }) end, "viz.tokens: token 1 is a table")
check.fails(function() viz.attention("L1", lab.eye(2), 5) end, "opts must be a table")
check.fails(function() viz.attention("L1", lab.eye(2), { q = lab.ones{ 3, 4 } }) end,
  "opts.q must be laid out as the map with 2 queries and a last dimension d (got shape {3,4} for a map of {2,2})")
check.fails(function() viz.attention("L1", lab.ones{ 2, 3, 5 }, { k = lab.ones{ 2, 4, 7 } }) end, "opts.k must be laid out as the map with 5 keys")
check.fails(function() viz.set_rate{ every = 0 } end, "viz.set_rate: every must be a positive integer")
check.fails(function() viz.open(dir .. "/missing/deeper") end, "viz.open: cannot open")
viz.close()

-- ---- damaged record files ----------------------------------------------------------------------------
local good = read_file(dir .. "/records.bin")
local n_good = #viz.read(dir)
local bad = fresh_dir("bad")
write_file(bad .. "/records.bin", "this is not a record stream at all, just text\n")
check.fails(function() viz.read(bad) end, "is garbled at byte 0: no record magic", "a foreign file is named as garbled")
write_file(bad .. "/records.bin", good:sub(1, #good - 3))
local cut = viz.read(bad)
check.ok(#cut == n_good - 1, "a truncated last record is left out (the rest reads)", #cut)
write_file(bad .. "/records.bin", good:sub(1, 30))
check.ok(#viz.read(bad) == 0, "a truncated first header reads as no records yet")
-- a length field that disagrees with the shape
local first_len = good:byte(5) + 256 * good:byte(6)
local damaged = good:sub(1, first_len + 4) .. "\255\255\255\127" .. good:sub(first_len + 9)
write_file(bad .. "/records.bin", damaged)
check.fails(function() viz.read(bad) end, "garbled at byte " .. first_len .. ": bad record length", "a bad length is named with its offset")
write_file(bad .. "/records.bin", good:sub(1, first_len) .. "ALR1" .. string.rep("\0", 60))
check.fails(function() viz.read(bad) end, "unknown record kind", "a zeroed header is garbled")
check.fails(function() viz.read(tmp .. "nothere") end, "cannot open")

check.cleanup()
os.exit(check.report(), true)   -- true: close the Lua state, so every tensor is freed (quiet leak checks)
