#!/usr/bin/env bash
# GPU check (issue 7): kernel throughput and one evidence benchmark at 2^20 walkers, one short
# table, in under 5 minutes on one GPU. Run from anywhere:
#
#     bash benchmarks/gpu_check.sh                 # WALKERS=1048576 by default
#     WALKERS=65536 PYTHON=python3 bash benchmarks/gpu_check.sh   # smaller, e.g. on a CPU
#
# 1. benchmarks/kernel_throughput.py: bare ULA loop vs the library's ULA and Jarzynski steps
#    (pure kernels, vmapped) and ep.ULA through NumPyro's kernel interface, 10-D two-mode
#    mixture, float32. Acceptance 3 of issue 7: ULA and Jarzynski reach >= 85% of the bare
#    loop's walker-steps per second.
# 2. benchmarks/evidence_vs_peers.py --walkers: ep.log_partition (HMC moves) on the quick
#    targets (given and automatic reference) at a fixed walker count, 3 seeds (the median
#    wall time excludes the compiling first run), no BlackJAX grid: RMSE of log Z against
#    the exact value, mean reported standard error, wall time per run, gradients per second.
# Each step has its own time limit; the table is printed from what finished.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
WALKERS=${WALKERS:-1048576}
STEPS=${STEPS:-100}
OUT=${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s)

echo "== device"
"$PY" - <<'EOF' | tee "$OUT/device.txt"
import jax
d = jax.devices()[0]
print(f"{d.platform} {getattr(d, 'device_kind', '?')} x{jax.device_count()}; jax {jax.__version__}")
if d.platform != "gpu":
    print("warning: no GPU visible; the numbers below are not the GPU check")
EOF

echo "== kernel throughput ($WALKERS walkers x $STEPS steps)"
timeout 150 "$PY" benchmarks/kernel_throughput.py --walkers "$WALKERS" --steps "$STEPS" \
  --repeats 3 --only "ep ULA (pure kernel),ep Jarzynski (pure kernel),ep.ULA (MCMC kernel)" \
  2>&1 | tee "$OUT/kernels.txt"
echo "   (exit ${PIPESTATUS[0]}; $(( $(date +%s) - T0 )) s so far)"

echo "== evidence ($WALKERS walkers)"
timeout $(( 280 - ($(date +%s) - T0) )) "$PY" benchmarks/evidence_vs_peers.py --quick --seeds 3 \
  --walkers "$WALKERS" --methods hmc --out "$OUT/evidence.json" 2>&1 | tee "$OUT/evidence.txt"
echo "   (exit ${PIPESTATUS[0]}; $(( $(date +%s) - T0 )) s so far)"

echo "== summary ($(date -u +%Y-%m-%d), $(head -1 "$OUT/device.txt"), ${WALKERS} walkers)"
"$PY" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
rows = {}
for line in open(os.path.join(out, "kernels.txt")):
    parts = line[40:].split()
    if len(parts) == 5 and line[:40].strip():
        try:
            rows[line[:40].strip()] = [float(p) for p in parts]
        except ValueError:
            pass
print("| kernel | walker-steps/s | rate / bare loop | >= 0.85 |")
print("|---|---|---|---|")
bare = rows.get("bare loop")
for name, (wall, rate, xbare, cpu, xcpu) in rows.items():
    ratio = rate / bare[1] if bare else float("nan")
    ok = "" if name == "bare loop" else ("yes" if ratio >= 0.85 else "NO")
    print(f"| {name} | {rate:.3e} | {ratio:.2f} | {ok} |")
if not rows:
    print("| (kernel benchmark did not finish) | | | |")
path = os.path.join(out, "evidence.json")
print("\n| target | method | walkers | RMSE log Z | mean se | wall/run (s) | gradients/s |")
print("|---|---|---|---|---|---|---|")
if os.path.exists(path):
    table = json.load(open(path))["table"]
    for name, t in table.items():
        for label, r in t["rows"].items():
            print(f"| {name} | {label} | {r.get('walkers', '?')} | {r['rmse']:.3f} | "
                  f"{r['mean_se']:.3f} | {r['wall']:.2f} | {r['grads'] / r['wall']:.3e} |")
else:
    print("| (evidence benchmark did not finish) | | | | | | |")
EOF
echo "total $(( $(date +%s) - T0 )) s; raw output in $OUT"
