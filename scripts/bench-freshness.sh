#!/usr/bin/env bash
# Freshness benchmark (issue 5): the local cluster at a fixed rate and checkpoint interval, small
# config; reports p50/p99 of produced → first served model version that trained the row, and its
# parts. Usage: bash scripts/bench-freshness.sh [rows] [rate] [checkpoint-every]
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/demo.sh --rows "${1:-100000}" --rate "${2:-5000}" --checkpoint-every "${3:-10}" \
  --preset small --no-join --freshness-report
