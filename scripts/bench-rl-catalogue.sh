#!/usr/bin/env bash
# REINFORCE on a large catalogue (issue 11): a step's cost must not grow with the item count.
# One process, configs/reinforce.yaml, on `gen behavior` data with 2,000 and 200,000 items (same
# users and events per user): transitions/s with the full softmax at 2k items, with the sampled
# softmax at 200k (beyond full_softmax_items), and — on the first EVENTS_FULL events only, it is
# slow — with the full softmax forced at 200k; then held-out NDCG@10 of the 200k sampled model next
# to the popularity baseline. Prints one table; the ratios are what docs/BENCHMARKS.md records.
# Usage: bash scripts/bench-rl-catalogue.sh   (STREAMREC_BIN=path skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${STREAMREC_BIN:-}"
if [[ -z $BIN ]]; then
  swift build -c release --product streamrec >/dev/null
  BIN="$(swift build -c release --show-bin-path)/streamrec"
fi
USERS=${USERS:-3000} EVENTS=${EVENTS:-30} EVENTS_FULL=${EVENTS_FULL:-6000}
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(nproc) cores, $(uname -m); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for items in 2000 200000; do
  "$BIN" gen behavior --users "$USERS" --items "$items" --events-per-user "$EVENTS" --seed 7 --out "$OUT/d$items" >/dev/null
done
sed 's/^  full_softmax_items: .*/  full_softmax_items: 100000000/' configs/reinforce.yaml > "$OUT/full.yaml"
grep -q 'full_softmax_items: 100000000' "$OUT/full.yaml" || { echo "could not force the full softmax in a copy of configs/reinforce.yaml" >&2; exit 1; }
head -n "$EVENTS_FULL" "$OUT/d200000/user_behavior.csv" > "$OUT/head200000.csv"
run() {  # name config data
  "$BIN" train --config "$2" --data "$3" --checkpoint-dir "$OUT/ck-$1" --fresh > "$OUT/$1.log" 2>&1 \
    || { cat "$OUT/$1.log" >&2; exit 1; }
}
run full-2k configs/reinforce.yaml "$OUT/d2000/user_behavior.csv"
run sampled-200k configs/reinforce.yaml "$OUT/d200000/user_behavior.csv"
run full-200k "$OUT/full.yaml" "$OUT/head200000.csv"
"$BIN" eval --checkpoint "$OUT/ck-sampled-200k" --data "$OUT/d200000/heldout.csv" \
  --history "$OUT/d200000/user_behavior.csv" > "$OUT/eval-200k.json"
"$BIN" eval --checkpoint "$OUT/ck-full-2k" --data "$OUT/d2000/heldout.csv" \
  --history "$OUT/d2000/user_behavior.csv" > "$OUT/eval-2k.json"
python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
rate = {}
print(f"{'run':14} {'items':>7} {'softmax':>8} {'transitions/s':>13}")
for name, items, kind in (("full-2k", 2000, "full"), ("sampled-200k", 200000, "sampled"), ("full-200k", 200000, "full")):
    log = open(f"{out}/{name}.log").read()
    m = re.search(r"in [0-9.]+s \(([0-9]+) transitions/s\)", log)
    rate[name] = int(m.group(1))
    print(f"{name:14} {items:>7} {kind:>8} {rate[name]:>13}")
print(f"sampled 200k / full 2k: {rate['sampled-200k']/rate['full-2k']:.2f}×   sampled 200k / full 200k: {rate['sampled-200k']/rate['full-200k']:.1f}×")
for label, f in (("200k sampled", "eval-200k.json"), ("2k full", "eval-2k.json")):
    e = json.load(open(f"{out}/{f}"))
    p = e["popularity"]["ndcg@10"]
    o = e.get("oracle", {}).get("ndcg@10", float("nan"))
    print(f"{label}: held-out ndcg@10 {e['ndcg@10']:.4f} (popularity {p:.4f}, oracle {o:.4f}; {e['ndcg@10']/p:.2f}× popularity)")
PY
