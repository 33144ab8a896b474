#!/bin/bash
# viewer_cost.sh -- what watching costs the training: the regression study headless without
# publishing (viz=false), headless publishing (the default), and with `--view` (the viewer
# following the run in SDL's offscreen driver, drawing every update as it would on a screen).
# For each run: steps per wall-clock second of the whole process (start, training, a small
# evaluation), and the training's own CPU seconds per 1,000 steps (user + system, bash's `time`), which other processes on a shared machine disturb far less; for
# --view runs, the viewer's CPU seconds.  Rounds interleave the three modes.
#   bash bench/viewer_cost.sh [STEPS] [ROUNDS]      (default 5000 steps, 5 rounds)
# Then the viewer's frame time on an 8 x 8 grid of 128 x 128 maps.
cd "$(dirname "$0")/.." || exit 2
STEPS=${1:-5000}
ROUNDS=${2:-5}
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

TIMEFORMAT='%R %U %S'

echo "mode	round	steps/s (wall)	training CPU s / 1000 steps	viewer CPU s	records.bin bytes"
for r in $(seq "$ROUNDS"); do
    for mode in off headless view; do
        dir="$out/$mode-$r"
        args=(run experiments/icl_regression.lua steps="$STEPS" test_tasks=100 eval_lengths=40 --out "$dir")
        viewer_cpu=-
        case $mode in
            off) { time ./attnlab "${args[@]}" viz=false 2>"$dir.err"; } 2>"$dir.time" ;;
            headless) { time ./attnlab "${args[@]}" 2>"$dir.err"; } 2>"$dir.time" ;;
            view) { time SDL_VIDEODRIVER=offscreen ATTNLAB_VIEWER="$out/viewer.sh" ./attnlab "${args[@]}" --view 2>"$dir.err"; } 2>"$dir.time"
                  if [ -f "$out/viewer.pid" ]; then
                      vpid=$(cat "$out/viewer.pid")
                      # user + system ticks (1/100 s) of the viewer while it followed the run
                      viewer_cpu=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$vpid/stat")
                      kill "$vpid"
                      rm -f "$out/viewer.pid"
                  fi ;;
        esac
        wall=$(awk -v n="$STEPS" '{printf "%.1f", n / $1}' "$dir.time")
        cpu=$(awk -v n="$STEPS" '{printf "%.3f", ($2 + $3) * 1000 / n}' "$dir.time")
        printf '%s\t%d\t%s\t%s\t%s\t%s\n' "$mode" "$r" "$wall" "$cpu" "$viewer_cpu" \
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
