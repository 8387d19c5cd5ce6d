"""scripts/iterate.sh: two rounds on tiny data (folders, the stopping rule, the reranker's false-negative filter)."""

import json
import logging
from pathlib import Path

import pytest
import yaml
from conftest import write_jsonl
from test_pipeline import TOPICS, make_beir

from reranker.cli import iterate as iterate_cli
from reranker.common.errors import ConfigError, DataError
from reranker.mining.negatives import SelectionRules, select_negatives
from reranker.workflows import beir_train, iterate


def test_stopping_rule():
    assert not iterate.should_stop([0.5], 0.0)
    assert not iterate.should_stop([0.5, 0.6], 0.0)
    assert iterate.should_stop([0.5, 0.5], 0.0)  # no better: stop
    assert iterate.should_stop([0.5, 0.6, 0.55], 0.0)  # worse than the best so far
    assert iterate.should_stop([0.5, 0.52], 0.05)  # better, but not by the margin asked for


def test_margin_filter_reads_any_scale():
    import numpy as np

    rows, scores = np.arange(6), np.array([3.0, 2.5, 0.4, -0.2, -1.0, -3.0])
    keys = [f"k{i}" for i in range(6)]
    rules = SelectionRules(0, 6, 6, margin=1.0)
    # Positive scored 0.5 (a logit): candidates above 0.5 - 1.0 = -0.5 are likely positives and dropped.
    chosen = select_negatives(rows, scores, keys, set(), set(), "q", 0.5, rules, query_index=0)
    assert chosen.rows == [4, 5] and chosen.false_negatives == 4


def make_config(tmp_path, model, **changes):
    beir = tmp_path / "beir" if (tmp_path / "beir").exists() else make_beir(tmp_path / "beir")
    data = tmp_path / "data"
    beir_train.build(beir, data, dev_queries=3, seed=0, dev_depth=6)
    config = {"train_file": str(data / "train.jsonl"), "corpus": str(beir), "dev_file": str(data / "dev.jsonl"),
              "output_dir": str(tmp_path / "rounds"), "max_rounds": 2, "min_improvement": -1.0,
              "range_for_sampling": "0-8", "fn_margin": 0.0,
              "mine": {"retriever": "bm25", "range_for_sampling": "0-8", "negative_number": 3},
              "train": {"model_name_or_path": str(model), "train_group_size": 4, "per_device_train_batch_size": 2,
                        "query_max_len": 16, "passage_max_len": 24, "max_steps": 3, "save_steps": 3,
                        "learning_rate": 1e-3, "use_cpu": True, "logging_steps": 1}}
    config.update(changes)
    path = tmp_path / "rounds.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_two_rounds_folders_filter_and_skip(tiny_model_master, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    config = make_config(tmp_path, tiny_model_master, max_rounds=1)
    rows = iterate_cli.main([str(config)])
    out = tmp_path / "rounds"
    assert [r["round"] for r in rows] == [0, 1] and sum(r["best"] for r in rows) == 1
    for r in (0, 1):
        folder = out / f"round_{r}"
        for name in ("mined.jsonl", "mined.summary.json", "mine.log", "train.log", "metrics.json",
                     "model/config.json", "model/dev_metrics.json"):
            assert (folder / name).is_file(), f"round_{r}/{name}"
    # Round 1 mined with round 0's reranker: its summary says so, and with margin 0 every candidate the old model
    # scored above the positive was dropped as a likely false negative.
    summary = json.loads((out / "round_1" / "mined.summary.json").read_text())
    assert summary["settings"]["rerank_model"] == str(out / "round_0" / "model")
    assert summary["reranked_pairs"] > 0
    assert rows[1]["filtered_false_negatives"] == summary["filtered_false_negatives"]
    assert (out / "rounds.md").read_text().count("\n") == 4  # header, rule, two rounds
    # A re-run skips both rounds.
    caplog.clear()
    iterate_cli.main([str(config)])
    assert sum("done before, skipped" in m for m in caplog.messages) == 2


@pytest.mark.slow
def test_stops_when_dev_metric_stops_improving(tiny_model_master, tmp_path):
    # min_improvement 1.0 cannot be met (nDCG is at most 1): round 1 ends the loop, round 2 never runs.
    rows = iterate_cli.main([str(make_config(tmp_path, tiny_model_master, min_improvement=1.0))])
    assert [r["round"] for r in rows] == [0, 1]
    assert not (tmp_path / "rounds" / "round_2").exists()


@pytest.mark.parametrize("change, message", [
    ({"mine": {"rerank_model": "x"}}, "mine.rerank_model is set by the driver"),
    ({"dev_file": "missing.jsonl"}, "dev_file missing.jsonl does not exist"),
    ({"rounds": 3}, "unknown option"),
    ({"dev_queries": 2}, "give one of 'dev_file'"),
    ({"dev_file": None}, "give one of 'dev_file'"),
    ({"train_file": [3]}, "must be a path or a list"),
    ({"dev_file": None, "dev_queries": "60"}, "'dev_queries' must be a whole number"),
    ({"mine": {"negative_numbr": 3}}, "negative_numbr is not an option of reranker-mine .did you mean"),
    ({"embedder": {"output_dir": "x"}}, "embedder.output_dir is set by the driver"),
    ({"embedder": {}, "embedder_mine": {"teacher_model": "x"}}, "embedder_mine.teacher_model is set by the driver"),
    ({"embedder_mine": {"negative_number": 3}}, "embedder_mine mines .* there is no embedder section"),
    ({"embedder": {"loss": "mnrl"}}, "embedder.loss 'mnrl': it is the loss of the rounds after 0"),
    ({"embedder": {"train_group_size": 1}}, "embedder.train_group_size 1: the rounds after 0 distil"),
    ({"embedder": {"normalize": False}}, "embedder.normalize false"),
    ({"embedder": {"lerning_rate": 1}}, "embedder.lerning_rate is not an option of reranker-train-embedder"),
])
def test_config_errors(tiny_model_master, tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        iterate_cli.main([str(make_config(tmp_path, tiny_model_master, **change))])



def synthetic_pairs(tmp_path):
    """What synth.py writes for the tiny corpus: an InPars-like file (questions) and a crop-like file."""
    beir = make_beir(tmp_path / "beir")
    inpars = [{"query": q, "pos": [a], "pos_id": f"a{i}", "score": -0.5} for i, (q, a, _) in enumerate(TOPICS)]
    crops = [{"query": a.split()[0] + " " + a.split()[-1], "pos": [a], "pos_id": f"a{i}", "score": None}
             for i, (_, a, _) in enumerate(TOPICS)]
    write_jsonl(tmp_path / "inpars.jsonl", inpars)
    write_jsonl(tmp_path / "crops.jsonl", crops)
    return beir, [str(tmp_path / "inpars.jsonl"), str(tmp_path / "crops.jsonl")]


def test_carved_dev_comes_from_the_first_file_and_its_documents_leave_training(tmp_path):
    beir, files = synthetic_pairs(tmp_path)
    summary = beir_train.carve_pairs_dev(files, str(beir), tmp_path / "data", dev_queries=3, seed=0, depth=5)
    dev = [json.loads(line) for line in (tmp_path / "data" / "dev.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    questions = {q for q, _, _ in TOPICS}
    assert len(dev) == 3 and all(d["query"] in questions for d in dev)
    dev_docs = {doc for d in dev for doc in d["relevance"]}
    assert len(dev_docs) == 3 and all(len(d["candidates"]) == 5 for d in dev)
    # Neither the dev questions nor a crop of a dev document is trained on; everything else is, in file order.
    assert not any(r["pos_id"] in dev_docs for r in train)
    assert len(train) == 2 * len(TOPICS) - 3 - 3 and summary["dropped_pairs_on_dev_documents"] == 3
    assert [r["query"] for r in train[: len(TOPICS) - 3]] == [q for q, _, _ in TOPICS if q not in
                                                              {d["query"] for d in dev}]
    qrels = (tmp_path / "data" / "dev_qrels.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore" and len(qrels) == 4
    # Seeded: the same split again.
    beir_train.carve_pairs_dev(files, str(beir), tmp_path / "again", dev_queries=3, seed=0, depth=5)
    assert (tmp_path / "again" / "dev.jsonl").read_text() == (tmp_path / "data" / "dev.jsonl").read_text()


def test_carved_dev_needs_source_document_ids(tmp_path):
    beir, files = synthetic_pairs(tmp_path)
    rows = [json.loads(line) for line in open(files[0])]
    rows[4]["pos_id"] = "nowhere"
    write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=r"bad.jsonl:5 field .pos_id.: .nowhere. is not a document"):
        beir_train.carve_pairs_dev([str(tmp_path / "bad.jsonl")], str(beir), tmp_path / "data", dev_queries=2)
    with pytest.raises(DataError, match="only 12 pairs"):
        beir_train.carve_pairs_dev(files, str(beir), tmp_path / "data", dev_queries=12)


def test_rounds_without_labels_carve_their_dev_split(tiny_model_master, tmp_path):
    beir, files = synthetic_pairs(tmp_path)
    config = make_config(tmp_path, tiny_model_master, max_rounds=0, train_file=files, dev_file=None,
                         dev_queries=3, dev_depth=5, corpus=str(beir))
    rows = iterate_cli.main([str(config)])
    data = tmp_path / "rounds" / "data"
    assert [r["round"] for r in rows] == [0]
    assert json.loads((data / "summary.json").read_text())["dev_queries"] == 3
    mined = (tmp_path / "rounds" / "round_0" / "mined.jsonl").read_text().splitlines()
    assert len(mined) == (data / "train.jsonl").read_text().count("\n")
    dev_metrics = json.loads((tmp_path / "rounds" / "round_0" / "model" / "dev_metrics.json").read_text())
    assert dev_metrics["queries"] == 3 and dev_metrics["dev_file"] == str(data / "dev.jsonl")


def test_several_labelled_train_files_are_concatenated(tiny_model_master, tmp_path):
    from reranker.workflows.stages import Stages

    path = make_config(tmp_path, tiny_model_master)
    data = tmp_path / "data"
    lines = (data / "train.jsonl").read_text().splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:2]))  # no newline at the end: still one record per line
    (tmp_path / "b.jsonl").write_text("\n".join(lines[2:]) + "\n")
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "train_file": [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]}))
    config = iterate.IterateConfig.load(str(path))
    out = tmp_path / "rounds"
    train, dev = iterate.prepare_data(config, out, Stages(out), "corpus")
    assert dev == str(data / "dev.jsonl")
    assert open(train).read().splitlines() == lines
    # Done, and skipped on a re-run; made again when its output is gone.
    stamp = (out / ".stages" / "data.json").read_text()
    Path(train).unlink()
    iterate.prepare_data(config, out, Stages(out), "corpus")
    assert open(train).read().splitlines() == lines and (out / ".stages" / "data.json").read_text() == stamp


def test_a_bad_record_is_reported_in_the_users_file(tmp_path):
    from reranker.workflows.stages import Stages

    beir, files = synthetic_pairs(tmp_path)
    (tmp_path / "crops.jsonl").write_text(open(files[1]).read() + '{"query": "q", "pos": "not a list"}\n')
    config = iterate.IterateConfig(train_file=files, corpus=str(beir), output_dir=str(tmp_path / "r"),
                                   dev_queries=2)
    with pytest.raises(DataError, match=r"crops\.jsonl:13 field 'pos'"):
        iterate.prepare_data(config, tmp_path / "r", Stages(tmp_path / "r"), "corpus")
    assert not (tmp_path / "r" / "data" / "train.jsonl").exists()


@pytest.mark.slow
def test_rounds_with_an_embedder_teach_each_other(tiny_model_master, tmp_path, caplog):
    """Round 0: an embedder from BM25 negatives mines the reranker's negatives. Round 1: round 0's reranker scores
    round 0's embedder's candidates, a new embedder is distilled from those scores and mines round 1's reranker
    negatives (reranked by round 0's reranker, as without an embedder)."""
    caplog.set_level(logging.INFO)
    embedder = {"model_name_or_path": str(tiny_model_master), "pooling": "mean", "max_steps": 2,
                "per_device_train_batch_size": 2, "query_max_len": 16, "passage_max_len": 24,
                "learning_rate": 1e-3, "use_cpu": True, "logging_steps": 1}
    train = {**yaml.safe_load(make_config(tmp_path, tiny_model_master).read_text())["train"], "max_steps": 2,
             "save_steps": 2}
    config = make_config(tmp_path, tiny_model_master, max_rounds=1, train=train, embedder=embedder,
                         mine={"range_for_sampling": "0-8", "negative_number": 3},
                         embedder_mine={"range_for_sampling": "0-8", "negative_number": 3})
    rows = iterate_cli.main([str(config)])
    out = tmp_path / "rounds"
    first, second = out / "round_0", out / "round_1"

    def summary(path):
        return json.loads(path.read_text())

    # Round 0's embedder: BM25 negatives, no teacher, mnrl.
    taught = summary(first / "embedder_mined.summary.json")
    assert (taught["settings"]["retriever"], taught["teacher_model"]) == ("bm25", None)
    assert "--loss mnrl" in (first / "embedder.log").read_text()
    # Round 1's: round 0's embedder's candidates, scored by round 0's reranker, distilled with kl.
    taught = summary(second / "embedder_mined.summary.json")
    assert taught["settings"]["retriever"] == "dense"
    assert taught["settings"]["embedder"] == str(first / "embedder")
    assert taught["teacher_model"] == str(first / "model")
    records = [json.loads(line) for line in (second / "embedder_mined.jsonl").read_text().splitlines()]
    assert records and all(len(r["pos_scores"]) == len(r["pos"]) and len(r["neg_scores"]) == len(r["neg"]) == 3
                           for r in records)
    log = (second / "embedder.log").read_text()
    assert f"--train_data {second / 'embedder_mined.jsonl'}" in log and "--loss kl" in log
    assert f"--dev_corpus {tmp_path / 'beir'}" in log
    # Each round's reranker negatives: retrieved by that round's embedder (round 1's reranked by round 0's model).
    for folder, rerank in ((first, None), (second, str(first / "model"))):
        settings = summary(folder / "mined.summary.json")["settings"]
        assert (settings["retriever"], settings["embedder"]) == ("dense", str(folder / "embedder"))
        assert settings["rerank_model"] == rerank
    assert [r["negatives_from"] for r in rows] == ["round_0 embedder", "round_1 embedder + round_0 reranker"]
    assert [r["embedder_taught_by"] for r in rows] == ["BM25 negatives (mnrl)", "round_0 reranker (kl)"]
    assert all(0.0 <= r["embedder_dev_nDCG@10"] <= 1.0 for r in rows)
    assert "embedder dev nDCG@10" in (out / "rounds.md").read_text()
    # A re-run skips both rounds and both embedders.
    caplog.clear()
    iterate_cli.main([str(config)])
    assert sum("done before, skipped" in m for m in caplog.messages) == 4
