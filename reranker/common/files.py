"""Reading user text files (UTF-8 with detected fallback) and writing outputs atomically."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reranker.common.errors import DataError

logger = logging.getLogger(__name__)


def read_text(path: str | os.PathLike) -> str:
    """Read a file as UTF-8; if that fails, detect the encoding with chardet and warn which one was used."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")  # -sig: a BOM written by Windows editors is not part of the first key
    except UnicodeDecodeError as utf8_error:
        import chardet

        guess = chardet.detect(raw)
        encoding = guess.get("encoding")
        if not encoding:
            raise DataError(str(path), f"not UTF-8 ({utf8_error}) and its encoding could not be detected") from None
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as error:
            raise DataError(str(path), f"not UTF-8 and not decodable as detected {encoding}: {error}") from None
        logger.warning(
            "%s is not UTF-8; decoded it as %s (chardet confidence %.2f). Re-save it as UTF-8 to silence this.",
            path, encoding, guess.get("confidence") or 0.0,
        )
        return text


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a bad line raises DataError naming it."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(str(path), f"malformed JSON ({error.msg} at column {error.colno})", line=number) from None
        if not isinstance(obj, dict):
            raise DataError(str(path), f"expected a JSON object, got {type(obj).__name__}", line=number)
        yield number, obj


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temporary file beside `path` and rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
