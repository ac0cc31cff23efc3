# Shared by scripts/demo.sh (Wide&Deep) and scripts/demo-rl.sh (the RL families): the settings,
# stopping everything the demo started, progress headings, background processes, the cluster and
# the dashboard. `demo_settings NAME` sets RUN, DEMO (runs/local/NAME), PIDS, the ports and the
# Open MPI loopback settings.

demo_settings() {
  export STREAMREC_RUN_DIR="${STREAMREC_RUN_DIR:-$ROOT/runs/local}"
  RUN="$STREAMREC_RUN_DIR"
  DEMO="$RUN/$1"
  PIDS="$DEMO/pids"
  export STREAMREC_REDIS_PORT="${STREAMREC_REDIS_PORT:-6379}"
  HTTP_PORT="${STREAMREC_HTTP_PORT:-8080}"
  DASH_PORT="${STREAMREC_DASHBOARD_PORT:-8090}"
  # GET /metrics of trainer rank 0 and the featurize workers (cluster/prometheus.yml scrapes these):
  # trainer $METRICS_PORT, featurize worker k $METRICS_PORT + 1 + k.
  METRICS_PORT="${STREAMREC_METRICS_PORT:-9100}"
  REDIS="127.0.0.1:$STREAMREC_REDIS_PORT"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_btl=self,vader,tcp
}

# Redis, the dev broker and ompi-server (cluster/up.sh) with an empty store (the dev broker is in
# memory, so progress kept in Redis from an earlier run would point past its empty topics); sets
# BOOTSTRAP and URI.
demo_cluster_up() {
  step "cluster: Redis, Kafka dev broker, ompi-server"
  bash cluster/up.sh
  redis-cli -p "$STREAMREC_REDIS_PORT" FLUSHALL >/dev/null
  BOOTSTRAP="$(cat "$RUN/broker/bootstrap")"
  URI="$RUN/ompi-server/ompi-server.uri"
}

# The live dashboard over TOPIC; prints its address once it answers.
demo_dashboard() {
  bg dashboard "$BIN" dashboard --redis "$REDIS" --port "$DASH_PORT" --serve "http://127.0.0.1:$HTTP_PORT" \
     --checkpoints "$DEMO/checkpoints" --topic "$1" --bootstrap "$BOOTSTRAP"
  local up=0
  for _ in $(seq 1 50); do curl -sf --max-time 1 "http://127.0.0.1:$DASH_PORT/healthz" >/dev/null 2>&1 && { up=1; break; }; sleep 0.1; done
  if [[ $up == 1 ]]; then
    echo "   dashboard: http://127.0.0.1:$DASH_PORT/  (open it in a browser: workers, lag, training curves, served version; refreshes itself)"
  else
    echo "   dashboard did not start on port $DASH_PORT (set STREAMREC_DASHBOARD_PORT); see $DEMO/dashboard.log" >&2
  fi
}

stop_all() {
  # Our own processes first (recorded pids; SIGTERM, then SIGKILL), then the cluster services.
  if [[ -d "$PIDS" ]]; then
    for f in "$PIDS"/*.pid; do
      [[ -e "$f" ]] || continue
      pid="$(cat "$f")"
      kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 100); do
      alive=0
      for f in "$PIDS"/*.pid; do [[ -e "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
      [[ $alive == 0 ]] && break
      sleep 0.1
    done
    for f in "$PIDS"/*.pid; do [[ -e "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done
  fi
  bash cluster/down.sh >/dev/null 2>&1 || true
}

step() { printf '\n== %s\n' "$*"; }
bg() {  # bg NAME CMD... : start in the background, log to $DEMO/NAME.log, remember the pid
  local name="$1"; shift
  setsid "$@" >"$DEMO/$name.log" 2>&1 </dev/null &
  echo $! > "$PIDS/$name.pid"
}

