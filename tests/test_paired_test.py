"""benchmarks/paired_test.py: the sign-flip test on per-query values, and two run files end to end."""

import pytest
from conftest import load_benchmark, write_jsonl


def test_sign_flips_by_hand():
    tool = load_benchmark("paired_test")
    # Four queries all up by 1: only the flips with all four signs alike are as extreme, 2 of 16.
    result = tool.paired_randomization([0, 0, 0, 0], [1, 1, 1, 1], flips=20_000)
    assert (result["queries"], result["up"], result["down"], result["mean_difference"]) == (4, 4, 0, 1.0)
    assert result["p"] == pytest.approx(2 / 16, abs=0.01)
    # No difference at all: every flip is as extreme, p = 1.
    assert tool.paired_randomization([0.3, 0.5], [0.3, 0.5])["p"] == 1.0
    # Up on one query, down as much on another: mean 0, p = 1.
    same = tool.paired_randomization([0.0, 1.0], [1.0, 0.0])
    assert (same["up"], same["down"], same["p"]) == (1, 1, 1.0)
    for first, second in (([1.0], [1.0, 2.0]), ([1.0, 2.0], [1.0]), ([], [])):
        with pytest.raises(ValueError, match="equal-length, non-empty"):
            tool.paired_randomization(first, second)


def test_two_run_files(tmp_path):
    tool = load_benchmark("paired_test")
    folder = tmp_path / "beir"
    write_jsonl(folder / "corpus.jsonl", [{"_id": d, "text": d} for d in ("a", "b", "c")])
    write_jsonl(folder / "queries.jsonl", [{"_id": q, "text": q} for q in ("q1", "q2")])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta\t1\nq2\tb\t1\n")
    # The first run puts each relevant document second, the other first; q2 is missing from the second run.
    (tmp_path / "first.trec").write_text("q1 Q0 c 1 2.0 x\nq1 Q0 a 2 1.0 x\nq2 Q0 c 1 2.0 x\nq2 Q0 b 2 1.0 x\n")
    (tmp_path / "second.trec").write_text("q1 Q0 a 1 2.0 y\nq1 Q0 c 2 1.0 y\n")
    result = tool.main(["--data", str(folder), "--runs", str(tmp_path / "first.trec"), str(tmp_path / "second.trec")])
    second_place = 1 / 1.584962500721156  # nDCG@10 of one relevant document at rank 2: 1 / log2(3)
    assert result["mean_difference"] == pytest.approx(((1 - second_place) + (0 - second_place)) / 2)
    assert (result["up"], result["down"], result["queries"]) == (1, 1, 2)
