"""--head_init probe: the fresh scoring layer fitted on frozen features before training."""

import logging
import math

import pytest
import torch

import run
from reranker.training.head_init import fit_linear_head, group_loss


def test_fit_linear_head_finds_the_signal_direction():
    # Features where the positive (index 0) is higher along one planted direction, plus noise elsewhere.
    gen = torch.Generator().manual_seed(0)
    n, g, d = 200, 8, 16
    x = torch.randn(n, g, d, generator=gen)
    x[:, 0, 3] += 2.0
    w = fit_linear_head(x, l2=1e-2)
    chance = math.log(g)
    assert group_loss(x, torch.zeros(d)) == pytest.approx(chance)
    assert group_loss(x, w) < 0.7 * chance
    assert int(w.abs().argmax()) == 3 and w[3] > 0
    # Stronger L2 keeps the weights smaller; the fit is deterministic (L-BFGS from zero).
    assert fit_linear_head(x, l2=1.0).norm() < w.norm()
    assert torch.equal(fit_linear_head(x, l2=1e-2), w)


def test_fit_linear_head_without_signal_stays_near_chance_out_of_sample():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(400, 8, 16, generator=gen)
    w = fit_linear_head(x[:200])
    assert group_loss(x[200:], w) > math.log(8) - 0.1


def test_run_head_init_probe_sets_the_fresh_head(tiny_model, train_file, tmp_path, caplog):
    from transformers import AutoModel, AutoTokenizer

    encoder = tmp_path / "encoder"  # no classification head: it is created fresh, as for an embedding checkpoint
    AutoModel.from_pretrained(tiny_model).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(encoder)
    caplog.set_level(logging.INFO)
    common = ["--model_name_or_path", str(encoder), "--train_data", str(train_file), "--train_group_size", "4",
              "--per_device_train_batch_size", "3", "--use_cpu", "--max_steps", "1", "--learning_rate", "0",
              "--head_learning_rate", "0", "--save_strategy", "no", "--seed", "5"]
    probe = run.main(common + ["--output_dir", str(tmp_path / "probe"), "--head_init", "probe",
                               "--head_init_groups", "6"])
    plain = run.main(common + ["--output_dir", str(tmp_path / "plain"), "--head_init", "random"])
    w_probe = probe.model.classifier.weight.detach()
    w_plain = plain.model.classifier.weight.detach()
    assert not torch.allclose(w_probe, w_plain)
    assert float(probe.model.classifier.bias.detach().abs().max()) == 0.0
    logged = [m for m in caplog.messages if "initialised by a linear probe on 6 training groups" in m]
    assert len(logged) == 1
    # Same seed, same groups, same fit.
    again = run.main(common + ["--output_dir", str(tmp_path / "again"), "--head_init", "probe",
                               "--head_init_groups", "6"])
    assert torch.equal(again.model.classifier.weight.detach(), w_probe)


def test_run_head_init_probe_keeps_a_trained_head(tiny_model, train_file, tmp_path, caplog):
    from transformers import AutoModelForSequenceClassification

    caplog.set_level(logging.INFO)
    before = AutoModelForSequenceClassification.from_pretrained(tiny_model).classifier.weight.detach()
    trainer = run.main(["--model_name_or_path", str(tiny_model), "--train_data", str(train_file), "--output_dir",
                        str(tmp_path / "out"), "--train_group_size", "4", "--per_device_train_batch_size", "3",
                        "--use_cpu", "--max_steps", "1", "--learning_rate", "0", "--save_strategy", "no",
                        "--head_init", "probe"])
    assert torch.equal(trainer.model.classifier.weight.detach(), before)
    assert any("its own head is kept" in m for m in caplog.messages)


def test_pair_budget_beyond_the_model_positions_fails_up_front(tiny_model, train_file, tmp_path):
    # 64 + 512 + 3 special tokens > 512 positions: seen as a shape error inside the embeddings before this check.
    from reranker.common.errors import ConfigError
    from reranker.models.inference import Reranker

    with pytest.raises(ConfigError, match=r"--query_max_len 64 \+ --passage_max_len 512 .* is 579 tokens, but the "
                                          r"model \(bert\) takes at most 512"):
        run.main(["--model_name_or_path", str(tiny_model), "--train_data", str(train_file), "--output_dir",
                  str(tmp_path / "out"), "--train_group_size", "4", "--use_cpu", "--max_steps", "1",
                  "--query_max_len", "64", "--passage_max_len", "512"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(ConfigError, match=r"--rerank_max_length for .* is 600 tokens, but the model \(bert\) takes at "
                                          "most 512"):
        Reranker(str(tiny_model), device="cpu", max_length=600, max_length_option="--rerank_max_length")
    reranker = Reranker(str(tiny_model), device="cpu", max_length=512)
    with pytest.raises(ConfigError, match="max_length is 513 tokens"):
        reranker.compute_score([("q", "p")], max_length=513)


def test_reranker_default_length_follows_a_smaller_model(tiny_model, tmp_path):
    # A model with 128 positions used to take the 512 default and fail on long pairs; now the default fits it.
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from reranker.models.inference import Reranker

    small = tmp_path / "small"
    config = BertConfig(vocab_size=AutoTokenizer.from_pretrained(tiny_model).vocab_size, hidden_size=16,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=128,
                        num_labels=1)
    BertForSequenceClassification(config).save_pretrained(small)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(small)
    reranker = Reranker(str(small), device="cpu")
    assert reranker.max_length == 128
    assert len(reranker.compute_score([("paris", "paris is in france " * 100)])) == 1
    assert Reranker(str(tiny_model), device="cpu").max_length == 512


def test_position_limit_of_model_families():
    from transformers import (
        BertConfig,
        CamembertConfig,
        DebertaV2Config,
        GPT2Config,
        MPNetConfig,
        RobertaConfig,
        XLMRobertaConfig,
    )

    from reranker.models.loading import position_limit

    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(CamembertConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(MPNetConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(GPT2Config(n_positions=1024)) == 1024
    # DeBERTa-v3 has relative positions only: no limit from the config.
    assert position_limit(DebertaV2Config(position_biased_input=False)) is None
    assert position_limit(DebertaV2Config(position_biased_input=True, max_position_embeddings=512)) == 512


def probe_setup(model_dir, train_file, group_size=4, positives=1):
    from reranker.data.collator import GroupCollator
    from reranker.data.groups import GroupDataset
    from reranker.data.sources import load_source
    from reranker.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(str(model_dir), tokenizer)
    dataset = GroupDataset([load_source(str(train_file), group_size, None, None)], group_size, seed=0,
                           positives=positives)
    return model, dataset, GroupCollator(tokenizer, 16, 24)


@pytest.mark.parametrize("kind, positives", [("encoder", 1), ("decoder", 1), ("encoder", 2)])
def test_probe_fit_is_what_the_model_then_scores(kind, positives, tiny_model, train_file, tmp_path):
    """The fitted loss the probe reports equals the loss of the model's own scores on the same groups.

    That holds only if the captured features are the ones the head scores (for a decoder, the last real token of
    each padded pair) and the weights land in the right layer.
    """
    from tiny import build_tiny_lm
    from transformers import AutoModel, AutoTokenizer

    from reranker.training.head_init import init_head_from_probe
    from reranker.training.losses import softmax_ce

    if kind == "encoder":
        folder = tmp_path / "encoder"
        AutoModel.from_pretrained(tiny_model).save_pretrained(folder)
        AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    else:
        folder = build_tiny_lm(tmp_path / "gpt2", train_steps=0)
    model, dataset, collator = probe_setup(folder, train_file, positives=positives)
    groups = 8
    summary = init_head_from_probe(model, dataset, collator, groups, seed=0, device=torch.device("cpu"),
                                   batch_groups=3, l2=1e-4)
    assert summary is not None and summary["groups"] == min(groups, len(dataset))
    assert summary["train_loss"] < summary["chance"]  # a random tiny model's features differ little
    import numpy as np
    picks = np.random.default_rng(0).permutation(len(dataset))[:groups]
    batch = collator([dataset[int(i)] for i in picks])
    batch.pop("teacher_scores", None)
    model.eval()
    with torch.no_grad():
        scores = model(**batch).logits.view(len(picks), -1)
    assert float(softmax_ce(scores, positives)) == pytest.approx(summary["train_loss"], abs=1e-3)
    assert summary["chance"] == pytest.approx(math.log(4 - positives + 1))


def test_probe_skips_one_passage_records(tiny_model, tmp_path, caplog):
    from conftest import write_jsonl
    from transformers import AutoModel, AutoTokenizer

    from reranker.data.collator import GroupCollator
    from reranker.data.groups import GroupDataset
    from reranker.data.sources import load_source
    from reranker.models.loading import load_model, load_tokenizer
    from reranker.training.head_init import init_head_from_probe

    folder = tmp_path / "encoder"
    AutoModel.from_pretrained(tiny_model).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    soft = write_jsonl(tmp_path / "soft.jsonl", [{"query": "q", "contents": "p", "true_logit": 3.0,
                                                  "false_logit": -1.0}] * 4)
    tokenizer = load_tokenizer(str(folder))
    model = load_model(str(folder), tokenizer)
    before = model.classifier.weight.detach().clone()
    dataset = GroupDataset([load_source(str(soft), 1, None, None)], 1, seed=0)
    caplog.set_level(logging.INFO)
    assert init_head_from_probe(model, dataset, GroupCollator(tokenizer, 16, 24), 8, 0, torch.device("cpu")) is None
    assert torch.equal(model.classifier.weight.detach(), before)
    assert any("the head starts at random" in m for m in caplog.messages)


def test_head_init_groups_too_few():
    from reranker.common.errors import ConfigError
    from reranker.training.arguments import RerankerTrainingArguments

    with pytest.raises(ConfigError, match="--head_init_groups must be at least 4"):
        RerankerTrainingArguments(output_dir="x", use_cpu=True, head_init_groups=2)
