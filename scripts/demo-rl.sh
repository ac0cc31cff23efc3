#!/usr/bin/env bash
# The RL path of StreamRec on one machine (`bash scripts/demo.sh --model reinforce` runs this):
#
#   bash scripts/demo-rl.sh [--model reinforce|ddpg|bcq] [--users N] [--rate EVENTS_PER_S] [--keep-running]
#
# STREAMREC_BIN=path/to/streamrec (a release build) skips setup and the build.
# Builds (release); brings up Redis, the dev Kafka broker and ompi-server (cluster/up.sh);
# generates behaviour events from a planted sequential model (`gen behavior`, with a held-out
# split); starts `streamrec serve`, two `featurize --kind behavior` workers, `mpirun -np 2
# streamrec train --source redis --config configs/<model>.yaml` and the producer at a live rate;
# shows progress (events featurized, transitions trained, the trainer's progressive NDCG@10, the
# version served); prints live recommendations (POST /v1/recommend) and the real-time popular
# items (GET /v1/popular); ends with `eval` on the held-out events next to the popularity
# baseline and the oracle, and a clean shutdown (no processes left behind).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

MODEL=reinforce; USERS=3000; RATE=20000; KEEP=0; STOP_ONLY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --users) USERS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --keep-running) KEEP=1; shift ;;
    --stop) STOP_ONLY=1; shift ;;
    *) echo "unknown argument: $1 (use --model NAME, --users N, --rate R, --keep-running, --stop)" >&2; exit 2 ;;
  esac
done
CONFIG="configs/$MODEL.yaml"
[[ -f $CONFIG ]] || { echo "no $CONFIG: --model is one of $(ls configs | grep -E 'reinforce|ddpg|bcq' | sed 's/.yaml//' | tr '\n' ' ')" >&2; exit 2; }

source "$ROOT/scripts/demo-lib.sh"   # demo_settings, stop_all, step, bg, demo_cluster_up, demo_dashboard
demo_settings demo-rl

if [[ $STOP_ONLY == 1 ]]; then stop_all; echo "demo: stopped"; exit 0; fi

if [[ -n ${STREAMREC_BIN:-} && -x ${STREAMREC_BIN:-} ]]; then
  BIN="$STREAMREC_BIN"   # a binary already built (release); skips setup and build
else
  bash scripts/setup.sh release
  BIN="$(swift build -c release --show-bin-path)/streamrec"
fi
export STREAMREC_BIN="$BIN"

stop_all
rm -rf "$DEMO"; mkdir -p "$DEMO" "$PIDS"
[[ $KEEP == 1 ]] || trap 'echo "demo: shutting down"; stop_all' EXIT

demo_cluster_up

step "data: behaviour events of $USERS users over 2,000 items from a planted model (+ each user's last event held out)"
"$BIN" gen behavior --users "$USERS" --items 2000 --events-per-user 50 --seed 7 --out "$DEMO/behavior" | sed 's/^/  /'
EVENTS=$(wc -l < "$DEMO/behavior/user_behavior.csv")

step "services: serve, 2 featurize --kind behavior workers, mpirun -np 2 train ($MODEL)"
bg serve "$BIN" serve --checkpoints "$DEMO/checkpoints" --port "$HTTP_PORT" --redis "$REDIS"
for k in 0 1; do
  bg "featurize-$k" "$BIN" featurize --kind behavior --topic behavior --bootstrap "$BOOTSTRAP" \
     --redis "$REDIS" --batch-size 64 --linger-ms 200 --feature-shards 8 \
     --metrics-port $((METRICS_PORT + 1 + k))
done
bg train "$BIN" supervise -- mpirun -np 2 --ompi-server "file:$URI" "$BIN" train --source redis --redis "$REDIS" --config "$CONFIG" \
   --feature-shards 8 --checkpoint-dir "$DEMO/checkpoints" --checkpoint-every 100 --keep 5 --log-every 100 \
   --metrics-port "$METRICS_PORT"

demo_dashboard behavior

step "producer: $EVENTS events at $RATE events/s into topic behavior (keyed by user)"
bg produce "$BIN" produce --format behavior --data "$DEMO/behavior/user_behavior.csv" --topic behavior \
   --bootstrap "$BOOTSTRAP" --rate "$RATE"

sum_keys() { local n=0 s v; for s in 0 1 2 3 4 5 6 7; do v=$(redis-cli -p "$STREAMREC_REDIS_PORT" GET "$1:$s"); n=$(( n + ${v:-0} )); done; echo $n; }
events_in() { redis-cli -p "$STREAMREC_REDIS_PORT" HVALS sr:rl:events | awk '{n += $1} END {print n + 0}'; }
served() { curl -s --max-time 1 "http://127.0.0.1:$HTTP_PORT/v1/model" 2>/dev/null | python3 -c 'import json,sys
try: d=json.load(sys.stdin); print(d.get("model_version","-"))
except Exception: print("-")' ; }
trainer() { grep -E '^epoch: ' "$DEMO/train.log" | tail -1 | sed -E 's/.*step: ([0-9]+),.*pv_ndcg@10: ([0-9.]+).*/step \1  pv_ndcg@10 \2/'; }
recommend() {  # recommend USER: the served model's top 5 for the user's live state in Redis
  curl -s --max-time 2 -X POST "http://127.0.0.1:$HTTP_PORT/v1/recommend" -H 'Content-Type: application/json' \
    --data "{\"user\": \"$1\", \"n\": 5}" | python3 -c 'import json,sys
raw = sys.stdin.read()
try:
  d = json.loads(raw); r = d.get("results", [d])[0]
  items = ", ".join("%s (%.2f)" % (i["item"], i["score"]) for i in r["items"])
  print("user %s: %s   [source %s]" % (r.get("user"), items, r.get("source", "?")))
except Exception:
  print("(no recommendation: POST /v1/recommend answered %r)" % raw[:160])'
}

step "progress (every 3 s)"
SHOWN=0; START=$(date +%s)
printf '%6s %10s %12s %12s  %-32s %s\n' "t(s)" "events" "transitions" "trained" "trainer" "served"
while true; do
  sleep 3
  t=$(( $(date +%s) - START ))
  events=$(events_in); rows=$(sum_keys sr:rl:rows); appended=$(sum_keys sr:rl:appended); trained=$(sum_keys sr:rl:trained)
  printf '%6d %10d %12d %12s  %-32s %s\n' "$t" "$events" "$rows" "$trained/$appended" "$(trainer)" "$(served)"
  if [[ $SHOWN == 0 && "$(served)" != "-" ]]; then
    echo "   -> live recommendations from the served version (user state read from Redis):"
    for u in 1 2 3; do echo "      $(recommend $u)"; done
    echo "   -> real-time popular items: $(curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/v1/popular?n=5")"
    SHOWN=1
  fi
  if ! kill -0 "$(cat "$PIDS/produce.pid")" 2>/dev/null && [[ $events -ge $EVENTS ]] && [[ $appended -gt 0 && $trained -ge $appended ]]; then
    break
  fi
  if ! kill -0 "$(cat "$PIDS/train.pid")" 2>/dev/null; then echo "demo: the trainer stopped unexpectedly; see $DEMO/train.log" >&2; exit 1; fi
  if [[ $t -gt $(( EVENTS / RATE * 4 + 180 )) ]]; then echo "demo: taking too long; see logs in $DEMO" >&2; exit 1; fi
done

if [[ $KEEP == 1 ]]; then
  cat <<MSG

Everything is still running (logs in $DEMO):
  dashboard: http://127.0.0.1:$DASH_PORT/
  curl -s -X POST localhost:$HTTP_PORT/v1/recommend -d '{"user": "1", "n": 10}'
  curl -s 'localhost:$HTTP_PORT/v1/popular?n=10'
  curl -s localhost:$METRICS_PORT/metrics   (trainer rank 0; featurize: $((METRICS_PORT + 1)), $((METRICS_PORT + 2)); see cluster/prometheus.yml)
  $BIN status --redis $REDIS
  $BIN ckpt list $DEMO/checkpoints
Stop everything with: bash scripts/demo-rl.sh --stop
MSG
  exit 0
fi

step "stopping the trainer (SIGTERM to its supervisor, which stops rank 0: finish the step, checkpoint, stop)"
kill -TERM "$(cat "$PIDS/train.pid")" 2>/dev/null || true
for _ in $(seq 1 300); do kill -0 "$(cat "$PIDS/train.pid")" 2>/dev/null || break; sleep 0.1; done
grep -E '^done|^rank' "$DEMO/train.log" | sed 's/^/  /' || true
for _ in $(seq 1 50); do [[ "$(served)" == "$(cat "$DEMO/checkpoints/LATEST" 2>/dev/null)" ]] && break; sleep 0.1; done

step "live recommendations from the final version"
for u in 1 2 3; do echo "  $(recommend $u)"; done
echo "  popular: $(curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/v1/popular?n=5")"

step "summary"
"$BIN" status --redis "$REDIS" | sed 's/^/  /' | head -40
"$BIN" ckpt list "$DEMO/checkpoints" | sed 's/^/  /'
echo "  served: $(served)"
"$BIN" eval --checkpoint "$DEMO/checkpoints" --data "$DEMO/behavior/heldout.csv" \
  --history "$DEMO/behavior/user_behavior.csv" > "$DEMO/eval.json"
python3 - "$DEMO/eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  final {r['model_kind']} model: step {r['step']}, {r['samples_trained']} transitions trained; held-out NDCG@10 "
      f"{r['ndcg@10']:.4f} (HR@10 {r['hr@10']:.4f}); popularity {r['popularity']['ndcg@10']:.4f}, oracle {r['oracle']['ndcg@10']:.4f}")
PY
