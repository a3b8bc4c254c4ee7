"""The offline sm_90 compile check of the Triton kernels (ci/kernel_compile_check.py, a development tool outside
the model wheel, so its test lives here and not in the model package's own tests).

The whole check runs here, on the CPU, in a subprocess without ``TRITON_INTERPRET`` (the model's kernel tests
set it for the interpreter): every kernel variant compiles for the H100 with the Triton wheel's ptxas, without
spills and with pipelined loads. About a minute on two cores.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "ci" / "kernel_compile_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("kernel_compile_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


compile_check = _load_script()
Variant, problems = compile_check.Variant, compile_check.problems


def test_every_kernel_variant_compiles_for_sm90_without_spills_and_with_async_copies():
    pytest.importorskip("triton")  # without it there is no kernel to check (ci/kernel_compile_check.py fails then)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--jobs", "2"],
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    report = done.stdout + done.stderr[-3000:]
    print(report)  # the table: registers, spills, shared memory per variant (pytest -s shows it)
    assert done.returncode == 0, report
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and line.rstrip().endswith("| ok |")]
    assert len(rows) == len(compile_check.variants()), report
    assert "ptxas" in done.stdout and "target sm_90" in done.stdout


def _row(**overrides):
    row = {"variant": Variant("fwd", "bf16", 64, True), "registers": 200, "spill_bytes": 0, "shared_kb": 64.0,
           "async_copies": 6, "wgmma": 2, "warps": 4, "stages": 3, "seconds": 1.0}  # fmt: skip
    return {**row, **overrides}


def test_the_check_fails_on_spills_unpipelined_loads_and_too_much_shared_memory():
    assert problems(_row()) == []
    assert problems(_row(spill_bytes=16)) == ["16 bytes of register spills"]
    assert problems(_row(async_copies=0)) == ["no async copies: the main loop's loads are not pipelined"]
    assert problems(_row(shared_kb=256.0)) == ["256 KB of shared memory > 227 KB"]
    assert problems(_row(registers=None)) == ["no ptxas resource report"]
    assert problems({"variant": Variant("dq", "fp16", 128), "error": "CompilationError: x"}) == ["CompilationError: x"]
    # The CE row kernel streams through registers: no async copies by design.
    assert problems(_row(variant=Variant("ce_grad", "bf16"), async_copies=0)) == []


def test_the_check_says_so_when_it_cannot_run(monkeypatch, capsys):
    def no_ptxas():
        raise FileNotFoundError("the Triton wheel ships no ptxas in /x: the offline sm_90 compile check cannot run")

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(compile_check, "bundled_ptxas", no_ptxas)
    assert compile_check.run(jobs=1) == 2
    assert "ships no ptxas" in capsys.readouterr().out
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert compile_check.run(jobs=1) == 2
    assert "TRITON_INTERPRET is set" in capsys.readouterr().out
