#!/usr/bin/env python3
"""A prune that stops in the middle of its run leaves no OUT.

Starts `mpiprune prune` on the fixture (NP ranks, in a session of its own) and waits until its
temporary directory OUT.tmp-<host>-<pid> has appeared and the first pruned block has been written
into it (the model.safetensors copy differs from the input). Then, by MODE:
  kill    SIGKILL to every process of the session — mpiexec and all ranks, which Open MPI puts
          in process groups of their own — as a batch system ending a job step does. OUT must
          not exist; OUT.tmp-<pid> may remain (nobody is left to remove it), the test removes it.
  vanish  the temporary directory is moved away (the disk under it failed): the next write
          fails. The prune must exit 3 (I/O error) with exactly one error line, and leave
          neither OUT nor OUT.tmp-*.
Fails when the prune finished before the event, because then it tested nothing.

usage: check_prune_midrun.py MODE MPIEXEC MPIPRUNE MODEL CALIB WORKDIR NP
"""
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

TIMEOUT = 120.0  # seconds to wait for the run to reach the middle


def session_pids(sid):
    """Live processes whose session id is sid (field 6 of /proc/PID/stat)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d))
    return pids


def kill_session(sid):
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main():
    if len(sys.argv) != 8 or sys.argv[1] not in ("kill", "vanish"):
        sys.exit(__doc__)
    mode, mpiexec, exe, model, calib, work, np_ = sys.argv[1:8]
    nprocs = int(np_)
    out = os.path.join(work, "out")
    moved = os.path.join(work, "moved_away")
    os.makedirs(work, exist_ok=True)
    for t in [out, moved] + glob.glob(out + ".tmp-*"):
        shutil.rmtree(t, ignore_errors=True)

    cmd = [exe, "prune", "--model", model, "--calib", calib, "--out", out, "--seqlen", "256",
           "--nsamples", "128", "--method", "sparsegpt", "--sparsity", "0.5", "--quiet"]
    if nprocs > 1:
        cmd = [mpiexec, "--bind-to", "none", "-n", str(nprocs)] + cmd
    print("$ " + " ".join(cmd), flush=True)
    with open(os.path.join(model, "model.safetensors"), "rb") as f:
        original = f.read()
    # Byte range of the first pruned tensor (the output keeps the input's layout).
    hlen = struct.unpack("<Q", original[:8])[0]
    begin, end = json.loads(original[8:8 + hlen])[
        "model.layers.0.self_attn.q_proj.weight"]["data_offsets"]
    q0, q1 = 8 + hlen + begin, 8 + hlen + end
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    t0 = time.monotonic()
    stage = "start"
    while proc.poll() is None and time.monotonic() - t0 < TIMEOUT:
        tmps = glob.glob(out + ".tmp-*")
        if tmps:
            stage = "tmp dir created"
            # The weights are written as model.safetensors.tmp-<host>-<pid> (reserved at full
            # size, header first, then block by block) and renamed when complete.
            partial = b""
            for cand in glob.glob(os.path.join(tmps[0], "model.safetensors*")):
                try:
                    with open(cand, "rb") as f:
                        partial = f.read()
                except OSError:
                    pass
            if len(partial) == len(original) and partial[q0:q1] != original[q0:q1] \
                    and any(partial[q0:q1]):
                stage = "first block written"
                break
        time.sleep(0.02)
    at = time.monotonic() - t0
    if proc.poll() is None:
        if mode == "kill":
            kill_session(proc.pid)
        else:
            os.rename(tmps[0], moved)
    else:
        stage = "finished"
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        stdout, stderr = proc.communicate()
        print("FAIL: the prune did not end after the tmp dir vanished")
    rc = proc.returncode
    stderr = stderr.decode(errors="replace")
    print(stderr, end="")
    print(f"{mode} at stage '{stage}', {at:.2f} s after start; exit status {rc}")
    # No rank may outlive the event (it could still rename OUT into place).
    t1 = time.monotonic()
    while session_pids(proc.pid) and time.monotonic() - t1 < 10.0:
        if mode == "kill":
            kill_session(proc.pid)
        time.sleep(0.05)
    if session_pids(proc.pid):
        print(f"FAIL: processes {session_pids(proc.pid)} still running")
        kill_session(proc.pid)
        sys.exit(1)

    ok = True
    if stage != "first block written":
        print(f"FAIL: the run was not caught in the middle (stage '{stage}')")
        ok = False
    if mode == "kill" and rc != -signal.SIGKILL:
        print(f"FAIL: exit status {rc}, expected death by SIGKILL")
        ok = False
    if mode == "vanish":
        errors = [ln for ln in stderr.splitlines() if ln.startswith("mpiprune: error:")]
        if rc != 3:
            print(f"FAIL: exit status {rc}, expected 3 (I/O error)")
            ok = False
        if len(errors) != 1 or "No such file" not in errors[0]:
            print(f"FAIL: expected one error line naming the missing file, got {errors}")
            ok = False
    if os.path.exists(out):
        print(f"FAIL: {out} exists after the prune stopped mid-run")
        ok = False
    left = glob.glob(out + ".tmp-*")
    if mode == "vanish" and left:
        print(f"FAIL: left behind: {left}")
        ok = False
    elif left:
        print(f"left behind (allowed after SIGKILL): {left}")
    for t in [out, moved] + left:
        shutil.rmtree(t, ignore_errors=True)
    if not ok:
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
