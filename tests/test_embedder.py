"""The embedder trainer: pooling, the cross-rank gather, the gradient cache, saving for sentence-transformers and
our Embedder, resume, the dense dev check, and the errors that come before any model loads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import group_rows, write_jsonl
from crash import Crash, CrashAfterSave
from safetensors.torch import load_file

import train_embedder
from reranker.common.errors import ConfigError
from reranker.embedding import losses
from reranker.embedding.collator import EmbedderCollator, text_key
from reranker.embedding.trainer import EmbedderTrainer
from reranker.models.embed import Embedder, default_pooling, pool, saved_query_instruction


def base_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model_name_or_path", str(model), "--train_data", str(data), "--output_dir", str(out),
            "--per_device_train_batch_size", "4", "--max_steps", "2", "--learning_rate", "1e-2", "--use_cpu",
            "--seed", "3", "--query_max_len", "16", "--passage_max_len", "24", "--disable_tqdm", "true",
            "--save_strategy", "no", *extra]


# -- pooling and the collator ---------------------------------------------------------------------------------

def test_pooling_modes_by_hand():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]],     # right padding: 2 real tokens
                           [[9.0, 9.0], [2.0, 4.0], [4.0, 6.0]]])    # left padding: 2 real tokens
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 0.0], [9.0, 9.0]]
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 1.0], [3.0, 5.0]]
    assert pool(hidden, mask, "last").tolist() == [[3.0, 2.0], [4.0, 6.0]]
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "max")


def test_collator_lays_out_positives_then_negatives(tokenizer):
    from reranker.data.groups import Group

    groups = [Group("q one", ("p1", "n1a", "n1b"), (3.0, 1.0, 0.0)), Group("q two", ("P1 ", "n2a", "n2b"),
                                                                           (2.0, 0.5, 0.25))]
    batch = EmbedderCollator(tokenizer, 8, 8, query_instruction="query: ")(groups)
    assert batch["query"]["input_ids"].shape[0] == 2 and batch["passage"]["input_ids"].shape[0] == 6
    decoded = tokenizer.batch_decode(batch["passage"]["input_ids"], skip_special_tokens=True)
    assert [d.replace(" ", "") for d in decoded] == ["p1", "p1", "n1a", "n1b", "n2a", "n2b"]
    assert tokenizer.decode(batch["query"]["input_ids"][0], skip_special_tokens=True).startswith("query :")
    keys = batch["passage_keys"].tolist()
    assert keys[0] == keys[1] == text_key("P1")  # case and spacing do not make another document
    assert batch["teacher_scores"].tolist() == [[3.0, 1.0, 0.0], [2.0, 0.5, 0.25]]


def test_group_scores_and_kl_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.25, 0.75]])  # positives, then one negative each
    assert losses.group_scores(q, p, 2).tolist() == [[1.0, 0.5], [1.0, 0.75]]
    student, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    # teacher uniform: KL = sum 0.5 * (log 0.5 - log softmax(student))
    s = torch.log_softmax(student, -1)[0]
    expected = 0.5 * (math.log(0.5) - s[0].item()) + 0.5 * (math.log(0.5) - s[1].item())
    assert losses.kl_distill(student, teacher).item() == pytest.approx(expected, abs=1e-6)


# -- the cross-rank gather ------------------------------------------------------------------------------------

def _global_batch():
    """8 inputs of dimension 6 for 4 queries, 4 positives and 4 negatives; rank 1's first negative is rank 0's
    first positive (the same text key), a false negative across ranks."""
    g = torch.Generator().manual_seed(0)
    queries, positives, negatives = (torch.randn(4, 6, generator=g) for _ in range(3))
    negatives[2] = positives[0]
    pos_keys, neg_keys = [10, 11, 12, 13], [20, 21, 10, 23]
    teacher = torch.randn(4, 2, generator=g)
    return queries, positives, negatives, pos_keys, neg_keys, teacher


def _loss_args(**overrides):
    args = dict(loss="kl", temperature=0.1, distill_alpha=0.5, distill_temperature=1.0, symmetric=True,
                gather_across_devices=True, mask_false_negatives=True)
    return SimpleNamespace(args=SimpleNamespace(**{**args, **overrides}))


def _grads(rows: slice):
    """The gradient of the batch's rows `rows` through a shared linear encoder (one seed for every process)."""
    torch.manual_seed(1)
    encoder = torch.nn.Linear(6, 4)
    queries, positives, negatives, pos_keys, neg_keys, teacher = _global_batch()

    def embed(x):
        return F.normalize(encoder(x), dim=-1)

    passages = torch.cat([embed(positives[rows]), embed(negatives[rows])])
    keys = torch.tensor(pos_keys[rows] + neg_keys[rows])
    loss = EmbedderTrainer.loss_from_embeddings(_loss_args(), embed(queries[rows]), passages, keys, teacher[rows])
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in encoder.parameters()]


def _rank_main(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        loss, grads = _grads(slice(2 * rank, 2 * rank + 2))
        for grad in grads:  # what DDP does: the average over ranks
            dist.all_reduce(grad)
            grad /= 2
        torch.save({"loss": loss, "grads": grads}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(f"file://{tmp_path / 'store'}", str(tmp_path / "result")), nprocs=2, join=True)
    loss, grads = _grads(slice(0, 4))
    for rank in (0, 1):
        result = torch.load(tmp_path / f"result.{rank}")
        for ours, theirs in zip(result["grads"], grads, strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    # The cross-rank false negative is masked: unmasked, the one-process loss differs.
    with_mask = EmbedderTrainer.loss_from_embeddings
    q, p, n, pk, nk, t = _global_batch()
    e = torch.nn.functional.normalize
    passages = torch.cat([e(p, dim=-1), e(n, dim=-1)])
    keys = torch.tensor(pk + nk)
    masked = with_mask(_loss_args(loss="mnrl"), e(q, dim=-1), passages, keys, None)
    unmasked = with_mask(_loss_args(loss="mnrl", mask_false_negatives=False), e(q, dim=-1), passages, keys, None)
    assert masked.item() < unmasked.item()


# -- training, saving, resume ---------------------------------------------------------------------------------

@pytest.fixture
def embed_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", group_rows(2))


def test_gradient_cache_trains_as_the_whole_batch_does(tiny_model, embed_data, tmp_path):
    # The tiny model has no dropout, so the two paths must land on the same weights.
    # SGD: Adam would magnify rounding noise in gradients near zero into visible weight differences.
    plain = train_embedder.main(base_args(tiny_model, embed_data, tmp_path / "plain", "--train_group_size", "3",
                                          "--optim", "sgd", "--learning_rate", "0.5"))
    cached = train_embedder.main(base_args(tiny_model, embed_data, tmp_path / "cached", "--train_group_size", "3",
                                           "--gradient_cache_chunk", "3", "--optim", "sgd", "--learning_rate", "0.5"))
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "cached" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    start = load_file(tiny_model / "model.safetensors")
    assert not torch.allclose(start["bert.embeddings.word_embeddings.weight"], a["embeddings.word_embeddings.weight"])
    losses_of = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (plain, cached)]
    assert losses_of[0] == pytest.approx(losses_of[1], rel=1e-4)


def test_saved_embedder_loads_in_sentence_transformers_with_equal_embeddings(tiny_model, embed_data, tmp_path):
    out = tmp_path / "out"
    train_embedder.main(base_args(tiny_model, embed_data, out, "--pooling", "cls", "--query_instruction", "query: "))
    assert default_pooling(str(out)) == "cls"
    assert saved_query_instruction(str(out)) == "query: "
    texts = ["the sky is blue because light scatters", "paris is the capital of france", "one"]
    ours = Embedder(str(out), device="cpu")  # pooling read from the folder
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(ours.encode(texts, max_length=24, show_progress=False),
                               st.encode(texts, convert_to_numpy=True), atol=1e-5)
    queries = ["why is the sky blue"]
    np.testing.assert_allclose(ours.encode(queries, 24, instruction="query: ", show_progress=False),
                               st.encode(queries, prompt_name="query", convert_to_numpy=True), atol=1e-5)
    card = (out / "README.md").read_text()
    assert "sentence-transformers" in card and "cls" in card


def test_resume_matches_uninterrupted(tiny_model, embed_data, tmp_path):
    common = ["--max_steps", "5", "--save_strategy", "steps", "--save_steps", "3", "--train_group_size", "2"]
    train_embedder.main(base_args(tiny_model, embed_data, tmp_path / "a") + common)
    with pytest.raises(Crash):
        train_embedder.main(base_args(tiny_model, embed_data, tmp_path / "b") + common,
                            callbacks=[CrashAfterSave(3)])
    train_embedder.main(base_args(tiny_model, embed_data, tmp_path / "b") + common
                        + ["--resume_from_checkpoint", "true"])
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    assert (tmp_path / "b" / "checkpoint-3" / "1_Pooling" / "config.json").is_file()  # checkpoints load too


def test_dev_check_reports_the_starting_embedder(tiny_model, embed_data, tmp_path):
    dev = write_jsonl(tmp_path / "dev.jsonl", [
        {"query_id": f"d{i}", "query": row["query"],
         "candidates": [{"id": f"{i}-{j}", "text": t} for j, t in enumerate([row["pos"][0], *row["neg"]])],
         "relevance": {f"{i}-0": 1}} for i, row in enumerate(group_rows(1))])
    out = tmp_path / "out"
    trainer = train_embedder.main(base_args(tiny_model, embed_data, out, "--dev_file", str(dev), "--max_steps",
                                            "4", "--eval_steps", "2", "--save_steps", "2",
                                            "--save_strategy", "steps"))
    report = json.loads((out / "dev_metrics.json").read_text())
    assert report["pool"] == "dev candidates" and report["queries"] == 6
    assert 0 <= report["base"]["nDCG@10"] <= 1
    assert [h["step"] for h in report["history"]] == [2, 4]
    assert all(h["base_nDCG@10"] == report["base"]["nDCG@10"] for h in report["history"])
    best = max(report["history"], key=lambda h: h["nDCG@10"])
    assert report["saved"]["nDCG@10"] == best["nDCG@10"]
    assert trainer.state.best_model_checkpoint is not None


def test_worse_than_the_start_is_loud(tiny_model, embed_data, tmp_path, caplog):
    dev = write_jsonl(tmp_path / "dev.jsonl", [
        {"query_id": f"d{i}", "query": row["query"],
         "candidates": [{"id": f"{i}-{j}", "text": t} for j, t in enumerate([row["pos"][0], *row["neg"]])],
         "relevance": {f"{i}-0": 1}} for i, row in enumerate(group_rows(1))])
    # Every positive swapped for a negative: training teaches the opposite of the dev relevance.
    rows = [{"query": r["query"], "pos": [r["neg"][0]], "neg": [r["pos"][0]]} for r in group_rows(2)]
    data = write_jsonl(tmp_path / "flipped.jsonl", rows)
    train_embedder.main(base_args(tiny_model, data, tmp_path / "out", "--dev_file", str(dev), "--max_steps", "6",
                                  "--eval_steps", "6", "--learning_rate", "5e-2", "--load_best_model_at_end",
                                  "false"))
    report = json.loads((tmp_path / "out" / "dev_metrics.json").read_text())
    assert report["saved"]["nDCG@10"] < report["base"]["nDCG@10"]
    assert "RETRIEVES WORSE THAN THE ONE IT STARTED FROM" in caplog.text


# -- errors before any model loads ---------------------------------------------------------------------------

def test_distillation_needs_teacher_scores(tiny_model, embed_data, tmp_path):
    with pytest.raises(ConfigError, match="pos_scores and neg_scores"):
        train_embedder.main(base_args(tiny_model, embed_data, tmp_path / "o", "--loss", "kl"))
    with pytest.raises(ConfigError, match="hard negatives"):
        train_embedder.main(base_args(tiny_model, embed_data, tmp_path / "o", "--loss", "margin_mse",
                                      "--train_group_size", "1"))


def test_distillation_trains_on_teacher_scores(tiny_model, tmp_path):
    rows = [{**r, "pos_scores": [5.0], "neg_scores": [float(-i) for i in range(len(r["neg"]))]}
            for r in group_rows(2)]
    data = write_jsonl(tmp_path / "scored.jsonl", rows)
    for loss in ("kl", "margin_mse"):
        trainer = train_embedder.main(base_args(tiny_model, data, tmp_path / loss, "--loss", loss,
                                                "--train_group_size", "3", "--logging_steps", "1"))
        logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        assert len(logged) == 2 and all(math.isfinite(v) for v in logged)


def test_pairs_without_negatives_train_on_in_batch_negatives(tiny_model, tmp_path):
    rows = [{"query": r["query"], "pos": r["pos"]} for r in group_rows(2)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(Exception, match="no usable training records"):
        train_embedder.main(base_args(tiny_model, data, tmp_path / "o"))  # the default group size wants one
    trainer = train_embedder.main(base_args(tiny_model, data, tmp_path / "o", "--train_group_size", "1"))
    assert trainer.state.global_step == 2


def test_inranker_records_and_bad_options_are_refused(tiny_model, tmp_path):
    soft = write_jsonl(tmp_path / "soft.jsonl", [{"query": "q", "contents": "p", "true_logit": 1.0,
                                                 "false_logit": 0.0}] * 3)
    with pytest.raises(ConfigError, match="InRanker"):
        train_embedder.main(base_args(tiny_model, soft, tmp_path / "o"))
    data = write_jsonl(tmp_path / "t.jsonl", group_rows(1))
    with pytest.raises(ConfigError, match="temperature"):
        train_embedder.main(base_args(tiny_model, data, tmp_path / "o", "--temperature", "0"))
    with pytest.raises(ConfigError, match="positives_per_group"):
        train_embedder.main(base_args(tiny_model, data, tmp_path / "o", "--positives_per_group", "2",
                                      "--train_group_size", "3"))


def test_flagembedding_spellings(tiny_model, embed_data, tmp_path):
    out = tmp_path / "out"
    train_embedder.main(base_args(tiny_model, embed_data, out, "--sentence_pooling_method", "cls",
                                  "--negatives_cross_device", "false"))
    assert default_pooling(str(out)) == "cls"


def test_synthetic_crops_and_labelled_records_train_together(tiny_model, tmp_path):
    import synth

    docs = [{"_id": f"d{i}", "title": "", "text": " ".join(row["pos"] + row["neg"])}
            for i, row in enumerate(group_rows(1))]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    crops = tmp_path / "crops.jsonl"
    synth.main(["--corpus", str(corpus), "--output_file", str(crops), "--method", "crop", "--query_words", "3-5",
                "--passage_words", "8-12"])
    labelled = write_jsonl(tmp_path / "labelled.jsonl", [{"query": r["query"], "pos": r["pos"]}
                                                         for r in group_rows(2)])
    argv = base_args(tiny_model, labelled, tmp_path / "o", "--train_group_size", "1", "--mixing", "alternate",
                     "--data_weights", "1", "1", "--max_steps", "4")
    where = argv.index("--train_data") + 2
    trainer = train_embedder.main(argv[:where] + [str(crops)] + argv[where:])  # two sources
    assert trainer.state.global_step == 4
    assert [s.name for s in trainer.train_dataset.sources] == [str(labelled), str(crops)]
