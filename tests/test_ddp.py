"""Two CPU processes under torchrun (gloo) through scripts/train.sh: same weights on both ranks, loss unscaled, and
batches scored in several forward passes (--forward_tokens) equal to one pass.

Also for the decoder family, whose scorer reads the body's hidden states through the model's own forward: the
gradients must still be synced by the DDP wrapper."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, group_rows, write_jsonl
from safetensors.torch import load_file
from tiny import build_tiny_family_model

DRIVER = """
import os, sys, torch
sys.path.insert(0, {root!r})
import run
trainer = run.main(sys.argv[1:])
rank = int(os.environ.get("RANK", 0))
torch.save(trainer.model.state_dict(), os.path.join({dump!r}, f"rank{{rank}}.pt"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("family", ["encoder", "decoder"])
def test_two_process_ddp_matches_single_process(tiny_model, tmp_path, family):
    model = tiny_model if family == "encoder" else build_tiny_family_model(tmp_path / "decoder", "decoder")
    data = write_jsonl(tmp_path / "train.jsonl", group_rows(2))
    common = ["--model_name_or_path", str(model), "--train_data", str(data), "--train_group_size", "3",
              "--max_steps", "4", "--learning_rate", "0.5", "--optim", "sgd", "--seed", "5", "--logging_steps", "1",
              "--save_strategy", "no", "--query_max_len", "16", "--passage_max_len", "24", "--use_cpu"]
    # SGD, not Adam: its update is linear in the gradient, so a loss scaled by the world size would double the
    # step and show here; Adam would normalise that away (and turns the group-invariant bias's ~0 gradient into
    # full-size steps of float noise).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}

    dump = tmp_path / "ddp"
    dump.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT), dump=str(dump)))
    # train.sh launches run.py; to dump each rank's weights we point it at a driver that calls run.main.
    launcher = (ROOT / "scripts" / "train.sh").read_text().replace('"$here/run.py"', f'"{driver}"').replace(
        '"$here/scripts/nproc.sh"', f'"{ROOT}/scripts/nproc.sh"')
    (tmp_path / "train.sh").write_text(launcher)
    result = subprocess.run(
        # The ranks score their batches in slices (several forward passes before one backward through DDP); the
        # single process below in one pass.
        ["bash", str(tmp_path / "train.sh"), *common, "--per_device_train_batch_size", "2", "--forward_tokens", "48",
         "--output_dir", str(tmp_path / "out2")],
        env={**env, "NPROC": "2"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torchrun with 2 process(es)" in result.stderr
    rank0, rank1 = torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name

    # One process with the same global batch (2 ranks x 2 groups = 4) sees the same groups in each step.
    single = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *common, "--per_device_train_batch_size", "4", "--forward_tokens", "0",
         "--output_dir", str(tmp_path / "out1")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    weights = load_file(tmp_path / "out1" / "model.safetensors")
    for name in weights:
        torch.testing.assert_close(rank0[name], weights[name], atol=1e-4, rtol=1e-3, msg=name)

    def losses(out):
        state = json.loads((out / "trainer_state.json").read_text())
        return [entry["loss"] for entry in state["log_history"] if "loss" in entry]

    # Not multiplied by the world size: the two runs log the same loss.
    assert losses(tmp_path / "out2") == pytest.approx(losses(tmp_path / "out1"), rel=1e-3)
    # Exactly one model, tokenizer and state written, no per-rank leftovers or temporary files.
    written = {run_dir: sorted(p.name for p in (tmp_path / run_dir).iterdir()) for run_dir in ("out1", "out2")}
    assert written["out2"] == written["out1"]
