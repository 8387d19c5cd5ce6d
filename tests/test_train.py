"""run.main end to end with a tiny model: outputs, losses, options, health checks and bad input."""

import logging
import math

import pytest
import torch
from conftest import group_rows, write_jsonl

import run
from reranker import Reranker
from reranker.cli import common as cli
from reranker.common.errors import ConfigError, DataError
from reranker.training.health import TrainingDiverged


def args(model, data, out, *extra):
    return ["--model_name_or_path", str(model), "--train_data", *map(str, data if isinstance(data, list) else [data]),
            "--output_dir", str(out), "--train_group_size", "4", "--per_device_train_batch_size", "3",
            "--query_max_len", "16", "--passage_max_len", "24", "--use_cpu", "--logging_steps", "1",
            "--save_strategy", "no", "--seed", "7", *extra]


def logged_losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_trains_saves_model_and_tokenizer(tiny_model, train_file, tmp_path):
    out = tmp_path / "out"
    trainer = run.main(args(tiny_model, train_file, out, "--max_steps", "40", "--learning_rate", "3e-3",
                            "--save_strategy", "steps", "--save_steps", "20"))
    losses = logged_losses(trainer)
    assert len(losses) == 40
    assert losses[0] == pytest.approx(math.log(4), abs=0.05)  # fresh head: chance
    assert sum(losses[-5:]) / 5 < 0.7 * math.log(4)  # it learned to rank
    for folder in (out, out / "checkpoint-20"):
        assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    # Any Hugging Face tool loading the folder, with no hints, gets a one-logit model with a pad token id.
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)
    assert config.num_labels == 1 and config.pad_token_id == 0
    # The saved folder is a plain checkpoint the inference API loads.
    reranker = Reranker(str(out))
    ranked = reranker.rerank("why is the sky blue", ["the cat and the dog",
                                                     "the sky is blue because light from the sun is scattered"])
    assert ranked[0]["index"] == 1


def test_same_seed_same_weights_and_json_config(tiny_model, train_file, tmp_path):
    import json

    from safetensors.torch import load_file

    run.main(args(tiny_model, train_file, tmp_path / "a", "--max_steps", "4", "--learning_rate", "3e-3"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "model_name_or_path": str(tiny_model), "train_data": [str(train_file)], "output_dir": str(tmp_path / "b"),
        "train_group_size": 4, "per_device_train_batch_size": 3, "query_max_len": 16, "passage_max_len": 24,
        "use_cpu": True, "save_strategy": "no", "seed": 7, "max_steps": 4, "learning_rate": 3e-3,
    }))
    run.main([str(config)])
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_config_file_and_several_sources(tiny_model, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", group_rows(1))
    b = write_jsonl(tmp_path / "b.jsonl", group_rows(2))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model}\ntrain_data: [{a}, {b}]\ndata_weights: [1, 3]\nmixing: alternate\n"
        f"output_dir: {tmp_path / 'out'}\ntrain_group_size: 3\nper_device_train_batch_size: 2\nmax_steps: 3\n"
        "use_cpu: true\nsave_strategy: 'no'\ntrain_sampling_strategy: group_by_length\n"
    )
    trainer = run.main([str(config)])
    assert trainer.state.global_step == 3
    assert trainer.args.train_sampling_strategy == "group_by_length"
    assert (tmp_path / "out" / "model.safetensors").exists()
    # alternate with weights 1:3: every step's keys come from one source, and source 1 gets about 3x the steps.
    keys = trainer._get_train_sampler().keys()
    steps = [keys[i:i + 2] for i in range(0, len(keys), 2)]
    assert all(len({source for source, _ in step}) == 1 for step in steps)
    per_source = [sum(step[0][0] == s for step in steps) for s in (0, 1)]
    assert per_source == [2, 7]  # ceil(18 / 2) = 9 steps split 1:3: 2.25 and 6.75, largest remainder -> 2 and 7


def test_single_source_as_scalar_in_config(tiny_model, train_file, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"model_name_or_path: {tiny_model}\ntrain_data: {train_file}\noutput_dir: {tmp_path / 'o'}\n"
                      "train_group_size: 3\nmax_steps: 1\nuse_cpu: true\nsave_strategy: 'no'\n")
    trainer = run.main([str(config)])
    assert trainer.args.max_steps == 1 and [s.name for s in trainer.train_dataset.sources] == [str(train_file)]


@pytest.mark.parametrize("extra", [["--bf16"], ["--gradient_checkpointing"], ["--loss", "bce"]])
def test_precision_checkpointing_and_bce(tiny_model, train_file, tmp_path, extra):
    trainer = run.main(args(tiny_model, train_file, tmp_path / "out", "--max_steps", "2", *extra))
    assert all(math.isfinite(x) for x in logged_losses(trainer))
    if extra == ["--bf16"]:
        assert trainer.accelerator.mixed_precision == "bf16"  # CPU autocast in bf16
    if extra == ["--gradient_checkpointing"]:
        assert trainer.model.is_gradient_checkpointing
    if extra == ["--loss", "bce"]:
        assert logged_losses(trainer)[0] == pytest.approx(math.log(2), abs=0.05)


def test_distillation_and_inranker(tiny_model, tmp_path):
    rows = [dict(r, pos_scores=[5.0], neg_scores=[1.0, 0.0, -1.0, -2.0]) for r in group_rows()]
    distill = run.main(args(tiny_model, write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "d",
                            "--max_steps", "2", "--loss", "distill", "--distill_alpha", "0.5",
                            "--train_group_size", "5", "--learning_rate", "0"))
    # Teacher [5, 1, 0, -1, -2] -> p = (0.972351, 0.017809, 0.006552, 0.002410, 0.000887); the fresh head scores
    # all five alike, so KL = sum p ln(5p) = 1.537676 - 0.043073 - 0.022398 - 0.010650 - 0.004805 = 1.45675, and
    # 0.5 * KL + 0.5 * ln 5 = 0.728375 + 0.804719 = 1.53309.
    assert logged_losses(distill)[0] == pytest.approx(1.53309, abs=0.01)
    soft = [{"query": r["query"], "contents": r["pos"][0], "true_logit": 3.0, "false_logit": -1.0} for r in rows]
    inranker = run.main(args(tiny_model, write_jsonl(tmp_path / "s.jsonl", soft), tmp_path / "s",
                             "--max_steps", "2", "--loss", "inranker"))
    assert inranker.train_dataset.group_size == 1
    with pytest.raises(ConfigError, match="use --loss inranker"):
        run.main(args(tiny_model, tmp_path / "s.jsonl", tmp_path / "s2", "--max_steps", "1"))
    with pytest.raises(ConfigError, match="needs pos_scores and neg_scores"):
        run.main(args(tiny_model, write_jsonl(tmp_path / "plain.jsonl", group_rows()), tmp_path / "p",
                      "--max_steps", "1", "--loss", "distill"))


def test_bad_line_fails_before_the_model_loads(tiny_model, tmp_path, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n{"query": "q", "pos": ["p"], "neg": "n"}\n')

    def fail(*a, **k):
        raise AssertionError("the model must not load before the data is validated")

    from reranker.training import train as train_module

    monkeypatch.setattr(train_module, "load_model", fail)
    with pytest.raises(DataError, match=r"bad\.jsonl:2 field 'neg': expected a list of strings"):
        run.main(args(tiny_model, bad, tmp_path / "out", "--max_steps", "1"))
    monkeypatch.setattr("sys.argv", ["run.py", *args(tiny_model, bad, tmp_path / "out", "--max_steps", "1")])
    assert cli.run(run.main, logging.getLogger("test")) == 1  # the command line exits 1 with the message
    assert not (tmp_path / "out").exists()


def test_existing_model_is_not_overwritten(tiny_model, train_file, tmp_path):
    out = tmp_path / "out"
    run.main(args(tiny_model, train_file, out, "--max_steps", "1"))
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        run.main(args(tiny_model, train_file, out, "--max_steps", "1"))
    assert (out / "model.safetensors").read_bytes() == before
    (out / "checkpoint-99").mkdir()  # an old run's checkpoint must not mix with the new run's
    run.main(args(tiny_model, train_file, out, "--max_steps", "1", "--overwrite_output_dir", "--learning_rate",
                  "1e-2"))
    assert (out / "model.safetensors").read_bytes() != before
    assert not (out / "checkpoint-99").exists()


def test_nan_loss_stops_with_clear_error(tiny_model, train_file, tmp_path, monkeypatch):
    import torch

    from reranker.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module.losses, "compute", lambda *a, **k: torch.tensor(float("nan"),
                                                                                        requires_grad=True))
    with pytest.raises(TrainingDiverged, match="loss is nan at step 1"):
        run.main(args(tiny_model, train_file, tmp_path / "out", "--max_steps", "3"))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_collapse_warning_when_loss_stays_at_chance(tiny_model, train_file, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run.main(args(tiny_model, train_file, tmp_path / "out", "--max_steps", "6", "--learning_rate", "0",
                      "--collapse_warning_steps", "5"))
    assert "stayed at chance, ln(4) = 1.386, for the last 5 steps" in caplog.text


def test_several_positives_per_group(tiny_model, train_file, tmp_path, caplog):
    # Two positives in a group of 4 (the rows have one, so it repeats): chance is ln(2 negatives + 1) = ln 3,
    # in the loss and in the collapse warning.
    with caplog.at_level(logging.WARNING):
        trainer = run.main(args(tiny_model, train_file, tmp_path / "out", "--max_steps", "3", "--learning_rate", "0",
                                "--head_init", "random", "--positives_per_group", "2",
                                "--collapse_warning_steps", "3"))
    assert trainer.train_dataset.positives == 2
    assert logged_losses(trainer)[0] == pytest.approx(math.log(3), abs=0.05)
    assert "stayed at chance, ln(3) = 1.099" in caplog.text
    assert "have fewer than 2 positives" in caplog.text
    with pytest.raises(ConfigError, match="below --train_group_size 4"):
        run.main(args(tiny_model, train_file, tmp_path / "o", "--max_steps", "1", "--positives_per_group", "4"))


def test_long_queries_are_cut_never_crash(tiny_model, tmp_path, caplog):
    rows = [{"query": "what is the capital of france " * 40, "pos": ["paris"], "neg": ["berlin", "rome", "madrid"]}]
    with caplog.at_level(logging.INFO):
        trainer = run.main(args(tiny_model, write_jsonl(tmp_path / "long.jsonl", rows * 3), tmp_path / "out",
                                "--max_steps", "1"))
    assert trainer.state.global_step == 1
    assert "100.0% of 1 queries exceed 16 tokens" in caplog.text


def test_argument_checks(tiny_model, train_file, tmp_path):
    with pytest.raises(ConfigError, match="at least 2"):
        run.main(args(tiny_model, train_file, tmp_path / "o", "--train_group_size", "1"))
    with pytest.raises(FileNotFoundError, match="does not exist locally"):
        run.main(args(tmp_path / "missing-model", train_file, tmp_path / "o", "--max_steps", "1"))
    with pytest.raises(ConfigError, match="2 values for 1"):
        run.main(args(tiny_model, train_file, tmp_path / "o", "--data_weights", "1", "2"))
    with pytest.raises(ConfigError, match="no effect with --mixing concat"):
        run.main(args(tiny_model, [train_file, train_file], tmp_path / "o", "--data_weights", "1", "2",
                      "--mixing", "concat"))


def test_library_train_api(tiny_model, train_file, tmp_path):
    import reranker

    out = tmp_path / "out"
    options = {"model_name_or_path": str(tiny_model), "train_data": str(train_file), "output_dir": str(out),
               "max_steps": 2, "train_group_size": 4, "per_device_train_batch_size": 3, "use_cpu": True,
               "save_strategy": "no", "query_max_len": 16, "passage_max_len": 24}
    trainer = reranker.train(**options)
    assert trainer.state.global_step == 2
    assert isinstance(Reranker(str(out)).compute_score(("why is the sky blue", "light is scattered")), float)
    with pytest.raises(ConfigError, match="unknown training option.*: max_step$"):
        reranker.train(**{**options, "output_dir": str(tmp_path / "typo"), "max_step": 2})
    assert not (tmp_path / "typo").exists()
