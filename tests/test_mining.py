"""hn_mine end to end: BM25 where the answers are known, the tiny encoder, cache, teacher, output and errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_launcher, write_jsonl

import hn_mine
from reranker import Reranker
from reranker.common.errors import ConfigError, DataError

# BM25 ranks these predictably: each query shares words with its positive and, less and less, with the rest.
POOL = [
    {"_id": "d0", "title": "Paris", "text": "Paris is the capital of France."},
    {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France."},  # duplicate text, other id
    {"_id": "d2", "title": "", "text": "France has many cities; its capital draws tourists."},
    {"_id": "d3", "title": "", "text": "The capital of Germany is Berlin."},
    {"_id": "d4", "title": "", "text": "The capital of Italy is Rome."},
    {"_id": "d5", "title": "", "text": "Madrid is the capital of Spain."},
    {"_id": "d6", "title": "", "text": "Bread is baked in an oven."},
    {"_id": "d7", "title": "", "text": "Cats and dogs are pets."},
    {"_id": "d8", "title": "", "text": "what is the capital of france"},  # the query's own text
]
RECORDS = [{"query": "what is the capital of france", "pos": ["Paris Paris is the capital of France."],
            "pos_ids": ["d0"], "neg": ["old"], "extra": "kept"},
           {"query": "capital of germany", "pos": ["The capital of Germany is Berlin."]}]


def mine(tmp_path, *extra, name="mined.jsonl", records=RECORDS, pool=POOL):
    inp = write_jsonl(tmp_path / "in.jsonl", records)
    pool_file = write_jsonl(tmp_path / "pool.jsonl", pool)
    out = tmp_path / name
    summary = hn_mine.main(["--input_file", str(inp), "--output_file", str(out), "--candidate_pool", str(pool_file),
                            "--cache_dir", str(tmp_path / "cache"), *map(str, extra)])
    return [json.loads(line) for line in out.read_text().splitlines()], summary


def test_bm25_known_answers(tmp_path):
    rows, summary = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-7", "--negative_number", "4")
    first = rows[0]
    # BM25 ranks the query's own text (d8), the positive (d0) and its duplicate (d1) first, then d2 (France and
    # capital), then the three other capitals (d3-d5); the two unrelated passages (d6, d7) score 0 and come last.
    # Ranks 0-6 minus the three excluded leave exactly d2-d5, best first.
    assert first["neg"][0] == "France has many cities; its capital draws tourists."
    assert len(first["neg"]) == 4 and set(first["neg"][1:]) == {p["text"] for p in POOL[3:6]}
    assert first["extra"] == "kept" and first["pos_ids"] == ["d0"]  # the user's other fields survive
    assert "The capital of Germany is Berlin." not in rows[1]["neg"]
    assert summary["excluded_positives_duplicates_or_query"] >= 4  # d0, d1, d8 for q0; d3 for q1
    assert summary["queries_without_positive_in_pool"] == 0


def test_source_document_of_a_synthetic_pair_is_never_a_negative(tmp_path):
    # synth.py's crops: the positive is a span of d3, so only its pos_id says that d3 is the positive.
    crop = {"query": "capital of germany", "pos": ["Germany is Berlin"], "pos_id": "d3"}
    rows, _ = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-8", "--negative_number", "8",
                   records=[crop])
    assert POOL[3]["text"] not in rows[0]["neg"] and len(rows[0]["neg"]) == 7
    # Without the id the document is sampled as a negative of its own crop: the test above is not vacuous.
    rows, _ = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-8", "--negative_number", "8",
                   "--overwrite", records=[{k: v for k, v in crop.items() if k != "pos_id"}])
    assert POOL[3]["text"] in rows[0]["neg"]
    with pytest.raises(DataError, match=r"in\.jsonl:1 field 'pos_id'"):
        mine(tmp_path, "--retriever", "bm25", "--overwrite", records=[{**crop, "pos_id": 3}])


def test_negatives_of_a_crop_are_cropped_like_its_positive(tmp_path):
    words = [f"w{i}" for i in range(40)]
    pool = [{"_id": f"d{i}", "text": f"capital {i} " + " ".join(words)} for i in range(8)]
    crop = {"query": "capital", "pos": ["w3 w4 w5"], "pos_id": "d0", "neg_crop": [3, 5]}
    whole = {"query": "capital of nothing", "pos": ["capital 1 " + " ".join(words)]}
    args = ("--retriever", "bm25", "--range_for_sampling", "0-8", "--negative_number", "4")
    rows, summary = mine(tmp_path, *args, records=[crop, whole], pool=pool)
    assert summary["cropped_negatives"] == 4 and len(rows[0]["neg"]) == 4
    for neg in rows[0]["neg"]:  # contiguous spans of 3-5 words of a pool document
        span = neg.split()
        assert 3 <= len(span) <= 5 and any(" ".join(span) in d["text"] for d in pool)
    assert all(len(n.split()) == 42 for n in rows[1]["neg"])  # a record without neg_crop keeps whole documents
    again, _ = mine(tmp_path, *args, "--overwrite", records=[crop, whole], pool=pool)
    assert again == rows  # seeded
    # A document's span depends on the document, not on its rank: another range picks other ranks, and the
    # documents picked both times have the same spans.
    other, _ = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "1-8", "--negative_number", "7",
                    "--overwrite", records=[crop, whole], pool=pool)
    doc_of = {n: next(d["_id"] for d in pool if n in d["text"]) for n in rows[0]["neg"] + other[0]["neg"]}
    first = {doc_of[n]: n for n in rows[0]["neg"]}
    second = {doc_of[n]: n for n in other[0]["neg"]}
    shared = set(first) & set(second)
    assert shared and all(first[d] == second[d] for d in shared)
    with pytest.raises(DataError, match=r"in\.jsonl:1 field 'neg_crop'"):
        mine(tmp_path, *args, "--overwrite", records=[{**crop, "neg_crop": [5, 3]}], pool=pool)
    with pytest.raises(ConfigError, match="neg_crop"):
        mine(tmp_path, "--embedder_teacher", "--overwrite", records=[crop], pool=pool)


def test_a_crop_is_compared_with_its_whole_source_document(tmp_path):
    from reranker.data.records import parse_group
    from reranker.mining.mine import make_query
    from reranker.mining.pool import pool_from_jsonl

    pool = pool_from_jsonl(write_jsonl(tmp_path / "pool.jsonl", POOL))
    crop = {"query": "capital", "pos": ["Germany is"], "pos_id": "d3", "neg_crop": [2, 3]}
    for row, reference in ((crop, 3), ({**crop, "neg_crop": None}, None), ({**crop, "pos_id": "zz"}, None)):
        q = make_query(pool, row, parse_group(row, "in.jsonl", 1))
        assert q.reference_row == reference
    # Ids that name nothing in the pool are counted in the summary (and warned about).
    _, summary = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-5",
                      records=[{**crop, "pos_id": "zz"}, RECORDS[0]])
    assert summary["positive_ids_not_in_pool"] == 1


def test_summary_file_and_top_up(tmp_path):
    _, summary = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-3", "--negative_number", "4")
    saved = json.loads((tmp_path / "mined.summary.json").read_text())
    assert saved["queries"] == 2 and saved["pool_size"] == 9
    assert saved["topped_up_queries"] >= 1 and saved["topped_up_negatives"] >= 1
    assert saved["negatives_per_query"]["max"] == 4
    assert set(saved["timings_s"]) >= {"load", "search", "select", "write"}


def test_dense_mining_is_deterministic_and_cached(tiny_model_master, tmp_path, monkeypatch):
    from reranker.models import embed

    calls = []
    original = embed.Embedder.encode
    monkeypatch.setattr(embed.Embedder, "encode", lambda self, texts, *a, **k: calls.append(len(texts)) or
                        original(self, texts, *a, **k))
    args = ["--model_name_or_path", tiny_model_master, "--pooling", "mean", "--range_for_sampling", "0-9",
            "--negative_number", "2", "--retriever", "dense"]
    first, summary = mine(tmp_path, *args)
    assert summary["embedding_cache"] == "miss" and 9 in calls
    calls.clear()
    second, summary2 = mine(tmp_path, *args, "--seed", "42", name="again.jsonl")
    assert summary2["embedding_cache"] == "hit" and 9 not in calls  # the pool was not encoded again
    assert first == second
    for row in first:
        assert len(row["neg"]) == 2 and not set(row["neg"]) & set(row["pos"])
    # Another pooling is another cache entry.
    _, summary3 = mine(tmp_path, *args[:2], "--pooling", "cls", *args[4:], name="cls.jsonl")
    assert summary3["embedding_cache"] == "miss"


def test_bf16_pool_vectors_are_cached_apart_from_earlier_autocast_ones(tiny_model_master, tmp_path, monkeypatch):
    """The embedder in bf16 casts its weights (not autocast, as earlier versions cached under the same dtype): the
    cache key says so, and says nothing new for fp32."""
    from reranker.models import embed_cache

    seen = []
    original = embed_cache.cache_key
    monkeypatch.setattr(embed_cache, "cache_key", lambda path, settings, pool: seen.append(dict(settings)) or
                        original(path, settings, pool))
    args = ["--model_name_or_path", tiny_model_master, "--pooling", "mean", "--range_for_sampling", "0-9",
            "--negative_number", "2", "--retriever", "dense"]
    mine(tmp_path, *args, "--embed_dtype", "bf16")
    mine(tmp_path, *args, "--embed_dtype", "fp32", name="fp32.jsonl")
    assert seen[0]["weights"] == "bf16" and "weights" not in seen[1]


def test_default_pool_is_the_inputs_texts(tiny_model_master, tmp_path):
    records = [{"query": f"question {i}", "pos": [f"answer {i}"], "neg": [f"wrong {i}", f"other {i}"]}
               for i in range(6)]
    inp = write_jsonl(tmp_path / "in.jsonl", records)
    summary = hn_mine.main(["--model_name_or_path", str(tiny_model_master), "--input_file", str(inp),
                            "--output_file", str(tmp_path / "o.jsonl"), "--range_for_sampling", "0-10",
                            "--negative_number", "3", "--no_cache", "--retriever", "dense"])
    assert summary["pool_size"] == 18 and summary["embedding_cache"] == "off"
    for row, rec in zip(map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines()), records, strict=True):
        assert len(row["neg"]) == 3 and rec["pos"][0] not in row["neg"]


def test_teacher_scores(tiny_model_master, tmp_path):
    rows, _ = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-9", "--negative_number", "2",
                   "--teacher_model", tiny_model_master)
    teacher = Reranker(str(tiny_model_master))
    for row in rows:
        assert len(row["pos_scores"]) == len(row["pos"]) and len(row["neg_scores"]) == len(row["neg"])
        expected = teacher.compute_score([(row["query"], p) for p in row["pos"] + row["neg"]])
        assert row["pos_scores"] + row["neg_scores"] == pytest.approx(expected, abs=1e-5)


def test_output_is_atomic_and_not_overwritten(tmp_path, monkeypatch):
    mine(tmp_path, "--retriever", "bm25", "--negative_number", "1", "--range_for_sampling", "0-5")
    before = (tmp_path / "mined.jsonl").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        mine(tmp_path, "--retriever", "bm25")
    from reranker.mining import mine as mine_module

    def crash(*a, **k):
        raise RuntimeError("teacher crashed")

    monkeypatch.setattr(mine_module, "teacher_scores", crash)
    with pytest.raises(RuntimeError):
        mine(tmp_path, "--retriever", "bm25", "--overwrite", "--teacher_model", "x", "--range_for_sampling", "0-5")
    assert (tmp_path / "mined.jsonl").read_text() == before  # untouched, no partial file beside it
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".mined")) == []


def test_beir_corpus_and_bad_inputs(tmp_path):
    beir = tmp_path / "beir"
    write_jsonl(beir / "corpus.jsonl", POOL)
    inp = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    out = tmp_path / "o.jsonl"
    base = ["--input_file", str(inp), "--output_file", str(out), "--retriever", "bm25", "--no_cache"]
    assert hn_mine.main([*base, "--corpus", str(beir), "--range_for_sampling", "0-9"])["pool_size"] == 9
    with pytest.raises(DataError, match="corpus.jsonl is missing"):
        hn_mine.main([*base, "--corpus", str(tmp_path), "--overwrite"])
    bad_pool = write_jsonl(tmp_path / "bad_pool.jsonl", [{"_id": "a", "text": "x"}, {"_id": "b", "body": "y"}])
    with pytest.raises(DataError, match=r"bad_pool\.jsonl:2 field 'text'"):
        hn_mine.main([*base, "--candidate_pool", str(bad_pool), "--overwrite"])
    bad_input = tmp_path / "bad.jsonl"
    bad_input.write_text('{"query": "q", "pos": ["p"]}\n{"query": "q", "pos": ["p"], "pos_ids": "d0"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2 field 'pos_ids'"):
        hn_mine.main(["--input_file", str(bad_input), "--output_file", str(out), "--retriever", "bm25",
                      "--overwrite"])
    for bad_range in ("10", "50-10", "a-b"):
        with pytest.raises(ConfigError, match="range_for_sampling"):
            hn_mine.main([*base, "--range_for_sampling", bad_range])
    monkey_argv = ["hn_mine.py", *base, "--candidate_pool", str(bad_pool), "--overwrite"]
    result = subprocess.run([sys.executable, str(ROOT / "hn_mine.py"), *monkey_argv[1:]], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and "bad_pool.jsonl:2 field 'text'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("retriever", ["dense", "bm25"])
def test_two_process_mining_matches_one(tiny_model_master, tmp_path, retriever):
    # dense: the pool is encoded in shards; bm25: rank 0 mines alone and writes while rank 1 has nothing to do
    # (rank 1 once found rank 0's fresh output and refused it as "exists").
    inp = write_jsonl(tmp_path / "in.jsonl", RECORDS * 3)
    pool = write_jsonl(tmp_path / "pool.jsonl", POOL)
    common = ["--model_name_or_path", str(tiny_model_master), "--input_file", str(inp), "--candidate_pool", str(pool),
              "--range_for_sampling", "0-9", "--negative_number", "3", "--no_cache", "--retriever", retriever]
    for nproc, name in ((2, "two.jsonl"), (1, "one.jsonl")):
        run_launcher("mine.sh", [*common, "--output_file", tmp_path / name], nproc)
    assert (tmp_path / "two.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()


def test_positive_scores_only_when_the_relative_filter_reads_them(tiny_model_master, tmp_path, monkeypatch):
    from reranker.retrieval import search

    calls = []
    original = search.BM25.score_rows
    monkeypatch.setattr(search.BM25, "score_rows", lambda self, *a: calls.append(a) or original(self, *a))
    args = ["--retriever", "bm25", "--range_for_sampling", "0-9", "--negative_number", "4"]
    _, plain = mine(tmp_path, *args)
    assert calls == [] and plain["filtered_false_negatives"] == 0
    # d2 shares 'france' and 'capital' with q0 and scores close to the positive: a likely false negative.
    rows, filtered = mine(tmp_path, *args, "--fn_relative_threshold", "0.5", name="filtered.jsonl")
    assert len(calls) == 2 and filtered["filtered_false_negatives"] > 0
    assert "France has many cities; its capital draws tourists." not in rows[0]["neg"]
    dense_args = ["--model_name_or_path", tiny_model_master, "--range_for_sampling", "0-9", "--negative_number", "2",
                  "--retriever", "dense"]
    _, dense_plain = mine(tmp_path, *dense_args, name="dense_plain.jsonl")
    assert "score_positives" not in dense_plain["timings_s"] and dense_plain["filtered_false_negatives"] == 0
    # A tiny fraction of the positive's cosine: every candidate that scores above it is dropped, so no query
    # keeps a negative, which is an error naming the filter (the relative filter read the positives' scores).
    with pytest.raises(DataError, match=r"fn_relative_threshold 0.0001, on the embedder's similarity\) dropped "
                                        r"[1-9]\d* candidates"):
        mine(tmp_path, *dense_args, "--fn_relative_threshold", "0.0001", name="dense.jsonl")


def test_interleave_alternates_without_repeats():
    from reranker.mining.mine import interleave
    from reranker.mining.negatives import Selection

    dense = Selection(rows=[1, 2, 3, 4], excluded=1, false_negatives=2)
    bm25 = Selection(rows=[2, 5, 6], excluded=3, topped_up=1)
    merged = interleave((dense, bm25), 5)
    assert merged.rows == [1, 2, 3, 5, 4]  # bm25's 2 was already taken: its next one, 5, comes instead
    assert (merged.excluded, merged.false_negatives, merged.topped_up) == (4, 2, 1)
    assert interleave((dense,), 2) is dense
    # Row 5 was dropped by the dense filter as a likely false negative: BM25 cannot bring it back.
    filtered = Selection(rows=[1, 2], false_negatives=1, dropped=[5])
    assert interleave((filtered, bm25), 4).rows == [1, 2, 6]


def test_both_retrievers_and_filters_read_the_embedder_only(tiny_model_master, tmp_path):
    common = ["--model_name_or_path", tiny_model_master, "--pooling", "mean", "--range_for_sampling", "0-9",
              "--negative_number", "4"]
    rows_both, summary = mine(tmp_path, *common, "--retriever", "both", name="both.jsonl")
    rows_bm25, _ = mine(tmp_path, *common, "--retriever", "bm25", name="bm25.jsonl")
    rows_dense, _ = mine(tmp_path, *common, "--retriever", "dense", name="dense.jsonl")
    for both, bm25, dense in zip(rows_both, rows_bm25, rows_dense, strict=True):
        assert len(both["neg"]) == 4 and len(set(both["neg"])) == 4
        # Alternating: the first comes from the dense ranking, the second is BM25's first not already taken.
        assert both["neg"][0] == dense["neg"][0]
        assert both["neg"][1] == next(n for n in bm25["neg"] if n != both["neg"][0])
    assert summary["retriever"] == "both" and summary["settings"]["embedder"] == str(tiny_model_master)
    shares = summary["positives_in_search_depth"]
    assert set(shares) == {"search_depth", "dense", "bm25", "any"} and shares["any"] >= max(shares["dense"],
                                                                                          shares["bm25"])
    # An absolute threshold below every score drops all dense candidates, on the embedder's scale only; a passage
    # one retriever's filter dropped is not taken from BM25's list either, so here no query keeps a negative.
    with pytest.raises(DataError, match=r"fn_absolute_threshold -2.0, on the embedder's similarity\) dropped "
                                        r"[1-9]\d* candidates"):
        mine(tmp_path, *common, "--retriever", "both", "--fn_absolute_threshold", "-2", name="filtered.jsonl")


def test_embedder_teacher_scores(tiny_model_master, tmp_path):
    from reranker.models.embed import Embedder

    rows, summary = mine(tmp_path, "--model_name_or_path", tiny_model_master, "--pooling", "mean",
                         "--range_for_sampling", "0-9", "--negative_number", "3", "--embedder_teacher",
                         "--embedder_teacher_scale", "10", "--retriever", "both")
    embedder = Embedder(str(tiny_model_master), pooling="mean")
    for row in rows:
        q = embedder.encode([row["query"]], 64, 8)[0]
        for key, texts in (("pos_scores", row["pos"]), ("neg_scores", row["neg"])):
            vectors = embedder.encode(texts, 256, 8)
            assert row[key] == pytest.approx([10 * float(v @ q) for v in vectors], abs=1e-3)
    assert "_vectors" not in json.loads((tmp_path / "mined.summary.json").read_text())


def test_embedder_teacher_fused_with_bm25(tiny_model_master, tmp_path):
    from reranker.common.text import normalize_text
    from reranker.mining.pool import pool_from_jsonl
    from reranker.models.embed import Embedder
    from reranker.retrieval.search import BM25

    common = ("--model_name_or_path", tiny_model_master, "--pooling", "mean", "--retriever", "bm25",
              "--range_for_sampling", "0-9", "--negative_number", "3", "--embedder_teacher",
              "--embedder_teacher_scale", "10")
    embedder = Embedder(str(tiny_model_master), pooling="mean")
    pool = pool_from_jsonl(write_jsonl(tmp_path / "p.jsonl", POOL))
    bm25 = BM25(pool.texts)

    def expected(row, weight):
        texts = row["pos"] + row["neg"]
        q = embedder.encode([row["query"]], 64, 8)[0]
        cosine = [float(v @ q) for v in embedder.encode(texts, 256, 8)]
        if not weight:
            return [10 * c for c in cosine]
        lexical = bm25.score_rows(row["query"], [pool.by_key[normalize_text(t)] for t in texts])

        def minmax(xs):
            return [(x - min(xs)) / (max(xs) - min(xs)) for x in xs]
        return [10 * ((1 - weight) * c + weight * b) for c, b in zip(minmax(cosine), minmax(lexical), strict=True)]

    # BM25 retrieves, the embedder scores the chosen pairs: its cosine alone, then fused with BM25's scores.
    for weight in (0.0, 0.5, 1.0):
        rows, _ = mine(tmp_path, *common, "--teacher_bm25_weight", weight, "--overwrite")
        for row in rows:
            assert row["pos_scores"] + row["neg_scores"] == pytest.approx(expected(row, weight), abs=1e-3)
    # With BM25's weight 1 the teacher orders the first query's passages as BM25 does: the positive first.
    assert rows[0]["pos_scores"][0] == 10.0 and rows[0]["neg_scores"] == sorted(rows[0]["neg_scores"], reverse=True)
    with pytest.raises(ConfigError, match="add --embedder_teacher"):
        mine(tmp_path, "--retriever", "bm25", "--teacher_bm25_weight", "0.5", name="x.jsonl")
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\]"):
        mine(tmp_path, *common, "--teacher_bm25_weight", "1.5", name="x.jsonl")
    with pytest.raises(DataError, match="1 positives are not passages of the pool"):
        mine(tmp_path, *common, "--teacher_bm25_weight", "0.5", name="x.jsonl",
             records=[{"query": "capital of germany", "pos": ["Berlin, not a pool passage."]}])


def test_no_query_with_a_negative_is_an_error_and_writes_nothing(tmp_path):
    # Every candidate scores above -1, so the absolute filter drops them all: both queries would end with none.
    with pytest.raises(DataError, match=r"no query got a negative: the false-negative filters "
                                        r"\(fn_absolute_threshold -1.0, on BM25 scores\)"):
        mine(tmp_path, "--retriever", "bm25", "--fn_absolute_threshold", "-1", "--range_for_sampling", "0-5")
    assert not (tmp_path / "mined.jsonl").exists()
    # Without filters the only way to none is a pool that holds nothing but the positive.
    with pytest.raises(DataError, match="no candidate that is not a positive"):
        mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-1", "--negative_number", "1",
             records=RECORDS[1:], pool=POOL[3:4])


def test_sampling_range_past_the_pool_fails_before_any_work(tmp_path):
    # The pool holds 9 passages: ranks 20-30 can never be sampled. It used to exit 0 with every negative empty.
    with pytest.raises(ConfigError, match=r"--range_for_sampling 20-30 starts at rank 20, but the pool holds only 9 "
                                          "passages"):
        mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "20-30")
    assert not (tmp_path / "mined.jsonl").exists()


def test_queries_left_without_negatives_are_counted_and_warned_about(tmp_path, caplog):
    from reranker.mining.arguments import MineArguments
    from reranker.mining.mine import warn_short

    args = MineArguments(input_file="in.jsonl", output_file="out.jsonl", retriever="bm25", fn_absolute_threshold=-1.0)
    warn_short(args, {"queries_without_negatives": 1, "filtered_false_negatives": 7}, 2)
    warning = [r.getMessage() for r in caplog.records if "have no negatives" in r.getMessage()]
    assert len(warning) == 1 and warning[0].startswith("1 of 2 queries have no negatives")
    assert "fn_absolute_threshold -1.0, on BM25 scores" in warning[0] and "reranker-train skips" in warning[0]
    # And a run where every query has negatives says nothing.
    caplog.clear()
    _, summary = mine(tmp_path, "--retriever", "bm25", "--overwrite", "--range_for_sampling", "0-7",
                      "--negative_number", "4")
    assert summary["queries_without_negatives"] == 0
    assert not any("have no negatives" in r.getMessage() for r in caplog.records)


def test_positive_depth_keeps_the_positives_the_retriever_ranks(tmp_path, caplog):
    berlin, bread, paris = POOL[3]["text"], POOL[6]["text"], "Paris Paris is the capital of France."
    records = [{"query": "capital of germany", "pos": [berlin, bread], "pos_ids": ["d3", "d6"],
                "pos_relevance": [2, 1], "extra": "kept"},
               {"query": "cats", "pos": [paris], "pos_ids": ["d0"]}]
    args = ("--retriever", "bm25", "--range_for_sampling", "0-8", "--negative_number", "8")
    rows, summary = mine(tmp_path, *args, "--positive_depth", "1", records=records)
    # BM25's first for "capital of germany" is d3, so d6 (bread) is dropped as a positive, and with its aligned
    # fields; it is still never a negative. "cats" ranks d7 first, not its positive d0: the query is left out.
    assert len(rows) == 1
    assert rows[0]["pos"] == [berlin] and rows[0]["pos_ids"] == ["d3"] and rows[0]["pos_relevance"] == [2]
    assert rows[0]["extra"] == "kept" and bread not in rows[0]["neg"] and rows[0]["neg"]
    assert summary["positive_depth"] == {"depth": 1, "kept_positives": 1, "dropped_positives": 2,
                                         "dropped_queries": 1}
    assert any("1 of 2 queries" in r.getMessage() and "top 1" in r.getMessage() for r in caplog.records)
    # Without the option both positives and both queries stay: the cut above is the option's doing.
    rows, summary = mine(tmp_path, *args, "--overwrite", records=records)
    assert [len(r["pos"]) for r in rows] == [2, 1] and "positive_depth" not in summary
    # The whole top of a deep enough depth keeps everything a retriever returns.
    rows, _ = mine(tmp_path, *args, "--overwrite", "--positive_depth", "9", records=records)
    assert [r["pos_ids"] for r in rows] == [["d3", "d6"], ["d0"]]
    with pytest.raises(DataError, match="no query has a positive in any retriever's top 1"):
        mine(tmp_path, *args, "--overwrite", "--positive_depth", "1", records=records[1:])
    with pytest.raises(ConfigError, match="--positive_depth with --fn_relative_threshold"):
        mine(tmp_path, *args, "--overwrite", "--positive_depth", "5", "--fn_relative_threshold", "0.9")
    with pytest.raises(ConfigError, match="shallower than --positive_depth"):
        mine(tmp_path, *args, "--overwrite", "--positive_depth", "50", "--search_depth", "20")


def test_positive_depth_keeps_the_teacher_aligned_with_the_kept_queries(tiny_model_master, tmp_path):
    from reranker.models.embed import Embedder

    # The first query's positive is in no pool, so no retriever ranks it: that query is dropped, and the
    # teacher must score the second with the second's own query vector.
    records = [{"query": "what is the capital of france", "pos": ["A text that is not in the pool."]},
               {"query": "capital of germany", "pos": [POOL[3]["text"]], "pos_ids": ["d3"]}]
    rows, summary = mine(tmp_path, "--model_name_or_path", tiny_model_master, "--pooling", "mean",
                         "--retriever", "both", "--range_for_sampling", "0-9", "--negative_number", "3",
                         "--positive_depth", "9", "--embedder_teacher", "--embedder_teacher_scale", "10",
                         records=records)
    assert [r["query"] for r in rows] == ["capital of germany"] and summary["positive_depth"]["dropped_queries"] == 1
    embedder = Embedder(str(tiny_model_master), pooling="mean")
    q = embedder.encode([rows[0]["query"]], 64, 8)[0]
    vectors = embedder.encode(rows[0]["neg"], 256, 8)
    assert rows[0]["neg_scores"] == pytest.approx([10 * float(v @ q) for v in vectors], abs=1e-3)


def test_share_of_positives_the_retriever_finds(tmp_path, caplog):
    germany = {"query": "capital of germany", "pos": [POOL[3]["text"]], "pos_ids": ["d3"]}
    cats = {"query": "cats", "pos": ["Paris Paris is the capital of France."], "pos_ids": ["d0"]}
    args = ("--retriever", "bm25", "--range_for_sampling", "0-1", "--negative_number", "1", "--search_depth", "1")
    # BM25's first for "capital of germany" is its positive d3; for "cats" it is d7, not d0.
    _, summary = mine(tmp_path, *args, records=[germany, cats])
    assert summary["positives_in_search_depth"] == {"search_depth": 1, "bm25": 0.5}
    assert not any("positive documents are in a retriever's top" in r.getMessage() for r in caplog.records)
    _, summary = mine(tmp_path, *args, "--overwrite", records=[germany, cats, {**cats, "query": "cats and dogs"}])
    assert summary["positives_in_search_depth"]["bm25"] == pytest.approx(1 / 3, abs=1e-4)
    assert any("Only 33.3% of the 3 positive documents are in a retriever's top 1" in r.getMessage()
               for r in caplog.records)


def test_neighbor_votes_sum_the_closest_other_queries_labels(tmp_path):
    from reranker.data.records import parse_group
    from reranker.mining.mine import judged_rows, make_query, neighbor_votes
    from reranker.mining.pool import pool_from_jsonl

    pool = pool_from_jsonl(write_jsonl(tmp_path / "p.jsonl", POOL))
    rows = [{"query": "a", "pos": ["x"], "pos_ids": ["d3", "d4"], "pos_relevance": [2, 1]},
            {"query": "b", "pos": ["y"], "pos_ids": ["d4"]},
            {"query": "c", "pos": [POOL[5]["text"]]},  # found by its text, grade 1
            {"query": "d", "pos": ["z"], "pos_ids": ["d6"], "pos_relevance": [0]}]  # a grade-0 "positive" never votes
    for row in rows:  # pos_ids aligned with pos, as beir_train writes them; one id per positive
        row["pos"] = [pool.texts[pool.by_id[i]] for i in row["pos_ids"]] if "pos_ids" in row else row["pos"]
    queries = [make_query(pool, row, parse_group(row, "in.jsonl", i + 1)) for i, row in enumerate(rows)]
    # Unit vectors. Cosines: a-b 0.8, a-c 0.28, a-d 0.5, b-c -0.352, b-d 0.4, c-d 0.14.
    vectors = np.array([[1.0, 0.0, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0], [0.28, -0.96, 0.0, 0.0],
                        [0.5, 0.0, 0.0, np.sqrt(0.75)]], dtype=np.float32)
    judged = [judged_rows(pool, q) for q in queries]
    votes = neighbor_votes(judged, vectors, k=2, chunk_size=2)
    d3, d4, d5 = (pool.by_id[i] for i in ("d3", "d4", "d5"))
    # a: its own labels never count; b (0.8^4 for d4) and d (its grade-0 label: no vote).
    assert votes[0] == pytest.approx({d4: 0.8 ** 4})
    # b: a (0.8^4 x grade 2 for d3, x 1 for d4) and d (nothing).
    assert votes[1] == pytest.approx({d3: 2 * 0.8 ** 4, d4: 0.8 ** 4})
    # c: a and d; d: a and b, whose votes for d4 add up.
    assert votes[2] == pytest.approx({d3: 2 * 0.28 ** 4, d4: 0.28 ** 4})
    assert votes[3] == pytest.approx({d3: 2 * 0.5 ** 4, d4: 0.5 ** 4 + 0.4 ** 4})
    # With k 3, c's third neighbour is b at cosine -0.352: it votes 0, not (-0.352)^4.
    wider = neighbor_votes(judged, vectors, k=3, chunk_size=4)
    assert wider[2] == pytest.approx(votes[2]) and wider[0] == pytest.approx({d4: 0.8 ** 4, d5: 0.28 ** 4})
    # Other queries (a dev query, say) get the votes of all: a query like a gets a's labels too.
    outside = neighbor_votes(judged, vectors, k=1, chunk_size=4, targets=vectors[:1])
    assert outside == [pytest.approx({d3: 2.0, d4: 1.0})]


def test_embedder_teacher_with_similar_queries_labels(tiny_model_master, tmp_path):
    from reranker.common.text import normalize_text
    from reranker.mining.pool import pool_from_jsonl
    from reranker.models.embed import Embedder

    records = [{"query": "what is the capital of france", "pos": [POOL[0]["title"] + " " + POOL[0]["text"]],
                "pos_ids": ["d0"], "pos_relevance": [2]},
               {"query": "capital of germany", "pos": [POOL[3]["text"]], "pos_ids": ["d3"]},
               {"query": "capital of italy", "pos": [POOL[4]["text"], POOL[3]["text"]], "pos_ids": ["d4", "d3"]}]
    common = ("--model_name_or_path", tiny_model_master, "--pooling", "mean", "--retriever", "bm25",
              "--range_for_sampling", "0-9", "--negative_number", "3", "--embedder_teacher",
              "--embedder_teacher_scale", "10", "--teacher_bm25_weight", "0.5", "--teacher_neighbors", "1")
    # At weight 1 the teacher is the nearest other query's votes alone, min-max normalised over the record.
    rows, summary = mine(tmp_path, *common, "--teacher_neighbor_weight", "1.0", records=records)
    assert summary["teacher_neighbors"] == {"k": 1, "weight": 1.0, "queries_with_votes": 3}
    embedder = Embedder(str(tiny_model_master), pooling="mean")
    vectors = embedder.encode([r["query"] for r in records], 64, 8)
    pool = pool_from_jsonl(write_jsonl(tmp_path / "p.jsonl", POOL))
    judged = [dict(zip(r["pos_ids"], r.get("pos_relevance", [1] * len(r["pos_ids"])), strict=True)) for r in records]
    for i, row in enumerate(rows):
        sims = vectors @ vectors[i]
        sims[i] = -np.inf
        j = int(np.argmax(sims))
        ids = [pool.ids[pool.by_key[normalize_text(t)]] for t in row["pos"] + row["neg"]]
        votes = [max(float(sims[j]), 0.0) ** 4 * judged[j].get(d, 0) for d in ids]
        low, high = min(votes), max(votes)
        expected = [10 * (v - low) / (high - low) if high > low else 0.0 for v in votes]
        assert row["pos_scores"] + row["neg_scores"] == pytest.approx(expected, abs=1e-3)
    # Below weight 1 the first stages' fusion (the run without neighbours) takes the rest.
    plain, _ = mine(tmp_path, *common[:-2], name="plain.jsonl", records=records)
    mixed, _ = mine(tmp_path, *common, "--teacher_neighbor_weight", "0.25", name="mixed.jsonl", records=records)
    for p, v, m in zip(plain, rows, mixed, strict=True):
        assert m["neg"] == p["neg"] == v["neg"]
        got, first, voted = (r["pos_scores"] + r["neg_scores"] for r in (m, p, v))
        assert got == pytest.approx([0.75 * a + 0.25 * b for a, b in zip(first, voted, strict=True)], abs=2e-3)
    with pytest.raises(ConfigError, match="add --embedder_teacher"):
        mine(tmp_path, "--teacher_neighbors", "5", name="x.jsonl")
    with pytest.raises(ConfigError, match=r"--teacher_neighbor_weight must be in \(0, 1\]"):
        mine(tmp_path, *common, "--teacher_neighbor_weight", "0", name="x.jsonl")
    with pytest.raises(ConfigError, match="--teacher_neighbors must be 0"):
        mine(tmp_path, *common[:-1], "-2", name="x.jsonl")
    bad = [dict(records[0], pos_relevance=[2, 1]), *records[1:]]
    with pytest.raises(DataError, match=r"in\.jsonl:1 field 'pos_relevance': expected one number per positive \(1\)"):
        mine(tmp_path, *common, name="x.jsonl", records=bad)
    unknown = [{"query": r["query"], "pos": [f"no pool passage {i}"]} for i, r in enumerate(records)]
    with pytest.raises(DataError, match="no query can vote"):
        mine(tmp_path, *common, "--teacher_bm25_weight", "0", name="x.jsonl", records=unknown)
