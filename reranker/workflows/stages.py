"""What the pipeline and the rounds share: stage stamps (key, skip, run, mark), launching our own commands as
subprocesses (torchrun where there are several GPUs), config files, and the stages' option names.

A stage is skipped when its stamp under <output_dir>/.stages/ holds the same key and its outputs exist, so a
re-run after a crash redoes only what changed or did not finish.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from reranker.common.errors import ConfigError, StageFailed
from reranker.common.files import write_json

logger = logging.getLogger(__name__)

# The installed commands' modules, run as `python -m`, so a pipeline works from a wheel as from a checkout.
COMMANDS = {"mine": "reranker.cli.mine", "train": "reranker.cli.train", "eval": "reranker.cli.eval",
            "embedder": "reranker.cli.train_embedder", "export": "reranker.cli.export"}
# The command each config section gives options to (embedder_mine: the miner, run for the embedder's records).
COMMAND_NAMES = {"mine": "reranker-mine", "train": "reranker-train", "eval": "reranker-eval",
                 "embedder": "reranker-train-embedder", "embedder_mine": "reranker-mine"}
TRAINERS = ("train", "embedder")  # run under torchrun, one process per visible GPU


class Stages:
    """Stamps of finished stages under <output_dir>/.stages."""

    def __init__(self, output_dir: Path, order: tuple[str, ...] = ()):
        self.dir = Path(output_dir) / ".stages"
        self.order = order

    def done(self, stage: str, key: str) -> bool:
        path = self.dir / f"{stage}.json"
        return path.is_file() and json.loads(path.read_text()).get("key") == key

    def mark(self, stage: str, key: str, seconds: float, **extra) -> None:
        write_json(self.dir / f"{stage}.json", {"key": key, "seconds": round(seconds, 1), **extra})

    def started(self, stage: str, key: str | None = None) -> str | None:
        """Record (with key) or read (without) the key of a stage that began but may not have finished."""
        path = self.dir / f"{stage}.started.json"
        if key is not None:
            write_json(path, {"key": key})
            return key
        return json.loads(path.read_text()).get("key") if path.is_file() else None

    def run(self, stage: str, key: str, outputs: list[Path], work: Callable[[], object]) -> bool:
        """Skip `stage` when it finished before under `key` and all its outputs exist; else run `work` and stamp
        it. Returns whether it ran."""
        if self.done(stage, key) and all(Path(p).exists() for p in outputs):
            logger.info("%s: done before, skipped", stage)
            return False
        start = time.perf_counter()
        work()
        self.mark(stage, key, time.perf_counter() - start)
        return True

    def seconds(self) -> dict[str, float]:
        out = {}
        for stage in self.order:
            path = self.dir / f"{stage}.json"
            if path.is_file():
                out[stage] = json.loads(path.read_text()).get("seconds")
        return out


def start_options(stages: Stages, stage: str, key: str, output_dir: Path, guard: Path | None = None) -> list[str]:
    """How a training stage starts: from its last complete checkpoint when the same training (same key) was
    interrupted, else afresh over what an earlier run of the stage left. `guard`: a file whose presence, in a folder
    this stage never started to write, means a model someone else put there; it is never replaced."""
    from reranker.training.output_dir import last_checkpoint

    checkpoint = last_checkpoint(output_dir)
    if checkpoint is not None and stages.started(stage) == key:
        logger.info("%s: continuing the interrupted run from %s", stage, checkpoint)
        start = ["--resume_from_checkpoint", str(checkpoint)]
    else:
        if guard is not None and stages.started(stage) is None and guard.exists():
            raise FileExistsError(f"{output_dir} holds a model this pipeline did not train; move it or choose "
                                  "another output_dir")
        start = ["--overwrite_output_dir", "true"]
    stages.started(stage, key)
    return start


def count_processes(environ: dict | None = None) -> int:
    """How many processes a stage starts: NPROC if set; else the GPUs listed in CUDA_VISIBLE_DEVICES ("" or "-1"
    hides them all); else every GPU torch sees; else 1 (CPU). The same rule as scripts/nproc.sh."""
    environ = os.environ if environ is None else environ
    if environ.get("NPROC"):
        return int(environ["NPROC"])
    if "CUDA_VISIBLE_DEVICES" in environ:
        gpus = [g for g in environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and g.strip() != "-1"]
        return max(1, len(gpus))
    import torch

    return max(1, torch.cuda.device_count())


def command(stage: str, nproc: int | None = None) -> list[str]:
    """The argv that runs a stage's command: torchrun for training (the reranker's and the embedder's; and for
    mining with several processes, which encode the pool in shards), one plain process otherwise."""
    nproc = count_processes() if nproc is None else nproc
    module = COMMANDS[stage]
    if stage in TRAINERS or (stage == "mine" and nproc > 1):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                "-m", module]
    return [sys.executable, "-m", module]


def run_logged(cmd: list[str], log_path: Path, env: dict | None = None) -> None:
    """Run a stage, its output both on our stderr and in its log file. Progress bars redraw with carriage returns;
    the log keeps only each bar's last state, so it reads as lines."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("$ %s  (log: %s)", " ".join(cmd), log_path)
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        # The stages run where the driver runs, so relative paths in the config mean the same to both.
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        pending = b""
        while chunk := process.stdout.read1(4096):
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                log.write(line.rsplit(b"\r", 1)[-1] + b"\n")
            log.flush()
        if pending:
            log.write(pending.rsplit(b"\r", 1)[-1] + b"\n")
        code = process.wait()
    if code != 0:
        raise StageFailed(f"{' '.join(cmd[:4])} ... exited with code {code}; see {log_path}")


def copy_if_present(names: tuple[str, ...], src: Path, dst: Path) -> None:
    for name in names:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def read_config(path: str, cls) -> dict:
    """A YAML or JSON config as a mapping whose names are all fields of the dataclass `cls`."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML/JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "embedder" in raw and raw["embedder"] is None:
        # A bare `embedder:` (every option under it commented out) reads as null, which means no embedder stage.
        logger.warning("%s: 'embedder:' is empty (null): no embedder is trained; write 'embedder: {}' for one with "
                       "the trainer's defaults", path)
    return raw


def stage_option_names() -> dict[str, set[str]]:
    """The options each config section's command accepts (the fields of the dataclasses its parser is built
    from)."""
    from reranker.embedding.arguments import (
        EmbedderDataArguments,
        EmbedderModelArguments,
        EmbedderTrainingArguments,
    )
    from reranker.evaluation.arguments import EvalArguments
    from reranker.mining.arguments import EmbedArguments, MineArguments
    from reranker.training.arguments import DataArguments, ModelArguments, RerankerTrainingArguments

    parsers = {"mine": (EmbedArguments, MineArguments),
               "train": (ModelArguments, DataArguments, RerankerTrainingArguments),
               "eval": (EvalArguments,),
               "embedder": (EmbedderModelArguments, EmbedderDataArguments, EmbedderTrainingArguments),
               "embedder_mine": (EmbedArguments, MineArguments)}
    # HfArgumentParser also makes a --no_<name> for every boolean that defaults to True.
    return {stage: {name for dc in classes for f in fields(dc)
                    for name in (f.name, f"no_{f.name}" if f.type in (bool, "bool") and f.default is True else None)
                    if name}
            for stage, classes in parsers.items()}


def embedder_default(name: str):
    """A reranker-train-embedder option's default, from its dataclasses (one place says it)."""
    from dataclasses import MISSING

    from reranker.embedding.arguments import (
        EmbedderDataArguments,
        EmbedderModelArguments,
        EmbedderTrainingArguments,
    )

    for cls in (EmbedderModelArguments, EmbedderDataArguments, EmbedderTrainingArguments):
        for f in fields(cls):
            if f.name == name:
                return f.default if f.default is not MISSING else f.default_factory()
    raise KeyError(name)


def check_embedder_section(embedder: dict, path: str) -> int:
    """An embedder section the drivers can hand on: the miner and the eval read a fine-tuned embedder from its
    folder (pooling, query prompt), always L2-normalised and without a passage instruction, so options that make
    it embed otherwise are errors here rather than a quietly different retriever later. Returns its
    train_group_size."""
    if embedder.get("passage_instruction"):
        raise ConfigError(f"{path}: embedder.passage_instruction: reranker-mine and reranker-eval embed passages "
                          "without an instruction, so the embedder would be read otherwise than it was trained")
    if embedder.get("normalize") is False:
        raise ConfigError(f"{path}: embedder.normalize false: reranker-mine and reranker-eval search with "
                          "L2-normalised embeddings, so the embedder would be read otherwise than it was trained")
    group = embedder.get("train_group_size", embedder_default("train_group_size"))
    if not isinstance(group, int) or isinstance(group, bool) or group < 1:
        raise ConfigError(f"{path}: embedder.train_group_size must be a positive integer, got {group!r}")
    return group


def check_option_names(stage_options: dict[str, dict], path: str) -> None:
    """A misspelt option fails when the config is read, not when its stage starts: for eval, after an hour of
    training."""
    accepted = stage_option_names()
    for stage, options in stage_options.items():
        names = accepted[stage]
        for name in options:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{path}: {stage}.{name} is not an option of {COMMAND_NAMES[stage]}{hint}")


def to_argv(options: dict) -> list[str]:
    """{name: value} as command-line options of our commands (HfArgumentParser)."""
    argv = []
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            argv += [f"--{name}", *(str(v) for v in value)]
        elif isinstance(value, bool):
            argv += [f"--{name}", str(value).lower()]
        else:
            argv += [f"--{name}", str(value)]
    return argv
