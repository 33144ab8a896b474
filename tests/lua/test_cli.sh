#!/bin/sh
# test_cli.sh -- the `attnlab` program from the outside: flags, exit statuses, one-line errors,
# config overrides, the prompt, Ctrl-C followed by resume (which must reproduce an uninterrupted
# run bit for bit), and the run directory's safety: a reused --out refused unless resume= or
# --force, periodic checkpoints that survive kill -9, status.json for finished and failed runs.  Ends with "N passed, N failed"; exits 1 on any failure.
#
# The program: $ATTNLAB if set, else $BUILD/attnlab (build-san under SANITIZE), else ./attnlab.
# shellcheck disable=SC2015  # pass never fails, so "A && pass || fail" is an if-else
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ -n "${ATTNLAB:-}" ]; then PROG=$ATTNLAB
elif [ -x "$ROOT/${BUILD:-build}/attnlab" ]; then PROG=$ROOT/${BUILD:-build}/attnlab
else PROG=$ROOT/attnlab; fi
case $PROG in /*) ;; *) PROG=$(pwd)/$PROG ;; esac

T=$(mktemp -d "${TMPDIR:-/tmp}/attnlab-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# run CMD ARGS...: runs it with stdout in $T/out, stderr in $T/err, status in $rc
run() { "$@" >"$T/out" 2>"$T/err"; rc=$?; }
expect_rc() { if [ "$rc" -eq "$1" ]; then pass; else fail "$2: exit status $rc, expected $1 ($(head -c 300 "$T/err"))"; fi; }
expect_out() { if [ "$(cat "$T/out")" = "$1" ]; then pass; else fail "$2: stdout '$(cat "$T/out")', expected '$1'"; fi; }
expect_err() { if grep -Eq -- "$1" "$T/err"; then pass; else fail "$2: stderr '$(cat "$T/err")' lacks /$1/"; fi; }
expect_file() { if grep -Eq -- "$2" "$1" 2>/dev/null; then pass; else fail "$3: $1 lacks /$2/"; fi; }
one_line() { n=$(wc -l <"$T/err"); if [ "$n" -eq 1 ]; then pass; else fail "$1: $n lines on stderr, expected one: $(cat "$T/err")"; fi; }

# ---- flags -------------------------------------------------------------------------------------
run "$PROG" --help
expect_rc 0 "--help"
[ ! -s "$T/err" ] && pass || fail "--help writes nothing on stderr"
grep -q "attnlab run SCRIPT.lua" "$T/out" && pass || fail "--help shows the run usage"
grep -q -- "--force" "$T/out" && pass || fail "--help lists --force"

run "$PROG" --version
expect_rc 0 "--version"
grep -Eq '^attnlab [0-9]+\.[0-9]+\.[0-9]+.* \(LuaJIT [^;]+; OpenBLAS kernel [A-Za-z0-9]+; nn.Linear.s products: (openblas|attnlab-avx512)\)$' "$T/out" \
    && pass || fail "--version format: $(cat "$T/out")"
# the kernel named is the one OpenBLAS runs: pinned by OPENBLAS_CORETYPE, it follows the variable;
# on an AVX-512 CPU an AVX2 kernel gets the note and nn.Linear's products move to attnlab's own
# AVX-512 kernel; an AVX-512 kernel gets neither.  ATTNLAB_SGEMM forces the choice, and a value it
# does not take stops the program before anything runs.
run env OPENBLAS_CORETYPE=Haswell "$PROG" --version
grep -q 'OpenBLAS kernel Haswell; ' "$T/out" && pass || fail "--version under OPENBLAS_CORETYPE=Haswell: $(cat "$T/out")"
if grep -q avx512bw /proc/cpuinfo; then
    grep -q "products: attnlab-avx512)$" "$T/out" && grep -q "^note: OpenBLAS runs its Haswell kernels on a CPU with AVX-512 (OPENBLAS_CORETYPE is set); nn.Linear's products run on attnlab's own AVX-512 kernel" "$T/out" \
        && pass || fail "--version notes the faster kernels: $(cat "$T/out")"
    run env OPENBLAS_CORETYPE=Haswell ATTNLAB_SGEMM=openblas "$PROG" --version
    grep -q "products: openblas)$" "$T/out" && grep -q '^note: OPENBLAS_CORETYPE=Haswell holds OpenBLAS to its Haswell kernels on a CPU with AVX-512' "$T/out" \
        && pass || fail "--version with ATTNLAB_SGEMM=openblas: $(cat "$T/out")"
    run env OPENBLAS_CORETYPE=SkylakeX "$PROG" --version
    [ "$(cat "$T/out")" = "$(head -n 1 "$T/out")" ] && grep -q 'OpenBLAS kernel SkylakeX; nn.Linear.s products: openblas)$' "$T/out" && pass \
        || fail "--version under an AVX-512 kernel: one line, no note: $(cat "$T/out")"
    run env OPENBLAS_CORETYPE=SkylakeX ATTNLAB_SGEMM=attnlab "$PROG" --version
    grep -q "products: attnlab-avx512)$" "$T/out" && pass || fail "--version with ATTNLAB_SGEMM=attnlab: $(cat "$T/out")"
else
    [ "$(wc -l < "$T/out")" -eq 1 ] && pass || fail "--version on a CPU without AVX-512 has no note: $(cat "$T/out")"
fi
run env ATTNLAB_SGEMM=fast "$PROG" -e 'print("ran")'
expect_rc 2 "ATTNLAB_SGEMM=fast"
grep -q "ATTNLAB_SGEMM=fast: the products of nn.Linear run on 'openblas', 'attnlab'" "$T/err" && ! grep -q ran "$T/out" \
    && pass || fail "ATTNLAB_SGEMM=fast is refused before the script runs: $(cat "$T/out" "$T/err")"

run "$PROG" -e 'print(1+1)'
expect_rc 0 "-e"
expect_out "2" "-e prints"

run "$PROG" -e 'print(type(lab), type(lab.zeros), ATTNLAB_CLI.device)'
expect_out "$(printf 'table\tfunction\tcpu')" "-e has lab and ATTNLAB_CLI"

run "$PROG" --threads=2 -e 'print(ATTNLAB_CLI.threads, lab.num_threads())'
expect_out "$(printf '2\t2')" "--threads=N sets the core's thread count"

for bad in "--bogus" "--threads 0" "--threads=x" "--device tpu" "-e" "run" "view" "--out d -e 1" "--force -e 1" \
           "--force=yes run x.lua" "run nothere.lua"; do
  # shellcheck disable=SC2086
  run "$PROG" $bad
  expect_rc 2 "usage error '$bad'"
  one_line "usage error '$bad'"
done
run "$PROG" --bogus
expect_err "'--bogus'" "a bad flag is named"
run "$PROG" view d
expect_rc 1 "view of a missing run directory"
one_line "view of a missing run directory"
expect_err "'d' is not a directory" "view names the missing run directory"

# ---- script errors ----------------------------------------------------------------------------
printf 'local x = 1\n\nlocal y = nil\nprint(y.field)\n' >err.lua
run "$PROG" run err.lua
expect_rc 1 "script error"
one_line "script error"
expect_err '^attnlab: err.lua:4: ' "script error names file:line"

printf 'local a = lab.zeros{2, 3}\nlocal b = a:matmul(lab.zeros{4, 5})\n' >liberr.lua
run "$PROG" liberr.lua
expect_rc 1 "library error"
one_line "library error"
expect_err '^attnlab: liberr.lua:2: .*matmul' "library error names the script's line and the op"

ATTNLAB_TRACEBACK=1 run "$PROG" liberr.lua
expect_rc 1 "traceback run"
expect_err 'stack traceback' "ATTNLAB_TRACEBACK=1 adds the traceback"

printf 'x = = 1\n' >syntax.lua
run "$PROG" syntax.lua
expect_rc 1 "syntax error"
expect_err '^attnlab: syntax.lua:1: ' "syntax error names file:line"

printf 'print(arg[0], arg[1], select("#", ...))\n' >args.lua
run "$PROG" run args.lua k=v
expect_out "$(printf 'args.lua\tk=v\t1')" "arg table and ..."

# ---- a tiny training run: overrides, run directory, Ctrl-C, resume --------------------------------
cat >tiny.lua <<'EOF'
-- a linear model fitted with Adam; sleep_ms slows it down for the Ctrl-C test
local ffi = require "ffi"
pcall(ffi.cdef, "int usleep(unsigned int usec);")
local run = lab.run.start{ name = "tiny", config = { steps = 200, lr = 0.05, seed = 7, sleep_ms = 0,
                                                     note = "x", flag = false, log_every = 10 } }
local model = lab.nn.Linear(4, 1)
local opt = lab.optim.Adam(model:parameters(), { lr = run.config.lr })
run:track{ model = model, optim = opt }
local w_true = lab.randn{4, 1}
local loss
for step in run:steps(run.config.steps) do
  local x = lab.randn{16, 4}
  loss = lab.mse(model(x), x:matmul(w_true))
  opt:zero_grad()
  loss:backward()
  opt:step()
  if run:should_log(step) then run:log(step, { loss = loss }) end
  if run.config.sleep_ms > 0 then ffi.C.usleep(run.config.sleep_ms * 1000) end
end
run:summary{ loss = loss:item(), steps = run.step, note = run.config.note, flag = run.config.flag }
run:finish()
EOF

run "$PROG" run tiny.lua steps=30 note=hello flag=true --out o1 --threads 1
expect_rc 0 "overrides run"
expect_file o1/config.json '"steps": 30' "config.json has the override"
expect_file o1/config.json '"note": "hello"' "string override"
expect_file o1/config.json '"flag": true' "boolean override"
expect_file o1/config.json '"threads": 1' "config.json has threads"
expect_file o1/config.json '"attnlab_version": "' "config.json has the version"
expect_file o1/config.json '"linear_kernel": "(openblas|attnlab-avx512)"' "config.json says what ran nn.Linear's products"
expect_file o1/config.json '"blas_kernel": "[A-Za-z0-9]+"' "config.json names the OpenBLAS kernel"
expect_file o1/summary.json '"steps": 30' "summary.json written"
expect_file o1/metrics.jsonl '^\{"step":30,"loss":' "metrics.jsonl lines start with step"
[ "$(wc -l <o1/metrics.jsonl)" -eq 3 ] && pass || fail "metrics.jsonl has one line per logged step"
[ -s o1/final.safetensors ] && pass || fail "final.safetensors written"

run "$PROG" run tiny.lua steps=2
expect_rc 0 "default run dir"
ls runs/tiny/*-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]/config.json >/dev/null 2>&1 && pass || fail "runs/<name>/<time>-<id>/ created"

run "$PROG" run tiny.lua stepz=3 --out o2
expect_rc 1 "unknown key"
one_line "unknown key"
expect_err "unknown config key 'stepz'.*valid keys: .*steps" "unknown key is named, valid keys listed"

run "$PROG" run tiny.lua lr=abc --out o2
expect_rc 1 "wrong type"
one_line "wrong type"
expect_err "'lr' expects a number" "wrong type is explained"

run "$PROG" run tiny.lua flag=1 --out o2
expect_rc 1 "number for a boolean"

run "$PROG" run tiny.lua steps=1.5 --out o2
expect_rc 1 "fractional steps"
expect_err "config key 'steps' expects an integer .default 200., got 1.5" "steps must be an integer, even undeclared"
[ ! -e o2/config.json ] && pass || fail "no run directory for a refused override"

# declared kinds: an integer key and a string key with its choices
cat >kinds.lua <<'EOF2'
local run = lab.run.start{ name = "kinds", config = { steps = 3, mode = "sft", width = 8, lr = 1 },
                           kinds = { mode = { "sft", "aux" }, width = "integer" } }
for step in run:steps(run.config.steps) do end
run:summary{ mode = run.config.mode, width = run.config.width, lr = run.config.lr }
run:finish()
EOF2
run "$PROG" run kinds.lua mode=aux width=16 lr=2.5 --out k1
expect_rc 0 "declared kinds accept their values (and an undeclared number key a fraction)"
expect_file k1/summary.json '"lr": 2.5' "lr=2.5 taken though its default is a whole number"
run "$PROG" run kinds.lua mode=auxx --out k2
expect_rc 1 "a string outside its choices"
one_line "a string outside its choices"
expect_err "config key 'mode' must be one of 'sft', 'aux', got 'auxx'" "the choices are named"
[ ! -e k2/config.json ] && pass || fail "no run directory for a value outside the choices"
run "$PROG" run kinds.lua width=2.5 --out k3
expect_rc 1 "a declared integer given a fraction"
expect_err "config key 'width' expects an integer .default 8., got 2.5" "the integer key is named"
run "$PROG" -e 'lab.run.start{ name = "x", config = {}, bogus = 1 }'
expect_rc 1 "start with an unknown option"
expect_err "start: unknown option 'bogus'" "start names the unknown option"

# The uninterrupted reference, then the same run stopped with SIGINT and resumed.
run "$PROG" run tiny.lua steps=300 --out ref
expect_rc 0 "reference run"

# stopped_run SIGNAL DIR: tiny.lua (300 slowed steps) into DIR, sent SIGNAL once it has logged 3
# lines; sets rc to its exit status and $T/err to its stderr
stopped_run() {
  "$PROG" run tiny.lua steps=300 sleep_ms=10 --out "$2" >"$T/$2.out" 2>"$T/$2.err" &
  pid=$!
  i=0
  while [ $i -lt 200 ]; do
    [ -f "$2/metrics.jsonl" ] && [ "$(wc -l <"$2/metrics.jsonl")" -ge 3 ] && break
    sleep 0.05
    i=$((i + 1))
  done
  kill "-$1" $pid
  wait $pid
  rc=$?
  cp "$T/$2.err" "$T/err"
}
stopped_run INT int
expect_rc 130 "Ctrl-C exits with 130"
[ -s int/checkpoint.safetensors ] && pass || fail "Ctrl-C writes checkpoint.safetensors"
expect_err "resume=int/checkpoint.safetensors" "Ctrl-C says how to resume"
expect_file int/status.json '"status": "interrupted"' "Ctrl-C: status.json says interrupted"
expect_file int/status.json '"checkpoint": "int/checkpoint.safetensors"' "Ctrl-C: status.json names the checkpoint"

run "$PROG" -e 'local _, m = lab.load("int/checkpoint.safetensors"); print(tonumber(m.step) > 0 and tonumber(m.step) < 300)'
expect_out "true" "the checkpoint is from the middle of the run"

run "$PROG" run tiny.lua resume=int/checkpoint.safetensors sleep_ms=0
expect_rc 0 "resume"
expect_file int/config.json '"resumed_from": "int/checkpoint.safetensors"' "config.json records the resume"
cmp -s int/metrics.jsonl ref/metrics.jsonl && pass || fail "resumed metrics.jsonl equals the uninterrupted one"
cmp -s int/summary.json ref/summary.json && pass || fail "resumed summary.json equals the uninterrupted one"
run "$PROG" -e '
  local a, ma = lab.load("int/final.safetensors")
  local b, mb = lab.load("ref/final.safetensors")
  local n, same = 0, ma.step == mb.step and ma.rng_counter == mb.rng_counter
  for k, t in pairs(b) do
    n = n + 1
    local x, y = a[k] and a[k]:totable(), t:totable()
    local function eq(p, q)
      if type(p) ~= type(q) then return false end
      if type(p) ~= "table" then return p == q end
      for i = 1, #q do if not eq(p[i], q[i]) then return false end end
      return #p == #q
    end
    same = same and eq(x, y)
  end
  print(n > 0 and same)'
expect_out "true" "resumed final state equals the uninterrupted run's, bit for bit"

# SIGTERM (what Slurm's scancel and time limit send, and kill's default) is handled like Ctrl-C: a
# checkpoint at the step boundary, status interrupted, exit 143; the resumed run equals the reference.
stopped_run TERM term
expect_rc 143 "SIGTERM exits with 143 (128 + 15)"
expect_err "terminated .SIGTERM. after step" "SIGTERM says so"
expect_file term/status.json '"status": "interrupted"' "SIGTERM: status.json says interrupted"
run "$PROG" run tiny.lua resume=term/checkpoint.safetensors sleep_ms=0
expect_rc 0 "resume after SIGTERM"
cmp -s term/metrics.jsonl ref/metrics.jsonl && pass || fail "resumed-after-SIGTERM metrics.jsonl equals the uninterrupted one"

run "$PROG" run tiny.lua resume=nowhere.safetensors
expect_rc 1 "resume from a missing checkpoint"
one_line "resume from a missing checkpoint"

# ---- the run directory's safety -----------------------------------------------------------------
# status.json of a finished run (o1 above ran to its end)
expect_file o1/status.json '"status": "finished"' "a finished run's status.json"
expect_file o1/status.json '"step": 30' "status.json has the last step"

# --out on a directory that holds a run: refused, and the old run is left exactly as it was
cp o1/metrics.jsonl "$T/o1.metrics"; cp o1/config.json "$T/o1.config"; cp o1/status.json "$T/o1.status"
run "$PROG" run tiny.lua steps=20 --out o1
expect_rc 1 "a reused --out is refused"
one_line "a reused --out is refused"
expect_err "'o1' already holds a run" "the refusal names the directory"
expect_err "another --out.*--force" "the refusal names the ways out"
cmp -s o1/metrics.jsonl "$T/o1.metrics" && cmp -s o1/config.json "$T/o1.config" && cmp -s o1/status.json "$T/o1.status" \
  && pass || fail "a refused run leaves the old run's files untouched"
# the interrupted run's directory (it has a checkpoint) suggests resume=
run "$PROG" run tiny.lua --out int
expect_rc 1 "a reused --out with a checkpoint is refused"
expect_err "resume=int/checkpoint.safetensors" "the refusal offers resume= when there is a checkpoint"

# --force starts afresh: only the new run's lines in metrics.jsonl (20 steps, log_every 10: 2)
run "$PROG" run tiny.lua steps=20 --out o1 --force
expect_rc 0 "--force on a reused --out"
[ "$(wc -l <o1/metrics.jsonl)" -eq 2 ] && pass || fail "--force: metrics.jsonl has only the new run's lines ($(wc -l <o1/metrics.jsonl))"
expect_file o1/config.json '"steps": 20' "--force: config.json is the new run's"
run "$PROG" -e 'local _, m = lab.load("o1/final.safetensors"); io.write(m.step)'
expect_out "20" "--force: final.safetensors holds the new run's step"
# --force with resume= of that same directory contradicts itself
run "$PROG" run tiny.lua resume=int/checkpoint.safetensors --force
expect_rc 1 "--force with resume= in place"
expect_err "give one of them" "--force with resume= in place is explained"

run "$PROG" run tiny.lua checkpoint_every=-1 --out neg
expect_rc 1 "a negative checkpoint_every"
one_line "a negative checkpoint_every"
expect_err "checkpoint_every" "a bad checkpoint_every is named"

# A script error after the run started: status.json says failed, with the error and the step
cat >failing.lua <<'LUA'
local run = lab.run.start{ name = "failing", config = { steps = 50, fail_at = 7, seed = 1 } }
for step in run:steps(run.config.steps) do
  if step == run.config.fail_at then local t = nil; print(t.field) end
end
run:finish()
LUA
run "$PROG" run failing.lua --out failed
expect_rc 1 "a failing run"
one_line "a failing run"
expect_file failed/status.json '"status": "failed"' "a failed run's status.json says failed"
expect_file failed/status.json '"error": "failing.lua:3: attempt to index' "status.json carries the error and its line"
expect_file failed/status.json '"step": 7' "status.json has the step that failed"

# Periodic checkpoints: kill -9 after one (every 0.01 min = 0.6 s; 10 ms a step), then resume=
# continues from it and reproduces an uninterrupted reference exactly.  1000 steps (10 s unkilled)
# so that a loaded machine still kills it in the middle.
run "$PROG" run tiny.lua steps=1000 --out ref1k
expect_rc 0 "reference run of 1000 steps"
"$PROG" run tiny.lua steps=1000 sleep_ms=10 checkpoint_every=0.01 --out k9 >"$T/k9.out" 2>"$T/k9.err" &
pid=$!
i=0
while [ $i -lt 400 ] && [ ! -f k9/checkpoint.safetensors ]; do sleep 0.05; i=$((i + 1)); done
sleep 0.2
kill -9 $pid
wait $pid
rc=$?
expect_rc 137 "kill -9 of a running run"
expect_file k9/status.json '"status": "running"' "a killed run's status.json still says running"
expect_file k9/status.json '"checkpoint_step": [1-9]' "status.json names the last periodic checkpoint's step"
run "$PROG" -e 'local _, m = lab.load("k9/checkpoint.safetensors"); print(tonumber(m.step) > 0 and tonumber(m.step) < 1000)'
expect_out "true" "the periodic checkpoint is from the middle of the run"
[ ! -f k9/summary.json ] && pass || fail "the killed run did not reach its end"
run "$PROG" run tiny.lua resume=k9/checkpoint.safetensors sleep_ms=0
expect_rc 0 "resume after kill -9"
cmp -s k9/metrics.jsonl ref1k/metrics.jsonl && pass || fail "resumed-after-kill metrics.jsonl equals the uninterrupted one"
cmp -s k9/summary.json ref1k/summary.json && pass || fail "resumed-after-kill summary.json equals the uninterrupted one"
expect_file k9/status.json '"status": "finished"' "the resumed run's status.json says finished"

# ---- the prompt -------------------------------------------------------------------------------
printf '1+2\n=lab.version\nx = 5\nx * 2\nerror("boom")\nfor i = 1, 2 do\nprint(i)\nend\nprint("after")\n' >lines.txt
run sh -c "\"$PROG\" <lines.txt"
expect_rc 0 "prompt"
expected=$(printf '3\n%s\n10\n1\n2\nafter' "$("$PROG" -e 'io.write(lab.version)')")
expect_out "$expected" "prompt prints expressions, runs statements, continues lines"
expect_err 'stdin:1: boom' "prompt reports an error and goes on"

# ---- json ---------------------------------------------------------------------------------------
run "$PROG" -e '
  local json = require "attnlab.json"
  local s = json.encode{ b = 1, a = { 1, 2.5, true }, c = "q\"\n", d = 0 / 0 }
  local ok = s == [[{"a":[1,2.5,true],"b":1,"c":"q\"\n","d":null}]]
  ok = ok and json.decode(json.encode(0.1)) == 0.1 and json.decode(s).a[2] == 2.5
  ok = ok and not pcall(json.decode, "[1,]") and not pcall(json.decode, "{\"a\":1} x")
  print(ok)'
expect_out "true" "json encodes deterministically and decodes strictly"

# ---- the viewer without a display ---------------------------------------------------------------
# one line naming the ways out, exit status 2, and nothing left running: `run --view | tail` returns
run env -u DISPLAY -u WAYLAND_DISPLAY -u SDL_VIDEODRIVER "$PROG" view o1
expect_rc 2 "view without a display"
one_line "view without a display"
expect_err "no display here .*--screenshot FILE.png.*xvfb-run" "view without a display names the ways out"
env -u DISPLAY -u WAYLAND_DISPLAY -u SDL_VIDEODRIVER timeout 60 "$PROG" run tiny.lua steps=20 --view --out nodisplay \
    2>"$T/err" | cat >/dev/null
rc=$?
expect_rc 0 "run --view without a display finishes (through a pipe)"
expect_err "no display here" "run --view without a display says so"
expect_file nodisplay/status.json '"finished"' "the training went on headless"
sleep 0.2
# (through /proc: pgrep is not on every machine)
if for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f" 2>/dev/null; echo; done | grep -q "attnlab-vie[w] nodisplay"; then   # (the bracket: not this grep itself)
    fail "no viewer left running"
else
    pass
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
