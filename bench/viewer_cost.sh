#!/bin/sh
# viewer_cost.sh -- what watching costs the training: steps/s of the regression study headless
# without publishing (viz=false), headless publishing (the default), and with `--view` (the viewer
# following the run in SDL's offscreen driver, drawing every update as it would on a screen).
# Rounds interleave the three so that drift on a shared machine hits each alike.
#   sh bench/viewer_cost.sh [STEPS] [ROUNDS]      (default 15000 steps, 2 rounds)
# Then the viewer's frame time on an 8 x 8 grid of 128 x 128 maps.
cd "$(dirname "$0")/.." || exit 2
STEPS=${1:-15000}
ROUNDS=${2:-2}
BUILD=${BUILD:-build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# the viewer under --view, through a wrapper that notes its pid (it runs until killed)
cat >"$out/viewer.sh" <<EOF
#!/bin/sh
echo \$\$ >"$out/viewer.pid"
exec "$PWD/$BUILD/attnlab-view" "\$@"
EOF
chmod +x "$out/viewer.sh"

rate() { sed -n 's/.*  \([0-9.]*\) steps\/s .*took.*/\1/p' "$1" | tail -n 1; }

for r in $(seq "$ROUNDS"); do
    for mode in off headless view; do
        dir="$out/$mode-$r"
        case $mode in
            off) ./attnlab run experiments/icl_regression.lua steps="$STEPS" test_tasks=1000 viz=false --out "$dir" 2>"$dir.err" ;;
            headless) ./attnlab run experiments/icl_regression.lua steps="$STEPS" test_tasks=1000 --out "$dir" 2>"$dir.err" ;;
            view) SDL_VIDEODRIVER=offscreen ATTNLAB_VIEWER="$out/viewer.sh" \
                  ./attnlab run experiments/icl_regression.lua steps="$STEPS" test_tasks=1000 --out "$dir" --view 2>"$dir.err"
                  [ -f "$out/viewer.pid" ] && kill "$(cat "$out/viewer.pid")" && rm -f "$out/viewer.pid" ;;
        esac
        printf '%s\tround %d\t%s steps/s\t%s records\n' "$mode" "$r" "$(rate "$dir.err")" \
            "$(wc -c <"$dir/records.bin" 2>/dev/null || echo 0)"
    done
done

# the frame time: 8 layers x 8 heads of 128 x 128 maps at 1280x800
./attnlab -e "
  lab.viz.open('$out', {interval = 0})
  for l = 1, 8 do lab.viz.attention('L' .. l, lab.rand{8, 128, 128}:softmax(3), {layer = l}) end"
"$BUILD/attnlab-view" "$out" --layout grid --size 1280x800 --scale 1 --bench-frames 200 --screenshot "$out/grid.png"
SDL_VIDEODRIVER=offscreen "$BUILD/attnlab-view" "$out" --layout grid --size 1280x800 --scale 1 --bench-frames 200
"$BUILD/attnlab-view" "$out" --layout overview --size 1920x1080 --scale 1 --bench-frames 100 --screenshot "$out/overview.png"
