# Shared by scripts/demo.sh (Wide&Deep) and scripts/demo-rl.sh (the RL families): stopping
# everything the demo started, progress headings, background processes. Expects RUN, DEMO and
# PIDS to be set by the caller.

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

