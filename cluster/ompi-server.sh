#!/usr/bin/env bash
# Starts/stops Open MPI's name server (`ompi-server`), through which trainers started later join
# a running job (MPI_Publish_name / MPI_Lookup_name, "dynamic networking").
#   cluster/ompi-server.sh start|stop|status|restart
# Environment:
#   STREAMREC_RUN_DIR  run directory (default ./runs/local); files under $RUN_DIR/ompi-server:
#                      ompi-server.pid, ompi-server.log, ompi-server.uri (pass to mpirun as
#                      --ompi-server file:$RUN_DIR/ompi-server/ompi-server.uri)
#   STREAMREC_MPI_IF   network interface(s) for Open MPI's TCP (default lo: this machine only;
#                      set e.g. eth0 for a multi-host cluster)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DIR="$RUN_DIR/ompi-server"
mkdir -p "$DIR"
PIDFILE="$DIR/ompi-server.pid"
URI="$DIR/ompi-server.uri"
LOG="$DIR/ompi-server.log"
export OMPI_MCA_oob_tcp_if_include="${STREAMREC_MPI_IF:-lo}"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

running() { pid_alive "$PIDFILE" "ompi-server"; }

start() {
    if running; then echo "ompi-server: already running (pid $(cat "$PIDFILE"), uri file $URI)"; return 0; fi
    command -v ompi-server >/dev/null || { echo "ompi-server: not installed; run scripts/setup.sh" >&2; exit 1; }
    rm -f "$URI" "$PIDFILE"
    detached "$LOG" ompi-server -r "$URI" --no-daemonize
    echo $! > "$PIDFILE"
    for _ in $(seq 1 100); do
        if [ -s "$URI" ]; then echo "ompi-server: started (pid $(cat "$PIDFILE"), uri file $URI)"; return 0; fi
        if ! running; then break; fi
        sleep 0.1
    done
    echo "ompi-server: did not write $URI within 10 s; log:" >&2
    cat "$LOG" >&2 || true
    stop_pid ompi-server "$PIDFILE" ompi-server >/dev/null
    exit 1
}

stop() {
    stop_pid ompi-server "$PIDFILE" ompi-server
    rm -f "$URI"
}

status() {
    if running; then
        echo "ompi-server: running (pid $(cat "$PIDFILE"), uri file $URI)"
    else
        echo "ompi-server: not running"; exit 3
    fi
}

service_main "STREAMREC_RUN_DIR, STREAMREC_MPI_IF" "$@"
