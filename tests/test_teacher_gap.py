"""benchmarks/teacher_gap.py: a reranker against the first-stage fusion it was taught by."""

import json

import pytest
from conftest import TOPICS, load_benchmark, write_jsonl

from reranker.common.errors import ConfigError, DataError


def load_tool():
    return load_benchmark("teacher_gap")


@pytest.fixture
def beir(tmp_path):
    docs, dev = [], []
    for i, (query, pos, negs) in enumerate(TOPICS):
        docs.append({"_id": f"p{i}", "title": "", "text": pos})
        docs += [{"_id": f"n{i}-{j}", "title": "", "text": t} for j, t in enumerate(negs)]
        dev.append({"query_id": f"q{i}", "query": query, "candidates": [{"id": f"p{i}", "text": pos}],
                    "relevance": {f"p{i}": 1}})
    write_jsonl(tmp_path / "beir" / "corpus.jsonl", docs)
    return tmp_path / "beir", write_jsonl(tmp_path / "dev.jsonl", dev)


def test_figures_of_a_tiny_model(tmp_path, tiny_model, beir):
    tool = load_tool()
    corpus, dev = beir
    out = tmp_path / "gap.json"
    result = tool.main(["--model", str(tiny_model), "--dev_file", str(dev), "--corpus", str(corpus),
                        "--depth", "10", "--embedder", str(tiny_model), "--dtype", "fp32",
                        "--teacher_bm25_weight", "1.0", "--json", str(out)])
    assert result["queries"] == len(TOPICS) and result["depth"] == 10
    fused = result["model_fused_into_teacher"]
    assert set(fused) == set(tool.MODEL_WEIGHTS)
    # The endpoints: the teacher alone, the model alone. With BM25's weight 1 the teacher is BM25 itself.
    assert fused[0.0] == result["teacher"] == result["bm25"]
    assert fused[1.0] == result["model"]
    for key in ("bm25", "embedder", "teacher", "model"):
        assert 0.0 <= result[key] <= 1.0
    assert result["bm25"] > 0.9  # every positive shares its query's words; the negatives mostly do not
    assert result["teacher_bm25_part"] == result["bm25"]  # whole documents
    written = json.loads(out.read_text())
    assert written["teacher"] == result["teacher"] and len(written["model_fused_into_teacher"]) == 11


def test_bad_input(tmp_path, tiny_model, beir):
    tool = load_tool()
    corpus, dev = beir
    common = ["--model", str(tiny_model), "--corpus", str(corpus), "--embedder", str(tiny_model)]
    with pytest.raises(ConfigError, match="--depth"):
        tool.main([*common, "--dev_file", str(dev), "--depth", "5"])
    with pytest.raises(ConfigError, match="--teacher_bm25_weight"):
        tool.main([*common, "--dev_file", str(dev), "--teacher_bm25_weight", "1.5"])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query_id": "q", "query": "x",
                                                "candidates": [{"id": "a", "text": "t"}], "relevance": {"a": 0}}])
    with pytest.raises(DataError, match="relevant"):
        tool.main([*common, "--dev_file", str(bad)])


def test_teacher_over_the_first_words(tmp_path, tiny_model, beir):
    tool = load_tool()
    corpus, dev = beir
    common = ["--model", str(tiny_model), "--dev_file", str(dev), "--corpus", str(corpus), "--depth", "10",
              "--embedder", str(tiny_model), "--dtype", "fp32", "--teacher_bm25_weight", "1.0"]
    whole = tool.main(common)
    longer_than_any = tool.main([*common, "--teacher_words", "1000"])
    assert longer_than_any["teacher"] == whole["teacher"] and longer_than_any["teacher_words"] == 1000
    # BM25 over each document's first word alone ranks the positives worse.
    first_word = tool.main([*common, "--teacher_words", "1"])
    assert first_word["teacher_bm25_part"] == first_word["teacher"] < whole["teacher"]
    assert first_word["bm25"] == whole["bm25"]  # the candidates and BM25's own row stay whole-document
    with pytest.raises(ConfigError, match="--teacher_words"):
        tool.main([*common, "--teacher_words", "-1"])


def test_teacher_with_similar_training_queries_labels(tmp_path, tiny_model, beir):
    tool = load_tool()
    corpus, dev = beir
    common = ["--model", str(tiny_model), "--dev_file", str(dev), "--corpus", str(corpus), "--depth", "10",
              "--embedder", str(tiny_model), "--dtype", "fp32", "--teacher_neighbors", "1"]
    # Training queries with the dev queries' own texts: each dev query's nearest neighbour is its twin, whose
    # label the votes alone (weight 1) follow: the positive, or a chosen negative.
    right = write_jsonl(tmp_path / "right.jsonl", [{"query": q, "pos_ids": [f"p{i}"], "pos_relevance": [2]}
                                                   for i, (q, _, _) in enumerate(TOPICS)])
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"query": q, "pos_ids": [f"n{i}-0"]}
                                                   for i, (q, _, _) in enumerate(TOPICS)])
    voted = tool.main([*common, "--train_file", str(right), "--teacher_neighbor_weight", "1.0"])
    assert voted["teacher"] == 1.0 and voted["teacher_neighbors"] == 1
    misled = tool.main([*common, "--train_file", str(wrong), "--teacher_neighbor_weight", "1.0"])
    assert misled["teacher"] < 0.7
    # Below weight 1 the first stages take the rest; the model at weight 0 is the teacher, at 1 itself.
    mixed = tool.main([*common, "--train_file", str(wrong), "--teacher_neighbor_weight", "0.1"])
    assert misled["teacher"] < mixed["teacher"]
    assert mixed["model_fused_into_teacher"][0.0] == mixed["teacher"]
    assert mixed["model_fused_into_teacher"][1.0] == mixed["model"] == misled["model"]
    with pytest.raises(ConfigError, match="--train_file"):
        tool.main(common)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "x", "pos": ["a text, no id"]}])
    with pytest.raises(DataError, match=r"bad\.jsonl:1 field 'pos_ids'"):
        tool.main([*common, "--train_file", str(bad)])
    graded = write_jsonl(tmp_path / "graded.jsonl", [{"query": "x", "pos_ids": ["p0", "p1"], "pos_relevance": [2]}])
    with pytest.raises(DataError, match=r"graded\.jsonl:1 field 'pos_relevance': expected one number per positive"):
        tool.main([*common, "--train_file", str(graded)])
