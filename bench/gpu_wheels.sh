#!/usr/bin/env bash
# Fetch, on this machine (which reaches the package registry), the wheels bench/gpu.sh needs on the lent
# device machine: its image has torch, triton, numpy, pyyaml, einops, safetensors, tqdm and pytest-xdist
# but not braceexpand and webdataset (egom2p-core's tar engine) or torchdata (the training loader's StatefulDataLoader), and it cannot
# download. The wheels land in .whl/ (git-ignored); carry it:
#   run(command="bash bench/gpu.sh --collect $OUT", carry=[".whl"], timeout_s=570)
# usage: bash bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
# Pure-Python wheels: any Python 3 takes them, so no platform flags are needed.
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "braceexpand==0.1.7" "webdataset==1.0.2" "torchdata==0.11.0"
ls -l .whl
