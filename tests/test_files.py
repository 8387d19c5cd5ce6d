import logging

import pytest

from reranker.common import files
from reranker.common.errors import ConfigError, DataError
from reranker.common.files import atomic_write, iter_jsonl, read_text


@pytest.fixture(autouse=True)
def _guess_encodings():
    yield
    files.set_encoding(None)  # the setting is process-wide: no test leaves it behind


def test_utf8_and_bom(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes('\ufeff{"query": "café"}\n'.encode())
    assert [row for _, row in iter_jsonl(path)] == [{"query": "café"}]


def test_confident_guess_is_used_and_warned(tmp_path, caplog):
    path = tmp_path / "utf16.jsonl"
    text = '{"query": "Größe"}\n{"query": "café"}\n'
    path.write_bytes(text.encode("utf-16"))  # with a BOM: the detector is sure
    with caplog.at_level(logging.WARNING):
        assert list(iter_jsonl(path)) == [(1, {"query": "Größe"}), (2, {"query": "café"})]
    assert str(path) in caplog.text and "not UTF-8" in caplog.text and "utf-16" in caplog.text.lower()


def test_unsure_guess_stops_and_asks_for_the_encoding(tmp_path, monkeypatch):
    """A German latin-1 file once came out as MacTurkish at confidence 0.04 and was trained on as mojibake."""
    import chardet

    path = tmp_path / "latin.jsonl"
    text = '{"query": "Größe der Brücke über den Fluss"}\n'
    path.write_bytes(text.encode("latin-1"))
    monkeypatch.setattr(chardet, "detect", lambda sample: {"encoding": "MacTurkish", "confidence": 0.04})
    with pytest.raises(DataError, match=r"latin\.jsonl: .*MacTurkish.*confidence 0\.04.*--encoding"):
        list(iter_jsonl(path))
    # Named by the user, the encoding replaces the guess; a UTF-8 file is still read as UTF-8.
    files.set_encoding("latin-1")
    assert [row for _, row in iter_jsonl(path)] == [{"query": "Größe der Brücke über den Fluss"}]
    utf8 = tmp_path / "utf8.jsonl"
    utf8.write_text(text, encoding="utf-8")
    assert [row for _, row in iter_jsonl(utf8)] == [{"query": "Größe der Brücke über den Fluss"}]


def test_named_encoding_reads_a_code_page_file_and_reports_bad_bytes(tmp_path):
    path = tmp_path / "latin.jsonl"
    text = '{"query": "Les élèves ont étudié la géographie de la région près de Genève et de Besançon"}\n' * 20
    path.write_bytes(text.encode("cp1252"))
    files.set_encoding("cp1252")
    assert read_text(path) == text
    path.write_bytes(b'{"query": "a"}\n{"query": "\x81"}\n')  # 0x81 is undefined in cp1252
    with pytest.raises(DataError, match=r"latin\.jsonl:2: is not valid cp1252"):
        list(iter_jsonl(path))
    with pytest.raises(ConfigError, match="unknown encoding 'latin-9000'"):
        files.set_encoding("latin-9000")


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "a"}\n\n{"query": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON"):
        list(iter_jsonl(path))


def test_non_object_line(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"list\.jsonl:1: expected a JSON object, got list"):
        list(iter_jsonl(path))


def test_atomic_write_keeps_original_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("original")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind
    with atomic_write(path) as handle:
        handle.write("new")
    assert path.read_text() == "new"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_unicode_line_separators_inside_strings_are_data(tmp_path, separator):
    """JSON allows these unescaped in strings; str.splitlines() would cut the record in two."""
    path = tmp_path / "a.jsonl"
    path.write_text(f'{{"query": "one{separator}two"}}\r\n{{"query": "three"}}\n', encoding="utf-8")
    assert list(iter_jsonl(path)) == [(1, {"query": f"one{separator}two"}), (2, {"query": "three"})]


def test_iter_jsonl_streams(tmp_path):
    """Peak memory stays far below the file's size: the file is never held as one string."""
    import tracemalloc

    path = tmp_path / "big.jsonl"
    line = '{"query": "' + "x" * 200 + '"}\n'
    path.write_text(line * 20_000, encoding="utf-8")  # about 4 MB
    tracemalloc.start()
    try:
        rows = sum(1 for _ in iter_jsonl(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 20_000
    assert peak < 1_000_000, f"peak {peak} bytes for a {path.stat().st_size}-byte file"


def test_atomic_write_removes_stale_temporaries_only(tmp_path):
    """A killed writer leaves `.<name>.<pid>.<random>.tmp`; the next write of that file removes it."""
    import os
    import time

    old = time.time() - 3600
    dead = tmp_path / ".out.txt.999999999.abcd1234.tmp"  # no such process
    legacy = tmp_path / ".out.txt.k2j4h6x_.tmp"  # mkstemp's name, from before the pid was in it
    live = tmp_path / f".out.txt.{os.getpid()}.efgh5678.tmp"  # this process: a writer still at work
    fresh = tmp_path / ".out.txt.999999999.ijkl9012.tmp"  # just written: maybe another machine's writer
    other = tmp_path / ".other.txt.999999999.abcd1234.tmp"  # another target's
    for path in (dead, legacy, live, fresh, other):
        path.write_text("partial")
        if path is not fresh:
            os.utime(path, (old, old))
    with atomic_write(tmp_path / "out.txt") as handle:
        handle.write("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.txt", live.name, fresh.name, other.name])


def test_atomic_write_follows_the_umask(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt") as handle:
            handle.write("x")
        os.umask(0o077)
        with atomic_write(tmp_path / "b.txt", mode="wb") as handle:
            handle.write(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
