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
