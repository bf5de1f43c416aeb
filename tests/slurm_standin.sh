#!/usr/bin/env bash
# slurm_standin.sh -- a stand-in for `mpiprune prune` that follows its checkpoint contract, to
# test slurm/mpiprune.sbatch on its own (signal forwarding, exit 75 -> requeue -> resume, exit
# codes passed on) in seconds and without MPI. Each rank (srun task) keeps its own state.
#
#   slurm_standin.sh prune --out OUT --checkpoint CKPT [--pause-after-block MS] [--blocks N]
#                          [--fail-at-block B --fail-code C]
#
# SIGUSR1/SIGTERM/SIGINT: stop after the current block, write CKPT.rankR (the next block),
# exit 75. Started again with CKPT.rankR present: resumes there. Done: OUT/model.rankR holds
# "blocks 1..N", the checkpoint is removed, exit 0.
set -u
[ "${1:-}" = prune ] || { echo "standin: usage: $0 prune ..." >&2; exit 2; }
shift
out="" ckpt="" pause=0 nblocks=5 fail_at=0 fail_code=3
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift ;;
    --checkpoint) ckpt=$2; shift ;;
    --pause-after-block) pause=$2; shift ;;
    --blocks) nblocks=$2; shift ;;
    --fail-at-block) fail_at=$2; shift ;;
    --fail-code) fail_code=$2; shift ;;
    *) ;;
  esac
  shift
done
[ -n "$out" ] && [ -n "$ckpt" ] || { echo "standin: --out and --checkpoint required" >&2; exit 2; }
rank=${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-0}}
say() { [ "$rank" -eq 0 ] && echo "standin: $*" >&2; return 0; }

stop=""
trap 'stop=USR1' USR1
trap 'stop=TERM' TERM
trap 'stop=INT' INT

first=1
if [ -s "$ckpt.rank$rank" ]; then
  first=$(cat "$ckpt.rank$rank")
  say "resuming at block $first/$nblocks from $ckpt"
fi
for ((b = first; b <= nblocks; b++)); do
  [ "$b" -eq "$fail_at" ] && { say "failing at block $b with exit $fail_code"; exit "$fail_code"; }
  echo "$b" >>"$ckpt.log$rank"
  say "block $b/$nblocks done"
  # interruptible pause: the trap runs as soon as a signal arrives
  sleep "$(awk -v ms="$pause" 'BEGIN { printf "%.3f", ms / 1000 }')" &
  wait $! 2>/dev/null || true
  if [ -n "$stop" ]; then
    echo $((b + 1)) >"$ckpt.rank$rank"
    [ "$rank" -eq 0 ] && echo $((b + 1)) >"$ckpt"
    say "SIG$stop: checkpoint written after block $b/$nblocks, exiting 75"
    exit 75
  fi
done
mkdir -p "$out"
seq -s ' ' 1 "$nblocks" | sed 's/^/blocks /' >"$out/model.rank$rank"
rm -f "$ckpt.rank$rank"
[ "$rank" -eq 0 ] && rm -f "$ckpt"
say "wrote $out"
exit 0
