#!/usr/bin/env bash
# Starts/stops the development Kafka broker (`streamrec broker`: librdkafka's in-memory mock
# cluster on 127.0.0.1, at most ~5 MiB kept per partition).
#   cluster/broker.sh start|stop|status|restart
# Environment:
#   STREAMREC_RUN_DIR        run directory (default ./runs/local); files under $RUN_DIR/broker:
#                            broker.pid, broker.log, bootstrap (the HOST:PORT,… address)
#   STREAMREC_CLUSTER_CONFIG topics and broker count (default configs/cluster.yaml, `kafka:`)
#   STREAMREC_BROKER_ARGS    extra arguments for `streamrec broker` (e.g. "--topic t --partitions 16")
#   STREAMREC_BIN            the streamrec executable
# The mock picks its own ports (librdkafka 2.0 has no setting for them): read the address from
# $RUN_DIR/broker/bootstrap, or pass --bootstrap-file to streamrec commands.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DIR="$RUN_DIR/broker"
mkdir -p "$DIR"
PIDFILE="$DIR/broker.pid"
BOOT="$DIR/bootstrap"
LOG="$DIR/broker.log"
CONFIG="${STREAMREC_CLUSTER_CONFIG:-$REPO_DIR/configs/cluster.yaml}"

running() { pid_alive "$PIDFILE" "broker"; }

start() {
    if running; then echo "broker: already running (pid $(cat "$PIDFILE"), bootstrap $(cat "$BOOT" 2>/dev/null))"; return 0; fi
    local bin; bin="$(streamrec_bin)"
    rm -f "$BOOT" "$PIDFILE"
    # Detached (own session, no inherited descriptors); stop it with broker.sh stop.
    # shellcheck disable=SC2086
    detached "$LOG" "$bin" broker --config "$CONFIG" --bootstrap-file "$BOOT" ${STREAMREC_BROKER_ARGS:-}
    echo $! > "$PIDFILE"
    for _ in $(seq 1 200); do
        if [ -s "$BOOT" ]; then echo "broker: started (pid $(cat "$PIDFILE"), bootstrap $(cat "$BOOT"))"; return 0; fi
        if ! running; then break; fi
        sleep 0.1
    done
    echo "broker: did not write $BOOT within 20 s; log:" >&2
    cat "$LOG" >&2 || true
    stop_pid broker "$PIDFILE" broker >/dev/null
    exit 1
}

stop() {
    stop_pid broker "$PIDFILE" broker
    rm -f "$BOOT"   # the broker removes it on a clean exit; not after SIGKILL
}

status() {
    if running && [ -s "$BOOT" ]; then
        echo "broker: running (pid $(cat "$PIDFILE"), bootstrap $(cat "$BOOT"), in-memory, log $LOG)"
    elif running; then
        echo "broker: process $(cat "$PIDFILE") alive but no bootstrap file $BOOT" >&2; exit 1
    else
        echo "broker: not running"; exit 3
    fi
}

service_main "STREAMREC_RUN_DIR, STREAMREC_BROKER_ARGS" "$@"
