# Shared helpers for cluster/*.sh (sourced, not run).
#   STREAMREC_RUN_DIR  run directory (default ./runs/local): each service keeps its pidfile,
#                      log and address files under $STREAMREC_RUN_DIR/<service>/
#   STREAMREC_BIN      the streamrec executable (default: .build/release, else .build/debug)

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$CLUSTER_DIR/.." && pwd)"
RUN_DIR="${STREAMREC_RUN_DIR:-./runs/local}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"

streamrec_bin() {
    if [ -n "${STREAMREC_BIN:-}" ]; then echo "$STREAMREC_BIN"; return; fi
    for c in "$REPO_DIR/.build/release/streamrec" "$REPO_DIR/.build/debug/streamrec"; do
        if [ -x "$c" ]; then echo "$c"; return; fi
    done
    echo "cluster: streamrec is not built; run scripts/setup.sh (or set STREAMREC_BIN)" >&2
    return 1
}

# detached LOG COMMAND ARGS…: starts COMMAND in the background in its own session (a Ctrl-C in
# the calling terminal does not reach it), output to LOG, stdin from /dev/null, and WITHOUT the
# caller's other open file descriptors: a daemon holding its parent's pipes or the status socket a
# supervisor waits on (Foundation's Process, CI runners) keeps that parent waiting forever.
# Prints nothing; $! is the daemon's pid afterwards.
detached() {
    local log="$1"; shift
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec setsid "$@" >"$log" 2>&1 </dev/null
    ) &
}

# pid_alive PIDFILE WORD: the pidfile names a live process whose command line contains WORD
# (so a stale pidfile whose pid was reused by another program is not mistaken for ours).
pid_alive() {
    local pidfile="$1" word="$2" pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile" 2>/dev/null)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$word"
}

# stop_pid NAME PIDFILE WORD: SIGTERM, wait up to 10 s, SIGKILL; removes the pidfile.
stop_pid() {
    local name="$1" pidfile="$2" word="$3" pid
    if ! pid_alive "$pidfile" "$word"; then
        echo "$name: not running"; rm -f "$pidfile"; return 0
    fi
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidfile"; echo "$name: stopped (pid $pid)"; return 0; fi
        sleep 0.1
    done
    echo "$name: pid $pid did not stop within 10 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
}

# service_main "ENV VARS" ACTION: the start|stop|status|restart dispatch every service script shares
# (each defines start, stop and status before calling it).
service_main() {
    local envs="$1"; shift
    case "${1:-}" in
        start) start ;;
        stop) stop ;;
        status) status ;;
        restart) stop; start ;;
        *) echo "usage: $0 start|stop|status|restart   (env $envs)" >&2; exit 2 ;;
    esac
}
