#!/usr/bin/env python
"""Training pairs without labels.

A thin shim; the installed command is `reranker-synth`, the code reranker/cli/synth.py.
"""

import sys
from pathlib import Path

# Run from a checkout without installing: the checkout's own package comes first.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reranker.cli.synth import entry, main  # noqa: E402,F401  (main: tests and notebooks call it)

if __name__ == "__main__":
    sys.exit(entry())
