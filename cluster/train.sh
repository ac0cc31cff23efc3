#!/usr/bin/env bash
# Runs an `mpirun … streamrec train …` job so that SIGTERM/SIGINT stop it cleanly with exit 0.
#   bash cluster/train.sh -np 2 [--ompi-server file:URI] .build/release/streamrec train --source redis …
# Arguments are mpirun's, unchanged. Why: mpirun forwards SIGTERM to every rank (which stop
# cleanly, final checkpoint and all) but then reports exit 1 by design, so a service manager
# would record a failure. This wrapper instead sends the signal to rank 0 alone — the trainer's
# own stop path: finish the step, checkpoint, stop every rank — and exits with mpirun's status
# (0 after a clean stop). A second signal goes to mpirun itself (Open MPI's forceful stop).
set -uo pipefail
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

mpirun "$@" &
job=$!
signalled=0

# The local process of rank 0: a child of mpirun whose environment says OMPI_COMM_WORLD_RANK=0.
rank0() {
    local c
    for c in $(pgrep -P "$job" 2>/dev/null); do
        if tr '\0' '\n' < "/proc/$c/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0'; then echo "$c"; return; fi
    done
}

stop() {
    signalled=$((signalled + 1))
    local r; r="$(rank0)"
    if [ "$signalled" -eq 1 ] && [ -n "$r" ]; then
        echo "cluster/train.sh: stopping the job through rank 0 (pid $r): finish the step, checkpoint, stop" >&2
        kill -TERM "$r" 2>/dev/null || true
    else
        kill -TERM "$job" 2>/dev/null || true
    fi
}
trap stop TERM INT

# `wait` returns early when a trapped signal arrives: keep waiting until mpirun has exited.
while :; do
    wait "$job"; status=$?
    kill -0 "$job" 2>/dev/null || break
done
exit "$status"
