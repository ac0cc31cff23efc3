#!/usr/bin/env bash
# Benchmark one `streamrec featurize` process on loopback: an in-process librdkafka mock broker,
# a real redis-server (AOF on), ≥ 500k synthetic Criteo rows over 32 partitions (the mock broker
# keeps ~5 MiB per partition, so everything produced stays retained), then:
#   1. the process's raw consume rate (--raw: consume and count only) — the ceiling,
#   2. the same process end to end (parse, normalise, encode, pack, commit to Redis),
# each timed from its first message to its last commit, plus the worker's peak RSS.
# Usage: scripts/bench-featurize.sh [ROWS] [PARTITIONS] [more `bench featurize` options, e.g. --parse-threads 2]
# (release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-600000}"
PARTITIONS="${2:-32}"
shift $(( $# < 2 ? $# : 2 ))
bash scripts/setup.sh release >&2
BIN="$(swift build -c release --show-bin-path)/streamrec"
echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p') ($(nproc) cores)"
echo "command: $BIN bench featurize --rows $ROWS --partitions $PARTITIONS $*"
"$BIN" bench featurize --rows "$ROWS" --partitions "$PARTITIONS" "$@"
