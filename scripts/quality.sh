#!/usr/bin/env bash
# Issue 2 quality run (single process): installs what is missing, builds in release mode, generates
# Criteo-format data from a planted model, runs the statistics pass, trains Wide&Deep in one
# process with checkpoints, and prints the held-out AUC beside the oracle AUC.
#
#   bash scripts/quality.sh [--preset small] [--rows N]
# Environment: STREAMREC_RUN_DIR (default ./runs/quality) holds data and checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET=""
ROWS=200000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) PRESET="$2"; shift 2 ;;
    --rows) ROWS="$2"; shift 2 ;;
    *) echo "unknown argument: $1 (use --preset NAME, --rows N)" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh release
BIN="$(swift build -c release --show-bin-path)/streamrec"
RUN="${STREAMREC_RUN_DIR:-runs/quality}"
mkdir -p "$RUN"
HOLDOUT=$(( ROWS / 4 ))

echo "== gen: $ROWS training rows + $HOLDOUT held-out rows from one planted model"
"$BIN" gen --rows "$ROWS" --holdout-rows "$HOLDOUT" --out "$RUN/train.tsv" --seed 1

echo "== stats: min/max + dictionaries"
"$BIN" stats --data "$RUN/train.tsv" --out "$RUN/features.stats" --min-frequency 10

echo "== train: one pass, checkpoints in $RUN/checkpoints"
rm -rf "$RUN/checkpoints"
"$BIN" train --config configs/widedeep.yaml ${PRESET:+--preset "$PRESET"} --data "$RUN/train.tsv" \
  --stats "$RUN/features.stats" --checkpoint-dir "$RUN/checkpoints" --log-every 20

echo "== eval on held-out rows"
"$BIN" eval --checkpoint "$RUN/checkpoints" --data "$RUN/train.test.tsv" | tee "$RUN/eval.json"
python3 - "$RUN/eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"held-out AUC {r['auc']:.4f}   oracle AUC {r['oracle_auc']:.4f}   gap {r['oracle_auc'] - r['auc']:.4f}   "
      f"log loss {r['logloss']:.4f}   rows {r['rows']}   rejected {r['rejected']}")
PY
