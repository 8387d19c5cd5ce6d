"""--head_init probe: the fresh scoring layer fitted on frozen features before training."""

import logging
import math

import pytest
import torch

import run
from reranker.head_init import fit_linear_head, group_loss


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
    from reranker.errors import ConfigError
    from reranker.inference import Reranker

    with pytest.raises(ConfigError, match=r"--query_max_len 64 \+ --passage_max_len 512 .* is 579 tokens, but the "
                                          r"model takes at most 512"):
        run.main(["--model_name_or_path", str(tiny_model), "--train_data", str(train_file), "--output_dir",
                  str(tmp_path / "out"), "--train_group_size", "4", "--use_cpu", "--max_steps", "1",
                  "--query_max_len", "64", "--passage_max_len", "512"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(ConfigError, match="is 600 tokens, but the model takes at most 512"):
        Reranker(str(tiny_model), device="cpu", max_length=600)
    reranker = Reranker(str(tiny_model), device="cpu", max_length=512)
    with pytest.raises(ConfigError, match="is 513 tokens"):
        reranker.compute_score([("q", "p")], max_length=513)


def test_position_limit_of_roberta_style_models():
    from transformers import BertConfig, RobertaConfig

    from reranker.modeling import position_limit

    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
