"""Faults around the output folder: overwriting, interrupted saves, resuming, and options checked before loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl
from crash import Crash, CrashAfterSave
from safetensors.torch import load_file

import run
from reranker import Reranker
from reranker.common.errors import ConfigError, DataError
from reranker.models.loading import load_model


def train_args(model, data, out, *extra) -> list[str]:
    return ["--model_name_or_path", str(model), "--train_data", str(data), "--output_dir", str(out),
            "--train_group_size", "3", "--per_device_train_batch_size", "2", "--query_max_len", "16",
            "--passage_max_len", "24", "--use_cpu", "--logging_steps", "1", "--seed", "3", "--max_steps", "2",
            "--save_steps", "1", *extra]


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_overwrite_keeps_the_old_run_when_the_new_data_is_bad(tiny_model, train_file, tmp_path):
    out = tmp_path / "out"
    run.main(train_args(tiny_model, train_file, out))
    before = names(out)
    assert "checkpoint-1" in before and "model.safetensors" in before
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "pos": ["p"], "neg": "not a list"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        run.main(train_args(tiny_model, bad, out, "--overwrite_output_dir"))
    with pytest.raises(FileNotFoundError, match="trian.jsonl"):  # a typo in the file name
        run.main(train_args(tiny_model, tmp_path / "trian.jsonl", out, "--overwrite_output_dir"))
    assert names(out) == before


def test_interrupted_overwrite_leaves_no_old_model_looking_current(tiny_model, train_file, tmp_path):
    out = tmp_path / "out"
    run.main(train_args(tiny_model, train_file, out, "--save_strategy", "no"))
    (out / "dev_metrics.json").write_text("{}")
    (out / "README.md").write_text("the old run's card\n")
    with pytest.raises(Crash):
        run.main(train_args(tiny_model, train_file, out, "--overwrite_output_dir", "--max_steps", "3"),
                 callbacks=[CrashAfterSave(1)])
    left = names(out)
    assert "checkpoint-1" in left
    for old in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "training_args.bin",
                "trainer_state.json", "dev_metrics.json", "README.md"):
        assert old not in left, old



@pytest.fixture
def no_model_load(monkeypatch):
    """Options are checked before the model loads: loading it fails the test."""
    from reranker.training import train as train_module

    def fail(*a, **k):
        raise AssertionError("the model must not load before the options are checked")

    monkeypatch.setattr(train_module, "load_model", fail)


@pytest.mark.parametrize("option, value, match", [
    ("--learning_rate", "-1e-3", "--learning_rate must not be negative"),
    ("--head_learning_rate", "-1", "--head_learning_rate must not be negative"),
    ("--resume_from_checkpoint", "True", "no checkpoint in .*out to resume from"),
])
def test_bad_options_fail_before_loading_and_create_nothing(tiny_model, train_file, tmp_path, no_model_load,
                                                            option, value, match):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=match):
        run.main(train_args(tiny_model, train_file, out, f"{option}={value}"))  # "=": argparse reads -1 as a flag
    assert not out.exists()


def test_missing_output_dir_is_an_error(tiny_model, train_file, tmp_path, no_model_load, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = train_args(tiny_model, train_file, "unused")
    del argv[argv.index("--output_dir"):argv.index("--output_dir") + 2]
    with pytest.raises(ConfigError, match="--output_dir is required"):
        run.main(argv)
    assert names(tmp_path) == ["model", "train.jsonl"]  # no ./trainer_output


def test_resume_true_continues_from_the_last_checkpoint(tiny_model, train_file, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Crash):
        run.main(train_args(tiny_model, train_file, out, "--max_steps", "3"), callbacks=[CrashAfterSave(2)])
    trainer = run.main(train_args(tiny_model, train_file, out, "--max_steps", "3", "--resume_from_checkpoint", "true"))
    assert trainer.args.resume_from_checkpoint == str(out / "checkpoint-2")
    assert trainer.state.global_step == 3
    with pytest.raises(FileNotFoundError, match="--resume_from_checkpoint .*nowhere does not exist"):
        run.main(train_args(tiny_model, train_file, out, "--resume_from_checkpoint", str(tmp_path / "nowhere")))


@pytest.fixture
def kill_weight_write(monkeypatch):
    """Stands for a kill while the weights are written (config.json is already on disk): set ["at"] to the
    number of the weight write that dies."""
    import transformers.modeling_utils as modeling_utils

    real = modeling_utils.safe_save_file
    calls = {"n": 0, "at": None}

    def save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            raise Crash("killed while writing the weights")
        return real(*args, **kwargs)

    monkeypatch.setattr(modeling_utils, "safe_save_file", save)
    return calls


def test_a_killed_checkpoint_save_leaves_no_checkpoint(tiny_model, train_file, tmp_path, kill_weight_write):
    out = tmp_path / "out"
    kill_weight_write["at"] = 2  # the checkpoint of step 2
    with pytest.raises(Crash):
        run.main(train_args(tiny_model, train_file, out))
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]
    assert (out / "checkpoint-1" / "model.safetensors").is_file()


def test_a_killed_final_save_leaves_no_half_model(tiny_model, train_file, tmp_path, kill_weight_write):
    out = tmp_path / "out"
    kill_weight_write["at"] = 1
    with pytest.raises(Crash):
        run.main(train_args(tiny_model, train_file, out, "--save_strategy", "no"))
    assert not (out / "config.json").exists()
    with pytest.raises(ConfigError, match=r"out is not a complete model folder: no config\.json, no weights"):
        Reranker(str(out))


def test_incomplete_model_folders_are_refused_in_one_line(tiny_model, train_file, tmp_path):
    half = tmp_path / "checkpoint-7"
    half.mkdir()
    shutil.copy(tiny_model / "config.json", half)
    shutil.copy(tiny_model / "tokenizer.json", half)
    what = r"checkpoint-7 is not a complete model folder: no weights \(model\.safetensors"
    with pytest.raises(ConfigError, match=what):
        Reranker(str(half))
    with pytest.raises(ConfigError, match=what):
        load_model(str(half), None)
    for option in ("--resume_from_checkpoint", "--model_name_or_path"):
        with pytest.raises(ConfigError, match=what):
            run.main([*train_args(tiny_model, train_file, tmp_path / "out"), option, str(half)])
    shutil.copy(tiny_model / "model.safetensors", half)  # weights, but no Trainer state: nothing to resume
    with pytest.raises(ConfigError, match="checkpoint-7 has no trainer_state.json"):
        run.main([*train_args(tiny_model, train_file, tmp_path / "out"), "--resume_from_checkpoint", str(half)])
    assert not (tmp_path / "out").exists()


DEV = [{"query": "what is the capital of france", "candidates": [{"id": "a", "text": "berlin is in germany"},
                                                                 {"id": "b", "text": "paris is the capital"}],
        "relevance": {"b": 1}},
       {"query": "why is the sky blue", "candidates": [{"id": "c", "text": "the sky is blue because of light"},
                                                       {"id": "d", "text": "a cat"}], "relevance": {"c": 1}}]


def test_rotation_and_best_checkpoint_survive_staged_saves(tiny_model, train_file, tmp_path):
    import json

    out = tmp_path / "out"
    trainer = run.main(train_args(tiny_model, train_file, out, "--max_steps", "4", "--save_total_limit", "2",
                                  "--dev_file", str(write_jsonl(tmp_path / "dev.jsonl", DEV))))
    best = trainer.state.best_model_checkpoint
    assert trainer.args.load_best_model_at_end and best in {str(out / f"checkpoint-{s}") for s in range(1, 5)}
    kept = {p.name for p in out.glob("checkpoint-*")}
    assert len(kept) <= 3 and "checkpoint-4" in kept and Path(best).name in kept  # the limit, the last, the best
    assert not list(out.glob("_saving-*"))
    final, kept_best = load_file(out / "model.safetensors"), load_file(Path(best) / "model.safetensors")
    assert all(torch.equal(final[name], kept_best[name]) for name in final)  # the best one was loaded at the end
    for checkpoint in kept:  # each checkpoint's saved state names real folders, never the staging one
        state = json.loads((out / checkpoint / "trainer_state.json").read_text())
        assert state["best_model_checkpoint"] is None or Path(state["best_model_checkpoint"]).parent == out


def test_a_model_older_than_a_checkpoint_beside_it_is_refused(tiny_model, train_file, tmp_path):
    out = tmp_path / "out"
    run.main(train_args(tiny_model, train_file, out))  # finished at step 2
    with pytest.raises(Crash):  # continued to 4 steps, killed after the checkpoint of step 3
        run.main(train_args(tiny_model, train_file, out, "--max_steps", "4", "--resume_from_checkpoint", "true"),
                 callbacks=[CrashAfterSave(3)])
    stale = r"out holds the model of step 2, but its checkpoint-3 is newer"
    with pytest.raises(ConfigError, match=stale):
        Reranker(str(out))
    with pytest.raises(ConfigError, match=stale):
        load_model(str(out), None)
    Reranker(str(out / "checkpoint-3"))  # the newest weights load
