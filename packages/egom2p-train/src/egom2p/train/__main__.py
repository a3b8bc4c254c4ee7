"""``python -m egom2p.train`` (what torchrun launches)."""

import sys

from egom2p.train.cli import main

sys.exit(main())
