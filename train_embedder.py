#!/usr/bin/env python
"""Fine-tune an embedder (bi-encoder); launch with torchrun for DDP.

A thin shim; the installed command is `reranker-train-embedder`, the code reranker/cli/train_embedder.py.
"""

import sys
from pathlib import Path

# Run from a checkout without installing: the checkout's own package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reranker.cli.train_embedder import entry, main  # noqa: E402,F401  (main: tests and notebooks call it)

if __name__ == "__main__":
    sys.exit(entry())
