#!/usr/bin/env python
"""Fine-tune a reranker; launch with torchrun for DDP.

A thin shim; the installed command is `reranker-train`, the code reranker/cli/train.py.
"""

import sys
from pathlib import Path

# Run from a checkout without installing: the checkout's own package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reranker.cli.train import entry, main  # noqa: E402,F401  (main: tests and notebooks call it)

if __name__ == "__main__":
    sys.exit(entry())
