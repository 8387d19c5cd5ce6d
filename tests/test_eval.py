"""eval.py: metrics against hand-worked cases, a tiny BEIR folder with every first stage, outputs and errors."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT, group_rows, run_launcher, write_jsonl

import eval as eval_cli
from reranker.common.errors import DataError
from reranker.evaluation.report import markdown_table
from reranker.retrieval.metrics import pairwise_metrics, ranking_metrics

L3 = math.log2(3)


def test_ranking_metrics_by_hand():
    qrels = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2, "d4": 1}, "q3": {"d9": 1}}
    run = {"q1": {"d2": 0.9, "d1": 0.8}, "q2": {"d4": 0.9, "d3": 0.5, "d5": 0.1}}  # q3 got nothing
    m = ranking_metrics(qrels, run)
    # q1: the relevant doc at rank 2 -> RR 1/2, nDCG = (1/log2 3) / 1 = 0.630930.
    # q2: graded gains as in BEIR's pytrec_eval: DCG = 1/1 + 2/log2 3 = 2.261860; IDCG = 2/1 + 1/log2 3 = 2.630930;
    #     nDCG = 0.859719; RR = 1 (d4 is relevant).  q3: unanswered -> 0 everywhere, still counted.
    assert m["nDCG@10"] == pytest.approx((1 / L3 + (1 + 2 / L3) / (2 + 1 / L3) + 0) / 3, abs=1e-6)
    assert m["MRR@10"] == pytest.approx((0.5 + 1 + 0) / 3, abs=1e-6)
    assert m["Recall@100"] == pytest.approx((1 + 1 + 0) / 3, abs=1e-6)
    # AP: q1 = 1/2; q2 = (1/1 + 2/2) / 2 = 1; q3 = 0.
    assert m["MAP"] == pytest.approx((0.5 + 1 + 0) / 3, abs=1e-6)


def test_pairwise_metrics_by_hand():
    # Logits -> sigmoid: 2 -> 0.88, 1 -> 0.73, -1 -> 0.27, 0.5 -> 0.62, -2 -> 0.12
    labels, scores = [1, 1, 0, 0, 0], [2.0, -1.0, 1.0, 0.5, -2.0]
    m = pairwise_metrics(labels, scores, threshold=0.5)
    # AUC: of the 2 x 3 positive-negative pairs, the positive wins 3 (2.0 beats all) + 1 (-1.0 beats -2.0) = 4/6.
    assert m["AUC"] == pytest.approx(4 / 6)
    # Predicted positive: 2.0, 1.0, 0.5 -> TP 1, FP 2, FN 1: precision 1/3, recall 1/2, F1 = 0.4.
    assert (m["precision"], m["recall"], m["F1"]) == pytest.approx((1 / 3, 1 / 2, 0.4))


CORPUS = [
    {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France."},
    {"_id": "d2", "title": "", "text": "Berlin is the capital of Germany."},
    {"_id": "d3", "title": "", "text": "Rome is the capital of Italy and has ancient ruins."},
    {"_id": "d4", "title": "", "text": "Bread is baked in an oven with flour and yeast."},
    {"_id": "d5", "title": "", "text": "Water freezes at zero degrees and boils at one hundred."},
    {"_id": "q3", "title": "", "text": "why does water boil"},  # same id as query q3: the query itself
]
QUERIES = [{"_id": "q1", "text": "capital of France"}, {"_id": "q2", "text": "how is bread baked in an oven"},
           {"_id": "q3", "text": "why does water boil"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td9\t1\nq2\td4\t1\nq3\td5\t1\n"  # d9 is not in the corpus


@pytest.fixture
def beir(tmp_path):
    folder = tmp_path / "tinybeir"
    write_jsonl(folder / "corpus.jsonl", CORPUS)
    write_jsonl(folder / "queries.jsonl", QUERIES)
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(QRELS)
    return folder


def run_eval(*argv):
    return eval_cli.main([str(a) for a in argv])


def test_bm25_first_stage_arguana_rule_and_missing_docs(beir, tmp_path):
    rows = run_eval("--datasets", beir, "--first_stage", "bm25", "--cache_dir", tmp_path / "cache")
    (row,) = rows
    assert row["system"] == "bm25" and row["qrels_docs_missing_from_corpus"] == 1
    # Lexically unambiguous: each relevant doc ranks first. q1 also has d9 (rel 1), unretrievable:
    # nDCG(q1) = 2 / (2 + 1/log2 3) = 0.760185, recall(q1) = 1/2; q2, q3 perfect. The self-match "q3" is dropped,
    # otherwise it would outrank d5 for q3.
    assert row["nDCG@10"] == pytest.approx((2 / (2 + 1 / L3) + 1 + 1) / 3, abs=1e-5)
    assert row["Recall@100"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-6)
    kept = run_eval("--datasets", beir, "--first_stage", "bm25", "--cache_dir", "none", "--keep_self_matches")
    assert kept[0]["MRR@10"] < row["MRR@10"]  # with the query's own doc kept, q3's answer drops to rank 2


def test_models_run_files_outputs_and_cache(beir, tiny_model_master, tmp_path, caplog):
    user_run = tmp_path / "my.run"
    user_run.write_text("q1 Q0 d2 1 9.0 mine\nq1 Q0 d1 2 8.0 mine\nq2 Q0 d4 1 5.0 mine\nq3 Q0 d1 1 1.0 mine\n")
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    rows = run_eval("--models", tiny_model_master, "--datasets", beir, "--first_stage", "bm25", "dense", user_run,
                    "--output_dir", out, "--cache_dir", cache, "--top_k", "3")
    systems = [r["system"] for r in rows]
    # Without dev queries each reranker is also fused with its first stage at the default weight.
    assert systems == [f"{s}{m}" for s in ("bm25", "dense", "my.run")
                       for m in ("", " > model", " > model + fusion (default)")]
    mine = rows[6]
    # q1: d1 (gain 2) at rank 2 of an ideal 2, 1 -> nDCG = (2/log2 3) / (2 + 1/log2 3); q2 perfect; q3 missed.
    assert mine["nDCG@10"] == pytest.approx(((2 / L3) / (2 + 1 / L3) + 1 + 0) / 3, abs=1e-5)
    for first_stage, reranked, fused in zip(rows[0::3], rows[1::3], rows[2::3], strict=True):
        assert reranked["delta_nDCG@10"] == pytest.approx(reranked["nDCG@10"] - first_stage["nDCG@10"])
        assert fused["delta_nDCG@10"] == pytest.approx(fused["nDCG@10"] - first_stage["nDCG@10"])
    saved = json.loads((out / "results.json").read_text())
    assert [r["system"] for r in saved["results"]] == systems
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        f"tinybeir.{s.replace(' > ', '.').replace(' + fusion (default)', '.fusion_default')}.trec" for s in systems)
    assert (out / "ndcg10.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Reranking reorders the first stage's candidates and adds none (no injected positives).
    first = {}
    for line in (out / "runs" / "tinybeir.my.run.trec").read_text().splitlines():
        first.setdefault(line.split()[0], set()).add(line.split()[2])
    for line in (out / "runs" / "tinybeir.my.run.model.trec").read_text().splitlines():
        assert line.split()[2] in first[line.split()[0]]
    assert len(list(cache.iterdir())) == 2  # bm25 and dense runs cached
    with caplog.at_level("INFO"):
        again = run_eval("--datasets", beir, "--first_stage", "bm25", "dense", "--cache_dir", cache, "--top_k", "3")
    assert "from the cache" in caplog.text
    assert [r["nDCG@10"] for r in again] == [rows[0]["nDCG@10"], rows[3]["nDCG@10"]]


def test_pairwise_files_folders_and_dataset_folders(tiny_model_master, tmp_path):
    import datasets

    data = write_jsonl(tmp_path / "pairs" / "a.jsonl", group_rows(1))
    datasets.Dataset.from_list(group_rows(1)).save_to_disk(str(tmp_path / "hub"))
    rows = run_eval("--models", tiny_model_master, "--datasets", data, tmp_path / "pairs", tmp_path / "hub",
                    "--split", "train")
    assert len(rows) == 3
    for row in rows:
        assert row["queries"] == 6 and row["pairs"] == 30
        assert 0 <= row["AUC"] <= 1 and 0 <= row["nDCG@10"] <= 1 and "Recall@100" not in row
    assert rows[0]["AUC"] == pytest.approx(rows[2]["AUC"])  # same data through the file and the dataset folder


@pytest.mark.parametrize("breakage, message", [
    (lambda f: (f / "queries.jsonl").unlink(), "queries.jsonl \\(queries\\) is missing"),
    (lambda f: (f / "qrels" / "test.tsv").write_text("qid\tdocid\trel\nq1\td1\t1\n"),
     r"test\.tsv:1: expected the header"),
    (lambda f: (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n"),
     r"test\.tsv:2 field 'score'"),
])
def test_bad_beir_folders(beir, tmp_path, breakage, message):
    breakage(beir)
    with pytest.raises(DataError, match=message):
        run_eval("--datasets", beir, "--cache_dir", "none", "--output_dir", tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()


def test_bad_run_file_and_model_path_exit_nonzero(beir, tmp_path):
    bad_run = tmp_path / "bad.run"
    bad_run.write_text("q1 Q0 d1 1 2.0 x\nq1 Q0 nope 2 1.0 x\n")
    with pytest.raises(DataError, match=r"bad\.run:2: document id 'nope' is not in the corpus"):
        run_eval("--datasets", beir, "--first_stage", bad_run)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for argv in (["--datasets", str(beir), "--first_stage", str(bad_run)],
                 ["--models", str(tmp_path / "no-model"), "--datasets", str(beir)]):
        result = subprocess.run([sys.executable, str(ROOT / "eval.py"), *argv, "--output_dir", str(tmp_path / "o")],
                                env=env, capture_output=True, text=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert ("bad.run:2" in result.stderr) or ("no-model" in result.stderr)
        assert not (tmp_path / "o").exists()


def test_hybrid_first_stage_max_queries_and_dev_checks(beir, tiny_model_master, tmp_path):
    from reranker.common.errors import ConfigError
    from reranker.retrieval import fusion

    common = ["--datasets", beir, "--dense_model", tiny_model_master, "--dense_pooling", "mean", "--cache_dir",
              "none", "--top_k", "3"]
    rows = run_eval(*common, "--first_stage", "bm25", "dense", "hybrid", "--output_dir", tmp_path / "out")
    assert [r["system"] for r in rows] == ["bm25", "dense", "hybrid"]
    assert rows[2]["hybrid_bm25_weight"] == 0.5 and rows[2]["rrf_k"] == 60
    # Weight 1 (BM25 only) and 0 (dense only) reproduce the two rankings; 0.5 is the fusion of both.
    out = tmp_path / "w"
    run_eval(*common, "--first_stage", "bm25", "dense", "hybrid", "--hybrid_bm25_weight", "0", "--output_dir", out)
    from reranker.retrieval.first_stage import read_run

    dense, hybrid = (read_run(out / "runs" / f"tinybeir.{s}.trec") for s in ("dense", "hybrid"))
    assert {q: fusion.ranked(d) for q, d in hybrid.items()} == {q: fusion.ranked(d) for q, d in dense.items()}
    only_bm25 = run_eval(*common, "--first_stage", "bm25", "hybrid", "--hybrid_bm25_weight", "1.0")
    assert only_bm25[1]["nDCG@10"] == pytest.approx(only_bm25[0]["nDCG@10"])
    # The first N judged queries only.
    (row,) = run_eval(*common, "--first_stage", "bm25", "--max_queries", "2")
    assert row["queries"] == 2
    # Dev qrels must not share queries with the evaluated split, and tuning needs them.
    with pytest.raises(ConfigError, match="shares 3 queries with the test split"):
        run_eval(*common, "--first_stage", "bm25", "--dev_qrels", beir / "qrels" / "test.tsv")
    with pytest.raises(ConfigError, match="--tune_hybrid needs --dev_qrels"):
        run_eval(*common, "--first_stage", "hybrid", "--tune_hybrid")


def test_a_bf16_dense_run_is_cached_apart_from_earlier_autocast_ones(beir, tiny_model_master, tmp_path,
                                                                     monkeypatch):
    """The dense first stage in bf16 embeds with bf16 weights: its cache key says so (earlier versions cached the
    vectors autocast gave under the same dtype); fp32's key says nothing new."""
    from reranker.evaluation import first_stages

    seen = []
    original = first_stages.fs.cached_run
    monkeypatch.setattr(first_stages.fs, "cached_run", lambda cache, data, settings, *a: seen.append(dict(settings))
                        or original(cache, data, settings, *a))
    common = ["--datasets", beir, "--dense_model", tiny_model_master, "--dense_pooling", "mean", "--cache_dir",
              tmp_path / "cache", "--top_k", "3", "--first_stage", "dense"]
    run_eval(*common, "--dtype", "bf16", "--output_dir", tmp_path / "bf16")
    run_eval(*common, "--dtype", "fp32", "--output_dir", tmp_path / "fp32")
    dense = [settings for settings in seen if settings.get("kind") == "dense"]
    assert dense[0]["weights"] == "bf16" and "weights" not in dense[1]


def test_rerank_at_depth_by_hand():
    from reranker.evaluation.rerank import rerank_at_depth

    first = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    reranked = {"q": {"a": 0.1, "b": 0.5, "c": 0.9}}
    order = {k: [d for d, _ in sorted(rerank_at_depth(first, reranked, k)["q"].items(), key=lambda kv: -kv[1])]
             for k in (1, 2, 3, 10)}
    assert order == {1: ["a", "b", "c"], 2: ["b", "a", "c"], 3: ["c", "b", "a"], 10: ["c", "b", "a"]}
    # Ties stay ties: b and c tie in the first stage and in the reranker, and the scorer breaks them the same way
    # at depth 1 as in the first stage's row, and at full depth as in the reranker's.
    first = {"q": {"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}}
    reranked = {"q": {"a": 0.1, "b": 0.5, "c": 0.5, "d": 0.9}}
    shallow, full = rerank_at_depth(first, reranked, 1)["q"], rerank_at_depth(first, reranked, 4)["q"]
    assert shallow["a"] > shallow["b"] == shallow["c"] > shallow["d"]
    assert full == reranked["q"]
    for qrels in ({"q": {"b": 1}}, {"q": {"c": 1}}):
        assert ranking_metrics(qrels, rerank_at_depth(first, reranked, 1)) == ranking_metrics(qrels, first)
        assert ranking_metrics(qrels, rerank_at_depth(first, reranked, 4)) == ranking_metrics(qrels, reranked)


def test_depth_curve_rows_with_dev_figures(beir, tiny_model_master, tmp_path):
    from reranker.common.errors import ConfigError
    from reranker.evaluation.arguments import EvalArguments
    from reranker.evaluation.evaluate import evaluate
    from reranker.evaluation.rerank import rerank_at_depth
    from reranker.models.inference import Reranker

    write_jsonl(beir / "queries.jsonl", [*QUERIES, {"_id": "q4", "text": "capital of Italy"},
                                         {"_id": "q5", "text": "baking bread with yeast"}])
    dev_qrels = tmp_path / "dev.tsv"
    dev_qrels.write_text("query-id\tcorpus-id\tscore\nq4\td3\t1\nq5\td4\t1\n")
    out = tmp_path / "out"
    rows = run_eval("--models", tiny_model_master, "--datasets", beir, "--first_stage", "bm25", "--top_k", "3",
                    "--depth_curve", "2", "1", "--dev_qrels", dev_qrels, "--cache_dir", "none", "--output_dir", out)
    by_system = {r["system"]: r for r in rows}
    assert list(by_system) == ["bm25", "bm25 > model", "bm25 > model @1", "bm25 > model @2",
                               "bm25 > model + fusion (default)", "bm25 > model + fusion"]
    # Reranking the first document alone changes nothing.
    assert by_system["bm25 > model @1"]["nDCG@10"] == pytest.approx(by_system["bm25"]["nDCG@10"])
    assert by_system["bm25 > model @1"]["delta_nDCG@10"] == pytest.approx(0.0)
    # Depth 2 is the full depth's runs recombined (in memory: the run files round scores to 6 decimals, and a tiny
    # model's scores then tie); each depth row carries its dev figure, the full depth too.
    args = EvalArguments(models=[str(tiny_model_master)], datasets=[str(beir)], top_k=3, depth_curve=[1, 2],
                         dev_qrels=str(dev_qrels), cache_dir="none")
    again, runs = evaluate(args, {"model": Reranker(str(tiny_model_master))})
    assert again == rows
    test_qrels = {"q1": {"d1": 2, "d9": 1}, "q2": {"d4": 1}, "q3": {"d5": 1}}
    dev = {"q4": {"d3": 1}, "q5": {"d4": 1}}
    first, reranked = (runs[f"tinybeir.{n}.trec"][0] for n in ("bm25", "bm25.model"))
    dev_first, dev_reranked = (runs[f"dev/tinybeir.{n}.trec"][0] for n in ("bm25", "bm25.model"))
    assert by_system["bm25 > model @2"]["nDCG@10"] == pytest.approx(
        ranking_metrics(test_qrels, rerank_at_depth(first, reranked, 2))["nDCG@10"])
    assert by_system["bm25 > model @2"]["dev_nDCG@10"] == pytest.approx(
        ranking_metrics(dev, rerank_at_depth(dev_first, dev_reranked, 2))["nDCG@10"])
    assert by_system["bm25 > model"]["dev_nDCG@10"] == pytest.approx(ranking_metrics(dev, dev_reranked)["nDCG@10"])
    assert [r["rerank_depth"] for r in rows if "rerank_depth" in r] == [1, 2]
    assert "| dev_nDCG@10 |" in markdown_table(rows)
    with pytest.raises(ConfigError, match=r"--depth_curve depths must be integers from 1 to --top_k - 1 \(2\), "
                                          r"got \[3\]"):
        run_eval("--datasets", beir, "--top_k", "3", "--depth_curve", "3")


def test_chart_one_panel_per_dataset_and_no_bar_for_a_missing_system(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reranker.evaluation.report import bar_chart, chart_title

    rows = [{"dataset": "a", "system": "bm25", "nDCG@10": 0.5, "first_stage": "bm25"},
            {"dataset": "a", "system": "bm25 > m", "nDCG@10": 0.6, "first_stage": "bm25"},
            {"dataset": "b", "system": "bm25", "nDCG@10": 0.3, "first_stage": "bm25"},
            {"dataset": "a", "system": "bm25 > m @10", "nDCG@10": 0.55, "rerank_depth": 10}]
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig) or real_close(fig))
    title = chart_title("test", 100, True, False)
    assert title == "nDCG@10, test split: each first stage's top 100 reranked"
    path = bar_chart(tmp_path, rows, title)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == ["a", "b"] and fig._suptitle.get_text() == title
    # dataset b was not reranked by m: one bar (bm25), not a bar at 0 for "bm25 > m"; depth rows are left out
    assert [len(ax.patches) for ax in panels] == [2, 1]
    assert [t.get_text() for t in panels[1].get_xticklabels()] == ["bm25"]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_two_process_eval_matches_one(beir, tiny_model_master, tmp_path):
    # Two gloo processes under torchrun (scripts/eval.sh, NPROC=2) deal out whole batches of pairs: the same
    # scores, rows and run files as one process; rank 0 alone writes.
    pairs = write_jsonl(tmp_path / "pairs.jsonl", group_rows(1))
    common = ["--models", str(tiny_model_master), "--datasets", str(beir), str(pairs), "--first_stage", "bm25",
              "--top_k", "4", "--batch_size", "3", "--cache_dir", "none"]
    for nproc, name in ((2, "two"), (1, "one")):
        result = run_launcher("eval.sh", [*common, "--output_dir", tmp_path / name], nproc)
        assert result.stdout.count("| tinybeir | bm25 > model |") == 1  # printed once, by rank 0
    one, two = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("one", "two"))
    assert two["results"] == one["results"]
    runs = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one" / "runs").rglob("*.trec"))
    assert runs and runs == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.trec"))
    for run in runs:
        assert (tmp_path / "two" / run).read_text() == (tmp_path / "one" / run).read_text()
