#!/usr/bin/env bash
# Data-parallel training benchmark: `streamrec bench train` under mpirun -np 1 and -np 2 for the
# large and the small config, with the scaling figures the issue asks for:
#   scaling efficiency  = samples/s(2 ranks) / (2 × samples/s(1 rank))
#   sgemm speedup       = sgemm GFLOP/s of 2 concurrent processes (total) / 1 process alone
#   speedup ratio       = (samples/s(2) / samples/s(1)) / sgemm speedup        (target ≥ 0.9)
#   communication share, checkpoint write time and the stall it causes (target ≤ 1 step)
# Usage: bash scripts/bench-mpi.sh [steps-large] [steps-small]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS_LARGE="${1:-20}"
STEPS_SMALL="${2:-60}"
bash scripts/setup.sh release >&2
BIN="$(swift build -c release --show-bin-path)/streamrec"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_btl=self,vader,tcp
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for preset in large small; do
  steps=$STEPS_LARGE; [[ $preset == small ]] && steps=$STEPS_SMALL
  for n in 1 2; do
    mpirun -np "$n" --bind-to core "$BIN" bench train --config configs/widedeep.yaml --preset "$preset" \
      --steps "$steps" --json > "$OUT/$preset-$n.json"
  done
done
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
print(f"{'config':7} {'ranks':>5} {'samples/s':>10} {'step ms':>8} {'comm %':>7} {'sgemm GF/s (all ranks)':>23} {'ckpt write s':>12} {'snapshot steps':>14} {'slowdown steps':>14}")
for preset in ("large", "small"):
    r = {n: json.load(open(os.path.join(out, f"{preset}-{n}.json"))) for n in (1, 2)}
    for n in (1, 2):
        x = r[n]
        print(f"{preset:7} {n:>5} {x['samples_per_s']:>10.0f} {x['step_ms']:>8.1f} {100*x['communication_share']:>7.1f} "
              f"{x['sgemm_gflops_total']:>23.1f} {x['checkpoint_write_s']:>12.2f} "
              f"{1000*x['checkpoint_snapshot_s']/x['step_ms']:>14.2f} {x['checkpoint_stall_steps']:>14.2f}")
    speedup = r[2]['samples_per_s'] / r[1]['samples_per_s']
    sgemm_speedup = r[2]['sgemm_gflops_total'] / r[1]['sgemm_gflops_total']
    print(f"  {preset}: 2-rank speedup {speedup:.3f}, scaling efficiency {speedup/2:.3f}, sgemm speedup {sgemm_speedup:.3f}, "
          f"speedup / sgemm speedup = {speedup/sgemm_speedup:.3f} (target ≥ 0.9)")
PY
