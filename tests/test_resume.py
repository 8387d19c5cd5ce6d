"""A run killed after a checkpoint and resumed ends with the same weights as one that was never stopped."""

import pytest
import torch
from conftest import group_rows, write_jsonl
from crash import Crash, CrashAfterSave
from safetensors.torch import load_file

import run


def test_resume_matches_uninterrupted(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", group_rows(1)[:5])  # 5 queries, batch 2 -> 3 steps an epoch
    common = ["--model_name_or_path", str(tiny_model), "--train_data", str(data), "--train_group_size", "3",
              "--per_device_train_batch_size", "2", "--max_steps", "8", "--save_steps", "5", "--learning_rate",
              "5e-3", "--use_cpu", "--seed", "11", "--query_max_len", "16", "--passage_max_len", "24"]
    run.main([*common, "--output_dir", str(tmp_path / "a")])
    with pytest.raises(Crash):
        # Step 5 falls in the middle of the second epoch: resuming must replay that epoch's order and skip.
        run.main([*common, "--output_dir", str(tmp_path / "b")], callbacks=[CrashAfterSave(5)])
    assert not (tmp_path / "b" / "model.safetensors").exists()
    run.main([*common, "--output_dir", str(tmp_path / "b"),
              "--resume_from_checkpoint", str(tmp_path / "b" / "checkpoint-5")])
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    # And the weights did move, so the comparison means something.
    start = load_file(tiny_model / "model.safetensors")
    assert not torch.allclose(start["classifier.weight"], a["classifier.weight"])


def test_resuming_a_finished_run_trains_no_further_step(tiny_model, tmp_path):
    # 12 queries, batch 2: the run ends mid-epoch (where the Trainer took one more step on resume).
    data = write_jsonl(tmp_path / "train.jsonl", group_rows(2))
    out = tmp_path / "out"
    argv = ["--model_name_or_path", str(tiny_model), "--train_data", str(data), "--train_group_size", "3",
            "--per_device_train_batch_size", "2", "--max_steps", "3", "--save_steps", "3", "--logging_steps", "1",
            "--learning_rate", "5e-3", "--use_cpu", "--seed", "11", "--output_dir", str(out)]
    run.main(argv)
    finished = load_file(out / "model.safetensors")
    trainer = run.main([*argv, "--resume_from_checkpoint", str(out / "checkpoint-3")])
    assert trainer.state.global_step == 3
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [1, 2, 3]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]
    resumed = load_file(out / "model.safetensors")
    for name in finished:
        torch.testing.assert_close(finished[name], resumed[name], msg=name)
