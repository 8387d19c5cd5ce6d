"""Fusion of rankings and the dev-split evaluation of run.py: hand-worked cases, file errors, warnings."""

import json
import logging

import numpy as np
import pytest
from conftest import write_jsonl

import run
from reranker.common.errors import DataError
from reranker.retrieval import fusion
from reranker.training import dev_eval


def test_rrf_by_hand():
    bm25 = {"q": {"a": 9.0, "b": 5.0, "c": 1.0}}
    dense = {"q": {"c": 0.9, "a": 0.8, "d": 0.1}}
    fused = fusion.rrf([bm25, dense], [0.5, 0.5], k=60)["q"]
    # a: 1st and 2nd; c: 3rd and 1st; b: 2nd only; d: 3rd only.
    assert fused["a"] == pytest.approx(0.5 / 61 + 0.5 / 62)
    assert fused["c"] == pytest.approx(0.5 / 63 + 0.5 / 61)
    assert fused["b"] == pytest.approx(0.5 / 62) and fused["d"] == pytest.approx(0.5 / 63)
    assert list(fused) == ["a", "c", "b", "d"]
    only_bm25 = fusion.rrf([bm25, dense], [1.0, 0.0], k=60, depth=2)["q"]
    assert list(only_bm25) == ["a", "b"]


def test_fuse_scores_and_tuning():
    first = {"q1": {"a": 10.0, "b": 5.0, "c": 0.0}, "q2": {"x": 3.0, "y": 1.0}}
    reranked = {"q1": {"a": -1.0, "b": 3.0, "c": 1.0}, "q2": {"x": 0.0, "y": 2.0}}
    # Min-max per query: q1 first (1, .5, 0), reranker (0, 1, .5); alpha .5 -> a .5, b .75, c .25.
    assert fusion.fuse_scores(first, reranked, 0.5)["q1"] == pytest.approx({"a": 0.5, "b": 0.75, "c": 0.25})
    assert fusion.fuse_scores(first, reranked, 0.0)["q2"] == {"x": 1.0, "y": 0.0}
    # b is relevant for q1 and x for q2: the reranker alone finds b but loses x, the first stage the reverse;
    # from alpha 0.35 up to 0.65 both come first (nDCG 1), and the smallest such weight is chosen.
    qrels = {"q1": {"b": 1}, "q2": {"x": 1}}
    weight, value = fusion.tune(qrels, lambda a: fusion.fuse_scores(first, reranked, a), rule="argmax")
    assert value == pytest.approx(1.0)
    assert weight == pytest.approx(0.35)


def test_fuse_with_stages_by_hand():
    # The hybrid's candidates a, b, c: BM25 retrieved a and b, the embedder b and c.
    bm25 = {"q": {"a": 8.0, "b": 4.0, "z": 0.0}}  # normalised over its own list: a 1, b .5, (z 0)
    dense = {"q": {"c": 0.9, "b": 0.5, "y": 0.1}}  # c 1, b .5, (y 0)
    reranked = {"q": {"a": 0.0, "b": 1.0, "c": 2.0}}  # a 0, b .5, c 1
    fused = fusion.fuse_with_stages([bm25, dense], reranked, (0.5, 0.3))["q"]
    # a: .5*0 + .3*1 + .2*0 (the embedder did not retrieve it); b: .25 + .15 + .1; c: .5 + 0 + .2.
    assert fused == pytest.approx({"a": 0.3, "b": 0.5, "c": 0.7})
    assert fusion.fuse_with_stages([bm25, dense], reranked, (0.0, 1.0))["q"] == pytest.approx(
        {"a": 1.0, "b": 0.5, "c": 0.0})
    with pytest.raises(ValueError, match="2 first stages take 2 weights"):
        fusion.fuse_with_stages([bm25, dense], reranked, (0.5, 0.2, 0.1))
    # Relevant: a, which the reranker puts last. With reranker weight 0 and BM25 weight w: a w, b .5, c 1 - w,
    # so a is first from w 0.55 on; that is the first pair in grid order to rank it first, so it is chosen.
    qrels = {"q": {"a": 1}}
    weights, value = fusion.tune(qrels, lambda w: fusion.fuse_with_stages([bm25, dense], reranked, w), fusion.GRID2,
                                 rule="argmax")
    assert value == pytest.approx(1.0) and weights == (0.0, 0.55)
    assert all(sum(w) <= 1.0 + 1e-9 for w in fusion.GRID2) and len(fusion.GRID2) == 231
    # One query: every resample is that query, so bagging agrees with the argmax.
    bagged, _ = fusion.tune(qrels, lambda w: fusion.fuse_with_stages([bm25, dense], reranked, w), fusion.GRID2)
    assert bagged == (0.0, 0.55)


def test_bagged_choice_shrinks_a_choice_that_rests_on_one_query():
    # Weight 1 beats weight 0 on the mean only through query 0 (1.0 against 0.5; the nine others lose 0.05 each):
    # the argmax takes it. A resample without query 0 (probability 0.9^10 = 0.35) prefers weight 0, so the bagged
    # weight is about 0.65, the share of resamples that contain it.
    grid = (0.0, 1.0)
    table = np.array([[0.5] * 10, [1.0] + [0.45] * 9])
    assert fusion.choose(table, grid, "argmax") == 1.0
    bagged = fusion.choose(table, grid, "bagged")
    assert 0.55 < bagged < 0.75 and fusion.choose(table, grid, "bagged") == bagged  # seeded
    assert fusion.choose(table, grid, "bagged", seed=1) != bagged
    # When every query prefers the same weight, no resample disagrees.
    assert fusion.choose(np.array([[0.2] * 10, [0.3] * 10]), grid, "bagged") == 1.0
    # Ties go to the first (smallest) weight, resample or not; points of the simplex average onto it.
    assert fusion.choose(np.array([[0.5] * 4, [0.5] * 4]), grid, "bagged") == 0.0
    table2 = np.random.default_rng(0).random((len(fusion.GRID2), 12))
    w = fusion.choose(table2, fusion.GRID2, "bagged")
    assert len(w) == 2 and min(w) >= 0 and sum(w) <= 1.0 + 1e-9
    # Picks only on the edge a + b = 1 (the embedder's weight 0): the mean is on it too, and rounding must not
    # carry the sum past 1, which would give the embedder a negative weight.
    edge = [i for i, (a, b) in enumerate(fusion.GRID2) if a + b > 1.0 - 1e-9]
    for seed in range(40):
        table3 = np.zeros((len(fusion.GRID2), 9))
        table3[edge] = np.random.default_rng(seed).random((len(edge), 9))
        a, b = fusion.choose(table3, fusion.GRID2, "bagged")
        assert a + b <= 1.0 and a + b > 1.0 - 2e-4
    with pytest.raises(ValueError, match="unknown fusion tuning rule 'best'"):
        fusion.choose(table, grid, "best")


def dev_rows():
    return [{"query_id": "q1", "query": "capital of france",
             "candidates": [{"id": "d2", "text": "berlin is in germany"}, {"id": "d1", "text": "paris is in france"}],
             "relevance": {"d1": 1}},
            {"query": "how is bread baked", "candidates": [{"id": "b1", "text": "bread is baked in an oven"},
                                                           {"id": "b2", "text": "a bank loan"}],
             "relevance": {"b1": 2}}]


def test_dev_file_first_stage_metrics(tmp_path):
    dev = dev_eval.load_dev(str(write_jsonl(tmp_path / "dev.jsonl", dev_rows())))
    assert [q.qid for q in dev] == ["q1", "line-2"]  # the line number when there is no query_id
    run_ = {"q1": {"d1": 2.0, "d2": 1.0}, "line-2": {"b1": 0.0, "b2": 1.0}}
    m = dev_eval.dev_metrics(dev, run_)
    # First stage: q1's answer second (RR 1/2), q2's first. The model: the reverse.
    assert m["first_stage_MRR@10"] == pytest.approx(0.75) and m["MRR@10"] == pytest.approx(0.75)
    assert m["first_stage_nDCG@10"] == pytest.approx((1 / 1.5849625 + 1) / 2, abs=1e-6)


@pytest.mark.parametrize("row, field", [
    ({"candidates": [{"id": "a", "text": "t"}], "relevance": {"a": 1}}, "query"),
    ({"query": "q", "candidates": [], "relevance": {"a": 1}}, "candidates"),
    ({"query": "q", "candidates": [{"id": "a"}], "relevance": {"a": 1}}, "candidates[0]"),
    ({"query": "q", "candidates": [{"id": "a", "text": "t"}], "relevance": {"a": 0}}, "relevance"),
    ({"query": "q", "candidates": [{"id": "a", "text": "t"}], "relevance": {"a": "yes"}}, "relevance"),
])
def test_dev_file_errors_name_line_and_field(tmp_path, row, field):
    path = write_jsonl(tmp_path / "dev.jsonl", [dev_rows()[0], row])
    with pytest.raises(DataError, match=rf"dev.jsonl:2 field '{field.replace('[', '.').replace(']', '.')}'"):
        dev_eval.load_dev(str(path))


def test_run_ranks_dev_keeps_best_and_warns(tiny_model, train_file, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    dev = write_jsonl(tmp_path / "dev.jsonl", dev_rows())
    out = tmp_path / "out"
    trainer = run.main(["--model_name_or_path", str(tiny_model), "--train_data", str(train_file), "--output_dir",
                        str(out), "--train_group_size", "4", "--per_device_train_batch_size", "3",
                        "--query_max_len", "16", "--passage_max_len", "24", "--use_cpu", "--max_steps", "6",
                        "--learning_rate", "1e-5", "--head_learning_rate", "0", "--save_steps", "2",
                        "--dev_file", str(dev), "--seed", "3"])
    args = trainer.args
    assert args.eval_strategy == "steps" and args.eval_steps == 2 and args.load_best_model_at_end
    assert args.metric_for_best_model == "nDCG@10"
    saved = json.loads((out / "dev_metrics.json").read_text())
    assert [h["step"] for h in saved["history"]] == [2, 4, 6]
    best = max(saved["history"], key=lambda h: h["nDCG@10"])
    assert saved["saved"]["nDCG@10"] == best["nDCG@10"]
    assert trainer.state.best_metric == pytest.approx(best["nDCG@10"])
    # The first stage puts q2's answer first; an untrained tiny model is unlikely to beat it, and when it does
    # not, the warning is there, once per evaluation and once at the end.
    warned = [m for m in caplog.messages if "WORSE than the first stage" in m or "WORSE THAN THE FIRST STAGE" in m]
    worse = [h for h in saved["history"] if h["nDCG@10"] < h["first_stage_nDCG@10"]]
    final_worse = saved["saved"]["nDCG@10"] < saved["saved"]["first_stage_nDCG@10"]
    assert len(warned) == len(worse) + int(final_worse)


def test_head_learning_rate_groups(tiny_model, train_file, tmp_path, caplog):
    from transformers import AutoModel, AutoTokenizer

    # An encoder without a classification head, like an embedding checkpoint: the head is created fresh.
    encoder = tmp_path / "encoder"
    AutoModel.from_pretrained(tiny_model).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(encoder)
    caplog.set_level(logging.INFO)
    trainer = run.main(["--model_name_or_path", str(encoder), "--train_data", str(train_file), "--output_dir",
                        str(tmp_path / "out"), "--train_group_size", "4", "--per_device_train_batch_size", "3",
                        "--use_cpu", "--max_steps", "1", "--learning_rate", "1e-4", "--save_strategy", "no"])
    groups = trainer.optimizer.param_groups
    fresh = {id(p) for p in trainer.model.classifier.parameters()}
    head = [g for g in groups if any(id(p) in fresh for p in g["params"])]
    # weight (decayed) and bias (not): two groups, both at 30 x the encoder's rate by default, nothing else in them
    assert len(head) == 2 and all(g["initial_lr"] == pytest.approx(3e-3) for g in head)
    assert all(id(p) in fresh for g in head for p in g["params"])
    body = [g for g in groups if all(g is not h for h in head)]
    assert body and all(g["initial_lr"] == pytest.approx(1e-4) for g in body)
    assert sum(len(g["params"]) for g in groups) == len(list(trainer.model.parameters()))
    assert any("freshly initialised" in m for m in caplog.messages)
    # A checkpoint that has its head (the tiny cross-encoder) gets one learning rate throughout.
    trainer = run.main(["--model_name_or_path", str(tiny_model), "--train_data", str(train_file), "--output_dir",
                        str(tmp_path / "out2"), "--train_group_size", "4", "--per_device_train_batch_size", "3",
                        "--use_cpu", "--max_steps", "1", "--learning_rate", "1e-4", "--save_strategy", "no"])
    assert {g["initial_lr"] for g in trainer.optimizer.param_groups} == {1e-4}
