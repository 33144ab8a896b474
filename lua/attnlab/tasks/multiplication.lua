-- attnlab.tasks.multiplication: the data of the multiplication study (Bai et al. 2025, "Why Can't
-- Transformers Learn Multiplication?", arXiv 2510.00184; the format of Deng et al.'s ICoT data).
-- docs/multiplication.md describes the format, the vocabulary, c_hat and this API in full.
-- One file, over 500 lines, on purpose: the format (problems, chain of thought, vocabulary), the
-- running sums, the batches and the generator with its held-out split are one data contract that
-- the study, its tests and checkpoints (the generator's state) depend on together.
--
-- A problem a x b has `digits` digits per operand (leading digit nonzero, as in the papers' files);
-- every number is written least-significant digit first.  The papers' text line for 2365 x 4347:
--
--   5 6 3 2 * 7 4 3 4||5 5 5 6 1 + 0 0 6 4 9 0 ( 5 5 1 1 1 1 ) + 0 0 5 9 0 7 0 ( 5 5 6 0 2 8 0 ) + 0 0 0 0 6 4 9 0 #### 5 5 6 0 8 2 0 1
--
-- input || chain of thought #### answer.  The chain of thought lists the partial products
-- a * b_j * 10^j (j = 0..d-1, zero-padded to d+1+j digits), joined by `+`, with the running sum
-- after each of them but the first and the last in `( ... )` (d+1+j digits); the last running sum
-- is the answer (2d digits).  46 CoT tokens at 4 x 4, 24 at 3 x 3, 74 at 5 x 5.
--
-- The model reads one token per symbol (vocabulary of 18: digits, * + ( ), the separators `||` and
-- `####`, <end>, <pad>); the training sequence is the line followed by <end>.  `||` plays the part
-- of the first <|endoftext|> of Deng et al.'s GPT-2 sequences and `####` that of the second one
-- with " ####" after it, so that one layout serves every mode:
--   cot   input || cot #### answer <end>            (the full chain of thought)
--   icot  input || cot[k+1..] #### answer <end>     (the first k CoT tokens removed, from the left)
--   sft   input || #### answer <end>                (no chain of thought: icot with all removed)
-- The loss is taken on every token after `||` (Deng et al. mask the labels up to and including the
-- first separator), so the CoT, `####`, the answer and <end>.
local lab = require "attnlab"
local ffi = require "ffi"
local bit = require "bit"

local mult = {}

---------------------------------------------------------------------------------------------------
-- Errors name the function the user called and point at the user's line (lab.raise skips the
-- frames of every file under lua/attnlab/, this one included).
---------------------------------------------------------------------------------------------------
local function raise(fn, msg) lab.raise(fn .. ": " .. msg) end

local function is_int(x) return type(x) == "number" and x == math.floor(x) and x > -2 ^ 53 and x < 2 ^ 53 end
local function show(x) return type(x) == "string" and string.format("%q", x) or tostring(x) end

mult.min_digits, mult.max_digits = 2, 9       -- 9: a * b_j stays exact in doubles; the rest is digit lists
local function check_digits(fn, d)
  if not is_int(d) or d < mult.min_digits or d > mult.max_digits then
    raise(fn, string.format("digits must be an integer from %d to %d (got %s)", mult.min_digits, mult.max_digits, show(d)))
  end
  return d
end

---------------------------------------------------------------------------------------------------
-- Vocabulary: ids 1-based as everywhere in attnlab (Embedding and cross_entropy take ids from 1);
-- 0 is not a token: it is the ignore id of the targets (lab.cross_entropy(logits, t, {ignore = 0})).
---------------------------------------------------------------------------------------------------
mult.symbols = { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "+", "(", ")", "||", "####", "<end>", "<pad>" }
mult.vocab_size = #mult.symbols                -- 18
mult.id = {}
for i, s in ipairs(mult.symbols) do mult.id[s] = i end
mult.TIMES, mult.PLUS, mult.OPEN, mult.CLOSE = mult.id["*"], mult.id["+"], mult.id["("], mult.id[")"]
mult.SEP, mult.ANS, mult.END, mult.PAD = mult.id["||"], mult.id["####"], mult.id["<end>"], mult.id["<pad>"]
mult.ignore = 0
local ID0 = mult.id["0"]
function mult.digit_id(digit) return ID0 + digit end       -- digit 0..9 -> id 1..10
function mult.id_digit(id) return id - ID0 end

-- encode(s): the ids of a string in the line format (spaces between symbols optional; `||`,
-- `####`, `<end>` and `<pad>` are single symbols).  Returns a Lua array of ids.
function mult.encode(s)
  if type(s) ~= "string" then raise("multiplication.encode", "expected a string (got " .. type(s) .. ")") end
  local ids, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == " " then
      i = i + 1
    elseif s:sub(i, i + 1) == "||" then ids[#ids + 1] = mult.SEP; i = i + 2
    elseif s:sub(i, i + 3) == "####" then ids[#ids + 1] = mult.ANS; i = i + 4
    elseif s:sub(i, i + 4) == "<end>" then ids[#ids + 1] = mult.END; i = i + 5
    elseif s:sub(i, i + 4) == "<pad>" then ids[#ids + 1] = mult.PAD; i = i + 5
    elseif mult.id[c] then ids[#ids + 1] = mult.id[c]; i = i + 1
    else
      raise("multiplication.encode", string.format("unknown symbol %q at character %d of %q", c, i, s))
    end
  end
  return ids
end

-- decode(ids): the canonical string: symbols separated by one space, none around `||` (as in the
-- papers' files), so decode(encode(s)) == s for every string decode writes.  ids: a Lua array or a
-- 1-D int64 tensor; opts.strip = true leaves out <pad> (and the ignore id 0, for targets).
function mult.decode(ids, opts)
  if type(ids) == "cdata" and ids.totable then
    if ids:dim() ~= 1 then raise("multiplication.decode", "expected a 1-D tensor of ids (got shape " .. ids:shape_string() .. ")") end
    ids = ids:totable()
  end
  if type(ids) ~= "table" then raise("multiplication.decode", "expected a table or a 1-D tensor of ids (got " .. type(ids) .. ")") end
  local strip = opts and opts.strip
  local out, prev = {}, nil
  for i = 1, #ids do
    local id = ids[i]
    if strip and (id == mult.PAD or id == mult.ignore) then
      -- left out
    else
      local s = mult.symbols[id]
      if not s then raise("multiplication.decode", string.format("id %s at position %d is not in the vocabulary (1..%d)", show(id), i, mult.vocab_size)) end
      if prev ~= nil and s ~= "||" and prev ~= "||" then out[#out + 1] = " " end
      out[#out + 1] = s
      prev = s
    end
  end
  return table.concat(out)
end

---------------------------------------------------------------------------------------------------
-- Problems
---------------------------------------------------------------------------------------------------

-- The digits of n >= 0, least significant first, padded with zeros to `width` (n must fit).
local function digits_of(n, width)
  local out = {}
  for i = 1, width do
    local r = n % 10
    out[i] = r
    n = (n - r) / 10
  end
  assert(n == 0, "digits_of: number wider than its field")
  return out
end
mult.digits_of = digits_of

-- x + y for digit lists (least significant first), written with `width` digits
local function add_digits(x, y, width)
  local out, carry = {}, 0
  for i = 1, width do
    local s = (x[i] or 0) + (y[i] or 0) + carry
    out[i] = s % 10
    carry = (s - out[i]) / 10
  end
  assert(carry == 0, "add_digits: sum wider than its field")
  return out
end

-- c_hat of a x b (ajyl/icot experiments/probe_c_hat.py get_c_hats):
--   s_k = sum over i + j = k of a_i b_j (digits from the least significant, 0-based),
--   c_hat_k = s_k + floor(c_hat_{k-1} / 10), c_hat_{-1} = 0,      k = 0 .. 2d-1,
-- so that c_k = c_hat_k mod 10 is digit k of the product and floor(c_hat_k / 10) is the carry
-- into position k+1.  Returns the 2d values as a Lua array (index k+1 holds c_hat_k) and the s_k.
function mult.c_hat(a, b, digits)
  check_digits("multiplication.c_hat", digits)
  local ad, bd = digits_of(a, digits), digits_of(b, digits)
  local c, s, prev = {}, {}, 0
  for k = 0, 2 * digits - 1 do
    local sk = 0
    for i = 0, digits - 1 do
      local j = k - i
      if j >= 0 and j < digits then sk = sk + ad[i + 1] * bd[j + 1] end
    end
    s[k + 1] = sk
    c[k + 1] = sk + math.floor(prev / 10)
    prev = c[k + 1]
  end
  return c, s
end

-- CoT length for d digits: partial products of d+1 .. 2d digits, d-1 `+`, and the d-2 running
-- sums between them in ( ) (d+2 .. 2d-1 digits, plus the brackets).  46 at d = 4.
function mult.cot_length(digits)
  check_digits("multiplication.cot_length", digits)
  local n = digits - 1                                  -- the `+` signs
  for j = 0, digits - 1 do n = n + digits + 1 + j end   -- partial products
  for j = 1, digits - 2 do n = n + digits + 1 + j + 2 end
  return n
end

-- The full problem: a, b, digits, product, the digit lists (least significant first) a_digits,
-- b_digits, partials[j+1] (a * b_j * 10^j, d+1+j digits), sums[j+1] (running sum after partial j,
-- d+1+j digits; sums[d] is the answer), answer (2d digits), the token lists input, cot and
-- answer_ids, and c_hat / s (mult.c_hat).
function mult.problem(a, b, digits)
  local fn = "multiplication.problem"
  digits = check_digits(fn, digits or 4)
  local lo, hi = 10 ^ (digits - 1), 10 ^ digits - 1
  if not is_int(a) or a < lo or a > hi then raise(fn, string.format("a must be an integer with %d digits (%d..%d) (got %s)", digits, lo, hi, show(a))) end
  if not is_int(b) or b < lo or b > hi then raise(fn, string.format("b must be an integer with %d digits (%d..%d) (got %s)", digits, lo, hi, show(b))) end
  local d = digits
  local p = { a = a, b = b, digits = d, a_digits = digits_of(a, d), b_digits = digits_of(b, d), partials = {}, sums = {} }
  for j = 0, d - 1 do
    local pp = {}
    for i = 1, j do pp[i] = 0 end                                     -- times 10^j
    local m = digits_of(a * p.b_digits[j + 1], d + 1)                 -- a * b_j < 10^(d+1)
    for i = 1, d + 1 do pp[j + i] = m[i] end
    p.partials[j + 1] = pp
    p.sums[j + 1] = j == 0 and pp or add_digits(p.sums[j], pp, d + 1 + j)
  end
  p.answer = p.sums[d]                                                -- 2d digits
  -- tokens
  local function put(list, ds) for i = 1, #ds do list[#list + 1] = ID0 + ds[i] end end
  local input = {}
  put(input, p.a_digits); input[#input + 1] = mult.TIMES; put(input, p.b_digits)
  local cot = {}
  put(cot, p.partials[1])
  for j = 1, d - 1 do
    cot[#cot + 1] = mult.PLUS
    put(cot, p.partials[j + 1])
    if j < d - 1 then
      cot[#cot + 1] = mult.OPEN; put(cot, p.sums[j + 1]); cot[#cot + 1] = mult.CLOSE
    end
  end
  local ans = {}
  put(ans, p.answer)
  p.input, p.cot, p.answer_ids = input, cot, ans
  p.c_hat, p.s = mult.c_hat(a, b, d)
  -- the product as a number (exact up to 2^53: digits <= 7; larger products are only digit lists)
  p.product = a * b
  return p
end

-- The problem's text line in the papers' format (the B.2 example above), without <end>.
function mult.line(p)
  if type(p) ~= "table" or not p.input then raise("multiplication.line", "expected a problem from multiplication.problem") end
  local ids = {}
  for _, t in ipairs(p.input) do ids[#ids + 1] = t end
  ids[#ids + 1] = mult.SEP
  for _, t in ipairs(p.cot) do ids[#ids + 1] = t end
  ids[#ids + 1] = mult.ANS
  for _, t in ipairs(p.answer_ids) do ids[#ids + 1] = t end
  return mult.decode(ids)
end

local MODES = { sft = true, cot = true, icot = true }
local function check_mode(fn, mode)
  if not MODES[mode] then raise(fn, "mode must be 'sft', 'cot' or 'icot' (got " .. show(mode) .. ")") end
  return mode
end
local function check_remove(fn, k, what)
  if not (k == math.huge or (is_int(k) and k >= 0)) then
    raise(fn, (what or "remove") .. " must be a non-negative integer or math.huge (got " .. show(k) .. ")")
  end
  return k
end

-- The token sequence of one problem: input || cot' #### answer <end>, where cot' is the full CoT
-- (mode "cot"), the CoT without its first `remove` tokens (mode "icot"; remove >= the CoT length
-- leaves none), or nothing (mode "sft").  Returns a Lua array of ids.
local function sequence(fn, p, mode, remove)
  if type(p) ~= "table" or not p.input then raise(fn, "expected a problem from multiplication.problem") end
  mode = check_mode(fn, mode or "cot")
  local k = 0
  if mode == "sft" then k = #p.cot
  elseif mode == "icot" then k = math.min(check_remove(fn, remove or 0), #p.cot)
  elseif remove ~= nil and remove ~= 0 then raise(fn, "remove is for mode 'icot' (mode is " .. show(mode) .. ")") end
  local ids = {}
  for _, t in ipairs(p.input) do ids[#ids + 1] = t end
  ids[#ids + 1] = mult.SEP
  for i = k + 1, #p.cot do ids[#ids + 1] = p.cot[i] end
  ids[#ids + 1] = mult.ANS
  for _, t in ipairs(p.answer_ids) do ids[#ids + 1] = t end
  ids[#ids + 1] = mult.END
  return ids, k                                       -- and the number of CoT tokens removed
end
function mult.sequence(p, mode, remove)
  return (sequence("multiplication.sequence", p, mode, remove))
end

-- Names for the positions of a sequence (for attention maps and plots): a0.. * b0.. || then the
-- CoT tokens as p<j>.<i> (digit i of partial product j), +, (, s<j>.<i> (running sum), ), then
-- ####, c0 .. c<2d-1>, <end>.  Same arguments as mult.sequence; the CoT names follow the removal.
function mult.position_names(p, mode, remove)
  local ids, k = sequence("multiplication.position_names", p, mode, remove)
  local d = p.digits
  local names = {}
  for i = 0, d - 1 do names[#names + 1] = "a" .. i end
  names[#names + 1] = "*"
  for i = 0, d - 1 do names[#names + 1] = "b" .. i end
  names[#names + 1] = "||"
  local cot = {}
  for j = 0, d - 1 do
    if j > 0 then cot[#cot + 1] = "+" end
    for i = 0, d + j do cot[#cot + 1] = string.format("p%d.%d", j, i) end
    if j > 0 and j < d - 1 then
      cot[#cot + 1] = "("
      for i = 0, d + j do cot[#cot + 1] = string.format("s%d.%d", j, i) end
      cot[#cot + 1] = ")"
    end
  end
  for i = k + 1, #cot do names[#names + 1] = cot[i] end
  names[#names + 1] = "####"
  for i = 0, 2 * d - 1 do names[#names + 1] = "c" .. i end
  names[#names + 1] = "<end>"
  assert(#names == #ids)
  return names
end

---------------------------------------------------------------------------------------------------
-- Batches
---------------------------------------------------------------------------------------------------

-- mult.batch(problems, opts): the tensors for next-token training on a list of problems (tables
-- from multiplication.problem, or {a =, b =, digits =} from a generator), all with the same digits.
-- opts.mode = "cot" (default), "icot" or "sft"; opts.remove = k (icot: CoT tokens removed from the
-- left; a number, or a Lua array with one count per problem).  Sequences of different lengths
-- (icot with per-problem counts) are padded on the right with <pad>.  With n_i the length of
-- problem i's sequence and T = max n_i - 1, the batch holds (time index t = 1..T):
--   inputs       (B, T) int64    seq[t]                    (<pad> past the end)
--   targets      (B, T) int64    seq[t+1] where a loss is taken (every token after `||`),
--                                mult.ignore (0) elsewhere and on padding
--   loss_mask    (B, T) float32  1 where targets ~= ignore
--   cot_mask     (B, T) float32  1 where the target is a CoT token
--   answer_mask  (B, T) float32  1 where the target is an answer digit c0..c_{2d-1}
--   digit_index  (B, T) int64    k+1 where the target is c_k, 0 elsewhere
--   answer_pos   (B, 2d) int64   t at which the target is c_k (column k+1): the position that
--                                predicts c_k, whose input is `####` (k = 0) or c_{k-1}
--   answer_input_pos (B, 2d) int64  t at which the input is c_k (= answer_pos + 1)
--   answer       (B, 2d) int64   the ids of c_0 .. c_{2d-1}
--   c_hat        (B, 2d) float32 c_hat_k (column k+1), mult.c_hat; a regression target for the
--                                position answer_pos[k] (or answer_input_pos[k]: the caller chooses)
-- and B, T, digits, mode, lengths (n_i - 1, the unpadded length of each row), removed (CoT tokens
-- removed per problem), cot_lengths (CoT tokens left per problem), problems.
function mult.batch(problems, opts)
  local fn = "multiplication.batch"
  if type(problems) ~= "table" or #problems == 0 then raise(fn, "problems must be a non-empty list of problems") end
  opts = opts or {}
  if type(opts) ~= "table" then raise(fn, "opts must be a table {mode =, remove =} (got " .. type(opts) .. ")") end
  for key in pairs(opts) do
    if key ~= "mode" and key ~= "remove" then raise(fn, "unknown option " .. show(key) .. " (mode, remove)") end
  end
  local mode = check_mode(fn, opts.mode or "cot")
  local remove = opts.remove or 0
  if mode ~= "icot" and opts.remove ~= nil and opts.remove ~= 0 then
    raise(fn, "remove is for mode 'icot' (mode is " .. show(mode) .. ")")
  end
  local B = #problems
  if type(remove) == "table" then
    if #remove ~= B then raise(fn, string.format("remove has %d counts for %d problems", #remove, B)) end
    for i = 1, B do check_remove(fn, remove[i], "remove[" .. i .. "]") end
  else
    check_remove(fn, remove)
  end
  local digits
  local seqs, removed, cot_left, full = {}, {}, {}, {}
  local n_max = 0
  for i = 1, B do
    local q = problems[i]
    if type(q) ~= "table" or not is_int(q.a) or not is_int(q.b) then raise(fn, "problems[" .. i .. "] is not a problem {a =, b =, digits =}") end
    if not q.input then q = mult.problem(q.a, q.b, q.digits or 4) end
    digits = digits or q.digits
    if q.digits ~= digits then raise(fn, string.format("problems[%d] has %d digits, problems[1] %d", i, q.digits, digits)) end
    local k = type(remove) == "table" and remove[i] or remove
    seqs[i], removed[i] = sequence(fn, q, mode, k)
    cot_left[i] = #q.cot - removed[i]
    full[i] = q
    n_max = math.max(n_max, #seqs[i])
  end
  local T, D2 = n_max - 1, 2 * digits
  local sep_at = 2 * digits + 2                       -- index of `||` in every sequence
  local inputs, targets, lmask, cmask, amask, dindex = {}, {}, {}, {}, {}, {}
  local apos, aipos, ans, chat, lengths = {}, {}, {}, {}, {}
  for i = 1, B do
    local s, n = seqs[i], #seqs[i]
    local inp, tgt, lm, cm, am, di = {}, {}, {}, {}, {}, {}
    local ans_start = n - D2                          -- index of c_0 in s
    for t = 1, T do
      if t + 1 <= n then
        inp[t] = s[t]
        local scored = t + 1 > sep_at
        tgt[t] = scored and s[t + 1] or mult.ignore
        lm[t] = scored and 1 or 0
        cm[t] = (t + 1 > sep_at and t + 1 <= sep_at + cot_left[i]) and 1 or 0
        local k = t + 1 - ans_start                   -- target is c_k when 0 <= k < 2d
        am[t] = (k >= 0 and k < D2) and 1 or 0
        di[t] = (k >= 0 and k < D2) and k + 1 or 0
      else
        inp[t], tgt[t], lm[t], cm[t], am[t], di[t] = mult.PAD, mult.ignore, 0, 0, 0, 0
      end
    end
    local ap, aip, an, ch = {}, {}, {}, {}
    for k = 0, D2 - 1 do
      ap[k + 1] = ans_start + k - 1
      aip[k + 1] = ans_start + k
      an[k + 1] = s[ans_start + k]
      ch[k + 1] = full[i].c_hat[k + 1]
    end
    inputs[i], targets[i], lmask[i], cmask[i], amask[i], dindex[i] = inp, tgt, lm, cm, am, di
    apos[i], aipos[i], ans[i], chat[i], lengths[i] = ap, aip, an, ch, n - 1
  end
  return {
    inputs = lab.tensor(inputs, "int64"), targets = lab.tensor(targets, "int64"),
    loss_mask = lab.tensor(lmask, "float32"), cot_mask = lab.tensor(cmask, "float32"),
    answer_mask = lab.tensor(amask, "float32"), digit_index = lab.tensor(dindex, "int64"),
    answer_pos = lab.tensor(apos, "int64"), answer_input_pos = lab.tensor(aipos, "int64"),
    answer = lab.tensor(ans, "int64"), c_hat = lab.tensor(chat, "float32"),
    B = B, T = T, digits = digits, mode = mode, lengths = lengths, removed = removed, cot_lengths = cot_left,
    problems = full,
  }
end

-- x (B, T, ...) -> the rows at the answer positions, (B, 2d, ...): x at batch.answer_pos (or at
-- batch.answer_input_pos with opts.input = true).  For logits (B, T, V): the answer digits'
-- logits, so lab.cross_entropy(mult.at_answers(logits, b):narrow(2, k+1, 1):reshape{B, V},
-- b.answer:narrow(2, k+1, 1):reshape{B}) is the loss of c_k.
function mult.at_answers(x, batch, opts)
  local fn = "multiplication.at_answers"
  if type(batch) ~= "table" or not batch.answer_pos then raise(fn, "batch must come from multiplication.batch") end
  local pos = (opts and opts.input) and batch.answer_input_pos or batch.answer_pos
  if type(x) ~= "cdata" or not x.shape then raise(fn, "x must be a tensor (B, T, ...)") end
  local shape = x:shape()
  if #shape < 2 or shape[1] ~= batch.B or shape[2] ~= batch.T then
    raise(fn, string.format("x must have shape (B=%d, T=%d, ...) (got %s)", batch.B, batch.T, x:shape_string()))
  end
  local idx_shape = { batch.B, pos:size(2) }
  local view = { batch.B, pos:size(2) }
  for d = 3, #shape do idx_shape[d] = shape[d]; view[d] = 1 end
  return x:gather(2, pos:reshape(view):expand(idx_shape))
end

---------------------------------------------------------------------------------------------------
-- A deterministic generator.
--
-- Randomness: a counter-based hash (splitmix64 of seed, stream, index, attempt), not lab's global
-- generator, so that the data depend on nothing but the seed and the draw counter: the training
-- stream is the same whatever else the script draws (initialisation, dropout), and the generator's
-- whole state is one number (gen:state()), which a checkpoint can hold.
--
-- Held-out problems: a fixed split of the problem space by a hash of the unordered pair
-- {a, b}: (a, b) is a test problem when hash(min(a,b), max(a,b)) mod 100 < mult.test_percent (1).
-- Training draws reject test problems, and test sets draw only them.  Chosen over an exclusion
-- set of the sampled test problems because
--   - it holds for every seed, train_size and test-set size at once: a model trained with any
--     seed never saw a problem of any test set (an exclusion set protects one test set only, and
--     changing its size or seed would change the training data);
--   - it costs nothing to store or check (one hash per draw), so fresh problems every step
--     (train_size = 0) stay as cheap as a fixed set;
--   - the pair is unordered so that b x a, which has the same answer, is held out with a x b;
--   - 1% of the space is still large: ~8,000 test problems at 3 x 3, ~800,000 at 4 x 4, so the
--     1,000-problem test sets the study uses are distinct problems at every digits >= 3.
-- The cost: training draws come from the other 99% (uniform over it), so the training
-- distribution differs from uniform-over-all-problems only by leaving the test pairs out.
---------------------------------------------------------------------------------------------------
mult.test_percent = 1

local rng = require "attnlab.counter_rng"
local U64 = ffi.typeof("uint64_t")
-- uniform in [0, 1) with 53 random bits, from (seed, stream, index, attempt)
local uniform = rng.uniform
mult._uniform = uniform

local SPLIT_SALT = 0x6d756c7473706c74ULL          -- a fixed salt: the split never depends on the seed
function mult.is_test(a, b)
  local lo, hi = math.min(a, b), math.max(a, b)
  local z = rng.extend(rng.mix64(bit.bxor(SPLIT_SALT, U64(lo))), hi)
  return tonumber(z % 100ULL) < mult.test_percent
end

-- a table key for the pair (exact: a number while a * 10^digits + b < 2^53, else a string)
local function pair_key(a, b, digits)
  if digits <= 7 then return a * 10 ^ digits + b end
  return a .. "x" .. b
end

local STREAM_FRESH, STREAM_SET, STREAM_PERM, STREAM_SMOOTH, STREAM_TEST = 1, 2, 3, 4, 5

-- problem `index` of a stream: uniform a, b with `digits` digits (leading digit nonzero), redrawn
-- (attempt 1, 2, ...) until it falls on the wanted side of the split
local function draw(seed, stream, index, digits, want_test)
  local lo, span = 10 ^ (digits - 1), 9 * 10 ^ (digits - 1)
  for attempt = 0, 1e7, 2 do
    local a = lo + math.floor(uniform(seed, stream, index, attempt) * span)
    local b = lo + math.floor(uniform(seed, stream, index, attempt + 1) * span)
    if mult.is_test(a, b) == want_test then return a, b end
  end
  error("multiplication: no problem found on the wanted side of the split")
end

-- P(o) proportional to e^{-lambda o}, o = 0..99, as Deng et al.'s compute_lambda_distribution: the
-- geometric weights (1 - e^{-lambda}) e^{-lambda o} with the remaining mass put on o = 99.
function mult.smoothing_distribution(lambda, truncate)
  truncate = truncate or 100
  local p, total = {}, 0
  for o = 0, truncate - 1 do
    p[o + 1] = (1 - math.exp(-lambda)) * math.exp(-lambda * o)
    total = total + p[o + 1]
  end
  p[truncate] = p[truncate] + (1 - total)
  return p
end

local Generator = {}
Generator.__index = Generator

-- mult.generator{digits = 4, seed = 1, train_size = 0}
--   train_size = 0: every draw is a fresh problem (draw n is problem n of the seed's stream);
--   train_size = N > 0: a fixed training set of N distinct problems (drawn from the seed), visited
--   in epochs of N draws, each epoch a fresh permutation (as a shuffling data loader).
function mult.generator(cfg)
  local fn = "multiplication.generator"
  cfg = cfg or {}
  if type(cfg) ~= "table" then raise(fn, "expected a table {digits =, seed =, train_size =} (got " .. type(cfg) .. ")") end
  for key in pairs(cfg) do
    if key ~= "digits" and key ~= "seed" and key ~= "train_size" then raise(fn, "unknown option " .. show(key) .. " (digits, seed, train_size)") end
  end
  local digits = check_digits(fn, cfg.digits or 4)
  local seed = cfg.seed or 1
  if not is_int(seed) or seed < 0 then raise(fn, "seed must be a non-negative integer (got " .. show(seed) .. ")") end
  local train_size = cfg.train_size or 0
  if not is_int(train_size) or train_size < 0 then raise(fn, "train_size must be a non-negative integer (got " .. show(train_size) .. ")") end
  -- the training side of the split holds about 99% of the 81 * 100^(d-1) ordered pairs
  local space = 81 * 100 ^ (digits - 1)
  if train_size > space * 0.5 then
    raise(fn, string.format("train_size %d is more than half of the %d-digit training problems (about %d)", train_size, digits,
      math.floor(space * (100 - mult.test_percent) / 100)))
  end
  return setmetatable({ digits = digits, seed = seed, train_size = train_size, counter = 0 }, Generator)
end

-- the fixed training set, built on first use: N distinct problems, in the order drawn
function Generator:training_set()
  if self.train_size == 0 then return nil end
  if not self.set_a then
    local A, Bs, seen = {}, {}, {}
    local i = 0
    while #A < self.train_size do
      local a, b = draw(self.seed, STREAM_SET, i, self.digits, false)
      i = i + 1
      local key = pair_key(a, b, self.digits)
      if not seen[key] then seen[key] = true; A[#A + 1] = a; Bs[#Bs + 1] = b end
    end
    self.set_a, self.set_b = A, Bs
  end
  return self.set_a, self.set_b
end

-- the permutation of epoch e (0-based) over the fixed set: Fisher-Yates from the seed
function Generator:permutation(e)
  if self.perm_epoch ~= e then
    local N, perm = self.train_size, {}
    for i = 1, N do perm[i] = i end
    for i = N, 2, -1 do
      local j = 1 + math.floor(uniform(self.seed, STREAM_PERM, e, i) * i)
      perm[i], perm[j] = perm[j], perm[i]
    end
    self.perm, self.perm_epoch = perm, e
  end
  return self.perm
end

-- training problem number n (0-based) of this generator
function Generator:problem_at(n)
  if self.train_size == 0 then
    local a, b = draw(self.seed, STREAM_FRESH, n, self.digits, false)
    return { a = a, b = b, digits = self.digits }
  end
  local A, Bs = self:training_set()
  local N = self.train_size
  local e = math.floor(n / N)
  local i = self:permutation(e)[n - e * N + 1]
  return { a = A[i], b = Bs[i], digits = self.digits }
end

-- the next training problem ({a, b, digits}); advances the counter
function Generator:sample()
  local p = self:problem_at(self.counter)
  self.counter = self.counter + 1
  return p
end

-- the next n training problems
function Generator:problems(n)
  if not is_int(n) or n < 1 then raise("generator:problems", "n must be a positive integer (got " .. show(n) .. ")") end
  local out = {}
  for i = 1, n do out[i] = self:sample() end
  return out
end

-- a training batch of B problems: mult.batch(gen:problems(B), opts); with opts.smoothing =
-- lambda (mode "icot"), each problem removes opts.remove + o tokens, o ~ P(o) ~ e^{-lambda o}
-- (Deng et al.'s removal smoothing, lambda = 4 in the paper), drawn from the seed and the
-- problem's draw number, so a resumed generator repeats them.
function Generator:batch(B, opts)
  local fn = "generator:batch"
  if not is_int(B) or B < 1 then raise(fn, "B must be a positive integer (got " .. show(B) .. ")") end
  opts = opts or {}
  if type(opts) ~= "table" then raise(fn, "opts must be a table {mode =, remove =, smoothing =} (got " .. type(opts) .. ")") end
  for key in pairs(opts) do
    if key ~= "mode" and key ~= "remove" and key ~= "smoothing" then raise(fn, "unknown option " .. show(key) .. " (mode, remove, smoothing)") end
  end
  check_mode(fn, opts.mode or "cot")
  local first = self.counter
  local problems = self:problems(B)
  local o = opts
  if opts.smoothing ~= nil then
    local lambda = opts.smoothing
    if type(lambda) ~= "number" or not (lambda > 0) then raise(fn, "smoothing must be a positive number (lambda; got " .. show(lambda) .. ")") end
    if (opts.mode or "cot") ~= "icot" then raise(fn, "smoothing is for mode 'icot' (mode is " .. show(opts.mode or "cot") .. ")") end
    local base = opts.remove or 0
    check_remove(fn, base)
    local dist = mult.smoothing_distribution(lambda)
    local counts = {}
    for i = 1, B do
      local u, off = uniform(self.seed, STREAM_SMOOTH, first + i - 1, 0), #dist - 1
      local acc = 0
      for j = 1, #dist do
        acc = acc + dist[j]
        if u < acc then off = j - 1 break end
      end
      counts[i] = base + off
    end
    o = { mode = "icot", remove = counts }
  end
  return mult.batch(problems, o)
end

-- n distinct held-out problems ({a, b, digits}), the same for every generator of these digits
-- whatever its seed and train_size (test_seed, default 0, picks another set)
function Generator:test(n, test_seed)
  local fn = "generator:test"
  if not is_int(n) or n < 1 then raise(fn, "n must be a positive integer (got " .. show(n) .. ")") end
  test_seed = test_seed or 0
  if not is_int(test_seed) or test_seed < 0 then raise(fn, "test_seed must be a non-negative integer (got " .. show(test_seed) .. ")") end
  local pool = 81 * 100 ^ (self.digits - 1) * mult.test_percent / 100
  if n > pool / 2 then
    raise(fn, string.format("%d held-out problems asked for; the %d-digit test split holds only about %d", n, self.digits, math.floor(pool)))
  end
  local out, seen, i = {}, {}, 0
  while #out < n do
    local a, b = draw(test_seed, STREAM_TEST, i, self.digits, true)
    i = i + 1
    local key = pair_key(a, b, self.digits)
    if not seen[key] then seen[key] = true; out[#out + 1] = { a = a, b = b, digits = self.digits } end
    if i > 1000 * n + 100000 then raise(fn, string.format("found only %d distinct held-out problems of %d digits", #out, self.digits)) end
  end
  return out
end

-- the generator's state for a checkpoint (the number of training problems drawn so far), and
-- its restoration: a generator set to a state draws what the original drew from that state on
function Generator:state() return self.counter end
function Generator:set_state(n)
  if not is_int(n) or n < 0 then raise("generator:set_state", "state must be a non-negative integer (got " .. show(n) .. ")") end
  self.counter = n
end

-- the epoch a fixed training set is in (0-based; train_size = 0: nil)
function Generator:epoch()
  if self.train_size == 0 then return nil end
  return math.floor(self.counter / self.train_size)
end

mult.Generator = Generator
return mult
