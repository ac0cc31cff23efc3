#!/usr/bin/env bash
# Starts/stops the local Redis feature store with cluster/redis.conf.
#   cluster/redis.sh start|stop|status|restart
# Environment:
#   STREAMREC_RUN_DIR   run directory (default ./runs/local); data, pidfile, log under $RUN_DIR/redis
#   STREAMREC_REDIS_PORT  port (default 6379)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
RUN_DIR="${STREAMREC_RUN_DIR:-./runs/local}"
PORT="${STREAMREC_REDIS_PORT:-6379}"
mkdir -p "$RUN_DIR/redis"
DATA_DIR="$(cd "$RUN_DIR/redis" && pwd)"
PIDFILE="$DATA_DIR/redis.pid"
LOGFILE="$DATA_DIR/redis.log"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
ping() { redis-cli -h 127.0.0.1 -p "$PORT" PING 2>/dev/null | grep -q PONG; }

start() {
    if running; then echo "redis: already running (pid $(cat "$PIDFILE"), port $PORT, dir $DATA_DIR)"; return 0; fi
    command -v redis-server >/dev/null || { echo "redis: redis-server not installed; run scripts/setup.sh" >&2; exit 1; }
    # redis daemonizes itself (and writes the pidfile); `detached` drops our descriptors first.
    detached /dev/null redis-server "$HERE/redis.conf" --port "$PORT" --dir "$DATA_DIR" --pidfile "$PIDFILE" \
        --logfile "$LOGFILE" --daemonize yes
    for _ in $(seq 1 100); do
        if ping; then echo "redis: started (pid $(cat "$PIDFILE"), port $PORT, dir $DATA_DIR)"; return 0; fi
        sleep 0.1
    done
    echo "redis: did not answer PING on port $PORT within 10 s; see $LOGFILE" >&2
    exit 1
}

stop() {
    if ! running; then echo "redis: not running"; rm -f "$PIDFILE"; return 0; fi
    local pid; pid="$(cat "$PIDFILE")"
    # SHUTDOWN writes the AOF/RDB cleanly; fall back to signals.
    redis-cli -h 127.0.0.1 -p "$PORT" SHUTDOWN >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then rm -f "$PIDFILE"; echo "redis: stopped"; return 0; fi
        sleep 0.1
    done
    echo "redis: pid $pid did not stop within 10 s; sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
}

status() {
    if running && ping; then
        echo "redis: running (pid $(cat "$PIDFILE"), port $PORT, dir $DATA_DIR)"
    elif running; then
        echo "redis: process $(cat "$PIDFILE") alive but not answering on port $PORT" >&2; exit 1
    else
        echo "redis: not running"; exit 3
    fi
}

service_main "STREAMREC_RUN_DIR, STREAMREC_REDIS_PORT" "$@"
