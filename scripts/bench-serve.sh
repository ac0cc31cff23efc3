#!/usr/bin/env bash
# Load benchmark of `streamrec serve` on loopback (issue 5, "Speed and load").
#
#   scripts/bench-serve.sh                 # both configs; results in $WORK/results.txt
#   PRESETS=small DURATION=5 scripts/bench-serve.sh
#   CONTROL=1 PRESETS=large scripts/bench-serve.sh   # control: versions are written as usual, but the
#                                                    # server watches a copy of the directory and never
#                                                    # reloads (what the writing alone costs the latency)
#   PRESETS=reinforce DURATION=20 RELOAD_GAP=1 scripts/bench-serve.sh   # POST /v1/recommend (RL)
#
# For each config (large = configs/widedeep.yaml, small = --preset small) it trains a checkpoint on a
# few thousand generated rows, starts the release server, then measures:
#   1. closed-loop throughput (wrk, 8 connections, Lua POST body): req/s, p50/p99 for 1-row and 100-row requests;
#   2. fixed-rate 1-row load at $RATE req/s (open loop, latency from each request's scheduled send
#      time, so stalls are not hidden — wrk2 style) for $DURATION s: p50/p99/max, failures. The load
#      comes from scripts/loadgen.c (one thread on epoll, built here with $CC): the Python asyncio
#      generator used before took 0.3 ms of CPU per request on the same 2 cores and its own delays
#      were a large part of the p50/p99 it reported (see loadgen.c);
#   3. the same fixed-rate load while 20 new checkpoint versions are written (copied, renamed,
#      LATEST replaced atomically; by a separate process at nice 10, like the trainer's writer) one
#      every $RELOAD_GAP s: p99 during reloads vs steady, failures,
#      reloads seen by the server, and server RSS (sampled every 10 ms) vs model.safetensors size.
# The `reinforce` config (configs/reinforce.yaml) serves POST /v1/recommend instead: it generates
# behaviour events ($RL_USERS users, $RL_ITEMS items, $RL_EVENTS events per user: the issue's
# 3,000 × 2,000 × ~50 shape), trains one pass from the file, starts a redis-server on a free port
# and writes every user's state as the behaviour featurizer would after those events (last H+1
# items, last 100 distinct consumed, ids from the checkpoint's items.keys), then serves with
# --redis. "1-row" is one stateful user ({"user", "n": 10}: an HGET through the feature-store
# client, scoring, masking, top 10); "100-row" is a batch of 100 stateful users.
# Needs: swift, wrk, a C compiler ($CC, default cc), python3 (standard library only), curl; redis-server for `reinforce`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${WORK:-/tmp/streamrec-bench-serve}
PRESETS=${PRESETS:-"large small"}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
RELOADS=${RELOADS:-20}
RELOAD_GAP=${RELOAD_GAP:-0.5}
CONTROL=${CONTROL:-0}
ROWS=${ROWS:-3000}
RL_USERS=${RL_USERS:-3000}
RL_ITEMS=${RL_ITEMS:-2000}
RL_EVENTS=${RL_EVENTS:-50}
BIN=${STREAMREC_BIN:-$ROOT/.build/release/streamrec}
mkdir -p "$WORK"
RESULTS=$WORK/results.txt
: > "$RESULTS"

if [[ ! -x $BIN ]]; then bash scripts/setup.sh release >&2; fi
LOADGEN=$WORK/loadgen
${CC:-cc} -O2 -o "$LOADGEN" scripts/loadgen.c
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

SERVER_PID=
REDIS_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; fi
    if [[ -n $REDIS_PID ]] && kill -0 "$REDIS_PID" 2>/dev/null; then kill -TERM "$REDIS_PID"; wait "$REDIS_PID" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # run the EXIT trap (stop the server) on Ctrl-C / kill as well

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

cat > "$WORK/loadgen.py" <<'PY'
# Fixed-rate (open-loop) load through loadgen.c (see its header), with what the stages need around
# it: new checkpoint versions written while the load runs, a process's RSS sampled, latencies split
# into the steady and the reload windows.
import json, multiprocessing, os, shutil, subprocess, sys, threading, time

def percentile(xs, q):
    if not xs: return float("nan")
    xs = sorted(xs); k = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[k]

def run(a, duration, start, stop_file=None):
    """Runs loadgen.c from `start` (time.perf_counter(), which is CLOCK_MONOTONIC: the same clock)
    for `duration` s; returns [(due, latency)] of the answered requests and its summary."""
    records = a["work"] + "/loadgen.records"
    cmd = [a["loadgen"], "--port", str(a["port"]), "--path", a.get("path", "/v1/predict"), "--body", a["body"],
           "--rate", str(a["rate"]), "--duration", str(duration), "--conns", str(a.get("conns", 32)),
           "--start", repr(start), "--records", records]
    if stop_file: cmd += ["--stop-file", stop_file]
    info = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    lat = []
    for line in open(records):
        due, latency, status = line.split()
        if status != "0": lat.append((float(due), float(latency)))   # 0: failed without an answer
    return lat, info

def rss_kib(pid):
    """(VmRSS, RssAnon) in KiB: all resident pages, and the anonymous part (heap, stacks: what the
    process allocated, without the mapped code and data of the binary and its shared libraries)."""
    rss = anon = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"): rss = int(line.split()[1])
            elif line.startswith("RssAnon:"): anon = int(line.split()[1])
    return rss, anon

def write_versions(ckpt_root, base, count, gap, first_step, stop_at):
    """Copies `base` to new step directories (manifest step rewritten) and points LATEST at each."""
    time.sleep(gap)
    for k in range(count):
        step = first_step + k
        name = "step-%012d" % step
        tmp = os.path.join(ckpt_root, ".tmp-" + name)
        shutil.copytree(os.path.join(ckpt_root, base), tmp)
        mpath = os.path.join(tmp, "manifest.json")
        m = json.load(open(mpath)); m["step"] = step
        json.dump(m, open(mpath, "w"))
        os.rename(tmp, os.path.join(ckpt_root, name))
        with open(os.path.join(ckpt_root, "LATEST.tmp"), "w") as f: f.write(name + "\n")
        os.replace(os.path.join(ckpt_root, "LATEST.tmp"), os.path.join(ckpt_root, "LATEST"))
        time.sleep(gap)
    stop_at.append(time.perf_counter())

def main():
    a = json.loads(sys.argv[1])
    out = {}
    sampler_stop = threading.Event(); rss = []
    if a.get("pid"):
        def sample():
            while not sampler_stop.is_set():
                rss.append((time.perf_counter(), rss_kib(a["pid"]))); time.sleep(0.01)
        threading.Thread(target=sample, daemon=True).start()
    window = {}
    start = time.perf_counter() + 0.3
    stop_file = None
    if a.get("reloads"):
        window["start"] = start + a["steady"]
        # The versions are written by a separate process at nice 10 (like the trainer's checkpoint
        # writer), so the copying does not delay the load generator.
        ctx = multiprocessing.get_context("fork")
        done = ctx.Queue()
        def write_process():
            os.nice(10)
            end = []
            write_versions(a["ckpt_root"], a["base"], a["reloads"], a["gap"], a["first_step"], end)
            done.put(end[0])
        # With reloads, the load runs until the writer is done plus 1 s (bounded by the duration):
        # the stop file tells loadgen.c that nothing after it was due.
        stop_file = a["work"] + "/loadgen.stop"
        if os.path.exists(stop_file): os.remove(stop_file)
        def writer():
            time.sleep(max(0, window["start"] - time.perf_counter()))
            p = ctx.Process(target=write_process, daemon=True)
            p.start()
            window["end"] = done.get()  # time.perf_counter is CLOCK_MONOTONIC: comparable across processes
            p.join()
            time.sleep(max(0, window["end"] + 1.0 - time.perf_counter()))
            open(stop_file, "w").close()
        threading.Thread(target=writer, daemon=True).start()
    duration = a["duration"] if not a.get("reloads") else a["steady"] + a["reloads"] * a["gap"] * 4 + 10.0
    lat, info = run(a, duration, start, stop_file)
    failures, statuses = info.pop("failures"), info.pop("statuses")
    info.pop("all")
    sampler_stop.set()
    out.update(info)
    def summary(xs):
        ms = [x * 1000 for x in xs]
        return {"n": len(ms), "p50_ms": round(percentile(ms, 0.5), 3), "p99_ms": round(percentile(ms, 0.99), 3),
                "max_ms": round(max(ms), 3) if ms else None}
    if a.get("reloads"): out["reloads_written"] = a["reloads"] if "end" in window else "incomplete"
    out["failures"] = failures; out["statuses"] = statuses
    if a.get("reloads") and "end" in window:
        steady = [l for t, l in lat if t < window["start"]]
        during = [l for t, l in lat if window["start"] <= t <= window["end"] + 0.5]
        out["steady"] = summary(steady); out["during_reloads"] = summary(during)
        before = [r for t, r in rss if t < window["start"]]
        inside = [r for t, r in rss if window["start"] <= t <= window["end"] + 0.5]
        out["rss_before_kib"] = max(r[0] for r in before) if before else None
        out["rss_peak_during_kib"] = max(r[0] for r in inside) if inside else None
        out["anon_before_kib"] = max(r[1] for r in before) if before else None
        out["anon_peak_during_kib"] = max(r[1] for r in inside) if inside else None
    else:
        out["all"] = summary([l for _, l in lat])
    print(json.dumps(out))

main()
PY

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BODY_FILE"), "rb"):read("*a")
LUA

log() { echo "$*" | tee -a "$RESULTS"; }

log "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
log "binary: $BIN"
for preset in $PRESETS; do
    D=$WORK/$preset
    rm -rf "$D"; mkdir -p "$D"
    if [[ $preset == reinforce ]]; then
        ENDPOINT=/v1/recommend UNIT=user
        "$BIN" gen behavior --users "$RL_USERS" --items "$RL_ITEMS" --events-per-user "$RL_EVENTS" --out "$D/data" --seed 5 >/dev/null
        "$BIN" train --config configs/reinforce.yaml --data "$D/data/user_behavior.csv" \
            --checkpoint-dir "$D/ckpt" --log-every 50 >"$D/train.log" 2>&1
        REDIS_PORT=$(free_port)
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$D" >"$D/redis.log" 2>&1 &
        REDIS_PID=$!
        for _ in $(seq 1 200); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
        SERVE_EXTRA=(--redis "127.0.0.1:$REDIS_PORT")
    else
        ENDPOINT=/v1/predict UNIT=row
        SERVE_EXTRA=()
        "$BIN" gen --rows "$ROWS" --out "$D/train.tsv" --seed 5 >/dev/null
        "$BIN" stats --data "$D/train.tsv" --out "$D/features.stats" --min-frequency 2 >/dev/null
        PRESET_ARGS=(--config configs/widedeep.yaml); [[ $preset != large ]] && PRESET_ARGS+=(--preset "$preset")
        "$BIN" train "${PRESET_ARGS[@]}" --data "$D/train.tsv" --stats "$D/features.stats" \
            --checkpoint-dir "$D/ckpt" --checkpoint-every 1 --keep 2 --log-every 1 >"$D/train.log" 2>&1
    fi
    BASE=$(cat "$D/ckpt/LATEST")
    MODEL_BYTES=$(stat -c %s "$D/ckpt/$BASE/model.safetensors")
    # Bytes of the tensors a server keeps (model.safetensors also holds the optimizer state, optim.*).
    PARAM_BYTES=$(python3 - "$D/ckpt/$BASE/model.safetensors" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
print(sum(e["data_offsets"][1] - e["data_offsets"][0] for k, e in h.items() if k != "__metadata__" and not k.startswith("optim.")))
PY
)
    if [[ $preset == reinforce ]]; then
        # Every user's state as the behaviour featurizer leaves it after the file (UserState,
        # Sources/Features/Behavior/UserState.swift), written with HSET sr:rl:user over raw RESP;
        # bodies: one stateful user, and a batch of 100.
        python3 - "$D" "$D/ckpt/$BASE" "$REDIS_PORT" <<'PY'
import json, socket, struct, sys
d, ckpt, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
H = json.load(open(ckpt + "/manifest.json"))["model_config"]["history_length"]
def keys(path):
    b = open(path, "rb").read(); n = struct.unpack_from("<I", b, 1)[0]; p = 5; out = {}
    for _ in range(n):
        i, l = struct.unpack_from("<iH", b, p); p += 6; out[b[p:p + l].decode()] = i; p += l
    return out
items = keys(ckpt + "/items.keys")
history, consumed = {}, {}
for line in open(d + "/data/user_behavior.csv"):
    u, i, _, _ = line.rstrip("\n").split(",")
    iid = items.get(i)
    if iid is None: continue
    h = history.setdefault(u, []); h.append(iid); del h[:-(H + 1)]
    c = consumed.setdefault(u, [])
    if iid in c: c.remove(iid)
    c.append(iid); del c[:-100]
def packed(u):
    h, c = history[u], consumed[u]
    return struct.pack("<BBHB", 1, len(h), len(c), 0) + struct.pack(f"<{len(h)}i", *h) + struct.pack(f"<{len(c)}i", *c)
def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
users = sorted(history, key=lambda u: (-len(history[u]), u))
s = socket.create_connection(("127.0.0.1", port))
for k in range(0, len(users), 500):
    chunk = users[k:k + 500]
    args = [b"HSET", b"sr:rl:user"]
    for u in chunk: args += [u.encode(), packed(u)]
    s.sendall(resp(*args))
    reply = s.recv(4096)
    assert reply.startswith(b":"), reply
s.close()
json.dump({"user": users[0], "n": 10}, open(d + "/body1.json", "w"))
json.dump({"requests": [{"user": u, "n": 10} for u in users[:100]]}, open(d + "/body100.json", "w"))
print(f"{len(users)} user states written (H = {H})", file=sys.stderr)
PY
    else
    # Bodies: 1 row and 100 rows (unlabelled rows: label column cut off).
    python3 - "$D" <<'PY'
import json, sys
d = sys.argv[1]
rows = [l.rstrip("\n").split("\t", 1)[1] for l in open(d + "/train.tsv")][:100]
json.dump({"rows": rows[:1]}, open(d + "/body1.json", "w"))
json.dump({"rows": rows[:100]}, open(d + "/body100.json", "w"))
PY
    fi
    PORT=$(free_port)
    EMPTY=$D/empty; mkdir -p "$EMPTY"
    WATCHED=$D/ckpt
    if [[ $CONTROL == 1 ]]; then WATCHED=$D/ckpt-control; rm -rf "$WATCHED"; cp -r "$D/ckpt" "$WATCHED"; log "CONTROL=1: the server watches $WATCHED; versions are written to $D/ckpt and never loaded"; fi
    "$BIN" serve --checkpoints "$WATCHED" --port "$PORT" --max-rows 1000 "${SERVE_EXTRA[@]}" 2>"$D/serve.log" &
    SERVER_PID=$!
    for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.05; done
    RSS_LOADED=$(awk '/VmRSS/ {print $2}' /proc/$SERVER_PID/status)
    ANON_LOADED=$(awk '/RssAnon/ {print $2}' /proc/$SERVER_PID/status)
    log ""
    log "== $preset: $BASE, model.safetensors $((MODEL_BYTES / 1024)) KiB (parameters without optimizer state $((PARAM_BYTES / 1024)) KiB), server RSS after load $RSS_LOADED KiB (anonymous $ANON_LOADED KiB)"
    for n in 1 100; do
        BODY_FILE=$D/body$n.json timeout $((DURATION + 30)) wrk -t2 -c8 -d"${DURATION}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT$ENDPOINT" > "$D/wrk$n.txt"
        RPS=$(awk '/Requests\/sec/ {print $2}' "$D/wrk$n.txt")
        P50=$(awk '$1=="50%" {print $2}' "$D/wrk$n.txt"); P99=$(awk '$1=="99%" {print $2}' "$D/wrk$n.txt")
        ERR=$(grep -E "Non-2xx|Socket errors" "$D/wrk$n.txt" | tr '\n' ' ' || true)
        log "closed loop (wrk -t2 -c8 ${DURATION}s) $ENDPOINT $n-$UNIT: $RPS req/s, p50 $P50, p99 $P99 ${ERR:-no errors}"
    done
    FIXED=$(timeout $((DURATION + 60)) python3 "$WORK/loadgen.py" "{\"port\": $PORT, \"path\": \"$ENDPOINT\", \"body\": \"$D/body1.json\", \"rate\": $RATE, \"duration\": $DURATION, \"loadgen\": \"$LOADGEN\", \"work\": \"$D\"}")
    log "fixed rate $RATE req/s $ENDPOINT 1-$UNIT ${DURATION}s: $FIXED"
    RELOAD=$(timeout $((RELOADS * 4 + 90)) python3 "$WORK/loadgen.py" "{\"port\": $PORT, \"path\": \"$ENDPOINT\", \"body\": \"$D/body1.json\", \"rate\": $RATE, \"steady\": 5, \"loadgen\": \"$LOADGEN\", \"work\": \"$D\", \
        \"reloads\": $RELOADS, \"gap\": $RELOAD_GAP, \"ckpt_root\": \"$D/ckpt\", \"base\": \"$BASE\", \"first_step\": 1000, \"pid\": $SERVER_PID}")
    log "fixed rate $RATE req/s $ENDPOINT 1-$UNIT with $RELOADS reloads: $RELOAD"
    METRICS=$(curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^streamrec_serve_(reloads_total|rejected_checkpoints_total|model_step|model_load_seconds)[ {]')
    log "server: $(echo "$METRICS" | tr '\n' ' ')"
    log "load average after the reload stage: $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 - "$RELOAD" "$MODEL_BYTES" "$RSS_LOADED" "$FIXED" "$RATE" "$PARAM_BYTES" "$ENDPOINT 1-$UNIT" <<'PY' | tee -a "$RESULTS"
import json, sys
r = json.loads(sys.argv[1]); model = int(sys.argv[2]) / 1024; params = int(sys.argv[6]) / 1024
f = json.loads(sys.argv[4]); rate = sys.argv[5]; what = sys.argv[7]
a = f.get("all", {})
print(f"fixed {rate} req/s {what}: p50 {a.get('p50_ms')} ms, p99 {a.get('p99_ms')} ms, max {a.get('max_ms')} ms; "
      f"sent {f['sent']}/{f['offered']} (unsent {f['unsent']}), failures {f['failures']}, wall {f['elapsed_s']} s")
peak, before = r.get("rss_peak_during_kib"), r.get("rss_before_kib")
if peak:
    print(f"memory: model {model:.0f} KiB; RSS before reloads {before} KiB, peak during reloads {peak} KiB; "
          f"peak/model {peak / model:.2f}; growth during reload/model {(peak - before) / model:.2f}; "
          f"growth/parameters {(peak - before) / params:.2f}")
    a0, a1 = r.get("anon_before_kib"), r.get("anon_peak_during_kib")
    if a1:
        print(f"memory (anonymous only, without mapped code of the binary and libraries): before reloads {a0} KiB, "
              f"peak {a1} KiB; peak/model {a1 / model:.2f}; growth/model {(a1 - a0) / model:.2f}")
s, d = r.get("steady", {}), r.get("during_reloads", {})
if s and d:
    print(f"reloads: steady p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms; during reloads p50 {d['p50_ms']} ms p99 {d['p99_ms']} ms "
          f"(p99 ratio {d['p99_ms'] / s['p99_ms']:.2f}); failures {r['failures']}, unsent {r['unsent']}, reloads written {r['reloads_written']}")
PY
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=
    if [[ -n $REDIS_PID ]]; then kill -TERM "$REDIS_PID"; wait "$REDIS_PID" || true; REDIS_PID=; fi
done
echo "results: $RESULTS"
