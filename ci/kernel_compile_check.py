"""CI: the offline sm_90 (H100) compile check of every Triton kernel variant of egom2p-model; no GPU needed.

``python ci/kernel_compile_check.py`` compiles each kernel with ``triton.compile`` for
``GPUTarget("cuda", 90, 32)`` (H100), with the launch configs the launchers use and the ptxas that
ships in the Triton wheel, and fails (exit 1) when a variant does not compile, spills registers,
needs more shared memory than an H100 block may have (227 KB), or (attention kernels) has no async
copies in its IR, i.e. the tile loads of its main loop are not pipelined. It prints one row per
variant: registers, spill bytes, shared memory, async copies, wgmma ops and compile time. The CE
row kernel streams one row through registers (no dots, no shared memory; occupancy hides the load
latency), so it has no async copies by design and is checked for compiling and spills only. Exit 2: this environment cannot run the check (the Triton wheel ships no ptxas for
sm_90, or the interpreter is on); the message says which.

Variants: forward, dK/dV and dQ (bf16, fp16 and fp32 = TF32 dots x head dims 64 and 128 x with and
without segments; all with key and query lengths), the backward's row-delta kernel, and the fused CE row kernel
(bf16, fp16, fp32; loss only and loss + in-place gradient). Arguments are specialised as a real
launch specialises them: 16-byte aligned pointers and strides divisible by 16. The launch configs come from
``egom2p.model.kernels.flash_attention`` and ``_ce_kernel``, so the check follows the kernels; the script itself
is a development tool and does not ship in the wheel.

usage: python ci/kernel_compile_check.py [--jobs N] [--only fwd dkdv dq delta ce ce_grad]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TARGET_ARCH = 90
MAX_SHARED_BYTES = 232448  # sm_90: 227 KB of shared memory per block (opt-in maximum)
_TRITON_DTYPES = {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}


@dataclass(frozen=True)
class Variant:
    """One kernel compile: which kernel, its input dtype, head dim (0: n/a) and mask kind."""

    kernel: str  # fwd | dkdv | dq | delta | ce | ce_grad
    dtype: str  # bf16 | fp16 | fp32
    head_dim: int = 0
    segments: bool = False

    @property
    def looped(self) -> bool:
        """Attention kernels whose main loop loads tiles for dots: those loads must be async copies."""
        return self.kernel in ("fwd", "dkdv", "dq")

    def label(self) -> str:
        seg = "seg" if self.segments else "-"
        return f"{self.kernel:8s} {self.dtype:4s} {self.head_dim or '-':>3} {seg:3s}"


def variants() -> list[Variant]:
    """Every variant the check compiles (see the module docstring)."""
    out = []
    for kernel in ("fwd", "dkdv", "dq"):
        for dtype in ("bf16", "fp16", "fp32"):
            for head_dim in (64, 128):
                for segments in (False, True):
                    out.append(Variant(kernel, dtype, head_dim, segments))
    out += [Variant("delta", dtype, head_dim) for dtype in ("bf16", "fp16") for head_dim in (64, 128)]
    out += [Variant(kernel, dtype) for kernel in ("ce", "ce_grad") for dtype in ("bf16", "fp16", "fp32")]
    return out


def bundled_ptxas() -> Path:
    """The ptxas for sm_90 in the Triton wheel (``triton/backends/nvidia/bin``; Triton >= 3.5 names the
    CUDA 13 one used for sm_90+ ``ptxas-blackwell``)."""
    import triton

    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    for name in ("ptxas-blackwell", "ptxas"):
        if (bin_dir / name).is_file():
            return bin_dir / name
    raise FileNotFoundError(f"the Triton wheel ships no ptxas in {bin_dir}: the offline sm_{TARGET_ARCH} "
                            "compile check cannot run (install a linux x86_64 triton wheel)")  # fmt: skip


def _signature(fn, pointers: dict[str, str], floats: tuple[str, ...], constexprs: dict) -> tuple[dict, dict]:
    """Triton signature and attrs of ``fn``: pointer dtypes, fp32 scalars, i32 ints (strides divisible by 16)."""
    signature, attrs = {}, {}
    for index, name in enumerate(fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in pointers:
            signature[name] = pointers[name]
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif name in floats:
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
            if name.startswith("stride"):
                attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, attrs


def _source_and_options(v: Variant):
    """(kernel, signature, constexprs, attrs, launch options) of one variant, as the launchers build them."""
    import torch
    from egom2p.model.kernels import _attention_kernels, _ce_kernel
    from egom2p.model.kernels.flash_attention import dot_precision, head_dim_block, kernel_configs

    dt = _TRITON_DTYPES[v.dtype]
    if v.kernel in ("ce", "ce_grad"):
        fn = _ce_kernel.jit_ce_kernel(False)
        constexprs = {"WRITE_GRAD": v.kernel == "ce_grad", "BLOCK_V": _ce_kernel.CE_BLOCK_V}
        pointers = {"LOGITS": f"*{dt}", "TARGETS": "*i64", "LOSS": "*fp32"}
        signature, attrs = _signature(fn, pointers, (), constexprs)
        return fn, signature, constexprs, attrs, {"num_warps": _ce_kernel.CE_NUM_WARPS}
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[v.dtype]
    fn = _attention_kernels.jit_kernels(False)[v.kernel]
    cfg = kernel_configs(v.head_dim, torch_dtype, cuda=True)[v.kernel]
    shape = {"HEAD_DIM": v.head_dim, "BLOCK_D": head_dim_block(v.head_dim)}
    pointers = {name: f"*{dt}" for name in ("Q", "K", "V", "Out", "DO", "DQ", "DK", "DV")}
    pointers.update({name: "*fp32" for name in ("LSE", "DELTA")})
    pointers.update({name: "*i32" for name in ("KEY_LEN", "QUERY_LEN", "QSEG", "KSEG", "BOUNDS")})
    if v.kernel == "delta":
        constexprs = {**shape, "BLOCK_M": cfg.block_m}
    else:
        constexprs = {
            "HAS_LEN": True, "HAS_QLEN": True, "HAS_SEG": v.segments, **shape,
            "BLOCK_M": cfg.block_m, "BLOCK_N": cfg.block_n, "PRECISION": dot_precision(torch_dtype, cuda=True),
        }  # fmt: skip
    signature, attrs = _signature(fn, pointers, ("scale_log2", "softmax_scale"), constexprs)
    options = {"num_warps": cfg.num_warps} if v.kernel == "delta" else {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
    return fn, signature, constexprs, attrs, options


def compile_variant(v: Variant) -> dict:
    """Compile one variant for sm_90 and read its resources from ptxas's report and the IR."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn, signature, constexprs, attrs, options = _source_and_options(v)
    log = io.StringIO()
    knobs.nvidia.dump_ptxas_log = True  # Triton prints ptxas -v's report: registers, spills
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs),
                                      target=GPUTarget("cuda", TARGET_ARCH, 32), options=options)  # fmt: skip
    except Exception as err:  # reported per variant; the check fails
        return {"variant": v, "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"}
    seconds = time.perf_counter() - start
    report = log.getvalue()
    regs = re.search(r"Used (\d+) registers", report)
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", report)]
    ttgir = compiled.asm["ttgir"]
    return {
        "variant": v,
        "registers": int(regs.group(1)) if regs else None,
        "spill_bytes": sum(spills) if spills else None,
        "shared_kb": compiled.metadata.shared / 1024,
        "async_copies": len(re.findall(r"async_copy_global_to_local|async_tma_copy_global_to_local", ttgir)),
        "wgmma": ttgir.count("warp_group_dot "),
        "warps": options["num_warps"],
        "stages": options.get("num_stages", "-"),
        "seconds": seconds,
    }


def problems(row: dict) -> list[str]:
    """Why a compiled variant fails the check (empty: it passes)."""
    if "error" in row:
        return [row["error"]]
    found = []
    if row["registers"] is None or row["spill_bytes"] is None:
        found.append("no ptxas resource report")
    elif row["spill_bytes"]:
        found.append(f"{row['spill_bytes']} bytes of register spills")
    if row["shared_kb"] * 1024 > MAX_SHARED_BYTES:
        found.append(f"{row['shared_kb']:.0f} KB of shared memory > {MAX_SHARED_BYTES // 1024} KB")
    if row["variant"].looped and not row["async_copies"]:
        found.append("no async copies: the main loop's loads are not pipelined")
    return found


def format_row(row: dict) -> str:
    """One table line: variant, launch config, resources, compile time and verdict."""
    v = row["variant"]
    if "error" in row:
        return f"| {v.label()} | compile error: {row['error']} |"
    verdict = "; ".join(problems(row)) or "ok"
    return (f"| {v.label()} | {row['warps']}w {row['stages']}s | {row['registers']:>3} | {row['spill_bytes']:>5} "
            f"| {row['shared_kb']:6.1f} | {row['async_copies']:>3} | {row['wgmma']:>2} | {row['seconds']:5.1f} | {verdict} |")  # fmt: skip


HEADER = ("| kernel   dtype   D seg | config | regs | spill B | smem KB | async | wgmma | compile s | verdict |\n"
          "|---|---|---|---|---|---|---|---|---|")  # fmt: skip


def _init_worker(cache_dir: str, ptxas: str) -> None:
    # A fresh cache (so ptxas runs and reports) and the wheel's ptxas, in every worker process.
    os.environ["TRITON_CACHE_DIR"] = cache_dir
    os.environ["TRITON_PTXAS_BLACKWELL_PATH"] = ptxas
    os.environ["TRITON_PTXAS_PATH"] = ptxas
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")


def run(jobs: int, selected: list[Variant] | None = None) -> int:
    """Compile the variants in ``jobs`` processes, print the table; 0 if all pass, 1 if not, 2 if it cannot run."""
    if os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes"):
        print("compile check: TRITON_INTERPRET is set; unset it (the check compiles, it does not interpret)")
        return 2
    try:
        ptxas = bundled_ptxas()
    except ImportError:
        print("compile check: triton is not installed (pip install 'egom2p-model[triton]'): nothing can be compiled")
        return 2
    except FileNotFoundError as err:
        print(f"compile check: {err}")
        return 2
    import triton

    version = os.popen(f"'{ptxas}' --version").read().strip().splitlines()[-1]
    print(f"triton {triton.__version__}, target sm_{TARGET_ARCH}, ptxas {ptxas} ({version})")
    todo = selected or variants()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="egom2p-compile-check-") as cache:
        with concurrent.futures.ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(cache, str(ptxas))) as pool:
            rows = list(pool.map(compile_variant, todo))
    print(HEADER)
    for row in rows:
        print(format_row(row))
    failed = [row for row in rows if problems(row)]
    print(f"{len(rows) - len(failed)}/{len(rows)} variants pass; wall time {time.perf_counter() - started:.0f} s with {jobs} jobs")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--jobs N`` (default: CPU count), ``--only KERNEL ...`` to compile a subset."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compile processes (default: CPU count)")
    p.add_argument("--only", nargs="+", choices=("fwd", "dkdv", "dq", "delta", "ce", "ce_grad"), help="kernels to compile")
    opts = p.parse_args(argv)
    selected = [v for v in variants() if v.kernel in opts.only] if opts.only else None
    return run(max(1, opts.jobs), selected)


if __name__ == "__main__":
    sys.exit(main())
