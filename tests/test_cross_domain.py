"""A reranker on a corpus without labels: the fused ranking through the API and eval, pseudo-dev folders from
synthetic queries, and the warning when nothing shows the pure ranking beats its first stage."""

import json
import logging

import numpy as np
import pytest
from conftest import write_jsonl
from test_eval import CORPUS, QRELS, QUERIES

import synth as synth_cli
from reranker.common.errors import ConfigError, DataError
from reranker.evaluation.arguments import EvalArguments
from reranker.evaluation.evaluate import evaluate
from reranker.retrieval import fusion
from reranker.training.dev_eval import load_dev
from reranker.workflows.pseudo_dev import build_pseudo_dev

DEFAULT = "+ fusion (default)"


@pytest.fixture
def beir(tmp_path):
    folder = tmp_path / "tinybeir"
    write_jsonl(folder / "corpus.jsonl", CORPUS)
    write_jsonl(folder / "queries.jsonl", [*QUERIES, {"_id": "q4", "text": "capital of Germany"}])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(QRELS)
    return folder


class Lookup:
    """A reranker whose score of a pair is looked up by passage text (unknown passages score 0)."""

    def __init__(self, by_text: dict[str, float]):
        self.by_text = by_text

    def compute_score(self, pairs, **_):
        return [self.by_text.get(passage, 0.0) for _, passage in pairs]


def texts():
    return {row["_id"]: (row["title"] + " " + row["text"]).strip() for row in CORPUS}


def test_rerank_with_first_stage_scores_equals_eval_fused_run(beir, tiny_model_master, caplog):
    from reranker import Reranker

    reranker = Reranker(str(tiny_model_master))
    args = EvalArguments(models=[str(tiny_model_master)], datasets=[str(beir)], top_k=4, cache_dir="none",
                         fusion_weight=0.3)
    rows, runs = evaluate(args, {"model": reranker})
    assert [r["system"] for r in rows] == ["bm25", "bm25 > model", f"bm25 > model {DEFAULT}"]
    fused_row = rows[2]
    assert fused_row["fusion_reranker_weight"] == 0.3 and fused_row["fusion_tuning"] == "default"
    first, fused = runs["tinybeir.bm25.trec"][0], runs["tinybeir.bm25.model.fusion_default.trec"][0]
    queries = {q["_id"]: q["text"] for q in QUERIES}
    for qid, docs in first.items():
        ids = list(docs)
        result = reranker.rerank(queries[qid], [texts()[d] for d in ids], first_stage_scores=[docs[d] for d in ids],
                                 weight=0.3)
        assert {ids[r["index"]]: r["score"] for r in result} == pytest.approx(fused[qid], abs=1e-9)
        assert [ids[r["index"]] for r in result] == sorted(fused[qid], key=lambda d: -fused[qid][d])
    # By hand for one query: weight x min-max(reranker) + (1 - weight) x min-max(first stage).
    result = reranker.rerank("q", ["a", "b", "c"], first_stage_scores=[10.0, 0.0, 5.0], weight=0.25)
    raw = np.array([r["reranker_score"] for r in sorted(result, key=lambda r: r["index"])])
    expected = 0.25 * (raw - raw.min()) / (raw.max() - raw.min()) + 0.75 * np.array([1.0, 0.0, 0.5])
    assert [r["score"] for r in sorted(result, key=lambda r: r["index"])] == pytest.approx(expected.tolist())
    default = reranker.rerank("q", ["a", "b", "c"], first_stage_scores=[10.0, 0.0, 5.0])
    assert default == reranker.rerank("q", ["a", "b", "c"], first_stage_scores=[10.0, 0.0, 5.0],
                                      weight=fusion.DEFAULT_WEIGHT)
    with pytest.raises(ConfigError, match="3 finite numbers, one per passage"):
        reranker.rerank("q", ["a", "b", "c"], first_stage_scores=[1.0, 2.0])
    assert reranker.rerank("q", [], first_stage_scores=[]) == []
    with pytest.raises(ConfigError, match="give those scores too"):
        reranker.rerank("q", ["a", "b"], weight=0.5)
    # The pure ranking warns, once per instance; the fused one does not.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reranker.rerank("q", ["a", "b"], first_stage_scores=[1.0, 0.0])
        assert "unchecked" not in caplog.text
        reranker.rerank("q", ["a", "b"])
        reranker.rerank("q", ["a", "b"])
    assert caplog.text.count("the pure reranker ranking, unchecked") == 1


def test_warning_without_dev_evidence_and_not_with_it(beir, tmp_path, caplog):
    # "capital of Germany" judged to Paris: BM25 ranks Berlin first, the scorer below ranks Paris first.
    dev_qrels = tmp_path / "dev.tsv"
    dev_qrels.write_text("query-id\tcorpus-id\tscore\nq4\td1\t1\n")
    good = Lookup({texts()["d1"]: 5.0, texts()["d4"]: 4.0, texts()["d5"]: 3.0})
    bad = Lookup({texts()["d2"]: 5.0, texts()["d3"]: 4.0})

    def run(scorer, **extra):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rows, _ = evaluate(EvalArguments(datasets=[str(beir)], top_k=4, cache_dir="none", **extra),
                               {"model": scorer})
        return {r["system"]: r for r in rows}, caplog.text

    rows, log = run(good)
    assert "'bm25 > model' is unchecked on this corpus" in log and f"'bm25 > model {DEFAULT}'" in log
    assert rows["bm25 > model"]["dev_evidence"] == "none"
    rows, log = run(good, dev_qrels=str(dev_qrels))
    assert "unchecked" not in log and "is not above" not in log
    assert rows["bm25 > model"]["dev_evidence"] == "dev"
    assert rows["bm25 > model"]["dev_evidence_nDCG@10"] > rows["bm25 > model"]["dev_evidence_first_stage_nDCG@10"]
    assert list(rows) == ["bm25", "bm25 > model", f"bm25 > model {DEFAULT}", "bm25 > model + fusion"]
    rows, log = run(bad, dev_qrels=str(dev_qrels))
    assert "'bm25 > model' is not above bm25 on the 1 dev queries" in log
    # A run file of the user's has no dev run: its reranking is unchecked although dev queries were given.
    user_run = tmp_path / "mine.run"
    user_run.write_text("q1 Q0 d1 1 2.0 mine\nq2 Q0 d4 1 1.0 mine\n")
    rows, log = run(good, dev_qrels=str(dev_qrels), first_stage=[str(user_run)])
    assert "the dev queries have no run of first stage mine.run" in log
    assert rows["mine.run > model"]["dev_evidence"] == "none"


def synth_records(tmp_path):
    rows = [{"query": "which city is the capital of France", "pos": ["x"], "pos_id": "d1"},
            {"query": "how to bake bread with yeast", "pos": ["x"], "pos_id": "d4"},
            {"query": "How to bake  bread with yeast", "pos": ["x"], "pos_id": "d2"},  # the same query again
            {"query": "at what temperature does water boil", "pos": ["x"], "pos_id": "d5"}]
    return write_jsonl(tmp_path / "synth.jsonl", rows)


def test_pseudo_dev_folder_one_source_per_query(beir, tmp_path):
    out = tmp_path / "pseudo"
    summary = build_pseudo_dev(str(synth_records(tmp_path)), str(beir), str(out), depth=3)
    assert summary["queries"] == 3 and summary["records_with_repeated_query"] == 1
    queries = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    sources = {"which city is the capital of France": "d1", "how to bake bread with yeast": "d4",
               "at what temperature does water boil": "d5"}
    assert [q["text"] for q in queries] == list(sources)
    qrels = (out / "dev_qrels.tsv").read_text().splitlines()[1:]
    assert qrels == [f"{q['_id']}\t{sources[q['text']]}\t1" for q in queries]
    dev = load_dev(str(out / "dev.jsonl"))  # reranker-train's --dev_file reads it
    assert [(q.query, q.relevance) for q in dev] == [(text, {source: 1}) for text, source in sources.items()]
    for q in dev:  # the source is relevant wherever it is among the candidates: never read as a negative
        assert len(q.doc_ids) <= 3 and q.relevance == {sources[q.query]: 1}
    assert all(sources[q.query] in q.doc_ids for q in dev)  # BM25 finds each source in this tiny corpus
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_pseudo_dev(str(synth_records(tmp_path)), str(beir), str(out))
    with pytest.raises(FileExistsError, match="not a pseudo-dev folder"):  # a user's folder is never replaced
        build_pseudo_dev(str(synth_records(tmp_path)), str(beir), str(beir), overwrite=True)
    assert (beir / "corpus.jsonl").is_file()
    sampled = build_pseudo_dev(str(synth_records(tmp_path)), str(beir), str(out), queries=2, overwrite=True)
    assert sampled["queries"] == 2 and len((out / "queries.jsonl").read_text().splitlines()) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pseudo")]  # no temporary folder left
    write_jsonl(tmp_path / "bad.jsonl", [{"query": "a", "pos_id": "d1"}, {"query": "b", "pos_id": "nope"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2 field 'pos_id': 'nope' is not a document"):
        build_pseudo_dev(str(tmp_path / "bad.jsonl"), str(beir), str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_synth_writes_a_pseudo_dev_and_eval_tunes_on_it(beir, tmp_path, tiny_model_master):
    out = tmp_path / "pseudo"
    summary = synth_cli.main(["--method", "title", "--corpus", str(beir), "--output_file", str(tmp_path / "t.jsonl"),
                              "--pseudo_dev", str(out), "--dev_depth", "4"])
    assert summary["pseudo_dev"]["queries"] == 1  # d1 is the one document with a title
    rows, _ = evaluate(EvalArguments(datasets=[str(beir)], top_k=4, cache_dir="none", pseudo_dev=str(out)),
                       {"model": Lookup({texts()["d1"]: 1.0})})
    tuned = {r["system"]: r for r in rows}["bm25 > model + fusion"]
    assert tuned["dev_queries"] == 1
    assert {r["system"]: r for r in rows}["bm25 > model"]["dev_evidence"] == "pseudo-dev"
    with pytest.raises(ConfigError, match="not both"):
        EvalArguments(datasets=[str(beir)], pseudo_dev=str(out), dev_qrels=str(out / "dev_qrels.tsv"))
    with pytest.raises(ConfigError, match="--pseudo_dev: .* exists"):
        synth_cli.main(["--method", "title", "--corpus", str(beir), "--output_file", str(tmp_path / "u.jsonl"),
                        "--pseudo_dev", str(out)])
    for target, option in ((tmp_path, "--output_file"), (beir, "--corpus")):
        with pytest.raises(ConfigError, match=f"would hold {option}"):
            synth_cli.main(["--method", "title", "--corpus", str(beir), "--output_file", str(tmp_path / "u.jsonl"),
                            "--pseudo_dev", str(target), "--overwrite"])
    assert not (tmp_path / "u.jsonl").exists()
    # A pseudo-dev of another corpus is refused before anything is scored.
    other = tmp_path / "other"
    write_jsonl(other / "corpus.jsonl", CORPUS[:3])
    write_jsonl(other / "queries.jsonl", QUERIES)
    (other / "qrels").mkdir()
    (other / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(ConfigError, match="was built over .* not over"):
        evaluate(EvalArguments(datasets=[str(other)], cache_dir="none", pseudo_dev=str(out)), {})


def test_training_ranks_a_pseudo_dev(tiny_model, train_file, tmp_path):
    from conftest import TOPICS

    import run

    docs = [{"_id": f"t{i}", "title": "", "text": pos} for i, (_, pos, _) in enumerate(TOPICS)]
    docs += [{"_id": f"n{i}-{j}", "title": "", "text": n} for i, (_, _, negs) in enumerate(TOPICS)
             for j, n in enumerate(negs)]
    corpus = write_jsonl(tmp_path / "pool.jsonl", docs)
    synth = write_jsonl(tmp_path / "synth.jsonl", [{"query": q, "pos": [p], "pos_id": f"t{i}"}
                                                   for i, (q, p, _) in enumerate(TOPICS)])
    build_pseudo_dev(str(synth), str(corpus), str(tmp_path / "pseudo"), depth=5)
    out = tmp_path / "out"
    run.main(["--model_name_or_path", str(tiny_model), "--train_data", str(train_file), "--output_dir", str(out),
              "--train_group_size", "4", "--per_device_train_batch_size", "3", "--query_max_len", "16",
              "--passage_max_len", "24", "--use_cpu", "--max_steps", "2", "--save_steps", "2",
              "--dev_file", str(tmp_path / "pseudo" / "dev.jsonl")])
    saved = json.loads((out / "dev_metrics.json").read_text())
    assert saved["queries"] == len(TOPICS) and [h["step"] for h in saved["history"]] == [2]
