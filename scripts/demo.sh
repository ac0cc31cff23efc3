#!/usr/bin/env bash
# The README's first command: the whole StreamRec system on one machine.
#
#   bash scripts/demo.sh [--rows N] [--rate ROWS_PER_S] [--keep-running] [--preset NAME]
#   bash scripts/demo.sh --model reinforce [...]   the RL path instead (scripts/demo-rl.sh)
#
# Installs what is missing and builds (release); brings up Redis, the dev Kafka broker and
# ompi-server (cluster/up.sh); generates Criteo-format rows from a planted model and runs the
# statistics pass; starts `streamrec serve`, two `featurize` workers (sharing the partitions by
# lease), `streamrec supervise -- mpirun -np 2 streamrec train --source redis` and the producer at
# a live rate, and the live dashboard (`streamrec dashboard`, its address printed; port 8090 or
# $STREAMREC_DASHBOARD_PORT); shows progress (rows produced, batches,
# step, loss, AUC, model version served); sends predictions; joins a third trainer rank half way;
# and ends with a summary and a clean shutdown (cluster/down.sh; no processes left behind).
# --keep-running leaves everything up for exploration (stop with: bash scripts/demo.sh --stop).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

if [[ "${1:-}" == --model ]]; then
  case "${2:-}" in
    widedeep) shift 2 ;;
    reinforce|ddpg|bcq) model="$2"; shift 2; exec bash "$ROOT/scripts/demo-rl.sh" --model "$model" "$@" ;;
    *) echo "unknown --model '${2:-}' (widedeep, reinforce, ddpg, bcq)" >&2; exit 2 ;;
  esac
fi
ROWS=150000; RATE=5000; KEEP=0; PRESET=small; STOP_ONLY=0; JOIN=1; FRESHNESS=0; CKPT_EVERY=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --preset) PRESET="$2"; shift 2 ;;
    --keep-running) KEEP=1; shift ;;
    --stop) STOP_ONLY=1; shift ;;
    --no-join) JOIN=0; shift ;;
    --checkpoint-every) CKPT_EVERY="$2"; shift 2 ;;
    --freshness-report) FRESHNESS=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (use --rows N, --rate R, --preset NAME, --keep-running, --stop, --no-join, --checkpoint-every N, --freshness-report, --help)" >&2; exit 2 ;;
  esac
done


source "$ROOT/scripts/demo-lib.sh"   # demo_settings, stop_all, step, bg, demo_cluster_up, demo_dashboard
demo_settings demo

if [[ $STOP_ONLY == 1 ]]; then stop_all; echo "demo: stopped"; exit 0; fi

bash scripts/setup.sh release
BIN="$(swift build -c release --show-bin-path)/streamrec"
export STREAMREC_BIN="$BIN"

stop_all
rm -rf "$DEMO"; mkdir -p "$DEMO" "$PIDS"
[[ $KEEP == 1 ]] || trap 'echo "demo: shutting down"; stop_all' EXIT

demo_cluster_up

step "data: $ROWS rows + $((ROWS / 5)) held-out rows from one planted model; statistics pass"
"$BIN" gen --rows "$ROWS" --holdout-rows $((ROWS / 5)) --out "$DEMO/rows.tsv" --seed 1
# The offline dictionary comes from the first fifth of the stream, as a nightly job would
# produce it; categories first seen later grow the dictionary online.
head -n $((ROWS / 5)) "$DEMO/rows.tsv" > "$DEMO/offline.tsv"
"$BIN" stats --data "$DEMO/offline.tsv" --out "$DEMO/features.stats" --min-frequency 5

step "services: serve, 2 featurize workers, mpirun -np 2 train"
bg serve "$BIN" serve --checkpoints "$DEMO/checkpoints" --port "$HTTP_PORT"
for k in 0 1; do   # two workers share the partitions by lease (either takes over if the other dies)
  bg "featurize-$k" "$BIN" featurize --topic criteo --bootstrap "$BOOTSTRAP" \
     --redis "$REDIS" --stats "$DEMO/features.stats" --batch-size 1000 --linger-ms 300 --feature-shards 8 \
     --metrics-port $((METRICS_PORT + 1 + k))
done
bg train "$BIN" supervise -- mpirun -np 2 --ompi-server "file:$URI" "$BIN" train --source redis --redis "$REDIS" \
   --config configs/widedeep.yaml --preset "$PRESET" --stats "$DEMO/features.stats" --feature-shards 8 \
   --checkpoint-dir "$DEMO/checkpoints" --checkpoint-every "$CKPT_EVERY" --keep 5 --log-every 10 \
   --freshness-log "$DEMO/freshness.jsonl" \
   --metrics-port "$METRICS_PORT"

demo_dashboard criteo

if [[ $FRESHNESS == 1 ]]; then
  # Records when each model version is first served (polls /v1/model every 50 ms).
  bg served-poller python3 scripts/freshness.py poll --port "$HTTP_PORT" --out "$DEMO/served.jsonl"
fi

step "producer: $ROWS rows at $RATE rows/s into topic criteo"
bg produce "$BIN" produce --data "$DEMO/rows.tsv" --topic criteo --bootstrap "$BOOTSTRAP" --rate "$RATE"

served() { curl -s --max-time 1 "http://127.0.0.1:$HTTP_PORT/v1/model" 2>/dev/null | python3 -c 'import json,sys
try: d=json.load(sys.stdin); print(d.get("model_version","-"))
except Exception: print("-")' ; }
rows_in_store() { local n=0 s; for s in 0 1 2 3 4 5 6 7; do n=$(( n + $(redis-cli -p "$STREAMREC_REDIS_PORT" GET "sr:rows:$s" | sed 's/^$/0/') )); done; echo $n; }
trained_batches() { local n=0 s; for s in 0 1 2 3 4 5 6 7; do n=$(( n + $(redis-cli -p "$STREAMREC_REDIS_PORT" GET "sr:trained:$s" | sed 's/^$/0/') )); done; echo $n; }
appended_batches() { local n=0 s; for s in 0 1 2 3 4 5 6 7; do n=$(( n + $(redis-cli -p "$STREAMREC_REDIS_PORT" GET "sr:appended:$s" | sed 's/^$/0/') )); done; echo $n; }
last_loss() { grep -E '^epoch: ' "$DEMO/train.log" | tail -1 | sed -E 's/.*step: ([0-9]+), wide_loss: ([0-9.]+), deep_loss: ([0-9.]+).*pv_auc: ([0-9.na/]+).*/step \1  wide_loss \2  pv_auc \4/'; }

step "progress (every 3 s)"
JOINED=0; PREDICTED=0; START=$(date +%s)
printf '%6s %10s %9s %9s  %-44s %s\n' "t(s)" "rows→redis" "batches" "trained" "trainer" "served"
while true; do
  sleep 3
  t=$(( $(date +%s) - START ))
  stored=$(rows_in_store); appended=$(appended_batches); trained=$(trained_batches)
  printf '%6d %10d %9d %9d  %-44s %s\n' "$t" "$stored" "$appended" "$trained" "$(last_loss)" "$(served)"
  if [[ $JOIN == 1 && $JOINED == 0 && $stored -ge $((ROWS / 2)) ]]; then
    echo "   -> half way: a third trainer rank joins the running job (mpirun -np 1 … train --join)"
    bg join mpirun -np 1 --ompi-server "file:$URI" "$BIN" train --source redis --join --redis "$REDIS" \
       --config configs/widedeep.yaml --preset "$PRESET" --feature-shards 8 --checkpoint-dir "$DEMO/checkpoints"
    JOINED=1
  fi
  if [[ $PREDICTED == 0 && "$(served)" != "-" ]]; then
    echo "   -> predictions from the served model:"
    sed -n '1,3p' "$DEMO/rows.test.tsv" | cut -f2- | python3 -c 'import json,sys; print(json.dumps({"rows":[l.rstrip("\n") for l in sys.stdin]}))' \
      | curl -s -X POST "http://127.0.0.1:$HTTP_PORT/v1/predict" -H 'Content-Type: application/json' --data-binary @- | sed 's/^/      /'
    echo
    PREDICTED=1
  fi
  if ! kill -0 "$(cat "$PIDS/produce.pid")" 2>/dev/null && [[ $stored -ge $ROWS ]] && [[ $trained -ge $appended ]]; then
    break
  fi
  if ! kill -0 "$(cat "$PIDS/train.pid")" 2>/dev/null; then echo "demo: the trainer stopped unexpectedly; see $DEMO/train.log" >&2; exit 1; fi
  if [[ $t -gt $(( ROWS / RATE * 3 + 120 )) ]]; then echo "demo: taking too long; see logs in $DEMO" >&2; exit 1; fi
done

if [[ $KEEP == 1 ]]; then
  cat <<MSG

Everything is still running (logs in $DEMO):
  dashboard: http://127.0.0.1:$DASH_PORT/
  curl -s localhost:$HTTP_PORT/v1/model ; curl -s localhost:$HTTP_PORT/metrics
  curl -s localhost:$METRICS_PORT/metrics   (trainer rank 0; featurize: $((METRICS_PORT + 1)), $((METRICS_PORT + 2)); see cluster/prometheus.yml)
  $BIN status --redis $REDIS
  $BIN ckpt list $DEMO/checkpoints
Stop everything with: bash scripts/demo.sh --stop
MSG
  exit 0
fi

step "stopping the trainer (SIGTERM to its supervisor, which stops rank 0: finish the step, checkpoint, stop)"
kill -TERM "$(cat "$PIDS/train.pid")" 2>/dev/null || true
for _ in $(seq 1 300); do kill -0 "$(cat "$PIDS/train.pid")" 2>/dev/null || break; sleep 0.1; done
sleep 1.5   # let serve pick up the final version
grep -E '^done|^rank' "$DEMO/train.log" | sed 's/^/  /' || true
grep -E 'joined|left' "$DEMO/train.log" "$DEMO/join.log" 2>/dev/null | sed 's/^/  /' || true

if [[ $FRESHNESS == 1 ]]; then
  step "freshness: produced → first served model version that trained it"
  python3 scripts/freshness.py report --trainer "$DEMO/freshness.jsonl" --served "$DEMO/served.jsonl" | tee "$DEMO/freshness.txt"
fi

step "summary"
"$BIN" status --redis "$REDIS" | sed 's/^/  /' | head -40
"$BIN" ckpt list "$DEMO/checkpoints" | sed 's/^/  /'
echo "  served: $(served)"
"$BIN" eval --checkpoint "$DEMO/checkpoints" --data "$DEMO/rows.test.tsv" > "$DEMO/eval.json"
python3 - "$DEMO/eval.json" "$ROWS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  final model: step {r['step']}, {r['samples_trained']} samples trained (of {sys.argv[2]} produced); "
      f"held-out AUC {r['auc']:.4f} (oracle {r['oracle_auc']:.4f}), log loss {r['logloss']:.4f}")
PY
