#!/usr/bin/env python
"""Evaluate rerankers.

A thin shim; the installed command is `reranker-eval`, the code reranker/cli/eval.py.
"""

import sys
from pathlib import Path

# Run from a checkout without installing: the checkout's own package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reranker.cli.eval import entry, main  # noqa: E402,F401  (main: tests and notebooks call it)

if __name__ == "__main__":
    sys.exit(entry())
