#!/usr/bin/env bash
# slurm_local.sh -- a private one-node Slurm (munged, slurmctld, slurmd) for mpiprune's tests.
#
#   tests/slurm_local.sh install   Debian packages slurmctld slurmd slurm-client munge
#                                  (--no-install-recommends; idempotent; waits for the dpkg lock)
#   tests/slurm_local.sh up        write a private slurm.conf, start the daemons, wait until
#                                  the node is idle; prints the SLURM_CONF line to export
#   tests/slurm_local.sh down      cancel our jobs, stop the daemons we started (by PID)
#   tests/slurm_local.sh status    sinfo + squeue of the private cluster
#   tests/slurm_local.sh env       prints "export SLURM_CONF=..." (for eval / source)
#
# Environment:
#   MP_SLURM_DIR    where everything lives (config, state, spool, logs, pid files);
#                   default /tmp/mpiprune-slurm. Nothing under /etc/slurm is read or written.
#   MP_SLURM_PORT   slurmctld port (slurmd uses PORT+1); default 16817, away from a system
#                   Slurm's 6817/6818 so that both can coexist.
#   MP_SLURM_CPUS   CPUs the node offers (default: what `slurmd -C` reports, at least 2)
#
# Every client command (sbatch, srun, squeue, scontrol, scancel, sinfo) needs
# SLURM_CONF=$MP_SLURM_DIR/etc/slurm.conf exported.
#
# Needs root: munged runs as the munge user, the daemons as root, jobs run as root (so mpirun
# inside a job needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).
# The only shared system state is munge (/etc/munge/munge.key, /run/munge); a munged that is
# already running is reused and left running.
set -euo pipefail

DIR=${MP_SLURM_DIR:-/tmp/mpiprune-slurm}
PORT=${MP_SLURM_PORT:-16817}
CONF=$DIR/etc/slurm.conf
RUN=$DIR/run
export SLURM_CONF=$CONF

log() { printf '[slurm_local %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- install ---------------------------------------------------------------------------------
# --no-install-recommends: 6 packages instead of 34 (recommends pull slurm-wlm-plugins, rocm,
# influxdb, ...). The plugins the config below needs (mpi_pmix, select_cons_tres,
# proctrack_linuxproc, task_none) are in slurm-wlm-basic-plugins, a hard dependency.
SLURM_PKGS=(slurmctld slurmd slurm-client munge)

do_install() {
  local missing=() p
  for p in "${SLURM_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "installed already: ${SLURM_PKGS[*]}"
    return 0
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq)
  [ "$(id -u)" -eq 0 ] || apt=(sudo "${apt[@]}")
  export DEBIAN_FRONTEND=noninteractive
  log "installing ${missing[*]}"
  if ! "${apt[@]}" install --no-install-recommends "${missing[@]}"; then
    "${apt[@]}" update
    "${apt[@]}" install --no-install-recommends "${missing[@]}"
  fi
}

# --- helpers ---------------------------------------------------------------------------------
# alive = exists and is not a zombie (no init reaps daemons here, a killed one stays <defunct>
# and kill -0 still succeeds on it)
alive() {
  [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

stop_pidfile() {  # name pidfile
  local f=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

require_root() {
  [ "$(id -u)" -eq 0 ] || die "needs root (munged, slurmctld and slurmd are started by hand)"
}

# --- munge -----------------------------------------------------------------------------------
munge_up() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running (reused, left running)"
    return 0
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  chmod 0700 /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then      # the package's postinst normally creates it
    install -d -o munge -g munge -m 0700 /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 100); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$RUN/munged.pid"     # we started it: `down` stops it
  munge -n | unmunge | grep -q 'STATUS: *Success' || die "munge self-test failed"
  log "munged up (pid $(cat "$RUN/munged.pid"))"
}

# --- slurm.conf ------------------------------------------------------------------------------
write_conf() {
  local host line mem cpus
  host=$(hostname -s)
  line=$(slurmd -C | head -1)
  get() { tr ' ' '\n' <<<"$line" | sed -n "s/^$1=//p"; }
  # A node that reports less memory than configured is drained ("Low RealMemory").
  mem=$(( $(get RealMemory) - 512 ))
  [ "$mem" -gt 256 ] || mem=256
  cpus=${MP_SLURM_CPUS:-$(get CPUs)}
  [ "$cpus" -ge 2 ] || cpus=2          # the tests run 2 ranks
  cat >"$CONF" <<EOF
# private one-node cluster for mpiprune's tests, written by tests/slurm_local.sh
ClusterName=mpiprune-test
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# also the delay before a requeued job may start again (default 120 s, minimum 5)
AuthInfo=cred_expire=10
SlurmctldPort=${PORT}
SlurmdPort=$((PORT + 1))
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups: processes tracked through /proc, no binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# pending jobs (e.g. requeued ones) start within seconds (defaults 60 s / 30 s)
SchedulerParameters=sched_interval=2,bf_interval=2
# srun starts Open MPI programs through PMIx (Debian's Open MPI has no PMI-1/PMI-2)
MpiDefault=pmix
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
# SIGTERM -> SIGKILL grace on scancel / requeue / time limit
KillWait=10
# finished jobs stay visible to scontrol for 10 min (the tests read their final state)
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  log "wrote $CONF (CPUs=$cpus RealMemory=$mem port $PORT)"
}

# --- up / down -------------------------------------------------------------------------------
do_down() {
  if [ -s "$RUN/slurmctld.pid" ] && alive "$(cat "$RUN/slurmctld.pid")"; then
    # running jobs keep slurmstepd processes around: cancel them first
    scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 150); do
      [ -z "$(squeue -h -t running,completing 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  stop_pidfile slurmd "$RUN/slurmd.pid"
  stop_pidfile slurmctld "$RUN/slurmctld.pid"
  # munged: only if we started it, and no other Slurm daemon on this machine still needs it
  if [ -s "$RUN/munged.pid" ]; then
    local p others=""
    for p in $(pgrep -x slurmctld; pgrep -x slurmd); do alive "$p" && others="$others $p"; done
    if [ -n "$others" ]; then
      log "munged left running: other Slurm daemons (pid$others) use it"
      rm -f "$RUN/munged.pid"
    else
      stop_pidfile munged "$RUN/munged.pid"
    fi
  fi
}

do_up() {
  require_root
  local t0
  t0=$(date +%s%N)
  for b in slurmctld slurmd sbatch munged; do
    command -v "$b" >/dev/null || PATH=$PATH:/usr/sbin command -v "$b" >/dev/null \
      || die "$b not found: run '$0 install' (or scripts/install-deps.sh --test)"
  done
  export PATH=$PATH:/usr/sbin
  mkdir -p "$DIR"/{etc,state,spool,log,run}
  do_down                                   # leftovers of an earlier run of ours
  munge_up
  write_conf
  rm -rf "${DIR:?}"/state/* "${DIR:?}"/spool/*
  : >"$DIR/log/slurmctld.log"
  : >"$DIR/log/slurmd.log"
  slurmctld -c                              # -c: clear state, no jobs from an earlier run
  slurmd
  local st=""
  for _ in $(seq 1 300); do                 # up to 30 s; usually idle within 0.3 s
    st=$(sinfo -h -o %T 2>/dev/null || true)
    [ "$st" = idle ] && break
    sleep 0.1
  done
  if [ "$st" != idle ]; then
    log "node not idle (state '$st'), see $DIR/log"
    sinfo -R >&2 || true
    tail -20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
  fi
  log "up: slurmctld pid $(cat "$RUN/slurmctld.pid"), slurmd pid $(cat "$RUN/slurmd.pid"), node" \
      "idle, $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  echo "export SLURM_CONF=$CONF"
}

case "${1:-}" in
  install) do_install ;;
  up) do_up ;;
  down) do_down ;;
  status) sinfo; squeue ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 install|up|down|status|env  (MP_SLURM_DIR, MP_SLURM_PORT)" >&2; exit 2 ;;
esac
