#!/usr/bin/env python
"""Mine hard negatives.

A thin shim; the installed command is `reranker-mine`, the code reranker/cli/mine.py.
"""

import sys
from pathlib import Path

# Run from a checkout without installing: the checkout's own package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reranker.cli.mine import entry, main  # noqa: E402,F401  (main: tests and notebooks call it)

if __name__ == "__main__":
    sys.exit(entry())
