"""Faults in users' data files: line separators inside strings, large files, repeated ids, unjudged run queries."""

import json
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


@pytest.mark.parametrize("reader", ["training data", "pool", "corpus and queries"])
def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path, reader):
    """Valid JSON lines holding U+2028, U+2029 or U+0085 in strings were reported as malformed."""
    from reranker.data.beir import load_beir
    from reranker.data.sources import load_source
    from reranker.mining.pool import pool_from_jsonl

    def write(path, rows):  # the characters themselves, not \u escapes
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return path

    text = "one\u2028two\u2029three\x85four"
    if reader == "training data":
        path = write(tmp_path / "train.jsonl", [{"query": text, "pos": [text], "neg": ["n"]}])
        assert load_source(str(path), group_size=2).examples[0].query == text
    elif reader == "pool":
        assert pool_from_jsonl(write(tmp_path / "pool.jsonl", [{"text": text}])).texts == [text]
    else:
        write(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": text}])
        write(tmp_path / "queries.jsonl", [{"_id": "q1", "text": text}])
        (tmp_path / "qrels").mkdir()
        (tmp_path / "qrels" / "test.tsv").write_text(HEADER + "q1\td1\t1\n")
        data = load_beir(tmp_path)
        assert data.corpus == {"d1": text} and data.queries == {"q1": text}


def test_qrels_ids_may_hold_unicode_line_separators(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text(HEADER + "q1\td\u20281\t1\nq\x852\td2\t2\r\n", encoding="utf-8")
    assert read_qrels(path) == {"q1": {"d\u20281": 1}, "q\x852": {"d2": 2}}


def test_qrels_are_read_as_a_stream(tmp_path):
    path = tmp_path / "big.tsv"
    blanks = (" " * 100 + "\n") * 20_000
    path.write_text(HEADER + "".join(f"q{i % 50}\td{i}\t1\n" for i in range(1_000)) + blanks,
                    encoding="utf-8")  # 2 MB, most of it blank lines
    assert peak_bytes(read_qrels, path) < 1_000_000


def test_queries_are_read_as_a_stream(tmp_path):
    path = write_jsonl(tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(100)])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write((" " * 100 + "\n") * 20_000)  # 2 MB, most of it blank lines
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


def tiny_beir():
    from reranker.data.beir import BeirData

    return BeirData("tiny", {"d1": "one", "d2": "two"}, {"q1": "first"}, {"q1": {"d1": 1}}, 0, "")


def test_run_files_split_lines_on_newlines_and_fields_on_ascii_blanks(tmp_path):
    from reranker.retrieval.first_stage import read_run

    path = tmp_path / "a.run"
    path.write_text("q1 Q0 d\u20281 1 2.0 x\r\nq1\tQ0\td\x852 2 1.0 x\n", encoding="utf-8")
    assert read_run(path) == {"q1": {"d\u20281": 2.0, "d\x852": 1.0}}


def test_run_files_are_read_as_a_stream(tmp_path):
    from reranker.retrieval.first_stage import read_run

    path = tmp_path / "big.run"
    path.write_text(f"q1 Q0 d1{'x' * 150} 1 2.0 tag\n" * 12_000, encoding="utf-8")  # 2 MB, one (query, doc)
    assert peak_bytes(read_run, path) < 1_000_000


def test_unjudged_run_queries_are_skipped_and_counted(tmp_path, caplog):
    """A run over all queries.jsonl holds queries the split does not judge: skipped, not an error."""
    from reranker.retrieval.first_stage import read_judged_run, read_run

    path = tmp_path / "all.run"
    path.write_text("q1 Q0 d1 1 2.0 x\nq7 Q0 d1 1 2.0 x\nq7 Q0 d2 2 1.0 x\nq8 Q0 zz 1 2.0 x\nq1 Q0 d2 2 1.0 x\n")
    with caplog.at_level(logging.WARNING):
        assert read_judged_run(path, tiny_beir()) == ({"q1": {"d1": 2.0, "d2": 1.0}}, 2)
    assert "skipped 3 lines of 2 queries that tiny does not judge" in caplog.text
    assert read_run(path, tiny_beir()) == {"q1": {"d1": 2.0, "d2": 1.0}}
    # Unknown documents of a judged query stay an error; a run with no judged query at all is one too.
    path.write_text("q1 Q0 d1 1 2.0 x\nq1 Q0 nope 2 1.0 x\n")
    with pytest.raises(DataError, match=r"all\.run:2: document id 'nope' is not in the corpus of tiny"):
        read_run(path, tiny_beir())
    path.write_text("q7 Q0 d1 1 2.0 x\n")
    with pytest.raises(DataError, match=r"all\.run: holds no query judged in tiny \(1 other queries\)"):
        read_run(path, tiny_beir())
