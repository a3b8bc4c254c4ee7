#!/usr/bin/env bash
# Per-package isolation check: build each wheel, install it with only its declared dependencies
# (plus the test tools) into a fresh virtual environment, prove the packages it must not pull in
# are absent, and run that package's own tests there. This is what proves that
# `pip install egom2p-model` alone gives weights and logits (no sampler: egom2p-generate adds it).
#
# usage: bash ci/isolation.sh [--stage prepare|check] [core|data|model|generate|train|tokenizers ...]   (default: all six)
#   --stage prepare: only build the wheels and make the environments (.ci/run starts this beside the whole-repo suite:
#                    it is mostly pip unpacking wheels onto the disk, half of the check's time);
#   --stage check:   only the checks, in the environments a prepare stage made in the same ISOLATION_DIR;
#   no --stage:      both, one after the other.
set -euo pipefail
STAGE=all
if [ "${1:-}" = --stage ]; then STAGE=${2:-}; shift 2 || shift; fi
case $STAGE in all|prepare|check) ;; *) echo "isolation: --stage must be prepare or check, not '$STAGE'" >&2; exit 2;; esac
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ "$STAGE" = check ] && [ -z "${ISOLATION_DIR:-}" ]; then
  echo "isolation: --stage check needs ISOLATION_DIR, the folder its prepare stage used" >&2; exit 2
fi
WORK=${ISOLATION_DIR:-$(mktemp -d /tmp/egom2p-isolation.XXXXXX)}
DIST=$WORK/dist
# PIP_NO_COMPILE: byte-compiling all of torch at install cost 30 s of CPU per environment; the tests compile what they
# import, once.
export PIP_CONSTRAINT=$ROOT/ci/constraints-cpu.txt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_COMPILE=1 WANDB_MODE=disabled
PACKAGES=("$@")
[ ${#PACKAGES[@]} -eq 0 ] && PACKAGES=(core data model generate train tokenizers)

echo "== sibling requirements in lockstep"
python3 ci/check_lockstep.py

# Which sibling wheels each package needs (its own and its siblings', given as files so nothing
# resolves to an index), and which distributions must NOT be importable. core gets its [torch]
# extra (the batch validator's and checkpoint files' tests need torch and safetensors), train its [viz]
# extra (plot).
declare -A NEEDS=( [core]="core" [data]="core data" [model]="core model" [generate]="core model tokenizers generate"
                   [train]="core data model tokenizers train" [tokenizers]="core tokenizers" )
declare -A FORBIDDEN=(
  [core]="egom2p.data egom2p.model egom2p.generate egom2p.train boto3 wandb einops huggingface_hub"
  [data]="egom2p.model egom2p.generate egom2p.train wandb boto3 einops safetensors"
  [model]="egom2p.data egom2p.generate egom2p.train boto3 wandb triton huggingface_hub"
  [generate]="egom2p.data egom2p.train boto3 wandb triton huggingface_hub matplotlib"
  [train]="egom2p.generate boto3"
  [tokenizers]="egom2p.data egom2p.model egom2p.generate egom2p.train boto3 wandb triton huggingface_hub matplotlib"
)
# webdataset is egom2p-core's tar engine, so every environment has it; it is imported when a tar is first read or
# written (it imports torch where installed), never by importing these modules.
declare -A WITHOUT_WEBDATASET=( [core]="egom2p.core egom2p.core.shards" [data]="egom2p.data.masking" )

prepare() {
  echo "== building wheels into $DIST"
  # A reused ISOLATION_DIR starts over: an old wheel or environment of the same version would be kept by pip
  # ("already satisfied") and the check would test yesterday's code.
  rm -rf "$DIST" "$WORK"/venv-*
  mkdir -p "$DIST"
  for pkg in core data model generate train tokenizers; do
    (cd "packages/egom2p-$pkg" && python3 -m hatch build -t wheel "$DIST" >/dev/null)
  done
  ls "$DIST"

  # Every package's environment is made at once (pip mostly unpacks wheels and waits on the disk): the whole check
  # took 5.3 minutes on 2 cores instead of 7.2 with one environment after another. The tests run one package at a time.
  make_env() {
    local pkg=$1 venv=$WORK/venv-$1 dep
    python3 -m venv "$venv"
    local wheels=()
    for dep in ${NEEDS[$pkg]}; do wheels+=("$(ls "$DIST"/egom2p_"$dep"-*.whl)"); done
    [ "$pkg" = core ] && wheels[0]="${wheels[0]}[torch]"
    [ "$pkg" = train ] && wheels[-1]="${wheels[-1]}[viz,lora]"  # the plot tests need matplotlib, the LoRA tests peft
    # PyAV + Pillow (egom2p-tokenizers[video]): the video tests of tokenizers and generate run here too.
    if [ "$pkg" = tokenizers ] || [ "$pkg" = generate ]; then
      for i in "${!wheels[@]}"; do [[ ${wheels[$i]} == */egom2p_tokenizers-* ]] && wheels[$i]="${wheels[$i]}[video]"; done
    fi
    # --find-links lets pip resolve the pinned sibling egom2p-* requirements to the wheels just built.
    "$venv/bin/python" -m pip install -q --find-links "$DIST" "${wheels[@]}" -r ci/requirements-test.txt
  }
  echo "== fresh environments for: ${PACKAGES[*]}"
  pids=()
  for pkg in "${PACKAGES[@]}"; do
    make_env "$pkg" >"$WORK/env-$pkg.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!PACKAGES[@]}"; do
    if ! wait "${pids[$i]}"; then
      echo "isolation: the environment of egom2p-${PACKAGES[$i]} could not be made:"; cat "$WORK/env-${PACKAGES[$i]}.log"
      exit 1
    fi
  done
}
if [ "$STAGE" != check ]; then prepare; fi
if [ "$STAGE" = prepare ]; then exit 0; fi
for pkg in "${PACKAGES[@]}"; do
  [ -x "$WORK/venv-$pkg/bin/python" ] || { echo "isolation: no environment of egom2p-$pkg in $WORK (run --stage prepare)"; exit 1; }
done

status=0
for pkg in "${PACKAGES[@]}"; do
  echo "== egom2p-$pkg: its own environment"
  venv=$WORK/venv-$pkg
  echo "-- forbidden modules must be absent: ${FORBIDDEN[$pkg]}"
  "$venv/bin/python" - "${FORBIDDEN[$pkg]}" <<'PY'
import importlib.util, sys
present = [m for m in sys.argv[1].split() if importlib.util.find_spec(m) is not None]
if present:
    sys.exit(f"isolation: modules that the package does not declare are installed: {present}")
print("ok: none present")
PY
  if [ -n "${WITHOUT_WEBDATASET[$pkg]:-}" ]; then
    echo "-- importing ${WITHOUT_WEBDATASET[$pkg]} does not import webdataset"
    "$venv/bin/python" - ${WITHOUT_WEBDATASET[$pkg]} <<'PY'
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
if "webdataset" in sys.modules:
    sys.exit(f"isolation: importing {' '.join(sys.argv[1:])} imported webdataset")
print("ok: not imported")
PY
  fi
  tests=$ROOT/packages/egom2p-$pkg/tests
  # Run from an empty directory so nothing from the checkout shadows the installed wheel. Tests marked long (ten
  # SIGTERMs in a row, kills and resumes, two-process gloo runs, torch.compile) repeat behaviour the whole-repo suite
  # proves on the same code; their imports and code paths are the ones the package's other tests take here.
  if ! (cd "$WORK" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 -m "not long" "$tests"); then
    echo "isolation: egom2p-$pkg tests FAILED in its own environment"; status=1
  fi
done

# A step checkpoint written by the trainer loads with egom2p-model alone, and the egom2p-generate and
# egom2p-eval CLIs run on it (and on the run directory, which names its newest step).
if [ -d "$WORK/venv-train" ] && [ -d "$WORK/venv-model" ] && [ -d "$WORK/venv-generate" ]; then
  echo "== trainer step checkpoint -> egom2p-model alone -> egom2p-generate / egom2p-eval CLIs"
  port=$WORK/portability; rm -rf "$port"; mkdir -p "$port"
  # The demo as a wheel user runs it, every config by the name its wheel ships it under: demo-cpu (egom2p-train) names
  # the data config demo and the alphas demo_rgb2all_all2all (egom2p-data) and the modalities tiny (egom2p-core); its
  # relative paths (data/demo/..., runs/...) resolve against the working directory. 8 shards per dataset, as it reads.
  (cd "$port" && "$WORK/venv-train/bin/egom2p-data" synth --out data/demo --train-samples 256 --val-samples 8 \
      --samples-per-shard 32 >/dev/null)
  (cd "$port" && "$WORK/venv-train/bin/egom2p-train" --config demo-cpu output_dir=run schedule.max_steps=3 \
      loader.batch_size=4 >"$port/train.log" 2>&1) \
    || { echo "isolation: the trainer failed to write a checkpoint"; tail -20 "$port/train.log"; status=1; }
  step=$(ls -d "$port"/run/checkpoints/step-* 2>/dev/null | sort -t- -k2 -n | tail -1)
  echo "-- newest step directory: ${step:-none}"
  "$WORK/venv-train/bin/python" -c "
import numpy as np; from egom2p.data.synth import generate_samples
np.savez('$port/rgb.npz', generate_samples(1, seed=5)['rgb'][0])"
  "$WORK/venv-model/bin/python" - "$step" <<'PY' || status=1
import sys, torch
from egom2p.model import EgoM2P
model = EgoM2P.from_pretrained(sys.argv[1]).eval()
g = torch.Generator().manual_seed(0)
batch = {name: {"tensor": torch.randint(0, spec.vocab_size, (2, spec.num_tokens), generator=g),
                "input_mask": torch.rand(2, spec.num_tokens, generator=g) < 0.5,
                "target_mask": torch.rand(2, spec.num_tokens, generator=g) < 0.5} for name, spec in model.modalities.items()}
for m in batch.values():
    m["target_mask"] |= ~m["input_mask"]  # inputs are never targets
with torch.no_grad():
    out = model(batch, num_encoder_tokens=16, num_decoder_tokens=16)
assert torch.isfinite(out.loss), out.loss
print(f"ok: {sys.argv[1]} loads with egom2p-model alone (loss {out.loss.item():.3f})")
PY
  if "$WORK/venv-generate/bin/egom2p-generate" --checkpoint "$step" --cond "tok_rgb=$port/rgb.npz" \
      --target tok_depth --target tok_cam --steps 2 --out "$port/gen.npz"; then
    ls "$port"/gen_tok_depth.npz "$port"/gen_tok_cam.npz || status=1
  else
    echo "isolation: egom2p-generate failed on the trainer's step directory"; status=1
  fi
  "$WORK/venv-generate/bin/egom2p-eval" --checkpoint "$port/run" --task rgb2cam \
      --data "$port/data/demo/val/[cam,depth,gaze,rgb]/synth_full/shard-000000.tar" \
    || { echo "isolation: egom2p-eval failed on the run directory"; status=1; }
fi
exit $status
