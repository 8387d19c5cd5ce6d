"""Text helpers shared by mining and synthesis: the key two passages are 'the same' under, and random spans."""

from __future__ import annotations

import re

import numpy as np

_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """The key two passages are 'the same' under: case and whitespace ignored."""
    return _SPACES.sub(" ", text).strip().lower()


def random_span(words: list[str], low: int, high: int, rng: np.random.Generator) -> str:
    """A span of low..high words (fewer when the text is shorter) at a random start."""
    length = int(rng.integers(low, min(high, len(words)) + 1)) if low <= len(words) else len(words)
    start = int(rng.integers(0, len(words) - length + 1))
    return " ".join(words[start:start + length])
