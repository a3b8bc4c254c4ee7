#!/usr/bin/env bash
# Per-package isolation check: build each wheel, install it with only its declared dependencies
# (plus the test tools) into a fresh virtual environment, prove the packages it must not pull in
# are absent, and run that package's own tests there. This is what proves that
# `pip install egom2p-model` alone is enough for inference.
#
# usage: bash ci/isolation.sh [data|model|generate|train ...]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${ISOLATION_DIR:-$(mktemp -d /tmp/egom2p-isolation.XXXXXX)}
DIST=$WORK/dist
export PIP_CONSTRAINT=$ROOT/ci/constraints-cpu.txt PIP_DISABLE_PIP_VERSION_CHECK=1 WANDB_MODE=disabled
PACKAGES=("$@")
[ ${#PACKAGES[@]} -eq 0 ] && PACKAGES=(data model generate train)

# Which sibling wheels each package needs, and which distributions must NOT be importable.
declare -A NEEDS=( [data]="data" [model]="model" [generate]="model generate" [train]="data model generate train" )
declare -A FORBIDDEN=(
  [data]="egom2p.model egom2p.generate egom2p.train wandb boto3"
  [model]="egom2p.data egom2p.generate egom2p.train webdataset boto3 wandb yaml"
  [generate]="egom2p.data egom2p.train webdataset boto3 wandb yaml"
  [train]="boto3"
)

echo "== building wheels into $DIST"
mkdir -p "$DIST"
for pkg in data model generate train; do
  (cd "packages/egom2p-$pkg" && python3 -m hatch build -t wheel "$DIST" >/dev/null)
done
ls "$DIST"

status=0
for pkg in "${PACKAGES[@]}"; do
  echo "== egom2p-$pkg: fresh environment"
  venv=$WORK/venv-$pkg
  python3 -m venv "$venv"
  wheels=()
  for dep in ${NEEDS[$pkg]}; do wheels+=("$DIST"/egom2p_"$dep"-*.whl); done
  # --find-links lets pip resolve sibling egom2p-* requirements to the wheels just built.
  "$venv/bin/python" -m pip install -q --find-links "$DIST" "${wheels[@]}" -r ci/requirements-test.txt
  echo "-- forbidden modules must be absent: ${FORBIDDEN[$pkg]}"
  "$venv/bin/python" - "${FORBIDDEN[$pkg]}" <<'PY'
import importlib.util, sys
present = [m for m in sys.argv[1].split() if importlib.util.find_spec(m) is not None]
if present:
    sys.exit(f"isolation: modules that the package does not declare are installed: {present}")
print("ok: none present")
PY
  tests=$ROOT/packages/egom2p-$pkg/tests
  # Run from an empty directory so nothing from the checkout shadows the installed wheel.
  if ! (cd "$WORK" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 "$tests"); then
    echo "isolation: egom2p-$pkg tests FAILED in its own environment"; status=1
  fi
done
exit $status
