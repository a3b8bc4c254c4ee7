"""egom2p-model imports, builds, loads and runs without triton (a CPU install has none): simulated by
making `import triton` fail in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["triton"] = None  # `import triton` now raises ImportError, as without the package
    import torch
    from egom2p.core.enums import AttnBackend
    from egom2p.model import EgoM2P
    from egom2p.model.attention import resolve_backend
    from egom2p.model.kernels import fused_linear_cross_entropy
    from model_helpers import random_batch, tiny_config

    model = EgoM2P(tiny_config(attn_backend="auto", fused_loss=True))
    assert model.attn_backend is AttnBackend.SDPA
    # on CUDA, auto would pick the kernel; without triton it falls back to sdpa
    assert resolve_backend("auto", torch.device("cuda")) is AttnBackend.SDPA
    model.save_pretrained(sys.argv[1])
    loaded = EgoM2P.from_pretrained(sys.argv[1])
    with torch.no_grad():
        loss = loaded(random_batch(loaded.config)).loss
    assert torch.isfinite(loss)
    try:
        EgoM2P(tiny_config(attn_backend="triton"))(random_batch(loaded.config))
    except RuntimeError as err:
        assert "attention backend 'triton' needs triton" in str(err), err
    else:
        raise AssertionError("the triton backend ran without triton")
    assert sys.modules.get("triton") is None
    print("ok")
""")


def test_model_runs_without_triton(tmp_path):
    tests = Path(__file__).parent
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ckpt")], cwd=tests, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(tests)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
