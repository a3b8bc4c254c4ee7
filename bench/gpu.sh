#!/usr/bin/env bash
# The issue-5 GPU benchmarks in one go (budget: under 8 minutes on one H100/H200), one table at the end:
#   1. bench/attention.py  Triton masked attention vs SDPA+mask, flex_attention, dense SDPA (bf16, B 4 and 16)
#   2. bench/loss.py       fused vs unfused head + CE (4000 tokens, D 768, V 64000, bf16)
#   3. bench/train_step.py egom2p-base training step, bf16, backends sdpa / triton / triton + fused loss,
#                          at the released masking's average fill (53% of the 2048/2048 budgets)
# Each step has its own time limit; a failed or timed-out step is reported and the script exits 1.
#
# usage: bash bench/gpu.sh            (PYTHON=... to pick the interpreter, BENCH_OUT=dir to keep the rows)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/egom2p-bench.XXXXXX)}
mkdir -p "$OUT"
export ROWS=$OUT/rows.jsonl
: >"$ROWS"
status=0

step() {  # step LIMIT_S CMD... : run with a time limit, remember failures
  local limit=$1
  shift
  echo "== $* (limit ${limit}s)"
  if ! timeout "$limit" "$@"; then
    echo "!! failed or timed out: $*"
    status=1
  fi
}

step 240 "$PY" bench/attention.py --json "$ROWS"
step 60 "$PY" bench/loss.py --json "$ROWS"
for variant in "sdpa" "triton" "triton --fused-loss"; do
  # shellcheck disable=SC2086  # $variant holds the backend and optional flag
  step 50 "$PY" - $variant <<'PYEOF'
import json, subprocess, sys, os
backend, *flags = sys.argv[1:]
cmd = [sys.executable, "bench/train_step.py", "--preset", "egom2p-base", "--device", "cuda", "--dtype", "bf16",
       "--backend", backend, "--batch-size", "4", "--fill", "0.53", "--warmup", "2", "--steps", "5", *flags]
proc = subprocess.run(cmd, capture_output=True, text=True)
if proc.returncode:
    sys.exit(proc.stderr[-2000:])
result = json.loads(proc.stdout.strip().splitlines()[-1])
print(json.dumps(result))
row = {"bench": "train_step", "batch": result["batch_size"], "pattern": f"fill {result['fill']}",
       "mode": "fwd+bwd", "impl": backend + ("+fused-loss" if flags else ""), "ms": round(1000 * result["step_s"], 1),
       "tflops": result.get("achieved_tflops"), "peak_gib": result.get("peak_mem_gib"), "mfu": result.get("mfu")}
with open(os.environ["ROWS"], "a") as f:
    f.write(json.dumps(row) + "\n")
PYEOF
done

echo
echo "== results ($("$PY" -c 'import torch; print(torch.cuda.get_device_name())' 2>/dev/null || echo unknown GPU))"
"$PY" - "$ROWS" <<'PYEOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if not rows:
    sys.exit("(no results)")
cols = ["bench", "batch", "pattern", "tokens", "mode", "impl", "ms", "tflops", "peak_gib", "mfu"]
cols = [c for c in cols if any(c in r for r in rows)]
table = [cols] + [[str(r.get(c, "")) for c in cols] for r in rows]
widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
for i, row in enumerate(table):
    print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    if i == 0:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
PYEOF
exit $status
