#!/usr/bin/env bash
# The RL families on a large catalogue (issue 11): a step's cost must not grow with the item count.
#  1. `streamrec bench rl` (REINFORCE, DDPG, BCQ) at 2,000, 20,000 and 200,000 item ids: one process, in-memory
#     transitions, ms per step with the full and with the sampled softmax (the config's choice
#     marked) — the step cost against the catalogue, nothing else timed.
#  2. End to end at 200,000 items: `gen behavior --items 200000`, one pass of each family's config
#     (configs/<family>.yaml; sampled softmax) from the file, `eval` on the held-out events next
#     to the popularity baseline and the oracle.
# Usage: bash scripts/bench-rl-catalogue.sh   (STREAMREC_BIN=path skips the build; USERS, EVENTS,
#        FAMILIES, default "reinforce ddpg bcq")
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${STREAMREC_BIN:-}"
if [[ -z $BIN ]]; then
  bash scripts/setup.sh release >&2
  BIN="$(swift build -c release --show-bin-path)/streamrec"
fi
USERS=${USERS:-3000} EVENTS=${EVENTS:-50} FAMILIES=${FAMILIES:-reinforce ddpg bcq}
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(nproc) cores, $(uname -m); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for family in $FAMILIES; do
  "$BIN" bench rl --config "configs/$family.yaml" --items 2000 --items 20000 --items 200000
done
"$BIN" gen behavior --users "$USERS" --items 200000 --events-per-user "$EVENTS" --seed 7 --out "$OUT/d" >/dev/null
for family in $FAMILIES; do
  "$BIN" train --config "configs/$family.yaml" --data "$OUT/d/user_behavior.csv" --checkpoint-dir "$OUT/ck-$family" --fresh \
    > "$OUT/train.log" 2>&1 || { cat "$OUT/train.log" >&2; exit 1; }
  "$BIN" eval --checkpoint "$OUT/ck-$family" --data "$OUT/d/heldout.csv" --history "$OUT/d/user_behavior.csv" > "$OUT/eval.json"
  python3 - "$OUT" "$family" <<'PY'
import json, re, sys
out, family = sys.argv[1], sys.argv[2]
items = len({line.split(",")[1] for line in open(f"{out}/d/user_behavior.csv")})
m = re.search(r"in [0-9.]+s \(([0-9]+) transitions/s\), progressive NDCG@10 ([0-9.]+)", open(f"{out}/train.log").read())
e = json.load(open(f"{out}/eval.json"))
p, o = e["popularity"]["ndcg@10"], e.get("oracle", {}).get("ndcg@10", float("nan"))
print(f"{family}, 200k-item catalogue, {items} distinct items in the training events: {int(m.group(1))} transitions/s, "
      f"pv_ndcg@10 {float(m.group(2)):.4f}; held-out ndcg@10 {e['ndcg@10']:.4f} "
      f"(popularity {p:.4f}, oracle {o:.4f}; {e['ndcg@10']/p:.2f}× popularity)")
PY
done
