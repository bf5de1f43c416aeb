#!/usr/bin/env bash
# test_slurm.sh -- mpiprune under a private one-node Slurm (tests/slurm_local.sh) with
# slurm/mpiprune.sbatch: checkpoint on a signal, requeue, resume, byte-identical output.
#
#   test_slurm.sh CASE WORK CLI FIXTURE
#     CASE     setup | cleanup | reference | standin | signal | signal_mpirun | requeue | kill
#     WORK     scratch directory shared by the cases (reference output, job logs)
#     CLI      the mpiprune binary
#     FIXTURE  models/stories260K
#
# Environment: MP_SLURM_DIR / MP_SLURM_PORT (see slurm_local.sh), MPIEXEC (mpirun),
# MP_SLURM_LAUNCHER (the script's MPIPRUNE_LAUNCHER: srun, the default, or mpirun), and the
# Open MPI root variables of the test environment (sbatch passes them on to the jobs).
# Exit 77 = skipped (not root, or Slurm not installed).
set -uo pipefail

case_=${1:?case}
WORK=${2:?work dir}
CLI=${3:?mpiprune binary}
FIX=${4:?fixture dir}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SBATCH_SCRIPT=$ROOT/slurm/mpiprune.sbatch
LOCAL=$HERE/slurm_local.sh
export PATH=$PATH:/usr/sbin
export SLURM_CONF=${MP_SLURM_DIR:-/tmp/mpiprune-slurm}/etc/slurm.conf
MPIEXEC=${MPIEXEC:-mpirun}
NP=2

# the fixture run every case compares against
PRUNE_ARGS=(prune --model "$FIX" --calib "$FIX/calib.bin" --seqlen 256 --nsamples 128
            --method sparsegpt --sparsity 0.5)
REF=$WORK/ref

t0=$(date +%s)
log() { printf '[test_slurm %s +%ss] %s\n' "$(date +%T)" "$(( $(date +%s) - t0 ))" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

job_field() {  # jobid field -> value from `scontrol show job`
  scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

# wait_job JOBID TIMEOUT: until the job has ended; prints the final state
wait_job() {
  local j=$1 limit=$2 st="" i
  for ((i = 0; i < limit * 5; i++)); do
    st=$(job_field "$j" JobState)
    case "$st" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        # a job that requeues itself passes through COMPLETING/REQUEUED, never these
        break ;;
    esac
    sleep 0.2
  done
  echo "$st"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls the command every 0.2 s
wait_for() {
  local limit=$1 what=$2 i
  shift 2
  for ((i = 0; i < limit * 5; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  fail "timed out after ${limit}s waiting for $what"
}

# wait_job_for JOBID LOG SECONDS DESCRIPTION COMMAND...: like wait_for, but gives up as soon as
# the job has ended (e.g. mpiprune rejected its options)
wait_job_for() {
  local j=$1 out=$2 limit=$3 what=$4 i st
  shift 4
  for ((i = 0; i < limit * 5; i++)); do
    "$@" && return 0
    st=$(job_field "$j" JobState)
    case "$st" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        "$@" && return 0
        show_job_debug "$j" "$out"
        fail "job $j ended ($st, ExitCode $(job_field "$j" ExitCode)) before $what" ;;
    esac
    sleep 0.2
  done
  show_job_debug "$j" "$out"
  fail "timed out after ${limit}s waiting for $what"
}

show_job_debug() {  # jobid log
  echo "----- job log $2 -----"
  cat "$2" 2>/dev/null
  echo "----- scontrol show job $1 -----"
  scontrol show job "$1" 2>/dev/null
  echo "----- slurmctld.log (tail) -----"
  tail -30 "${MP_SLURM_DIR:-/tmp/mpiprune-slurm}/log/slurmctld.log" 2>/dev/null
}

# submit NAME LOG [env...] -- mpiprune args...: prints the job id
submit() {
  local name=$1 out=$2
  shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  # -t 10 with the warning at 60 s: Slurm's own time-limit signal (checked every 30 s) never
  # comes during these tests; the tests send it themselves.
  env MPIPRUNE_LAUNCHER="${MP_SLURM_LAUNCHER:-srun}" "${envs[@]}" \
    sbatch --parsable --job-name="$name" --ntasks=$NP --nodes=1 --time=10 --signal=B:USR1@60 \
    --output="$out" --chdir="$WORK" "$SBATCH_SCRIPT" "$@"
}

check_identical() {  # OUT
  [ -s "$REF/model.safetensors" ] || fail "no reference output $REF/model.safetensors (run the reference case)"
  [ -s "$1/model.safetensors" ] || fail "no output $1/model.safetensors"
  cmp "$REF/model.safetensors" "$1/model.safetensors" \
    || fail "$1/model.safetensors differs from the uninterrupted run's"
  log "$1/model.safetensors is byte-identical to the uninterrupted run's"
}

# --- cases -----------------------------------------------------------------------------------
# Skipped (77) where the setup case skips too: CTest still runs a fixture's tests when its
# setup test was skipped.
skip_without_slurm() {
  [ "$(id -u)" -eq 0 ] || { log "SKIP: the private Slurm needs root"; exit 77; }
  local b
  for b in slurmctld slurmd sbatch munged; do
    command -v "$b" >/dev/null \
      || { log "SKIP: $b not installed (scripts/install-deps.sh --test)"; exit 77; }
  done
}

do_setup() {
  skip_without_slurm
  bash "$LOCAL" up || fail "slurm_local.sh up"
}

do_cleanup() {
  bash "$LOCAL" down
}

do_reference() {
  rm -rf "$REF"
  mkdir -p "$WORK"
  log "reference: $MPIEXEC -n $NP mpiprune ${PRUNE_ARGS[*]} --out $REF"
  "$MPIEXEC" -n $NP --bind-to none "$CLI" "${PRUNE_ARGS[@]}" --out "$REF" --quiet \
    || fail "uninterrupted prune failed"
  check_identical "$REF" >/dev/null
  log "PASS reference"
}

# The script alone, with a stand-in that follows mpiprune's checkpoint contract:
# scancel --batch --signal=USR1 -> forwarded to both ranks -> exit 75 -> requeue -> resume;
# then an ordinary failure's exit code is passed on and not requeued.
do_standin() {
  local d=$WORK/standin out j st
  rm -rf "$d"; mkdir -p "$d"
  out=$d/job.out
  j=$(submit mp-standin "$out" MPIPRUNE="$HERE/slurm_standin.sh" -- \
        prune --out "$d/out" --checkpoint "$d/ckpt.h5" --pause-after-block 1000) \
    || fail "sbatch"
  log "stand-in job $j submitted"
  wait_job_for "$j" "$out" 60 "block 2/5 in $out" grep -q 'block 2/5 done' "$out"
  scancel --batch --signal=USR1 "$j" || fail "scancel --batch --signal=USR1 $j"
  log "sent USR1 to the batch shell of job $j"
  st=$(wait_job "$j" 90)
  if [ "$st" != COMPLETED ] || [ "$(job_field "$j" Restarts)" != 1 ] \
     || ! grep -q 'got SIGUSR1' "$out" \
     || ! grep -q 'stopped at a checkpoint (exit 75' "$out" \
     || ! grep -q 'SLURM_RESTART_COUNT=1' "$out" \
     || ! grep -q 'restart 1: resuming from checkpoint' "$out" \
     || [ "$(cat "$d"/out/model.rank0 "$d"/out/model.rank1 2>/dev/null | sort -u)" != "blocks 1 2 3 4 5" ] \
     || [ "$(sort -n "$d/ckpt.h5.log0" | uniq -d)" != "" ]; then
    show_job_debug "$j" "$out"
    fail "stand-in signal/requeue/resume (state $st)"
  fi
  log "stand-in job $j: signal forwarded to both ranks, exit 75, requeued, resumed, COMPLETED"

  # an ordinary failure (exit 3) ends the job FAILED with that code, no requeue
  out=$d/fail.out
  j=$(submit mp-standin-fail "$out" MPIPRUNE="$HERE/slurm_standin.sh" -- \
        prune --out "$d/out2" --checkpoint "$d/ckpt2.h5" --fail-at-block 2 --fail-code 3) \
    || fail "sbatch"
  st=$(wait_job "$j" 60)
  if [ "$st" != FAILED ] || [ "$(job_field "$j" ExitCode)" != 3:0 ] \
     || [ "$(job_field "$j" Restarts)" != 0 ]; then
    show_job_debug "$j" "$out"
    fail "failure exit code not passed on (state $st, ExitCode $(job_field "$j" ExitCode))"
  fi
  log "stand-in job $j: exit 3 passed on, FAILED, not requeued"

  # scancel: SIGTERM to the shell and the ranks, they checkpoint and exit 75; the job must
  # stay cancelled (a `scontrol requeue` from the script would revive it)
  out=$d/cancel.out
  j=$(submit mp-standin-cancel "$out" MPIPRUNE="$HERE/slurm_standin.sh" -- \
        prune --out "$d/out3" --checkpoint "$d/ckpt3.h5" --pause-after-block 1000) \
    || fail "sbatch"
  wait_job_for "$j" "$out" 60 "block 1/5 in $out" grep -q 'block 1/5 done' "$out"
  scancel "$j" || fail "scancel $j"
  st=$(wait_job "$j" 30)
  sleep 3                                      # a requeue would show up as PENDING by now
  st=$(job_field "$j" JobState)
  if [ "$st" != CANCELLED ] || [ "$(job_field "$j" Restarts)" != 0 ] \
     || ! grep -q 'not requeueing' "$out"; then
    show_job_debug "$j" "$out"
    fail "scancel'ed job was not left cancelled (state $st)"
  fi
  log "stand-in job $j: scancel -> checkpoint, exit 75, stays CANCELLED"
  log "PASS standin"
}

# b. the real thing: a USR1 to the batch shell (what --signal=B:USR1@T does before the time
#    limit) -> mpiprune checkpoints and exits 75 -> the script requeues -> the rerun resumes.
do_signal() {
  local d=$WORK/signal${MP_SLURM_LAUNCHER:+_$MP_SLURM_LAUNCHER} out j st ck
  rm -rf "$d"; mkdir -p "$d"
  out=$d/job.out ck=$d/ckpt.h5
  j=$(submit mp-signal "$out" MPIPRUNE="$CLI" -- "${PRUNE_ARGS[@]}" --out "$d/out" \
        --checkpoint "$ck" --pause-after-block 3000) || fail "sbatch"
  log "job $j submitted"
  wait_job_for "$j" "$out" 90 "'block 1/5' in $out" grep -q 'block 1/5' "$out"
  scancel --batch --signal=USR1 "$j" || fail "scancel --batch --signal=USR1 $j"
  log "sent USR1 to the batch shell of job $j"
  wait_job_for "$j" "$out" 60 "the checkpoint exit (75) in $out" grep -q 'stopped at a checkpoint (exit 75' "$out"
  [ -e "$ck" ] || { show_job_debug "$j" "$out"; fail "exit 75 but no checkpoint $ck"; }
  # between the stop and the restart: the checkpoint describes itself
  if "$CLI" status "$ck" >"$d/status.txt" 2>&1; then
    log "mpiprune status $ck: $(tr '\n' ' ' <"$d/status.txt" | cut -c1-300)"
  else
    cat "$d/status.txt"
    fail "mpiprune status $ck failed"
  fi
  st=$(wait_job "$j" 150)
  local restart_log
  restart_log=$(sed -n '/SLURM_RESTART_COUNT=1/,$p' "$out")
  if [ "$st" != COMPLETED ] || [ "$(job_field "$j" Restarts)" != 1 ] \
     || ! grep -q 'got SIGUSR1' "$out" \
     || ! grep -q 'restart 1: resuming from checkpoint' "$out" \
     || [ -z "$restart_log" ]; then
    show_job_debug "$j" "$out"
    fail "signal -> checkpoint -> requeue -> resume (state $st)"
  fi
  check_identical "$d/out"
  if grep -q 'block 1/5' <<<"$restart_log"; then
    show_job_debug "$j" "$out"
    fail "the resumed run pruned block 1 again (it was checkpointed before the restart)"
  fi
  [ ! -e "$ck" ] && [ ! -e "$ck.d" ] || fail "checkpoint $ck (or $ck.d) still there after success"
  log "PASS signal${MP_SLURM_LAUNCHER:+ with $MP_SLURM_LAUNCHER} (job $j: USR1, exit 75," \
      "requeued, resumed, COMPLETED, identical output)"
}

# c. Slurm requeues the job itself (an admin's `scontrol requeue`, as after a node failure):
#    every process gets SIGTERM, then SIGKILL after KillWait; the rerun resumes from the last
#    checkpoint written after a block (--snapshot-blocks 1) or the one written on SIGTERM.
do_requeue() {
  local d=$WORK/requeue out j st ck
  rm -rf "$d"; mkdir -p "$d"
  out=$d/job.out ck=$d/ckpt.h5
  j=$(submit mp-requeue "$out" MPIPRUNE="$CLI" -- "${PRUNE_ARGS[@]}" --out "$d/out" \
        --checkpoint "$ck" --snapshot-blocks 1 --pause-after-block 3000) || fail "sbatch"
  log "job $j submitted"
  wait_job_for "$j" "$out" 90 "'block 1/5' in $out" grep -q 'block 1/5' "$out"
  wait_job_for "$j" "$out" 30 "the snapshot $ck written after block 1" test -e "$ck"
  scontrol requeue "$j" || fail "scontrol requeue $j"
  log "scontrol requeue $j"
  st=$(wait_job "$j" 150)
  if [ "$st" != COMPLETED ] || [ "$(job_field "$j" Restarts)" != 1 ] \
     || ! grep -q 'SLURM_RESTART_COUNT=1' "$out" \
     || ! grep -q 'restart 1: resuming from checkpoint' "$out"; then
    show_job_debug "$j" "$out"
    fail "scontrol requeue -> resume (state $st)"
  fi
  check_identical "$d/out"
  if sed -n '/SLURM_RESTART_COUNT=1/,$p' "$out" | grep -q 'block 1/5'; then
    show_job_debug "$j" "$out"
    fail "the resumed run pruned block 1 again"
  fi
  [ ! -e "$ck" ] && [ ! -e "$ck.d" ] || fail "checkpoint $ck (or $ck.d) still there after success"
  log "PASS requeue (job $j: requeued by Slurm, resumed, COMPLETED, identical output)"
}

# d. a crash: every process of the job gets SIGKILL mid-block (no checkpoint on the way out),
#    the failed job is requeued (what Slurm does after a node failure); the rerun resumes from
#    the checkpoint written after the last finished block. Default --snapshot-blocks (4): the
#    checkpoint holds the pruned weights of blocks 1-2 but no hidden states of block 3, so the
#    resume recomputes them.
do_kill() {
  local d=$WORK/kill out j st ck
  rm -rf "$d"; mkdir -p "$d"
  out=$d/job.out ck=$d/ckpt.h5
  j=$(submit mp-kill "$out" MPIPRUNE="$CLI" -- "${PRUNE_ARGS[@]}" --out "$d/out" \
        --checkpoint "$ck" --pause-after-block 3000) || fail "sbatch"
  log "job $j submitted"
  wait_job_for "$j" "$out" 90 "'block 2/5' in $out" grep -q 'block 2/5' "$out"
  sleep 1                                    # into block 3
  # (scancel --signal=KILL is a cancel: SIGTERM first. Kill the job's processes directly.)
  local pids
  pids=$(scontrol listpids "$j" 2>/dev/null | awk 'NR > 1 && $1 > 1 { print $1 }')
  [ -n "$pids" ] || { show_job_debug "$j" "$out"; fail "no processes of job $j"; }
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
  log "SIGKILL to the processes of job $j: $(echo $pids)"
  st=$(wait_job "$j" 60)
  [ "$st" = FAILED ] || { show_job_debug "$j" "$out"; fail "killed job ended $st, not FAILED"; }
  grep -q 'stopped at a checkpoint' "$out" && fail "the killed job wrote a checkpoint on its way out"
  [ -e "$ck" ] || fail "no checkpoint $ck after 2 finished blocks"
  "$CLI" status "$ck" >"$d/status.txt" 2>&1 || { cat "$d/status.txt"; fail "mpiprune status $ck"; }
  log "killed job $j ended FAILED; $(grep -m1 -i 'progress' "$d/status.txt" || true)"
  scontrol requeue "$j" || fail "scontrol requeue $j (FAILED batch job)"
  log "scontrol requeue $j"
  st=$(wait_job "$j" 150)
  if [ "$st" != COMPLETED ] || [ "$(job_field "$j" Restarts)" != 1 ] \
     || ! grep -q 'restart 1: resuming from checkpoint' "$out" \
     || ! sed -n '/SLURM_RESTART_COUNT=1/,$p' "$out" | grep -q 'resuming from'; then
    show_job_debug "$j" "$out"
    fail "kill -> requeue -> resume (state $st)"
  fi
  check_identical "$d/out"
  [ ! -e "$ck" ] && [ ! -e "$ck.d" ] || fail "checkpoint $ck (or $ck.d) still there after success"
  log "PASS kill (job $j: SIGKILL, requeued, resumed, COMPLETED, identical output)"
}

case "$case_" in
  standin | signal | signal_mpirun | requeue | kill)
    skip_without_slurm
    { [ -s "$SLURM_CONF" ] && timeout 15 sinfo -h >/dev/null 2>&1; } \
      || fail "the private Slurm is not up ($SLURM_CONF): run the slurm_setup test" ;;
esac
case "$case_" in
  setup) do_setup ;;
  kill) do_kill ;;
  cleanup) do_cleanup ;;
  reference) do_reference ;;
  standin) do_standin ;;
  signal) do_signal ;;
  signal_mpirun) MP_SLURM_LAUNCHER=mpirun do_signal ;;
  requeue) do_requeue ;;
  *) echo "usage: $0 setup|cleanup|reference|standin|signal|signal_mpirun|requeue|kill WORK CLI FIXTURE" >&2; exit 2 ;;
esac
