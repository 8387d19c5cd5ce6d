"""The launchers' process count: NPROC, CUDA_VISIBLE_DEVICES, or 1 on a machine without GPUs."""

import os
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
