#!/usr/bin/env bash
# RL benchmark (issue 11): on `streamrec gen behavior` data of the reference shape (3,000 users,
# 2,000 items, ~150k events; held out: each user's last HOLDOUT events, default 10 — about the
# issue's "last 20 %" at 50 events per user — each scored from the events before it), one pass of each RL config from configs/ (1 process and mpirun -np 2)
# with its transitions/s, then `streamrec eval` on the held-out events: NDCG@10 / HR@10 of the
# model next to the popularity baseline and the generator's oracle, and the ratios the issue asks
# for (model / oracle, model / popularity, 2 processes / 1).
# Usage: bash scripts/bench-rl.sh [config ...]   (default: every configs/*.yaml with an RL model.kind)
# STREAMREC_BIN=path uses that binary instead of building one (swift build -c release).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${STREAMREC_BIN:-}"
if [[ -z $BIN ]]; then
  bash scripts/setup.sh release >&2
  BIN="$(swift build -c release --show-bin-path)/streamrec"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_btl=self,vader,tcp
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
CONFIGS=("$@")
if [[ ${#CONFIGS[@]} -eq 0 ]]; then
  for c in configs/*.yaml; do grep -Eq '^\s+kind: (reinforce|ddpg|bcq)' "$c" && CONFIGS+=("$c"); done
fi
HOLDOUT=${HOLDOUT:-10}
"$BIN" gen behavior --users 3000 --items 2000 --events-per-user 50 --holdout-events "$HOLDOUT" --seed 7 --out "$OUT/data" >/dev/null
echo "machine: $(nproc) cores, $(uname -m); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for c in "${CONFIGS[@]}"; do
  name=$(basename "$c" .yaml)
  for n in 1 2; do
    mpirun -np "$n" --bind-to core "$BIN" train --config "$c" --data "$OUT/data/user_behavior.csv" \
      --checkpoint-dir "$OUT/ck-$name-$n" > "$OUT/train-$name-$n.log" 2>&1
    "$BIN" eval --checkpoint "$OUT/ck-$name-$n" --data "$OUT/data/heldout.csv" \
      --history "$OUT/data/user_behavior.csv" > "$OUT/eval-$name-$n.json"
  done
done
python3 - "$OUT" "${CONFIGS[@]}" <<'PY'
import json, os, re, sys
out, configs = sys.argv[1], sys.argv[2:]
print(f"{'config':12} {'procs':>5} {'transitions/s':>13} {'pv_ndcg@10':>10} {'ndcg@10':>8} {'hr@10':>7} {'/oracle':>8} {'/popularity':>11}")
for c in configs:
    name = os.path.basename(c)[:-5]
    rate = {}
    for n in (1, 2):
        log = open(f"{out}/train-{name}-{n}.log").read()
        m = re.search(r"in [0-9.]+s \(([0-9]+) transitions/s\), progressive NDCG@10 ([0-9.]+)", log)
        e = json.load(open(f"{out}/eval-{name}-{n}.json"))
        rate[n] = int(m.group(1))
        o, p = e["oracle"]["ndcg@10"], e["popularity"]["ndcg@10"]
        print(f"{name:12} {n:>5} {rate[n]:>13} {float(m.group(2)):>10.4f} {e['ndcg@10']:>8.4f} {e['hr@10']:>7.4f} {e['ndcg@10']/o:>8.2f} {e['ndcg@10']/p:>11.2f}")
    print(f"{name:12} 2 processes / 1: {rate[2]/rate[1]:.2f}×   (popularity ndcg@10 {p:.4f}, oracle {o:.4f})")
PY
