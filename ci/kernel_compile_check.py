"""CI: compile every Triton kernel variant of egom2p-model for sm_90 (H100) on a CPU-only machine.

No GPU needed: ``triton.compile`` for ``GPUTarget("cuda", 90, 32)`` with the ptxas that ships in the
Triton wheel. Fails when a variant does not compile, spills registers, exceeds the H100's shared
memory, or (attention kernels) has no async copies (its loads are not pipelined); prints registers,
spills, shared memory and compile time per variant. Exit 2 when the check cannot run here (no
ptxas in the Triton wheel, or TRITON_INTERPRET set). The logic and the variant list live next to the
kernels' launch configs, in ``egom2p.model.kernels.compile_check``.

usage: python ci/kernel_compile_check.py [--jobs N] [--only fwd dkdv dq delta ce ce_grad]
"""

import sys

from egom2p.model.kernels.compile_check import main

if __name__ == "__main__":
    sys.exit(main())
