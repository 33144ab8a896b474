#!/bin/sh
# run_all.sh -- every test of attnlab: C unit tests, Lua tests (API, gradient checks, PyTorch
# fixtures, fuzz, memory, smoke, resume), the command-line tests.  `make test` calls it with BUILD
# set to the build folder (build, or build-san for `make test SANITIZE=1`).  Prints one line per
# test program and a total "N passed, N failed, N skipped" line; exits non-zero if anything failed.
# A program's skipped checks are shown with their reasons (its "SKIP n checks: why" lines), so a
# skip is never silent; "compare numbers" counts the passed checks that compared computed numbers.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
ATTNLAB=${ATTNLAB:-$BUILD/attnlab}
export ATTNLAB BUILD
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
passed=0; failed=0; skipped=0; numeric=0; broken=""

# run NAME COMMAND...: runs a test program, adds up the "N passed, N failed" line it prints
run() {
    name=$1; shift
    out="$log/$name.out"
    "$@" >"$out" 2>&1
    rc=$?
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    p=$(echo "$line" | sed -E 's/(^|.* )([0-9]+) passed.*/\2/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    k=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
    c=$(echo "$line" | sed -nE 's/.* ([0-9]+) compare numbers.*/\1/p')
    [ -n "$line" ] || { p=0; f=1; }
    skipped=$((skipped + ${k:-0})); numeric=$((numeric + ${c:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        broken="$broken $name"
        echo "FAIL $name (exit $rc)"; sed 's/^/    /' "$out" | tail -n 40
    else
        if [ "${k:-0}" -gt 0 ]; then echo "ok   $name: $p passed, $k skipped"; else echo "ok   $name: $p passed"; fi
        grep '^SKIP ' "$out" | sed 's/^/    /'
        # what a test wants said even when it passes (how it ran, a fallback it took)
        grep '^note: ' "$out" | sed 's/^note: /    /'
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] && run "$(basename "$t")" "$t"
done
for t in tests/lua/test_*.lua; do
    run "$(basename "$t" .lua)" "$ATTNLAB" "$t"
done
for t in tests/lua/test_*.sh; do
    run "$(basename "$t" .sh)" sh "$t"
done

[ -n "$broken" ] && echo "failed:$broken"
echo "$passed passed, $failed failed, $skipped skipped ($numeric of the passed checks compare numbers)"
[ "$failed" -eq 0 ]
