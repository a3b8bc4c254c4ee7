#!/usr/bin/env bash
# The one GPU script (issue 14): the GPU tests first, then the trainer end to end, then the benchmarks,
# under 8.5 minutes on one H100/H200, each step with its own time limit (cut to what is left), one table at
# the end (the steps' status and every result row). Rows are appended as they are measured, so a
# step that runs out of time keeps what it did.
#   gpu-tests          pytest -m gpu: compiled Triton kernels in bf16/fp16 vs float64, CUDA graphs,
#                      torch.compile, the sync-free step, fused CE, whole training steps
#   trainer            bench/gpu_trainer_check.py: egom2p-tiny demo training on CUDA (bf16, Triton, packed,
#                      background checkpoints, loader workers, validation), then egom2p-eval from it
#   attention          bench/attention.py: triton vs SDPA (boolean mask) vs dense SDPA, 6 EgoM2P mask
#                      patterns, batch 4 and 16, fwd and fwd+bwd (bf16, 12 heads, D 64, N 2048)
#   flex               bench/attention.py --impls flex (FlexAttention compiles per pattern: own step)
#   loss               bench/loss.py: fused vs unfused head + CE (4000 tokens, D 768, V 64000), no_grad too
#   train-<backend>    bench/train_step.py: egom2p-base training step, bf16, batch 4, the released
#                      masking, one budget-wide row per sample: sdpa / triton / triton + fused loss
#   train-packed-*     the same packed as the trainer packs (--layout packed, one row)
#   tokenizer-*        bench/tokenizers.py: the released-size camera tokenizer, encode / decode 128 windows and
#                      one training step of 32, fp32 and bf16 (sdpa vs the original's written-out attention)
#   cosmos-bf16        bench/cosmos.py: the Cosmos video tokenizer through our adapter, clips/s to encode / decode
#                      (bf16, 8 clips of 16 x 256 x 256; the stand-in unless COSMOS_DIR holds the weights)
# Exit 1 when a step failed or ran out of time.
#
# usage: bash bench/gpu.sh [--collect DIR]
#   PYTHON=... picks the interpreter (default python3); BENCH_OUT=dir keeps rows.jsonl and the logs;
#   --collect DIR copies rows.jsonl, the table and the logs (one .tar.gz) to DIR: three files.
# On the lent device machine (a bare image with torch and triton but without this project or
# braceexpand, webdataset or torchdata, and no network), first fetch the missing wheels here with `bash bench/gpu_wheels.sh`,
# then: run(command="bash bench/gpu.sh --collect $OUT", carry=[".whl"], timeout_s=570). When egom2p is
# not installed, the packages' src folders go on PYTHONPATH and .whl/ is installed to a temp folder.
set -uo pipefail
cd "$(dirname "$0")/.."
COLLECT=
if [ "${1:-}" = "--collect" ]; then
  COLLECT=${2:?--collect needs a folder}
elif [ $# -gt 0 ]; then
  echo "usage: bash bench/gpu.sh [--collect DIR]" >&2
  exit 2
fi
PY=${PYTHON:-python3}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/egom2p-bench.XXXXXX)}
mkdir -p "$OUT"
export ROWS=$OUT/rows.jsonl PYTHONUNBUFFERED=1
: >"$ROWS"
unset TRITON_INTERPRET # compiled kernels only (tests/gpu refuses the interpreter)
if ! "$PY" -c "import egom2p.model, egom2p.train.throughput" 2>/dev/null; then
  site=$(mktemp -d /tmp/egom2p-site.XXXXXX)
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl || exit 1
  fi
  PYTHONPATH="$site:$(ls -d "$PWD"/packages/*/src | paste -sd:)${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONPATH
  "$PY" -c "import egom2p.model, egom2p.train.throughput" || {
    echo "egom2p does not import with PYTHONPATH=$PYTHONPATH (missing wheels? bash bench/gpu_wheels.sh)" >&2
    exit 1
  }
fi
TOTAL_S=${GPU_SH_BUDGET_S:-500}
START=$SECONDS
status=0

"$PY" - <<'PYEOF'
import torch
try:
    import triton
    triton_version = triton.__version__
except ImportError:
    triton_version = "not installed"
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"== {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); triton {triton_version}")
PYEOF

step() { # step NAME LIMIT_S CMD... : run with min(LIMIT_S, time left) and record the outcome as a row
  local name=$1 limit=$2
  shift 2
  local left=$((TOTAL_S - (SECONDS - START)))
  local outcome began=$SECONDS
  if [ "$left" -lt 15 ]; then
    outcome="skipped (time budget spent)"
  else
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    case $rc in
      0) outcome=ok ;;
      124 | 137) outcome="timed out after ${limit}s" status=1 ;;
      *) outcome="failed (exit $rc)" status=1 ;;
    esac
  fi
  printf '{"bench": "step", "impl": "%s", "status": "%s", "s": %d}\n' "$name" "$outcome" $((SECONDS - began)) >>"$ROWS"
}

train_step() { # train_step NAME BACKEND [FLAGS...]: one egom2p-base step configuration -> one row
  local name=$1
  shift
  step "$name" 30 "$PY" bench/train_step.py --preset egom2p-base --device cuda --dtype bf16 --batch-size 4 \
    --masking released --warmup 2 --steps 5 --json "$ROWS" --backend "$@"
}

# 1. The GPU tests, in a session of their own: tests/kernels sets TRITON_INTERPRET for its CPU tests.
xdist=()
"$PY" -c "import xdist" 2>/dev/null && xdist=(-n 8 --dist loadgroup)  # a worker per kernel variant group
step gpu-tests 140 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider "${xdist[@]}" packages/egom2p-model/tests \
  --ignore=packages/egom2p-model/tests/kernels

# 2. The trainer and the eval CLI on the GPU, as a user runs them.
step trainer 75 "$PY" bench/gpu_trainer_check.py --steps 400 --json "$ROWS"

# 3. Benchmarks.
step attention 60 "$PY" bench/attention.py --json "$ROWS"
step flex 60 "$PY" bench/attention.py --impls flex --batch 4 --json "$ROWS"
step loss 25 "$PY" bench/loss.py --json "$ROWS"
train_step train-sdpa sdpa
train_step train-triton triton
train_step train-triton-fused triton --fused-loss
train_step train-packed-triton triton --layout packed
train_step train-packed-triton-fused triton --fused-loss --layout packed
step tokenizer-fp32 40 "$PY" bench/tokenizers.py --device cuda --dtype fp32 --repeats 10 --rows "$ROWS"
step tokenizer-bf16 40 "$PY" bench/tokenizers.py --device cuda --dtype bf16 --repeats 10 --rows "$ROWS"
# The Cosmos weights (600 MB) cannot be carried to the offline device machine: COSMOS_DIR names them when present;
# otherwise the stand-in times the adapter's own processing and copies (its rows say so).
step cosmos-bf16 30 "$PY" bench/cosmos.py --device cuda --tokenizer "${COSMOS_DIR:-standin}" --rows "$ROWS"

echo
echo "== results ($((SECONDS - START)) s; rows in $ROWS)"
"$PY" - "$ROWS" <<'PYEOF' | tee "$OUT/table.md"
import json, sys
def table_row(r):  # train_step rows carry their own names: map them onto the table's columns
    if r.get("bench") != "train_step":
        return r
    impl = f"{r['backend']}{' fused-loss' if r['fused_loss'] else ''} {r['layout']}"
    return {"bench": "train_step", "batch": r["batch_size"], "pattern": f"{r['masking']} masking", "mode": "fwd+bwd",
            "impl": impl, "tokens": r["valid_tokens"], "ms": round(1000 * r["step_s"], 1), "tflops": r["achieved_tflops"],
            **{k: r[k] for k in ("valid_tok_s", "mfu_valid", "mfu_computed") if k in r},
            **({"peak_gib": r["peak_mem_gib"]} if "peak_mem_gib" in r else {})}

rows = [table_row(json.loads(line)) for line in open(sys.argv[1]) if line.strip()]
cols = ["bench", "config", "dtype", "batch", "pattern", "tokens", "mode", "impl", "status", "s", "ms", "tflops",
        "peak_gib", "windows_per_s", "clips_per_s", "valid_tok_s", "mfu_valid", "mfu_computed"]
cols = [c for c in cols if any(c in r for r in rows)]
table = [cols] + [[str(r.get(c, "")) for c in cols] for r in rows]
widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
for i, row in enumerate(table):
    print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    if i == 0:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
PYEOF
if [ -n "$COLLECT" ]; then
  mkdir -p "$COLLECT"
  cp "$ROWS" "$COLLECT/rows.jsonl"
  cp "$OUT/table.md" "$COLLECT/table.md"
  tar czf "$COLLECT/logs.tar.gz" -C "$OUT" --exclude rows.jsonl .
fi
exit $status
