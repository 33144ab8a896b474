-- attnlab.run_commands: what the viewer's commands do to a running run (run.lua polls them before
-- each step): pause, resume and single step hold or release its loop; ablate, scale and restore set
-- a head's output scale on its attention layers (the modules with set_head_scale among what it
-- tracks, in the order found, or the list given to run:attention_layers).  Each command becomes an
-- event for metrics.jsonl (docs/run-directory.md has the grammar); a command that cannot apply is
-- an "ignored" event, never an error: a command from outside never stops the training.
local M = {}

local function find_attention(obj, out, seen)
  if type(obj) ~= "table" or seen[obj] then return end
  seen[obj] = true
  if type(obj.set_head_scale) == "function" then out[#out + 1] = obj end
  for _, name in ipairs(obj.child_order or {}) do find_attention(obj.children[name], out, seen) end
end

local function attention_layers(run)
  if not run.layers then
    local out, seen = {}, {}
    for _, k in ipairs(run.tracked_names) do find_attention(run.tracked[k], out, seen) end
    run.layers = out
  end
  return run.layers
end

-- An event for metrics.jsonl: its name and machine fields, which the viewer and any replay read, and
-- a text for people, which nothing parses (docs/run-directory.md has the grammar).
local function event(name, text, fields)
  local e = fields or {}
  e.event, e.text = name, text
  return e
end

-- Applies one command from the viewer (as lab.viz.poll gives it) to run; returns the event to log.
function M.apply(run, cmd)
  if cmd.op == "pause" then run.paused = true return event("pause", "pause")
  elseif cmd.op == "resume" then run.paused, run.single = false, false return event("resume", "resume")
  elseif cmd.op == "step" then run.paused, run.single = true, true return event("single_step", "single step")
  elseif cmd.op == "invalid" then
    return event("ignored", "ignored command '" .. cmd.text .. "'", { command = cmd.text, reason = "not a command" })
  end
  local function ignored(reason)
    return event("ignored", string.format("ignored '%s': %s", cmd.text, reason), { command = cmd.text, reason = reason })
  end
  local layers = attention_layers(run)
  if cmd.op == "restore" and not cmd.layer then
    for _, m in ipairs(layers) do m:reset_head_scale() end
    return event("restore_all", "restore all heads")
  end
  local m = layers[cmd.layer]
  if not m then return ignored(string.format("no attention layer %d (the run has %d)", cmd.layer, #layers)) end
  if m.heads and cmd.head > m.heads then return ignored(string.format("layer %d has %d heads", cmd.layer, m.heads)) end
  -- a command from outside never stops the training: a hook's error becomes the logged event
  local ok, err = pcall(m.set_head_scale, m, cmd.head, cmd.scale)
  if not ok then return ignored(tostring(err)) end
  -- every head event carries the head's scale from now on, so a replay needs no table of names
  local head = { layer = cmd.layer, head = cmd.head, scale = cmd.scale }
  if cmd.op == "ablate" then return event("ablate", string.format("ablate layer %d head %d", cmd.layer, cmd.head), head) end
  if cmd.op == "restore" then return event("restore", string.format("restore layer %d head %d", cmd.layer, cmd.head), head) end
  return event("scale", string.format("scale layer %d head %d by %g", cmd.layer, cmd.head, cmd.scale), head)
end

return M
