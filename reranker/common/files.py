"""Reading user text files as streams of lines (UTF-8, else a named or confidently detected encoding) and writing
outputs atomically."""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from reranker.common.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


# chardet's confidence below which its guess is not used. On short single-byte text it is low even when right
# (0.03 to 0.2 for German or French latin-1 with chardet 7) and a wrong guess scored the same (a German latin-1
# file came out as MacTurkish at 0.04): no floor tells right from wrong there, so rather than train on mojibake
# we stop and ask. What chardet is sure of (a BOM, UTF-16, long Shift_JIS or GB18030 text) scores above 0.5.
CONFIDENCE_FLOOR = 0.5

_named_encoding: str | None = None  # set by the commands' --encoding through set_encoding

# Files are read in chunks of this size, so memory stays flat however large the file is.
_CHUNK = 1 << 18
# The encoding detector sees at most this many bytes, taken where the file stops being UTF-8.
_SAMPLE = 1 << 20


def set_encoding(name: str | None) -> None:
    """Name the encoding of the user's files that are not UTF-8 (a command's --encoding); None, the default, guesses.

    Process-wide: every reader of this module uses it. A file that is valid UTF-8 is still read as UTF-8, so a
    UTF-8 corpus and a latin-1 training file can be given to one command. An unknown name is a ConfigError.
    """
    global _named_encoding
    if name is not None:
        try:
            name = codecs.lookup(name).name
        except LookupError:
            raise ConfigError(f"unknown encoding {name!r} (--encoding takes a Python codec name such as latin-1, "
                              "cp1252 or utf-16)") from None
    _named_encoding = name


def _first_non_utf8_byte(path: Path) -> int | None:
    """Offset of the first byte that is not valid UTF-8, or None for a UTF-8 file (a streamed pass, no copy kept)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous chunk's end
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                return max(0, offset - pending + error.start)
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return offset
    return None


def _detect_encoding(path: Path, bad_offset: int) -> str:
    """Guess a non-UTF-8 file's encoding from a bounded sample around its first non-UTF-8 byte, so a file whose
    first megabytes are ASCII is still judged on its accented text. Unsure guesses stop with a DataError."""
    import chardet

    start = 0 if bad_offset < _SAMPLE // 2 else bad_offset - _SAMPLE // 2
    with open(path, "rb") as handle:
        handle.seek(start)
        sample = handle.read(_SAMPLE)
    if start:
        sample = sample[sample.find(b"\n") + 1:]  # begin on a line
    guess = chardet.detect(sample)
    encoding, confidence = guess.get("encoding"), guess.get("confidence") or 0.0
    ask = "name its encoding with --encoding (e.g. --encoding latin-1 or cp1252) or re-save it as UTF-8"
    if not encoding:
        raise DataError(str(path), f"is not UTF-8 and its encoding could not be detected: {ask}")
    if confidence < CONFIDENCE_FLOOR:
        raise DataError(str(path), f"is not UTF-8, and the guess at its encoding is unsure ({encoding} at chardet "
                                   f"confidence {confidence:.2f}, below {CONFIDENCE_FLOOR}): {ask}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(str(path), f"is not UTF-8 and its detected encoding {encoding} is unknown to Python: "
                                   f"{ask}") from None
    logger.warning(
        "%s is not UTF-8; decoding it as %s (chardet confidence %.2f). Re-save it as UTF-8 to silence this.",
        path, encoding, confidence,
    )
    return encoding


def file_encoding(path: str | os.PathLike) -> str:
    """The encoding a user file is read with: UTF-8 (a BOM dropped) when the whole file is valid UTF-8, else the
    one named with set_encoding, else a confident guess. Deciding costs one streamed pass over the bytes (fast
    next to parsing JSON) and never holds the file in memory."""
    path = Path(path)
    bad_offset = _first_non_utf8_byte(path)
    if bad_offset is None:
        return "utf-8-sig"  # -sig: a BOM written by Windows editors is not part of the first key
    if _named_encoding is not None:
        logger.info("%s is not UTF-8; reading it as %s (--encoding)", path, _named_encoding)
        return _named_encoding
    return _detect_encoding(path, bad_offset)


def _splits_on_newline_byte(encoding: str) -> bool:
    # True for UTF-8 and the 8-bit and ASCII-based multi-byte code pages, where no character but a newline
    # holds the byte 0x0A; False for UTF-16 and UTF-32.
    return "a\n".encode(encoding).endswith(b"a\n")


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield (line number, line) with the line ending removed, reading the file as a stream.

    Lines end at "\n" only (a "\r" before it is dropped): JSON strings may hold U+2028, U+2029 or U+0085,
    which str.splitlines() would treat as line breaks. Line numbers are what an editor shows.
    """
    path = Path(path)
    encoding = file_encoding(path)
    if _splits_on_newline_byte(encoding):
        # Binary lines split on b"\n" only; each is decoded alone, so a bad byte is reported on its own line.
        following = "utf-8" if encoding == "utf-8-sig" else encoding
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode(encoding if number == 1 else following)
                except UnicodeDecodeError as error:
                    raise DataError(str(path), f"is not valid {encoding} ({error.reason} at byte {error.start} of "
                                               "the line): name its encoding with --encoding", line=number) from None
                yield number, _strip_ending(line)
        return
    with open(path, encoding=encoding, newline="\n") as handle:
        number = 0
        try:
            for number, line in enumerate(handle, start=1):
                yield number, _strip_ending(line)
        except UnicodeDecodeError as error:
            raise DataError(str(path), f"is not valid {encoding} ({error.reason}) after line {number}: name its "
                                       "encoding with --encoding") from None


def _strip_ending(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
    return line[:-1] if line.endswith("\r") else line


def read_text(path: str | os.PathLike) -> str:
    """A small user file's whole text, decoded as `iter_lines` decodes it; large files go through `iter_lines`."""
    with open(path, encoding=file_encoding(path), newline="") as handle:
        return handle.read()


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a bad line raises DataError naming it."""
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(str(path), f"malformed JSON ({error.msg} at column {error.colno})", line=number) from None
        if not isinstance(obj, dict):
            raise DataError(str(path), f"expected a JSON object, got {type(obj).__name__}", line=number)
        yield number, obj


# A temporary older than this whose writer is not a live process here is left from a killed run. The age also
# spares a writer on another machine sharing the folder, whose pid means nothing here, while it is still writing.
STALE_TEMPORARY_S = 300
# `.<name>.<pid>.<random>.tmp`, or mkstemp's `.<name>.<8 characters>.tmp` written before the pid was in the name.
_TEMPORARY = re.compile(r"(?:(?P<pid>\d+)\.[0-9a-f]{8}|[a-z0-9_]{8})\.tmp")


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a number no pid can be
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete what killed writers of `path` left beside it; never another writer's live temporary."""
    prefix = f".{path.name}."
    now = time.time()
    with os.scandir(path.parent) as entries:
        for entry in entries:
            if not entry.name.startswith(prefix):
                continue
            match = _TEMPORARY.fullmatch(entry.name[len(prefix):])
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):  # another writer may be cleaning up at the same time
                if now - entry.stat(follow_symlinks=False).st_mtime < STALE_TEMPORARY_S:
                    continue
                if match["pid"] is not None and _process_is_alive(int(match["pid"])):
                    continue
                os.unlink(entry.path)
                logger.info("Removed %s, left by an interrupted write of %s", entry.path, path.name)


def _open_temporary(path: Path) -> tuple[int, str]:
    # Not mkstemp: it creates files with mode 0600. os.open with 0o666 lets the user's umask decide, as open() does.
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temporary file beside `path` and rename it into place only if the block succeeds.

    The file gets the permissions the user's umask gives new files. Temporaries that killed runs left beside
    `path` are removed first (see STALE_TEMPORARY_S)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = _open_temporary(path)
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
