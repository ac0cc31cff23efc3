#!/usr/bin/env bash
# Runs an `mpirun … streamrec train …` job so that SIGTERM/SIGINT stop it cleanly with exit 0.
#   bash cluster/train.sh -np 2 [--ompi-server file:URI] .build/release/streamrec train --source redis …
# Add --metrics-port 9100 to serve rank 0's GET /metrics where cluster/prometheus.yml scrapes it.
# Arguments are mpirun's, unchanged. Why: mpirun forwards SIGTERM to every rank (which stop
# cleanly, final checkpoint and all) but then reports exit 1 by design, so a service manager
# would record a failure. This is `streamrec supervise --max-failures 0`: the signal goes to
# rank 0 alone — the trainer's own stop path: finish the step, checkpoint, stop every rank — and
# the exit status is mpirun's (0 after a clean stop). A second signal goes to mpirun itself
# (Open MPI's forceful stop). To restart the job when it fails, use `streamrec supervise`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
exec "$(streamrec_bin)" supervise --max-failures 0 -- mpirun "$@"
