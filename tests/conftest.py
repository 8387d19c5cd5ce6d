"""Shared fixtures: a tiny local model built once per session, and writers for small data files."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

# Thread contention on 2 cores swings timings tenfold; tests run single-threaded and offline.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# "auto" precision resolves to fp32 here on every CPU, so figures compared across code paths match; the tests of
# the auto choice itself clear this.
os.environ.setdefault("RERANKER_AUTO_DTYPE", "fp32")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_tiny_model  # noqa: E402

TOPICS = [
    ("what is the capital of france", "paris is the capital of france", ["berlin is a city in germany",
     "rome is the capital of italy", "madrid is in spain", "the king of france had a big city"]),
    ("why is the sky blue", "the sky is blue because light from the sun is scattered",
     ["the ocean is big", "the moon has no sky", "a red star is cold", "green tree leaf"]),
    ("how does bread bake", "bread bakes in an oven as yeast and flour rise with heat",
     ["a bank can give a loan", "tax is paid to the country", "fish swim in the river", "the cat and the dog"]),
    ("what is an atom", "an atom is made of electron and protein? no: electron and a small core",
     ["a cell has a gene", "energy from the sun", "the film was good", "one two three"]),
    ("when does water freeze", "water freezes at zero degrees celsius and becomes ice",
     ["water boils at one hundred degrees celsius", "fire is hot", "the river runs to the ocean", "a song"]),
    ("who is the queen", "the queen rules the country with the king",
     ["a war and peace book", "music and a song", "the bird in the tree", "the computer program"]),
]


def group_rows(copies: int = 2) -> list[dict]:
    rows = []
    for c in range(copies):
        for query, pos, neg in TOPICS:
            rows.append({"query": f"{query} {c}" if c else query, "pos": [pos], "neg": list(neg)})
    return rows


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (the folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_launcher(script: str, argv: list[str], nproc: int, timeout: int = 300):
    """scripts/<script> with NPROC processes (torchrun over gloo on a CPU when more than one), one thread each;
    checks that it ran that many and succeeded, and returns the completed process."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           "NPROC": str(nproc)}
    result = subprocess.run(["bash", str(ROOT / "scripts" / script), *map(str, argv)], env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{script}: {nproc} process(es)" in result.stderr
    return result


@pytest.fixture(scope="session")
def tiny_model_master(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def tiny_model(tiny_model_master, tmp_path) -> Path:
    """A private copy per test, so no test can change another's model."""
    return Path(shutil.copytree(tiny_model_master, tmp_path / "model"))


@pytest.fixture
def tokenizer(tiny_model_master):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_master)


@pytest.fixture
def train_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", group_rows())
