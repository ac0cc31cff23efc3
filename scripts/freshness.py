#!/usr/bin/env python3
"""Model freshness: time from a row being produced to the first served model version whose
training included it.

  freshness.py poll --port 8080 --out served.jsonl        # records when each version is first served
  freshness.py report --trainer freshness.jsonl --served served.jsonl

The trainer (`streamrec train --freshness-log`) writes one line per trained batch
(produced_ms = earliest Kafka timestamp of its rows, appended_ms = when featurize appended it to
Redis, trained_ms, step) and one per written checkpoint (step, version, written_ms). A batch's
freshness is served_ms(first version with step ≥ its step) − produced_ms, split into
produce→batch, batch→trained, trained→checkpoint written, written→serving.
"""
import argparse, json, sys, time, urllib.request


def poll(port, out, seconds):
    seen = set()
    deadline = time.time() + seconds
    with open(out, "a") as f:
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=1) as r:
                    d = json.load(r)
                v = d.get("model_version")
                if v and v not in seen:
                    seen.add(v)
                    f.write(json.dumps({"version": v, "step": d.get("step"), "served_ms": int(time.time() * 1000)}) + "\n")
                    f.flush()
            except Exception:
                pass
            time.sleep(0.05)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def report(trainer, served):
    batches, written = [], []
    for line in open(trainer):
        e = json.loads(line)
        if e["event"] == "trained" and e.get("produced_ms", 0) > 0:
            batches.append(e)
        elif e["event"] == "written":
            written.append(e)
    versions = [json.loads(l) for l in open(served)]
    written.sort(key=lambda e: e["step"])
    versions.sort(key=lambda e: e["served_ms"])
    rows = []
    for b in batches:
        w = next((x for x in written if x["step"] >= b["step"]), None)
        s = next((v for v in versions if (v.get("step") or -1) >= b["step"]), None)
        if not w or not s:
            continue
        rows.append({
            "total": s["served_ms"] - b["produced_ms"],
            "produce→batch": b["appended_ms"] - b["produced_ms"],
            "batch→trained": b["trained_ms"] - b["appended_ms"],
            "trained→written": w["written_ms"] - b["trained_ms"],
            "written→serving": max(0, s["served_ms"] - w["written_ms"]),
        })
    if not rows:
        print("no batch was both trained into a written checkpoint and served; nothing to report")
        return 1
    print(f"batches measured: {len(rows)} of {len(batches)} trained; versions served: {len(versions)}")
    print(f"{'part':18} {'p50 ms':>8} {'p99 ms':>8}")
    for k in ["produce→batch", "batch→trained", "trained→written", "written→serving", "total"]:
        xs = [r[k] for r in rows]
        print(f"{k:18} {pct(xs, 50):>8.0f} {pct(xs, 99):>8.0f}")
    total = [r["total"] for r in rows]
    print(json.dumps({"freshness_p50_ms": pct(total, 50), "freshness_p99_ms": pct(total, 99), "batches": len(rows)}))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("poll"); p.add_argument("--port", type=int, required=True); p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=3600)
    r = sub.add_parser("report"); r.add_argument("--trainer", required=True); r.add_argument("--served", required=True)
    a = ap.parse_args()
    if a.cmd == "poll":
        poll(a.port, a.out, a.seconds)
        return 0
    return report(a.trainer, a.served)


if __name__ == "__main__":
    sys.exit(main())
