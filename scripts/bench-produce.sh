#!/usr/bin/env bash
# Measures `streamrec produce` throughput on loopback: generates N synthetic Criteo rows, starts a
# private `streamrec broker` (in-memory mock, P partitions), produces the file once without a rate
# limit and prints the summary (rows/s) and the machine.
#   bash scripts/bench-produce.sh [--rows N] [--partitions P] [--brokers B]
# Release build (swift build -c release) unless STREAMREC_BIN is set. Retention of the mock is
# ~5 MiB per partition, so rows beyond that are dropped by the broker after being acknowledged
# (the default 32 partitions hold ~500,000 rows); the producer's speed is what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=500000
PARTITIONS=32
BROKERS=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --partitions) PARTITIONS="$2"; shift 2 ;;
    --brokers) BROKERS="$2"; shift 2 ;;
    *) echo "unknown argument: $1 (use --rows N, --partitions P, --brokers B)" >&2; exit 2 ;;
  esac
done
if [ -z "${STREAMREC_BIN:-}" ]; then
    bash scripts/setup.sh release >&2
    STREAMREC_BIN="$(swift build -c release --show-bin-path)/streamrec"
fi
WORK="$(mktemp -d /tmp/streamrec-bench-produce.XXXXXX)"
BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$STREAMREC_BIN" gen --rows "$ROWS" --out "$WORK/rows.tsv" --seed 1 2>/dev/null
"$STREAMREC_BIN" broker --config /dev/null --brokers "$BROKERS" --topic bench --partitions "$PARTITIONS" \
    --bootstrap-file "$WORK/bootstrap" >"$WORK/broker.log" 2>&1 </dev/null &
BROKER_PID=$!
for _ in $(seq 1 200); do [ -s "$WORK/bootstrap" ] && break; sleep 0.1; done
[ -s "$WORK/bootstrap" ] || { echo "broker did not start:"; cat "$WORK/broker.log"; exit 1; } >&2

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
echo "data: $ROWS rows, $(stat -c %s "$WORK/rows.tsv") bytes; broker: $BROKERS mock broker(s), $PARTITIONS partitions"
echo "command: streamrec produce --data rows.tsv --topic bench --bootstrap-file bootstrap"
"$STREAMREC_BIN" produce --config /dev/null --data "$WORK/rows.tsv" --topic bench --bootstrap-file "$WORK/bootstrap" 2>/dev/null
