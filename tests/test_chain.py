"""InRanker distillation end to end: two-logit students trained on both logits, the miner writing a T5 teacher's
(false, true) logits as InRanker records, and students of two families trained on them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TOPICS, write_jsonl
from test_mining import mine
from tiny import build_tiny_family_model

from reranker import Reranker
from reranker.cli import train as train_cli
from reranker.common.errors import ConfigError
from reranker.data.groups import Group
from reranker.training import losses


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return build_tiny_family_model(tmp_path_factory.mktemp("chain") / "t5", "seq2seq")


def soft_rows() -> list[dict]:
    """A teacher sure of each topic's positive and against its negatives."""
    return [{"query": q, "contents": p, "true_logit": t, "false_logit": f}
            for q, pos, negs in TOPICS for p, t, f in [(pos, 4.0, -2.0), *((n, -3.0, 1.0) for n in negs[:2])]]


def train_args(model, data, out, *extra):
    return ["--model_name_or_path", str(model), "--train_data", str(data), "--output_dir", str(out),
            "--loss", "inranker", "--per_device_train_batch_size", "6", "--query_max_len", "16",
            "--passage_max_len", "24", "--use_cpu", "--logging_steps", "1", "--save_strategy", "no", "--seed", "7",
            *extra]


def test_a_two_logit_student_is_trained_on_both_logits(t5, tmp_path):
    data = write_jsonl(tmp_path / "soft.jsonl", soft_rows())
    trainer = train_cli.main(train_args(t5, data, tmp_path / "out", "--max_steps", "30", "--learning_rate", "3e-3"))
    assert trainer.pair_loss
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert sum(logged[-5:]) / 5 < 0.5 * sum(logged[:3]) / 3, logged
    # compute_loss is InRanker's MSE over the student's (false, true) logits, not the difference loss.
    rows = soft_rows()[:4]
    batch = trainer.data_collator([Group(r["query"], (r["contents"],), teacher_scores=(r["false_logit"],
                                                                                       r["true_logit"]))
                                   for r in rows])
    teacher = batch["teacher_scores"]
    model = trainer.model.eval()
    with torch.no_grad():
        logits = trainer.scorer.pair_logits(model, {k: v for k, v in batch.items() if k != "teacher_scores"})
        loss = trainer.compute_loss(model, dict(batch))
    assert logits.shape == (4, 2)
    assert loss.item() == pytest.approx(losses.inranker_mse_pair(logits, teacher).item(), abs=1e-6)
    difference = losses.inranker_mse((logits[:, 1] - logits[:, 0]).view(-1, 1), teacher[:, 1:] - teacher[:, :1])
    assert abs(loss.item() - difference.item()) > 1e-4  # the two losses differ by the student's pair means
    # Reranker reads the same two logits; their difference is its score.
    reranker = Reranker(str(tmp_path / "out"), device="cpu")
    pairs = [(r["query"], r["contents"]) for r in rows]
    assert reranker.compute_logits(pairs) == pytest.approx(logits.numpy(), abs=1e-5)
    assert reranker.compute_score(pairs) == pytest.approx((logits[:, 1] - logits[:, 0]).tolist(), abs=1e-5)


def test_decoders_train_on_both_logits_one_score_students_on_the_difference(t5, tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "soft.jsonl", soft_rows())
    decoder = build_tiny_family_model(tmp_path / "llama", "decoder")
    assert train_cli.main(train_args(decoder, data, tmp_path / "dec", "--max_steps", "1")).pair_loss
    encoder = train_cli.main(train_args(tiny_model, data, tmp_path / "enc", "--max_steps", "1"))
    single = train_cli.main(train_args(t5, data, tmp_path / "single", "--max_steps", "1", "--score_mode", "single"))
    assert not encoder.pair_loss and not single.pair_loss
    with pytest.raises(ConfigError, match="gives one score per pair, not \\(false, true\\) logits"):
        Reranker(str(tmp_path / "enc"), device="cpu").compute_logits([("q", "p")])


def test_the_miner_writes_a_t5_teachers_logits_and_students_train_on_them(t5, tiny_model, tmp_path):
    rows, summary = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-7", "--negative_number", "3",
                         "--teacher_model", t5, "--teacher_format", "inranker")
    mined, _ = mine(tmp_path, "--retriever", "bm25", "--range_for_sampling", "0-7", "--negative_number", "3",
                    name="groups.jsonl")
    pairs = [(m["query"], p) for m in mined for p in (*m["pos"], *m["neg"])]
    assert [(r["query"], r["contents"]) for r in rows] == pairs  # one record per pair, positives first
    assert all(set(r) == {"query", "contents", "true_logit", "false_logit"} for r in rows)
    assert summary["inranker_records"] == len(pairs) == 2 + 3 + 3
    logits = Reranker(str(t5), device="cpu").compute_logits(pairs)
    assert np.array([[r["false_logit"], r["true_logit"]] for r in rows]) == pytest.approx(logits, abs=1e-5)
    data = tmp_path / "mined.jsonl"
    student = build_tiny_family_model(tmp_path / "student", "seq2seq", seed=1)
    for model, name in ((student, "t5"), (tiny_model, "encoder")):
        trainer = train_cli.main(train_args(model, data, tmp_path / name, "--max_steps", "2"))
        assert trainer.state.global_step == 2 and trainer.pair_loss == (name == "t5")
        assert (tmp_path / name / "model.safetensors").is_file()


def test_inranker_records_need_a_two_logit_teacher(tiny_model_master, t5, tmp_path):
    with pytest.raises(ConfigError, match="encoder .* one number per pair, while InRanker records hold"):
        mine(tmp_path, "--retriever", "bm25", "--teacher_model", tiny_model_master, "--teacher_format", "inranker")
    # Checked before mining: no output, whatever the retriever would have cost.
    assert not (tmp_path / "mined.jsonl").exists()
    with pytest.raises(ConfigError, match="--teacher_format inranker writes a --teacher_model's"):
        mine(tmp_path, "--retriever", "bm25", "--teacher_format", "inranker")
    single = shutil.copytree(t5, tmp_path / "single")
    config = json.loads((single / "config.json").read_text())
    config["reranker"] = {"family": "seq2seq", "score_mode": "single", "true_token": "true"}
    (single / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="logit\\('true'\\), one number per pair"):
        mine(tmp_path, "--retriever", "bm25", "--teacher_model", single, "--teacher_format", "inranker")
