"""Shared by the benchmarks: running a command and reading its process tree's peak resident memory."""

from __future__ import annotations

import subprocess
import sys
import time

# Runs a command and prints the peak RSS of its process tree (ru_maxrss of the waited-for descendants, in KB).
_MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


def run_measured(command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, float]:
    """(result, wall seconds, peak RSS in MB) of `command`; exits with its log tail when it fails."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    peaks = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return result, wall, int(peaks[-1]) / 1024


def race(calls: dict, items: list, rounds: int, warmup: int = 64) -> dict[str, float]:
    """Items a second of each `calls[name](items)`, after a warm-up each, in interleaved rounds; the best round kept
    (the least disturbed by whatever else the machine did)."""
    for call in calls.values():
        call(items[:warmup])
    speed: dict[str, float] = {}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call(items)
            speed[name] = max(speed.get(name, 0.0), len(items) / (time.perf_counter() - start))
    return speed


def run_peer(peer_python: str, script: str, model, payload: list, cfg: dict, skip=("onnx", "openvino")) -> dict:
    """Run `script` (it prints `PEER {json}`) in the peers' venv on a copy of `model` without our exported graphs
    (the peer exports its own), with `payload` as a JSON file; returns what it printed."""
    import json
    import os
    import shutil
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / "model"
        shutil.copytree(model, copy, ignore=shutil.ignore_patterns(*skip, "checkpoint-*"))
        (Path(work) / "payload.json").write_text(json.dumps(payload))
        cfg = {**cfg, "model": str(copy), "payload": str(Path(work) / "payload.json")}
        done = subprocess.run([peer_python, "-c", script, json.dumps(cfg)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": ""})
    line = next((x for x in done.stdout.splitlines() if x.startswith("PEER ")), None)
    if line is None:
        raise RuntimeError(f"the peer run failed:\n{done.stderr[-3000:]}")
    return json.loads(line[5:])
