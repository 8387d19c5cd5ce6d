"""Content hashes for cache keys and stage stamps: one definition, so two caches never disagree on 'the same'."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20


def digest_of(obj, length: int | None = None) -> str:
    """sha256 of a JSON-able value (keys sorted; other objects by str), cut to `length` hex digits."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def key_of(*parts) -> str:
    """The key of a stage or a cache entry made of several parts."""
    return digest_of(list(parts), 20)


def file_digest(path: str | os.PathLike, length: int | None = None) -> str:
    """sha256 of a file's bytes, read in chunks (a corpus may be larger than memory allows twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def texts_digest(texts: Iterable[str], seed: bytes = b"") -> str:
    """sha256 of a sequence of texts, each ended by a NUL so that ('ab', 'c') and ('a', 'bc') differ."""
    digest = hashlib.sha256(seed)
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def file_key(path: str | os.PathLike) -> list:
    """A cheap stand-in for a digest of a large input: where it is, its size and modification time."""
    path = Path(path)
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def sampled_file_digest(path: str | os.PathLike, samples: int = 16, chunk: int = 1 << 16) -> str:
    """sha256 of a file's size and `samples` evenly spaced chunks of its bytes (the first and the last included).

    A stand-in for a full digest of a large weight file that survives a copy (unlike size and mtime): two different
    trainings of one architecture differ in nearly every tensor, so they differ in the sampled bytes too. Reads at
    most samples x chunk bytes, whatever the file's size.
    """
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    last = max(size - chunk, 0)
    with open(path, "rb") as handle:
        for offset in sorted({last * i // max(samples - 1, 1) for i in range(samples)}):
            handle.seek(offset)
            digest.update(handle.read(chunk))
    return digest.hexdigest()
