-- test_multiplication_data.lua -- the data of the multiplication study (lua/attnlab/tasks/
-- multiplication.lua): the papers' example token for token, hand-checked problems at 3, 4 and 5
-- digits, c_hat against its definition, CoT lengths, batches and their masks in every mode, ICoT
-- removal, the held-out split, determinism, encode/decode, and the errors of bad configs.
local lab = require "attnlab"
local mult = require "attnlab.tasks.multiplication"
local check = dofile("tests/lua/check.lua")("multiplication_data")

local function same_list(x, y)
  if #x ~= #y then return false, string.format("lengths %d and %d", #x, #y) end
  for i = 1, #x do
    if x[i] ~= y[i] then return false, string.format("element %d: %s vs %s", i, tostring(x[i]), tostring(y[i])) end
  end
  return true
end
local function list_ok(x, y, what) local ok, why = same_list(x, y) check.ok(ok, what, why) end
-- "5 5 5 6 1" -> {5, 5, 5, 6, 1}
local function digits(s) local t = {} for c in s:gmatch("%d") do t[#t + 1] = tonumber(c) end return t end
local function symbols_of(s) local t = {} for w in s:gmatch("%S+") do t[#t + 1] = w end return t end

---------------------------------------------------------------------------------------------------
-- vocabulary
---------------------------------------------------------------------------------------------------
check.ok(mult.vocab_size == 18 and #mult.symbols == 18, "18 symbols")
check.ok(mult.id["0"] == 1 and mult.id["9"] == 10 and mult.digit_id(7) == 8 and mult.id_digit(8) == 7, "digit d has id d + 1")
check.ok(mult.ignore == 0, "the ignore id is 0, outside the vocabulary")
local ids_seen = {}
for i, s in ipairs(mult.symbols) do ids_seen[mult.id[s]] = true; check.ok(mult.id[s] == i, "id of " .. s) end
check.ok(mult.PAD == 18 and mult.END == 17 and mult.SEP == 15 and mult.ANS == 16, "special ids")

---------------------------------------------------------------------------------------------------
-- the papers' example (the first line of Deng et al.'s 4_by_4_mult/valid.txt):
-- a = 2365, b = 4347, token for token
---------------------------------------------------------------------------------------------------
local B2 = "5 6 3 2 * 7 4 3 4||5 5 5 6 1 + 0 0 6 4 9 0 ( 5 5 1 1 1 1 ) + 0 0 5 9 0 7 0 ( 5 5 6 0 2 8 0 ) + 0 0 0 0 6 4 9 0 #### 5 5 6 0 8 2 0 1"
local p = mult.problem(2365, 4347, 4)
check.ok(mult.line(p) == B2, "the B.2 line, character for character", mult.line(p))
local want_cot = symbols_of("5 5 5 6 1 + 0 0 6 4 9 0 ( 5 5 1 1 1 1 ) + 0 0 5 9 0 7 0 ( 5 5 6 0 2 8 0 ) + 0 0 0 0 6 4 9 0")
check.ok(#want_cot == 46 and #p.cot == 46, "46 CoT tokens in the example")
for i = 1, 46 do check.ok(mult.symbols[p.cot[i]] == want_cot[i], "B.2 CoT token " .. i) end
local want_seq = {}
for _, s in ipairs(symbols_of("5 6 3 2 * 7 4 3 4 || 5 5 5 6 1 + 0 0 6 4 9 0 ( 5 5 1 1 1 1 ) + 0 0 5 9 0 7 0 ( 5 5 6 0 2 8 0 ) + 0 0 0 0 6 4 9 0 #### 5 5 6 0 8 2 0 1 <end>")) do
  want_seq[#want_seq + 1] = mult.id[s]
end
list_ok(mult.sequence(p, "cot"), want_seq, "B.2 training sequence, id for id (input || cot #### answer <end>)")
list_ok(mult.encode(B2 .. " <end>"), want_seq, "encode(B.2 line) gives the same ids")
list_ok(p.a_digits, { 5, 6, 3, 2 }, "a least significant first")
list_ok(p.b_digits, { 7, 4, 3, 4 }, "b least significant first")
check.ok(p.product == 2365 * 4347 and p.product == 10280655, "product")

---------------------------------------------------------------------------------------------------
-- hand-checked problems: every partial product, running sum, the answer and c_hat
--   c_hat by hand: s_k = sum_{i+j=k} a_i b_j, c_hat_k = s_k + floor(c_hat_{k-1}/10)
---------------------------------------------------------------------------------------------------
local hand = {
  { -- 123 x 456 = 56088: 123*6 = 738, 123*5*10 = 6150, 738 + 6150 = 6888, 123*4*100 = 49200
    -- a = (3,2,1), b = (6,5,4): s = 18, 27, 28, 13, 4, 0; c_hat = 18, 28, 30, 16, 5, 0
    a = 123, b = 456, d = 3,
    partials = { "8 3 7 0", "0 5 1 6 0", "0 0 2 9 4 0" },
    sums = { "8 3 7 0", "8 8 8 6 0", "8 8 0 6 5 0" },
    answer = "8 8 0 6 5 0", s = { 18, 27, 28, 13, 4, 0 }, c_hat = { 18, 28, 30, 16, 5, 0 },
    line = "3 2 1 * 6 5 4||8 3 7 0 + 0 5 1 6 0 ( 8 8 8 6 0 ) + 0 0 2 9 4 0 #### 8 8 0 6 5 0",
  },
  { -- 2365 x 4347 = 10280655 (the B.2 example): 16555, 94600 -> 111155, 709500 -> 820655, 9460000
    -- a = (5,6,3,2), b = (7,4,3,4): s = 35, 62, 60, 64, 41, 18, 8, 0
    a = 2365, b = 4347, d = 4,
    partials = { "5 5 5 6 1", "0 0 6 4 9 0", "0 0 5 9 0 7 0", "0 0 0 0 6 4 9 0" },
    sums = { "5 5 5 6 1", "5 5 1 1 1 1", "5 5 6 0 2 8 0", "5 5 6 0 8 2 0 1" },
    answer = "5 5 6 0 8 2 0 1", s = { 35, 62, 60, 64, 41, 18, 8, 0 }, c_hat = { 35, 65, 66, 70, 48, 22, 10, 1 },
    line = B2,
  },
  { -- 9999 x 9999 = 99980001, the largest carries: 89991, 899910 -> 989901, 8999100 -> 9989001, 89991000
    -- s_k = 81 * (number of pairs) = 81, 162, 243, 324, 243, 162, 81, 0
    a = 9999, b = 9999, d = 4,
    partials = { "1 9 9 9 8", "0 1 9 9 9 8", "0 0 1 9 9 9 8", "0 0 0 1 9 9 9 8" },
    sums = { "1 9 9 9 8", "1 0 9 9 8 9", "1 0 0 9 8 9 9", "1 0 0 0 8 9 9 9" },
    answer = "1 0 0 0 8 9 9 9", s = { 81, 162, 243, 324, 243, 162, 81, 0 }, c_hat = { 81, 170, 260, 350, 278, 189, 99, 9 },
    line = "9 9 9 9 * 9 9 9 9||1 9 9 9 8 + 0 1 9 9 9 8 ( 1 0 9 9 8 9 ) + 0 0 1 9 9 9 8 ( 1 0 0 9 8 9 9 ) + 0 0 0 1 9 9 9 8 #### 1 0 0 0 8 9 9 9",
  },
  { -- 1000 x 1000 = 1000000: a 7-digit product padded to 8 digits; zero partial products
    a = 1000, b = 1000, d = 4,
    partials = { "0 0 0 0 0", "0 0 0 0 0 0", "0 0 0 0 0 0 0", "0 0 0 0 0 0 1 0" },
    sums = { "0 0 0 0 0", "0 0 0 0 0 0", "0 0 0 0 0 0 0", "0 0 0 0 0 0 1 0" },
    answer = "0 0 0 0 0 0 1 0", s = { 0, 0, 0, 0, 0, 0, 1, 0 }, c_hat = { 0, 0, 0, 0, 0, 0, 1, 0 },
  },
  { -- 12345 x 67890 = 838102050: 12345*0 = 0, 12345*9*10 = 1111050 -> 1111050, 12345*8*100 = 9876000
    -- -> 10987050, 12345*7*1000 = 86415000 -> 97402050, 12345*6*10^4 = 740700000 -> 838102050
    -- a = (5,4,3,2,1), b = (0,9,8,7,6): s = 0, 45, 76, 94, 100, 70, 40, 19, 6, 0
    a = 12345, b = 67890, d = 5,
    partials = { "0 0 0 0 0 0", "0 5 0 1 1 1 1", "0 0 0 6 7 8 9 0", "0 0 0 5 1 4 6 8 0", "0 0 0 0 0 7 0 4 7 0" },
    sums = { "0 0 0 0 0 0", "0 5 0 1 1 1 1", "0 5 0 7 8 9 0 1", "0 5 0 2 0 4 7 9 0", "0 5 0 2 0 1 8 3 8 0" },
    answer = "0 5 0 2 0 1 8 3 8 0", s = { 0, 45, 76, 94, 100, 70, 40, 19, 6, 0 },
    c_hat = { 0, 45, 80, 102, 110, 81, 48, 23, 8, 0 },
    line = "5 4 3 2 1 * 0 9 8 7 6||0 0 0 0 0 0 + 0 5 0 1 1 1 1 ( 0 5 0 1 1 1 1 ) + 0 0 0 6 7 8 9 0 ( 0 5 0 7 8 9 0 1 ) + " ..
           "0 0 0 5 1 4 6 8 0 ( 0 5 0 2 0 4 7 9 0 ) + 0 0 0 0 0 7 0 4 7 0 #### 0 5 0 2 0 1 8 3 8 0",
  },
}
for _, h in ipairs(hand) do
  local q = mult.problem(h.a, h.b, h.d)
  local tag = string.format("%d x %d", h.a, h.b)
  for j = 1, h.d do
    list_ok(q.partials[j], digits(h.partials[j]), tag .. ": partial product " .. (j - 1))
    check.ok(#q.partials[j] == h.d + j, tag .. ": partial product " .. (j - 1) .. " has d+1+j digits")
    list_ok(q.sums[j], digits(h.sums[j]), tag .. ": running sum " .. (j - 1))
  end
  list_ok(q.answer, digits(h.answer), tag .. ": answer")
  list_ok(q.s, h.s, tag .. ": s_k")
  list_ok(q.c_hat, h.c_hat, tag .. ": c_hat_k")
  if h.line then check.ok(mult.line(q) == h.line, tag .. ": line", mult.line(q)) end
  check.ok(q.product == h.a * h.b, tag .. ": product")
end

---------------------------------------------------------------------------------------------------
-- c_hat against its definition, computed here independently: c_hat_k = floor(P_k / 10^k) with
-- P_k = sum over i + j <= k of a_i b_j 10^(i+j) (by induction this is s_k + floor(c_hat_{k-1}/10)),
-- and c_hat_k mod 10 = digit k of a * b, no carry out of the last position.
---------------------------------------------------------------------------------------------------
local function c_hat_by_partial_products(a, b, d)
  local out = {}
  for k = 0, 2 * d - 1 do
    local P = 0
    for i = 0, d - 1 do
      for j = 0, d - 1 do
        if i + j <= k then
          P = P + (math.floor(a / 10 ^ i) % 10) * (math.floor(b / 10 ^ j) % 10) * 10 ^ (i + j)
        end
      end
    end
    out[k + 1] = math.floor(P / 10 ^ k)
  end
  return out
end
math.randomseed(7)
for _, d in ipairs{ 3, 4, 5 } do
  local bad, bad_digit, bad_carry = 0, 0, 0
  for _ = 1, 300 do
    local a, b = math.random(10 ^ (d - 1), 10 ^ d - 1), math.random(10 ^ (d - 1), 10 ^ d - 1)
    local c = mult.c_hat(a, b, d)
    local ref = c_hat_by_partial_products(a, b, d)
    if not same_list(c, ref) then bad = bad + 1 end
    local prod = a * b
    for k = 0, 2 * d - 1 do
      if c[k + 1] % 10 ~= math.floor(prod / 10 ^ k) % 10 then bad_digit = bad_digit + 1 end
    end
    if math.floor(c[2 * d] / 10) ~= 0 then bad_carry = bad_carry + 1 end
    -- and the problem's product digits agree with the integer product
    local q = mult.problem(a, b, d)
    for k = 0, 2 * d - 1 do
      if q.answer[k + 1] ~= math.floor(prod / 10 ^ k) % 10 then bad_digit = bad_digit + 1 end
    end
  end
  check.ok(bad == 0, d .. " digits: c_hat matches floor(P_k / 10^k) on 300 problems", bad .. " differ")
  check.ok(bad_digit == 0, d .. " digits: c_hat_k mod 10 and the answer are the product's digits")
  check.ok(bad_carry == 0, d .. " digits: no carry out of c_hat_{2d-1}")
end

---------------------------------------------------------------------------------------------------
-- CoT lengths: 24 (3 x 3), 46 (4 x 4), 74 (5 x 5; Deng et al.'s data)
---------------------------------------------------------------------------------------------------
for d, n in pairs{ [3] = 24, [4] = 46, [5] = 74, [2] = 8 } do
  check.ok(mult.cot_length(d) == n, d .. " x " .. d .. ": " .. n .. " CoT tokens")
  local q = mult.problem(10 ^ (d - 1) + 7, 10 ^ d - 3, d)
  check.ok(#q.cot == n, d .. " x " .. d .. ": the problem's CoT has " .. n .. " tokens")
  check.ok(#mult.sequence(q, "cot") == 2 * d + 1 + 1 + n + 1 + 2 * d + 1, d .. " digits: cot sequence length")
  check.ok(#mult.sequence(q, "sft") == 2 * d + 1 + 1 + 1 + 2 * d + 1, d .. " digits: sft sequence length")
end

---------------------------------------------------------------------------------------------------
-- encode / decode
---------------------------------------------------------------------------------------------------
local gen3, gen5 = mult.generator{ digits = 3, seed = 3 }, mult.generator{ digits = 5, seed = 5 }
local round_trip_bad = 0
for _, g in ipairs{ gen3, mult.generator{ digits = 4, seed = 4 }, gen5 } do
  for _, q in ipairs(g:problems(20)) do
    local full = mult.problem(q.a, q.b, q.digits)
    local strings = { mult.line(full), mult.decode(mult.sequence(full, "cot")), mult.decode(mult.sequence(full, "sft")),
                      mult.decode(mult.sequence(full, "icot", 5)) }
    for _, s in ipairs(strings) do
      if mult.decode(mult.encode(s)) ~= s then round_trip_bad = round_trip_bad + 1 end
    end
    if not same_list(mult.encode(mult.decode(mult.sequence(full, "cot"))), mult.sequence(full, "cot")) then round_trip_bad = round_trip_bad + 1 end
  end
end
check.ok(round_trip_bad == 0, "decode(encode(s)) == s and encode(decode(ids)) == ids at 3, 4, 5 digits", round_trip_bad .. " failed")
check.ok(mult.decode(mult.encode("1 2*3  4 ||5+(6)####7<end><pad>")) == "1 2 * 3 4||5 + ( 6 ) #### 7 <end> <pad>", "encode takes any spacing")
check.ok(mult.decode(lab.tensor(mult.encode("1 2 <pad>"), "int64")) == "1 2 <pad>", "decode takes a 1-D int64 tensor")
check.ok(mult.decode({ 2, 3, 0, mult.PAD }, { strip = true }) == "1 2", "decode{strip = true} leaves out padding and ignore ids")

---------------------------------------------------------------------------------------------------
-- batches: layout, masks, answer positions, c_hat, in the three modes
---------------------------------------------------------------------------------------------------
local gen = mult.generator{ digits = 4, seed = 11 }
local problems = gen:problems(6)
problems[1] = { a = 2365, b = 4347, digits = 4 }
for _, mode in ipairs{ "cot", "sft", "icot" } do
  local k = mode == "icot" and 10 or nil
  local b = mult.batch(problems, { mode = mode, remove = k })
  local ncot = mode == "cot" and 46 or (mode == "sft" and 0 or 36)
  local n = 9 + 1 + ncot + 1 + 8 + 1
  check.ok(b.B == 6 and b.T == n - 1, mode .. ": T = sequence length - 1", "T = " .. b.T)
  check.ok(b.inputs:dtype() == "int64" and b.targets:dtype() == "int64" and b.answer_pos:dtype() == "int64", mode .. ": int64 ids")
  check.ok(b.c_hat:dtype() == "float32" and b.answer_mask:dtype() == "float32", mode .. ": float32 masks and c_hat")
  local inp, tgt = b.inputs:totable(), b.targets:totable()
  local lm, cm, am, di = b.loss_mask:totable(), b.cot_mask:totable(), b.answer_mask:totable(), b.digit_index:totable()
  local ap, aip, ans, ch = b.answer_pos:totable(), b.answer_input_pos:totable(), b.answer:totable(), b.c_hat:totable()
  local bad = {}
  local function flag(what) bad[what] = (bad[what] or 0) + 1 end
  for i = 1, b.B do
    local full = mult.problem(problems[i].a, problems[i].b, 4)
    local seq = mult.sequence(full, mode, k)
    local nl, nc, na = 0, 0, 0
    for t = 1, b.T do
      if inp[i][t] ~= seq[t] then flag("inputs are the sequence without its last token") end
      if t <= 9 then
        if tgt[i][t] ~= 0 or lm[i][t] ~= 0 then flag("no loss on the input and ||") end
      elseif tgt[i][t] ~= seq[t + 1] or lm[i][t] ~= 1 then flag("targets are the next token after ||") end
      nl, nc, na = nl + lm[i][t], nc + cm[i][t], na + am[i][t]
      if di[i][t] > 0 and tgt[i][t] ~= ans[i][di[i][t]] then flag("digit_index marks c_k") end
    end
    if nl ~= ncot + 1 + 8 + 1 then flag("loss on CoT, ####, answer, <end>") end
    if nc ~= ncot then flag("cot_mask counts the CoT targets") end
    if na ~= 8 then flag("answer_mask counts 8 answer targets") end
    for kk = 1, 8 do
      if tgt[i][ap[i][kk]] ~= ans[i][kk] then flag("targets[answer_pos[k]] = c_k") end
      if inp[i][aip[i][kk]] ~= ans[i][kk] or aip[i][kk] ~= ap[i][kk] + 1 then flag("inputs[answer_input_pos[k]] = c_k") end
      if ans[i][kk] ~= mult.digit_id(full.answer[kk]) then flag("answer holds the answer digits' ids") end
      if ch[i][kk] ~= full.c_hat[kk] then flag("c_hat column k+1 is c_hat_k") end
    end
    if inp[i][ap[i][1]] ~= mult.ANS then flag("c_0 is predicted at ####") end
    if b.removed[i] ~= 46 - ncot or b.cot_lengths[i] ~= ncot then flag("removed / cot_lengths") end
  end
  local list = {}
  for what, c in pairs(bad) do list[#list + 1] = what .. " (" .. c .. ")" end
  check.ok(#list == 0, mode .. ": batch layout, masks, positions and c_hat", table.concat(list, "; "))
end
-- the B.2 example by hand, cot mode: 9 input tokens, || at 10, the CoT at 11..56, #### at 57,
-- c_0 at 58 .. c_7 at 65, <end> at 66; so c_0 = 5 is the target at t = 57 (input ####)
local b2 = mult.batch({ mult.problem(2365, 4347, 4) })
check.ok(b2.answer_pos:get(1, 1) == 57 and b2.inputs:get(1, 57) == mult.ANS and b2.targets:get(1, 57) == mult.digit_id(5), "B.2: c_0 at t = 57")
check.ok(b2.answer_pos:get(1, 8) == 64 and b2.answer_input_pos:get(1, 8) == 65 and b2.targets:get(1, 64) == mult.digit_id(1), "B.2: c_7 at t = 64")
check.ok(b2.targets:get(1, 9) == 0 and b2.targets:get(1, 10) == mult.digit_id(5) and b2.inputs:get(1, 10) == mult.SEP, "B.2: the loss starts at ||")
check.ok(b2.targets:get(1, 65) == mult.END, "B.2: the last target is <end>")
check.near(b2.c_hat:get(1, 4), 70, 0, "B.2: c_hat_3 = 70")

-- at_answers: the rows at the answer positions
local tgt_f = mult.batch(problems, { mode = "cot" })
local picked = mult.at_answers(tgt_f.targets:to("float32"):unsqueeze(3), tgt_f):reshape{ 6, 8 }
list_ok(picked:to("int64"):reshape{ -1 }:totable(), tgt_f.answer:reshape{ -1 }:totable(), "at_answers picks the answer targets")
local picked_in = mult.at_answers(tgt_f.inputs:to("float32"):unsqueeze(3):expand{ 6, tgt_f.T, 3 }, tgt_f, { input = true })
check.ok(picked_in:size(3) == 3 and picked_in:get(2, 5, 3) == tgt_f.answer:get(2, 5), "at_answers{input = true} keeps trailing dims")
-- cross_entropy with the ignore id: uniform logits give ln 18 on the scored targets
local ce = lab.cross_entropy(lab.zeros{ 6 * tgt_f.T, mult.vocab_size }, tgt_f.targets:reshape{ -1 }, { ignore = mult.ignore })
check.near(ce:item(), math.log(18), 1e-5, "cross_entropy(.., {ignore = 0}) takes the loss only where scored")

---------------------------------------------------------------------------------------------------
-- ICoT: the first k CoT tokens removed
---------------------------------------------------------------------------------------------------
local q = mult.problem(2365, 4347, 4)
for _, k in ipairs{ 0, 1, 8, 24, 45, 46, 47, math.huge } do
  local seq = mult.sequence(q, "icot", k)
  local kk = math.min(k, 46)
  local want = {}
  for i = 1, 10 do want[#want + 1] = q.input[i] or mult.SEP end
  for i = kk + 1, 46 do want[#want + 1] = q.cot[i] end
  want[#want + 1] = mult.ANS
  for i = 1, 8 do want[#want + 1] = q.answer_ids[i] end
  want[#want + 1] = mult.END
  list_ok(seq, want, "icot remove " .. tostring(k) .. ": the CoT without its first " .. kk .. " tokens")
  check.ok(#seq == 66 - kk, "icot remove " .. tostring(k) .. ": length 66 - " .. kk)
  local rb1 = mult.batch({ q }, { mode = "icot", remove = k })
  check.ok(rb1.removed[1] == kk and rb1.cot_lengths[1] == 46 - kk, "icot remove " .. tostring(k) .. ": batch.removed")
end
list_ok(mult.sequence(q, "icot", 0), mult.sequence(q, "cot"), "icot with k = 0 is cot")
list_ok(mult.sequence(q, "icot", 46), mult.sequence(q, "sft"), "icot with every CoT token removed is sft")
check.ok(mult.decode(mult.sequence(q, "icot", 40)) == "5 6 3 2 * 7 4 3 4||0 0 6 4 9 0 #### 5 5 6 0 8 2 0 1 <end>", "icot 40: the last 6 CoT tokens left")
-- per-problem counts: right padding, masks off on the padding
local rb = mult.batch({ q, q, q }, { mode = "icot", remove = { 0, 10, 46 } })
check.ok(rb.T == 65 and rb.lengths[1] == 65 and rb.lengths[2] == 55 and rb.lengths[3] == 19, "per-problem removal: lengths 65, 55, 19")
check.ok(rb.inputs:get(3, 19) == mult.id["1"] and rb.inputs:get(3, 20) == mult.PAD and rb.inputs:get(3, 65) == mult.PAD, "padded with <pad> on the right")
check.ok(rb.targets:narrow(1, 3, 1):narrow(2, 20, 46):sum():item() == 0 and rb.loss_mask:narrow(1, 3, 1):sum():item() == 10, "no loss on padding")
check.ok(rb.cot_mask:sum(2):totable()[2] == 36 and rb.answer_mask:sum(2):totable()[3] == 8, "cot and answer masks per row")
check.ok(rb.answer_pos:get(2, 1) == 47 and rb.answer_pos:get(3, 1) == 11, "answer positions follow the removal")
-- removal smoothing: P(o) ~ e^{-lambda o}, truncated at 100
local dist = mult.smoothing_distribution(4)
local total = 0
for _, v in ipairs(dist) do total = total + v end
check.near(total, 1, 1e-12, "smoothing distribution sums to 1")
check.near(dist[1], 1 - math.exp(-4), 1e-12, "P(0) = 1 - e^-4")
check.near(dist[2] / dist[1], math.exp(-4), 1e-12, "P(1) / P(0) = e^-4")
local sg = mult.generator{ digits = 4, seed = 2 }
local sb = sg:batch(2000, { mode = "icot", remove = 8, smoothing = 1 })
local hist = {}
for i = 1, 2000 do hist[sb.removed[i] - 8] = (hist[sb.removed[i] - 8] or 0) + 1 end
check.ok(hist[0] and hist[1] and not hist[-1], "smoothing adds o >= 0 to the scheduled removal")
check.near(hist[0] / 2000, 1 - math.exp(-1), 0.04, "smoothing: P(o = 0) = 1 - e^-lambda (lambda = 1, 2000 draws)")
local sg2 = mult.generator{ digits = 4, seed = 2 }
local sb2 = sg2:batch(2000, { mode = "icot", remove = 8, smoothing = 1 })
list_ok(sb.removed, sb2.removed, "smoothing draws are determined by the seed")

---------------------------------------------------------------------------------------------------
-- held-out problems never appear in training
---------------------------------------------------------------------------------------------------
local function key(x) return x.a * 1e6 + x.b end
-- 3 x 3 (810,000 ordered pairs): 150,000 fresh draws cover ~17% of them, so a test set of 1,000
-- drawn without the split would share ~170 problems with them
local g3 = mult.generator{ digits = 3, seed = 1 }
local test3 = g3:test(1000)
local testset, test_rev = {}, {}
local distinct = 0
for _, t in ipairs(test3) do
  if not testset[key(t)] then distinct = distinct + 1 end
  testset[key(t)] = true
  test_rev[t.b * 1e6 + t.a] = true
end
check.ok(#test3 == 1000 and distinct == 1000, "1,000 distinct held-out 3 x 3 problems")
local all_test = true
for _, t in ipairs(test3) do all_test = all_test and mult.is_test(t.a, t.b) and mult.is_test(t.b, t.a) end
check.ok(all_test, "held-out problems are on the test side of the split, both ways round")
local hits, rev_hits, flagged = 0, 0, 0
for _ = 1, 150000 do
  local x = g3:sample()
  if testset[key(x)] then hits = hits + 1 end
  if test_rev[key(x)] then rev_hits = rev_hits + 1 end
  if mult.is_test(x.a, x.b) then flagged = flagged + 1 end
end
check.ok(hits == 0 and rev_hits == 0 and flagged == 0, "no held-out problem (nor b x a) in 150,000 fresh training draws",
  string.format("%d, %d, %d", hits, rev_hits, flagged))
-- a fixed training set: disjoint from the test set, whatever the seed
local gf = mult.generator{ digits = 3, seed = 99, train_size = 50000 }
local A, Bs = gf:training_set()
local set_hits, set_keys, dup = 0, {}, 0
for i = 1, #A do
  local kx = A[i] * 1e6 + Bs[i]
  if testset[kx] or test_rev[kx] then set_hits = set_hits + 1 end
  if set_keys[kx] then dup = dup + 1 end
  set_keys[kx] = true
end
check.ok(#A == 50000 and dup == 0, "a fixed training set of 50,000 distinct problems")
check.ok(set_hits == 0, "no held-out problem in the fixed training set", set_hits .. " found")
-- the test set does not depend on the training seed or train_size; test_seed picks another
local t_other = mult.generator{ digits = 3, seed = 12345, train_size = 100 }:test(1000)
local same = true
for i = 1, 1000 do same = same and t_other[i].a == test3[i].a and t_other[i].b == test3[i].b end
check.ok(same, "the held-out set is the same for every seed and train_size")
local t_seed1 = g3:test(10, 1)
check.ok(t_seed1[1].a ~= test3[1].a or t_seed1[1].b ~= test3[1].b, "test_seed picks another held-out set")
-- about 1% of the space is held out
local ntest = 0
for a = 100, 999, 7 do for b = 100, 999 do if mult.is_test(a, b) then ntest = ntest + 1 end end end
local frac = ntest / (math.floor((999 - 100) / 7 + 1) * 900)
check.ok(frac > 0.008 and frac < 0.012, "about 1% of the problems are held out", string.format("%.4f", frac))
-- operands: d digits, leading digit nonzero, both sides of the split drawn
local range_ok = true
for _, x in ipairs(mult.generator{ digits = 5, seed = 1 }:problems(2000)) do
  range_ok = range_ok and x.a >= 10000 and x.a <= 99999 and x.b >= 10000 and x.b <= 99999
end
check.ok(range_ok, "5-digit operands from 10000 to 99999")

---------------------------------------------------------------------------------------------------
-- determinism by seed; state and resumption; epochs of a fixed set
---------------------------------------------------------------------------------------------------
local function draws(g, n) local out = {} for i = 1, n do local x = g:sample() out[i] = key(x) end return out end
list_ok(draws(mult.generator{ digits = 4, seed = 5 }, 500), draws(mult.generator{ digits = 4, seed = 5 }, 500), "same seed, same problems")
check.ok(not same_list(draws(mult.generator{ digits = 4, seed = 5 }, 50), draws(mult.generator{ digits = 4, seed = 6 }, 50)), "another seed, other problems")
lab.seed(1); local ba = mult.generator{ digits = 4, seed = 5 }:batch(8, { mode = "cot" })
lab.seed(2); local bb = mult.generator{ digits = 4, seed = 5 }:batch(8, { mode = "cot" })
list_ok(ba.inputs:reshape{ -1 }:totable(), bb.inputs:reshape{ -1 }:totable(), "batches depend on the seed only, not on lab's generator")
local g1 = mult.generator{ digits = 4, seed = 8 }
g1:problems(300)
local st = g1:state()
local cont = draws(g1, 100)
local g2 = mult.generator{ digits = 4, seed = 8 }
g2:set_state(st)
list_ok(draws(g2, 100), cont, "set_state(state()) continues the same stream")
for _, ts in ipairs{ 0, 37 } do
  local ga, gb = mult.generator{ digits = 3, seed = 4, train_size = ts }, mult.generator{ digits = 3, seed = 4, train_size = ts }
  ga:problems(100)
  gb:set_state(ga:state())
  list_ok(draws(gb, 80), draws(ga, 80), "resume mid-stream, train_size " .. ts)
end
-- a fixed set is visited in epochs: every problem once per epoch, in a new order each epoch
local ge = mult.generator{ digits = 4, seed = 3, train_size = 40 }
local SA, SB = ge:training_set()
local members = {}
for i = 1, 40 do members[SA[i] * 1e6 + SB[i]] = true end
local e1, e2 = draws(ge, 40), draws(ge, 40)
local function covers(list) local c = {} for _, x in ipairs(list) do if not members[x] or c[x] then return false end c[x] = true end return true end
check.ok(covers(e1) and covers(e2), "each epoch visits every problem of the fixed set once")
check.ok(not same_list(e1, e2), "each epoch in a new order")
check.ok(ge:epoch() == 2, "epoch counter")
local both = {}
for _, x in ipairs(e1) do both[#both + 1] = x end
for _, x in ipairs(e2) do both[#both + 1] = x end
list_ok(draws(mult.generator{ digits = 4, seed = 3, train_size = 40 }, 80), both, "a fixed set's stream is determined by the seed")
local SA2 = mult.generator{ digits = 4, seed = 4, train_size = 40 }:training_set()
check.ok(not same_list(SA, SA2), "another seed, another fixed set")

---------------------------------------------------------------------------------------------------
-- errors name the function and the argument, and point at the caller's line
---------------------------------------------------------------------------------------------------
check.fails(function() mult.generator{ digits = 1 } end, "multiplication.generator: digits must be an integer from 2 to 9 (got 1)")
check.fails(function() mult.generator{ digits = 4.5 } end, "multiplication.generator: digits must be")
check.fails(function() mult.generator{ digits = "4" } end, 'digits must be an integer from 2 to 9 (got "4")')
check.fails(function() mult.generator{ train_size = -1 } end, "multiplication.generator: train_size must be a non-negative integer (got -1)")
check.fails(function() mult.generator{ digits = 2, train_size = 5000 } end, "multiplication.generator: train_size 5000 is more than half")
check.fails(function() mult.generator{ seed = "x" } end, 'multiplication.generator: seed must be a non-negative integer (got "x")')
check.fails(function() mult.generator{ digit = 4 } end, 'multiplication.generator: unknown option "digit"')
check.fails(function() mult.generator(4) end, "multiplication.generator: expected a table")
check.fails(function() mult.batch(problems, { mode = "full" }) end, "multiplication.batch: mode must be 'sft', 'cot' or 'icot' (got \"full\")")
check.fails(function() mult.batch(problems, { mode = "icot", remove = -1 }) end, "multiplication.batch: remove must be a non-negative integer")
check.fails(function() mult.batch(problems, { mode = "icot", remove = { 1, 2 } }) end, "multiplication.batch: remove has 2 counts for 6 problems")
check.fails(function() mult.batch(problems, { mode = "cot", remove = 3 }) end, "multiplication.batch: remove is for mode 'icot'")
check.fails(function() mult.batch({}) end, "multiplication.batch: problems must be a non-empty list")
check.fails(function() mult.batch({ { a = 123, b = 456, digits = 3 }, { a = 1234, b = 5678, digits = 4 } }) end, "multiplication.batch: problems[2] has 4 digits, problems[1] 3")
check.fails(function() mult.problem(123, 4567, 3) end, "multiplication.problem: b must be an integer with 3 digits (100..999) (got 4567)")
check.fails(function() mult.problem(12, 456, 3) end, "multiplication.problem: a must be")
check.fails(function() mult.encode("1 2 x 3") end, 'multiplication.encode: unknown symbol "x" at character 5')
check.fails(function() mult.decode({ 1, 99 }) end, "multiplication.decode: id 99 at position 2 is not in the vocabulary (1..18)")
check.fails(function() mult.decode(lab.zeros({ 2, 2 }, "int64")) end, "multiplication.decode: expected a 1-D tensor")
check.fails(function() mult.sequence(q, "icot", 1.5) end, "multiplication.sequence: remove must be a non-negative integer")
check.fails(function() gen:batch(0) end, "generator:batch: B must be a positive integer (got 0)")
check.fails(function() gen:batch(4, { mode = "cot", smoothing = 4 }) end, "generator:batch: smoothing is for mode 'icot'")
check.fails(function() gen:batch(4, { mode = "icot", smoothing = -1 }) end, "generator:batch: smoothing must be a positive number")
check.fails(function() mult.batch(problems, { mode = "icot", removal = 8 }) end, 'multiplication.batch: unknown option "removal" (mode, remove)')
check.fails(function() gen:batch(4, { mode = "icot", lambda = 4 }) end, 'generator:batch: unknown option "lambda"')
check.fails(function() gen:batch(4, { mode = "ICoT" }) end, "generator:batch: mode must be 'sft', 'cot' or 'icot'")
check.fails(function() gen:test(0) end, "generator:test: n must be a positive integer (got 0)")
check.fails(function() mult.generator{ digits = 2 }:test(1000) end, "generator:test: 1000 held-out problems asked for; the 2-digit test split holds only about 81")
check.fails(function() gen:set_state(-3) end, "generator:set_state: state must be a non-negative integer")
check.fails(function() mult.at_answers(lab.zeros{ 6, 3, 2 }, tgt_f) end, "multiplication.at_answers: x must have shape (B=6, T=65, ...)")
check.fails(function() mult.cot_length(10) end, "multiplication.cot_length: digits must be an integer from 2 to 9 (got 10)")
local ok, err = pcall(function() mult.generator{ digits = 0 } end)
check.ok(not ok and tostring(err):find("test_multiplication_data.lua:%d+: multiplication.generator") ~= nil, "the error points at the caller's line", tostring(err))

os.exit(check.report())
