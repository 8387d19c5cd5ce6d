"""Document expansion from training queries: which questions a document gets, that no query reads its own labels,
the expanded files, and eval.py's --expand_from and bm25_expanded."""

import json

import numpy as np
import pytest
from conftest import write_jsonl

from reranker.common.errors import ConfigError, DataError
from reranker.data.beir import load_beir
from reranker.data.expansion import (
    PREFIX,
    Expansion,
    PairTexts,
    expand_dev,
    expand_groups,
    expanded_corpus,
    read_training_queries,
)
from reranker.evaluation import evaluate
from reranker.evaluation.arguments import EvalArguments
from reranker.models.embed import Embedder


def unit(*xs):
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def hand_expansion(per_pair=2, max_words=16):
    texts = ["cats and dogs", "dogs at night", "fish in the sea", "cats and dogs", "birds one two three four"]
    vectors = np.stack([unit(1, 0, 0), unit(0.8, 0.6, 0), unit(0, 0, 1), unit(1, 0, 0), unit(0.6, 0.8, 0)])
    by_doc = {"d1": np.array([0, 1, 2, 4]), "d2": np.array([1, 3]), "d3": np.array([2])}
    return Expansion(["q0", "q1", "q2", "q3", "q4"], texts, vectors, by_doc, per_pair, max_words)


def test_questions_ranked_by_cosine_capped_and_own_left_out():
    exp = hand_expansion()
    near_q1 = unit(0.7, 0.7, 0)
    # d1's questions by cosine to the query: q1 (0.98), q4 (0.99)... computed, not assumed
    sims = {i: float(exp.vectors[i] @ near_q1) for i in (0, 1, 2, 4)}
    expected = [exp.query_texts[i] for i in sorted(sims, key=lambda i: -sims[i])[:2]]
    assert exp.questions(near_q1, "d1") == expected
    # A training query never reads itself: by id, or by text for a record without one (both of q0 and q3 then).
    # A twin under another id is another query: q0 reads q3.
    assert exp.own("q0", "cats and dogs") == frozenset({0})
    assert exp.own(None, "cats  and dogs") == frozenset({0, 3})
    # Ids are read as strings from the training file; a mined record's numeric id matches them.
    assert Expansion(["7"], ["x"], np.ones((1, 3), dtype=np.float32), {"d": np.array([0])}).own(7) == frozenset({0})
    assert exp.questions(unit(1, 0, 0), "d2", exp.own("q3")) == ["dogs at night"]
    assert exp.questions(unit(1, 0, 0), "d2", exp.own(None, "cats and dogs")) == ["dogs at night"]
    assert exp.questions(unit(1, 0, 0), "d2", exp.own("q0")) == ["cats and dogs", "dogs at night"]
    assert exp.questions(unit(0, 0, 1), "d3", exp.own("q2")) == []  # its only question was its own
    # Several ids filed under one text pool their questions, each once.
    pooled = hand_expansion(per_pair=9).questions(unit(1, 0, 0), ("d1", "d2"))
    assert sorted(pooled) == sorted(["cats and dogs", "dogs at night", "fish in the sea", "cats and dogs",
                                     "birds one two three four"])  # q1 is filed under both: once
    # Text: the questions first (truncation cuts the body, not them); no question, no change.
    assert exp.text(near_q1, "d3", "body") == f"{PREFIX}fish in the sea. body"
    assert exp.text(near_q1, "unjudged", "body") == "body"
    assert hand_expansion(per_pair=1, max_words=2).questions(unit(0.6, 0.8, 0), "d1") == ["birds one"]


def test_training_file_errors_name_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"query_id": "a", "query": "x", "pos_ids": ["d"]},
                                                  {"query_id": "b", "query": "y"}])
    with pytest.raises(DataError, match=r"train.jsonl:2 field .pos_ids.: missing"):
        read_training_queries(str(path))
    write_jsonl(path, [{"query_id": "a", "query": "x", "pos_ids": ["d"]}, {"query_id": "a", "query": "y",
                                                                           "pos_ids": []}])
    with pytest.raises(DataError, match=r"train.jsonl:2 field .query_id.: query id .a. appears twice"):
        read_training_queries(str(path))
    write_jsonl(path, [{"query_id": "a", "query": "x", "pos_ids": "d"}])
    with pytest.raises(DataError, match=r"train.jsonl:1 field .pos_ids.: expected a list of document ids"):
        read_training_queries(str(path))


def small_world(tmp_path):
    """Three training queries sharing judged documents, and the corpus they come from."""
    corpus = {"d1": "the first document", "d2": "the second document", "d3": "a third one"}
    train = [{"query_id": "t1", "query": "apples and pears", "pos_ids": ["d1", "d2"]},
             {"query_id": "t2", "query": "pears in winter", "pos_ids": ["d1"]},
             {"query_id": "t3", "query": "grapes", "pos_ids": ["d2", "d3"]}]
    return corpus, write_jsonl(tmp_path / "train.jsonl", train)


def test_expanded_training_groups_never_hold_their_own_query(tmp_path, tiny_model_master):
    corpus, train = small_world(tmp_path)
    embedder = Embedder(str(tiny_model_master), pooling="mean", device="cpu")
    exp = Expansion.from_train_file(str(train), embedder, per_pair=3)
    mined = write_jsonl(tmp_path / "mined.jsonl", [
        {"query_id": "t1", "query": "apples and pears", "pos": [corpus["d1"]], "neg": [corpus["d3"], "not a doc"],
         "neg_scores": [0.5, 0.1]},
        {"query": "grapes", "pos": [corpus["d2"]], "neg": [corpus["d1"]]},  # no id: its text decides
    ])
    counts = expand_groups(str(mined), str(tmp_path / "out.jsonl"), exp, embedder, corpus)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert counts == {"records": 2, "passages": 5, "expanded": 4, "not_in_corpus": 1,
                      "corpus_texts_filed_under_several_ids": 0}
    assert rows[0]["pos"] == [f"{PREFIX}pears in winter. the first document"]  # t1's own entry left out
    assert rows[0]["neg"] == [f"{PREFIX}grapes. a third one", "not a doc"] and rows[0]["neg_scores"] == [0.5, 0.1]
    assert rows[1]["pos"] == [f"{PREFIX}apples and pears. the second document"]
    assert rows[1]["neg"][0].startswith(PREFIX) and rows[1]["neg"][0].endswith("the first document")
    for row in rows:
        for text in row["pos"] + row["neg"]:
            asked = text.split(". ", 1)[0].removeprefix(PREFIX).split(" | ") if text.startswith(PREFIX) else []
            assert row["query"] not in asked

    dev = write_jsonl(tmp_path / "dev.jsonl", [{"query_id": "v1", "query": "pears", "relevance": {"d1": 1},
                                                "candidates": [{"id": "d1", "text": corpus["d1"], "score": 2.0},
                                                               {"id": "d9", "text": "unjudged", "score": 1.0}]}])
    assert expand_dev(str(dev), str(tmp_path / "dev_out.jsonl"), exp, embedder) == {
        "queries": 1, "candidates": 2, "expanded": 1}
    bad = write_jsonl(tmp_path / "bad_dev.jsonl", [{"query": "pears", "candidates": [{"text": "no id"}]}])
    with pytest.raises(DataError, match=r"bad_dev.jsonl:1 field .candidates.: expected a list of \{id, text\}"):
        expand_dev(str(bad), str(tmp_path / "never.jsonl"), exp, embedder)
    assert not (tmp_path / "never.jsonl").exists()
    cands = json.loads((tmp_path / "dev_out.jsonl").read_text())["candidates"]
    assert cands[0]["text"].startswith(PREFIX) and cands[0]["text"].endswith(corpus["d1"])
    assert cands[1]["text"] == "unjudged"


def make_beir(folder):
    """A test query that shares no word with its relevant document, but a training query that judged it does."""
    corpus = [{"_id": "d1", "title": "", "text": "ascorbic acid content of citrus"},
              {"_id": "d2", "title": "", "text": "vitamin pills sold in shops"},
              {"_id": "d3", "title": "", "text": "a study of sleep"}]
    queries = [{"_id": "t1", "text": "vitamin c in oranges"}, {"_id": "t2", "text": "how people sleep"},
               {"_id": "x1", "text": "oranges vitamin"}]
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nx1\td1\t2\n")
    train = write_jsonl(folder / "train.jsonl", [{"query_id": "t1", "query": "vitamin c in oranges",
                                                  "pos_ids": ["d1"]},
                                                 {"query_id": "t2", "query": "how people sleep", "pos_ids": ["d3"]}])
    return folder, train


class Recorder:
    """Stands in for a reranker to see which texts eval.py gives it; scores each pair by its length."""

    def __init__(self):
        self.pairs = []

    def compute_score(self, pairs, **_):
        self.pairs += pairs
        return [float(len(p)) for p in pairs]


def test_eval_reads_expanded_documents_and_ranks_bm25_over_them(tmp_path, tiny_model_master):
    folder, train = make_beir(tmp_path / "beir")
    args = EvalArguments(datasets=[str(folder)], first_stage=["bm25", "bm25_expanded"], top_k=3,
                         expand_from=str(train), expand_per_pair=2, dense_model=str(tiny_model_master),
                         dense_pooling="mean", cache_dir="none")
    recorder = Recorder()
    rows, _ = evaluate.evaluate(args, {"model": recorder})
    by = {r["system"]: r for r in rows}
    # BM25 ranks d2 (it shares "vitamin") above d1; over documents and their questions d1 comes first.
    assert by["bm25"]["nDCG@10"] < 1.0 and by["bm25_expanded"]["nDCG@10"] == pytest.approx(1.0)
    read = {p[1] for p in recorder.pairs}
    assert f"{PREFIX}vitamin c in oranges. ascorbic acid content of citrus" in read
    assert "vitamin pills sold in shops" in read  # judged by no training query: as it is
    assert expanded_corpus({"d1": "x", "d9": "y"}, str(train)) == {"d1": "x vitamin c in oranges", "d9": "y"}

    # The bm25_expanded run is cached by its training file's content: another file is not served the first's run.
    cached = {"datasets": [str(folder)], "first_stage": ["bm25_expanded"], "top_k": 3, "cache_dir": str(tmp_path),
              "dense_model": str(tiny_model_master), "dense_pooling": "mean"}
    first, _ = evaluate.evaluate(EvalArguments(**cached, expand_from=str(train)), {})
    other = write_jsonl(tmp_path / "other.jsonl", [{"query_id": "t1", "query": "vitamin c in oranges",
                                                    "pos_ids": ["d3"]}])
    second, _ = evaluate.evaluate(EvalArguments(**cached, expand_from=str(other)), {})
    assert first[0]["nDCG@10"] == pytest.approx(1.0) and second[0]["nDCG@10"] < 1.0

    # A scored query among the expansion's sources would read its own labels: refused, test or dev query alike.
    leaky = write_jsonl(tmp_path / "leaky.jsonl", [{"query_id": "x1", "query": "oranges vitamin",
                                                    "pos_ids": ["d1"]}])
    for stages in (["bm25"], ["bm25_expanded"]):
        with pytest.raises(DataError, match=r"beir \(test split\).*'x1'.*their own labels"):
            evaluate.evaluate(EvalArguments(datasets=[str(folder)], first_stage=stages, top_k=3,
                                            expand_from=str(leaky), dense_model=str(tiny_model_master),
                                            dense_pooling="mean", cache_dir="none"), {"model": Recorder()})
    dev_qrels = tmp_path / "dev_qrels.tsv"
    dev_qrels.write_text("query-id\tcorpus-id\tscore\nt2\td3\t1\n")  # t2 is one of the training file's queries
    with pytest.raises(DataError, match=r"--dev_qrels .*dev_qrels.tsv.*'t2'.*their own labels"):
        evaluate.evaluate(EvalArguments(datasets=[str(folder)], first_stage=["bm25"], top_k=3, expand_from=str(train),
                                        dev_qrels=str(dev_qrels), dense_model=str(tiny_model_master),
                                        dense_pooling="mean", cache_dir="none"), {"model": Recorder()})
    data = load_beir(folder, "test")
    with pytest.raises(DataError, match="their own labels"):
        PairTexts(Expansion.from_train_file(str(leaky), Embedder(str(tiny_model_master), pooling="mean")), None,
                  data)


@pytest.mark.parametrize("options, message", [
    ({"first_stage": ["bm25_expanded"]}, "bm25_expanded indexes documents with their training queries"),
    ({"expand_from": "x", "expand_per_pair": 0}, "--expand_per_pair must be 1 or more"),
])
def test_eval_expansion_option_errors(tiny_model_master, options, message):
    with pytest.raises(ConfigError, match=message):
        EvalArguments(datasets=["x"], dense_model=str(tiny_model_master), dense_pooling="mean", **options)
