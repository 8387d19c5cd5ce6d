"""Faults in users' data files: line separators inside strings, large files, repeated ids, unjudged run queries."""

import logging
import tracemalloc

import pytest
from conftest import write_jsonl

from reranker.common.errors import DataError
from reranker.data.beir import load_queries, read_qrels

HEADER = "query-id\tcorpus-id\tscore\n"


def peak_bytes(read, *args):
    """The peak of Python allocations while `read(*args)` runs."""
    tracemalloc.start()
    try:
        read(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_qrels_ids_may_hold_unicode_line_separators(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text(HEADER + "q1\td\u20281\t1\nq\x852\td2\t2\r\n", encoding="utf-8")
    assert read_qrels(path) == {"q1": {"d\u20281": 1}, "q\x852": {"d2": 2}}


def test_qrels_are_read_as_a_stream(tmp_path):
    path = tmp_path / "big.tsv"
    path.write_text(HEADER + "".join(f"q{i % 50}\td{i}{'x' * 150}\t1\n" for i in range(1_000)) + "\n" * 2_000_000,
                    encoding="utf-8")  # 2 MB, most of it blank lines
    assert peak_bytes(read_qrels, path) < 1_000_000


def test_queries_are_read_as_a_stream(tmp_path):
    path = write_jsonl(tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(100)])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(" " * 200 + "\n" * 10_000)
    assert peak_bytes(load_queries, path) < 1_000_000


def test_duplicate_query_ids_are_refused_naming_both_lines(tmp_path):
    """Today the second text silently replaced the first; the corpus rule applies instead."""
    path = write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "x"},
                                                    {"_id": "q1", "text": "second"}])
    with pytest.raises(DataError, match=r"queries\.jsonl:3 field '_id': duplicate id 'q1', first on line 1"):
        load_queries(path)


def test_pairs_judged_twice_keep_the_last_grade_with_a_warning(tmp_path, caplog):
    path = tmp_path / "test.tsv"
    path.write_text(HEADER + "q1\td1\t1\nq1\td2\t1\nq1\td1\t2\nq1\td2\t1\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert read_qrels(path) == {"q1": {"d1": 2, "d2": 1}}
    assert "2 (query, document) pairs are judged more than once, 1 with different grades" in caplog.text
    assert "line 4" in caplog.text and "last" in caplog.text
