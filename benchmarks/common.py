"""Shared by the benchmarks: running a command and reading its process tree's peak resident memory, racing calls,
OpenVINO graphs without their one-shape copies, and the driver that trains sentence-transformers' cross-encoder as
ours trains."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

# Runs a command and prints the peak RSS of its process tree (ru_maxrss of the waited-for descendants, in KB).
_MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


@contextlib.contextmanager
def without_shape_copies(active: bool = True):
    """OpenVINO graphs loaded inside run on their dynamic compile alone, without the copies compiled for recurring
    batch shapes (reranker.models.backends.OpenVinoShapes): what those copies add, raced in the same run."""
    from reranker.models import backends

    saved = backends.STATIC_COPIES
    backends.STATIC_COPIES = 0 if active else saved  # read when a graph is loaded
    try:
        yield
    finally:
        backends.STATIC_COPIES = saved


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


# sentence-transformers' static int8 OpenVINO export (NNCF through optimum-intel), calibrated on local texts: its
# default calibration set (GLUE's sst2) would be downloaded. Appended to a peer script that has `systems`, `load`,
# `path` and `cfg`; run_peer writes the texts as a local dataset folder and passes its path as cfg["calibration"].
# The export is given a model of its own: optimum-intel's quantizer replaces the graph of the model it is handed in
# place, which would make the "openvino" system int8 too.
ST_STATIC_OPENVINO = r"""
from optimum.intel import OVQuantizationConfig
from sentence_transformers.backend import export_static_quantized_openvino_model
export_static_quantized_openvino_model(load(backend="openvino"), OVQuantizationConfig(), path,
                                       dataset_name=cfg["calibration"], dataset_config_name="default",
                                       dataset_split="train", column_name="text")
systems["openvino-qint8-static"] = load(backend="openvino",
                                        model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml"})
"""


def run_peer(peer_python: str, script: str, model, payload: list, cfg: dict, skip=("onnx", "openvino"),
             calibration: list[str] | None = None) -> dict:
    """Run `script` (it prints `PEER {json}`) in the peers' venv on a copy of `model` without our exported graphs
    (the peer exports its own), with `payload` as a JSON file and `calibration` texts as a local dataset folder
    (cfg["calibration"]); offline, as everything here; returns what it printed."""
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
        if calibration:
            folder = Path(work) / "calibration"
            folder.mkdir()
            (folder / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in calibration))
            cfg["calibration"] = str(folder)
        done = subprocess.run([peer_python, "-c", script, json.dumps(cfg)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1",
                                   "HF_DATASETS_OFFLINE": "1"})
    line = next((x for x in done.stdout.splitlines() if x.startswith("PEER ")), None)
    if line is None:
        raise RuntimeError(f"the peer run failed:\n{done.stderr[-3000:]}")
    return json.loads(line[5:])


# sentence-transformers' CrossEncoder trained with the group softmax our trainer and FlagEmbedding's use, run as
# `python -c ST_TRAIN '<json>'` in a child so its wall time and memory are measured like the others'. The JSON holds
# model, train_file, output_dir, group_size, batch_size, steps, learning_rate, warmup_steps, bf16, use_cpu, seed,
# query_max_len and passage_max_len.
ST_TRAIN = r'''
import json, sys
import numpy as np
from datasets import Dataset
from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

cfg = json.loads(sys.argv[1])


class GroupSoftmaxLoss(MultipleNegativesRankingLoss):
    """Softmax cross-entropy over each query's own group (positive + its hard negatives), as the other two train:
    no in-batch negatives (num_negatives=0 crashes in 6.2, so they are switched off here), no sigmoid, no scale."""

    def __init__(self, model):
        super().__init__(model, num_negatives=None, scale=1.0, activation_fn=None)

    def get_in_batch_negatives(self, anchors, candidates):
        return iter(())


rows = [json.loads(line) for line in open(cfg["train_file"], encoding="utf-8")]
k = cfg["group_size"] - 1
columns = {"query": [], "positive": [], **{f"negative_{i}": [] for i in range(k)}}
# One row per group the budget draws; negatives re-sampled each pass over the queries, as the others do.
needed = cfg["steps"] * cfg["batch_size"]
for n in range(needed):
    epoch, i = divmod(n, len(rows))
    row = rows[i]
    rng = np.random.default_rng([cfg["seed"], epoch, i])
    negs = row["neg"]
    picks = rng.choice(len(negs), size=k, replace=len(negs) < k)
    columns["query"].append(row["query"])
    columns["positive"].append(row["pos"][int(rng.integers(len(row["pos"])))])
    for j, p in enumerate(picks):
        columns[f"negative_{j}"].append(negs[int(p)])
model = CrossEncoder(cfg["model"], num_labels=1, max_length=cfg["query_max_len"] + cfg["passage_max_len"])
args = CrossEncoderTrainingArguments(
    output_dir=cfg["output_dir"] + "_trainer", per_device_train_batch_size=cfg["batch_size"],
    learning_rate=cfg["learning_rate"], warmup_steps=cfg["warmup_steps"], max_steps=cfg["steps"],
    bf16=cfg["bf16"], use_cpu=cfg["use_cpu"], save_strategy="no", logging_steps=10, report_to="none",
    seed=cfg["seed"], dataloader_drop_last=True,
)
trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                              loss=GroupSoftmaxLoss(model))
trainer.train()
model.save_pretrained(cfg["output_dir"])
'''
