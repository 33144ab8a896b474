#!/bin/sh
# test_sweep_slurm.sh -- `attnlab sweep --slurm` against a real Slurm that this test starts on
# localhost: munged, slurmctld and slurmd (Debian's packages; `make test` and .ci/run install them)
# with a slurm.conf of one node that has this machine's CPUs, all in a temporary directory, on ports
# of their own.  A sweep of 8 points (tests/lua/sweep_script.lua, width=1,2 x seed=1..4) goes in
# as one job array; point 3 holds at step 10 after a checkpoint and is cancelled there (scancel,
# whose SIGTERM the run takes as a polite stop: a checkpoint, status interrupted), the other 7 run to
# the end; --status then calls point 3 interrupted, --resume sends it again (a second job) and it
# continues from its checkpoint; --collect makes the table of all 8.
#
# If slurmd cannot start (no root, a container that cannot run jobs) the test says why and checks
# the generated job script with `sbatch --test-only` against the controller it did start; if not
# even slurmctld starts, or Slurm is not installed, that is a failure with the reason, never a skip.
# Lines starting "note:" say what was done (tests/run_all.sh shows them).  The daemons are stopped
# (by their pids) and the directory removed on exit.  Takes about half a minute.
#
# The program: $ATTNLAB if set, else $BUILD/attnlab, else ./attnlab.
# shellcheck disable=SC2015  # pass never fails, so "A && pass || fail" is an if-else
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ -n "${ATTNLAB:-}" ]; then PROG=$ATTNLAB
elif [ -x "$ROOT/${BUILD:-build}/attnlab" ]; then PROG=$ROOT/${BUILD:-build}/attnlab
else PROG=$ROOT/attnlab; fi
case $PROG in /*) ;; *) PROG=$ROOT/$PROG ;; esac
SCRIPT=$ROOT/tests/lua/sweep_script.lua
PATH=$PATH:/usr/sbin:/sbin   # the daemons live in sbin

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
note() { echo "note: $*"; }
finish() { echo "sweep_slurm: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

# ---- is Slurm here? ----------------------------------------------------------------------------
missing=""
for b in munged slurmctld slurmd sbatch squeue scancel scontrol sinfo; do
  command -v "$b" >/dev/null 2>&1 || missing="$missing $b"
done
if [ -n "$missing" ]; then
  fail "Slurm is not installed (missing:$missing); make test installs it: apt-get install slurmctld slurmd slurm-client munge"
  finish
fi

D=$(mktemp -d "${TMPDIR:-/tmp}/attnlab-slurm.XXXXXX")
chmod 700 "$D"
MUNGE_PID=""; CTLD_PID=""; SLURMD_PID=""

# stop what this test started, by pid: first the jobs (so slurmd leaves no job steps behind)
cleanup() {
  if [ -n "$CTLD_PID" ] && [ -f "$D/slurm.conf" ]; then
    SLURM_CONF=$D/slurm.conf scancel --me >/dev/null 2>&1
    i=0; while [ $i -lt 20 ] && [ -n "$(SLURM_CONF=$D/slurm.conf squeue --me -h 2>/dev/null)" ]; do sleep 0.5; i=$((i + 1)); done
  fi
  for pid in $SLURMD_PID $CTLD_PID $MUNGE_PID; do
    kill "$pid" 2>/dev/null
    i=0; while [ $i -lt 20 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.25; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

# waits up to $1 seconds for the command "$2..." to succeed
wait_for() {
  limit=$1; shift
  t=0
  while [ "$t" -lt $((limit * 4)) ]; do
    "$@" && return 0
    sleep 0.25; t=$((t + 1))
  done
  return 1
}

# ---- munge -------------------------------------------------------------------------------------
dd if=/dev/urandom of="$D/munge.key" bs=1024 count=1 2>/dev/null
chmod 600 "$D/munge.key"
munged -F --force --socket="$D/munge.sock" --key-file="$D/munge.key" --pid-file="$D/munged.pid" \
       --log-file="$D/munged.log" --seed-file="$D/munged.seed" >"$D/munged.out" 2>&1 &
MUNGE_PID=$!
if ! wait_for 10 test -S "$D/munge.sock"; then
  fail "munged did not start: $(tail -n 3 "$D/munged.out" | tr '\n' ' ')"
  finish
fi

# ---- slurm.conf: one node, this machine's CPUs, ports of this test's own ------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
PORT=$((20000 + $$ % 20000))
ME=$(id -un)
mkdir -p "$D/state" "$D/spool" "$D/log"
cat >"$D/slurm.conf" <<EOF
ClusterName=attnlabtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$D/munge.sock
CredType=cred/munge
SlurmUser=$ME
SlurmdUser=$ME
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$D/slurm.conf"

ctld_up() { scontrol ping 2>/dev/null | grep -q "is UP"; }
start_ctld() {
  slurmctld -D -c -f "$SLURM_CONF" >>"$D/slurmctld.out" 2>&1 &
  CTLD_PID=$!
  wait_for 20 ctld_up
}
stop() { kill "$1" 2>/dev/null; i=0; while [ $i -lt 20 ] && kill -0 "$1" 2>/dev/null; do sleep 0.25; i=$((i + 1)); done; }
if ! start_ctld; then
  fail "slurmctld did not start, so neither a sweep nor sbatch --test-only can run: $(tail -n 5 "$D/log/slurmctld.log" "$D/slurmctld.out" 2>/dev/null | tr '\n' ' ')"
  finish
fi
pass

why_no_slurmd=""
if [ "$(id -u)" -ne 0 ]; then
  why_no_slurmd="slurmd needs root to start jobs (this test runs as $ME)"
else
  slurmd -D -f "$SLURM_CONF" >"$D/slurmd.out" 2>&1 &
  SLURMD_PID=$!
  node_idle() { sinfo -h -o %T 2>/dev/null | grep -q idle; }
  if ! wait_for 30 node_idle; then
    why_no_slurmd="slurmd did not bring the node up: $(tail -n 5 "$D/slurmd.out" | tr '\n' ' ')"
  fi
fi

S=$D/sweep

# ---- the fallback: the job script checked against the controller ---------------------------------
if [ -n "$why_no_slurmd" ]; then
  note "FALLBACK: no real jobs: $why_no_slurmd"
  # a node whose slurmd never registered is not schedulable, not even for --test-only; as a cloud
  # node that is powered down (and "powered up" by /bin/true) it is
  [ -n "$SLURMD_PID" ] && stop "$SLURMD_PID"
  stop "$CTLD_PID"
  sed -i "s/^NodeName=.*/NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=CLOUD/" "$SLURM_CONF"
  printf 'SuspendProgram=/bin/true\nResumeProgram=/bin/true\nSuspendTime=600\nResumeTimeout=60\n' >>"$SLURM_CONF"
  start_ctld || { fail "slurmctld did not start again with a cloud node: $(tail -n 5 "$D/log/slurmctld.log" | tr '\n' ' ')"; finish; }
  "$PROG" sweep "$SCRIPT" width=1,2 seed=1..4 steps=5 --out "$S" --slurm --test-only >"$D/out" 2>"$D/err"
  rc=$?
  [ "$rc" -eq 0 ] && pass || fail "sweep --slurm --test-only: exit $rc: $(cat "$D/err")"
  grep -q "sbatch --test-only: .*Job .* to start" "$D/err" && pass || fail "sbatch --test-only accepted the job script: $(cat "$D/err")"
  grep -q "^#SBATCH --array=1-8$" "$S/sweep.sbatch" && pass || fail "the job script has one task per point"
  grep -q -- "sweep --run-point '$S' \"\$SLURM_ARRAY_TASK_ID\"" "$S/sweep.sbatch" && pass || fail "the job script runs the point of its task"
  note "FALLBACK: checked $S/sweep.sbatch with sbatch --test-only against slurmctld (8 points, nothing ran)"
  finish
fi

# ---- a real sweep: 8 points, point 3 cancelled in the middle ------------------------------------
note "real Slurm: $(sbatch --version) on $NODE, $CPUS CPUs, slurmctld and slurmd on ports $PORT and $((PORT + 1))"
touch "$D/hold-1-3"
t0=$(date +%s)
"$PROG" sweep "$SCRIPT" width=1,2 seed=1..4 --set "hold_file=$D/hold-{width}-{seed}" --out "$S" --slurm >"$D/out" 2>"$D/err"
rc=$?
[ "$rc" -eq 0 ] && pass || fail "sweep --slurm: exit $rc: $(cat "$D/err")"
JOB=$(sed -n 's/.*submitted to Slurm as job \([0-9]*\).*/\1/p' "$D/err")
[ -n "$JOB" ] && pass || fail "sweep --slurm names the job: $(cat "$D/err")"
grep -q "\"id\": \"$JOB\"" "$S/sweep.json" && pass || fail "sweep.json records job $JOB"
grep -q "^#SBATCH --array=1-8$" "$S/sweep.sbatch" && pass || fail "the job script has one task per point"

P3=$(sed -n 's/.*"dir": "\(003_[^"]*\)".*/\1/p' "$S/sweep.json")
[ "$P3" = "003_width-1_seed-3" ] && pass || fail "point 3 is width=1 seed=3: '$P3'"
held() { [ -f "$S/$P3/checkpoint.safetensors" ] && grep -q "holding at step 10" "$S/$P3.log" 2>/dev/null; }
if wait_for 120 held; then pass; else fail "point 3 ($P3) never reached its hold: $(cat "$S/$P3.log" 2>/dev/null)"; fi
scancel "${JOB}_3" && pass || fail "scancel ${JOB}_3"
job_gone() { [ -z "$(squeue --me -h -j "$1" 2>/dev/null)" ]; }
if wait_for 150 job_gone "$JOB"; then pass; else fail "job $JOB did not end: $(squeue --me -h -r 2>&1)"; fi

# the point writes its checkpoint and status on the way out: wait for them rather than race them
settled() { "$PROG" sweep --status "$S" >"$D/out" 2>"$D/err"; grep -q "7 finished, 1 interrupted" "$D/out"; }
if wait_for 60 settled; then pass; else fail "--status: 7 finished and point 3 interrupted: $(cat "$D/out" "$D/err")"; fi
grep -Eq "^  $P3 +interrupted" "$D/out" && pass || fail "--status calls $P3 interrupted: $(cat "$D/out")"
grep -q "terminated (SIGTERM) after step" "$S/$P3.log" && pass || fail "point 3 took scancel's SIGTERM as a polite stop: $(tail -3 "$S/$P3.log")"

rm -f "$D/hold-1-3"
"$PROG" sweep --resume "$S" >"$D/out" 2>"$D/err"
rc=$?
[ "$rc" -eq 0 ] && pass || fail "--resume: exit $rc: $(cat "$D/err")"
grep -q "running points 3 again" "$D/err" && pass || fail "--resume finds point 3: $(cat "$D/err")"
JOB2=$(sed -n 's/.*submitted to Slurm as job \([0-9]*\).*/\1/p' "$D/err")
[ -n "$JOB2" ] && [ "$JOB2" != "$JOB" ] && pass || fail "--resume submits a second job: $(cat "$D/err")"
if wait_for 120 job_gone "$JOB2"; then pass; else fail "job $JOB2 did not end"; fi

"$PROG" sweep --status "$S" >"$D/out" 2>"$D/err"
grep -q "8 points: 8 finished" "$D/out" && pass || fail "every point finished after --resume: $(cat "$D/out" "$D/err")"
grep -q '"attempt": 2' "$S/$P3/point.json" && pass || fail "point 3 ran a second time: $(cat "$S/$P3/point.json")"
grep -q "\"resumed_from\": \"$S/$P3/checkpoint.safetensors\"" "$S/$P3/point.json" && pass \
  || fail "point 3 continued from its checkpoint: $(cat "$S/$P3/point.json")"
grep -q "\"slurm_job\": \"$JOB2\"" "$S/$P3/point.json" && pass || fail "point 3 ran in job $JOB2"
steps=$(grep -c '"step"' "$S/$P3/metrics.jsonl")
[ "$steps" -eq 20 ] && pass || fail "point 3's metrics hold its 20 steps once ($steps lines)"
n_out=$(ls "$S/slurm" | grep -c "\.out$")
[ "$n_out" -ge 9 ] && pass || fail "Slurm's output of each task in $S/slurm ($n_out files)"
n_logs=$(ls "$S" | grep -c "^00[1-8]_.*\.log$")
[ "$n_logs" -eq 8 ] && pass || fail "each point's log beside its run directory ($n_logs)"

"$PROG" sweep --collect "$S" --metrics score >"$D/out" 2>"$D/err"
rc=$?
[ "$rc" -eq 0 ] && pass || fail "--collect: exit $rc: $(cat "$D/err")"
# score = 10 seed + width over seeds 1..4: mean 25 + width, sd 12.91
grep -q "| 1 | 4 | 26 ± 12.91 |" "$D/out" && grep -q "| 2 | 4 | 27 ± 12.91 |" "$D/out" && pass \
  || fail "--collect: the table of the 8 points: $(cat "$D/out")"
took=$(( $(date +%s) - t0 ))
note "real Slurm: 8 points as job $JOB, point 3 cancelled at its step 10 (scancel ${JOB}_3) and run again from its checkpoint by --resume as job $JOB2; --collect made the table ($took s)"
finish
