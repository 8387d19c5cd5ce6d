"""The launchers' process count: NPROC, CUDA_VISIBLE_DEVICES, or 1 on a machine without GPUs."""

import os
import shutil
import subprocess

import pytest
from conftest import ROOT


@pytest.mark.parametrize("env, expected", [
    ({}, "1"), ({"CUDA_VISIBLE_DEVICES": ""}, "1"), ({"CUDA_VISIBLE_DEVICES": "-1"}, "1"),
    ({"CUDA_VISIBLE_DEVICES": "0"}, "1"), ({"CUDA_VISIBLE_DEVICES": "0,1,3"}, "3"),
    ({"NPROC": "2", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, "2"),
])
def test_count_processes(env, expected, tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in ("NPROC", "CUDA_VISIBLE_DEVICES")}
    base["PATH"] = str(tmp_path) + ":/usr/bin:/bin"  # no nvidia-smi: the machine without GPUs
    result = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/nproc.sh; count_processes"],
                            env={**base, **env}, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("env, expected", [
    ({}, 1), ({"CUDA_VISIBLE_DEVICES": ""}, 1), ({"CUDA_VISIBLE_DEVICES": "-1"}, 1),
    ({"CUDA_VISIBLE_DEVICES": "0"}, 1), ({"CUDA_VISIBLE_DEVICES": "0,1,3"}, 3),
    ({"NPROC": "2", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 2),
])
def test_count_processes_in_python_matches_the_launchers(env, expected):
    """The pipeline launches its stages from Python (it must run from a wheel, without scripts/): same rule."""
    from reranker.workflows.stages import command, count_processes

    assert count_processes(env) == expected
    assert command("train", 2)[-2:] == ["-m", "reranker.cli.train"] and "--nproc_per_node" in command("train", 2)
    assert command("mine", 1)[1:] == ["-m", "reranker.cli.mine"]


def test_launchers_find_a_python_or_say_how_to_set_one(tmp_path):
    """No PYTHON and no python on PATH that can import torch: one clear message and a non-zero exit, before
    anything runs. With PYTHON set, that one is used as is."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("python", "python3"):  # a python without our dependencies
        (fake / name).write_text("#!/bin/sh\nexit 1\n")
        (fake / name).chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "PYTHONPATH")}
    checkout = tmp_path / "checkout"  # no .venv there
    checkout.mkdir()
    result = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/nproc.sh; find_python {checkout}"],
                            env={**base, "PATH": f"{fake}:/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert "no python with reranker's dependencies" in result.stderr and "PYTHON=" in result.stderr
    assert "tried: python python3" in result.stderr
    shutil.copytree(ROOT / "scripts", checkout / "scripts")  # a checkout whose .venv was never made
    result = subprocess.run(["bash", str(checkout / "scripts" / "eval.sh"), "--help"],
                            env={**base, "PATH": f"{fake}:/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode != 0 and "no python with reranker's dependencies" in result.stderr
    result = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/nproc.sh; find_python {checkout}"],
                            env={**base, "PYTHON": "/opt/my/python"}, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "/opt/my/python"


def test_stage_logs_keep_each_progress_bar_once(tmp_path):
    """A stage's progress bars redraw with carriage returns: its log keeps each line's last state."""
    import sys

    from reranker.workflows.stages import run_logged

    log = tmp_path / "stage.log"
    run_logged([sys.executable, "-c", "import sys; sys.stdout.write('10%\\r50%\\r100%\\nnext line\\nno newline')"],
               log)
    lines = log.read_text().splitlines()
    assert lines[-3:] == ["100%", "next line", "no newline"] and "\r" not in log.read_text()
