"""mine -> train -> evaluate on a BEIR folder, driven by one small config (scripts/pipeline.sh CONFIG).

The stages are the project's own entry points run as subprocesses through the launchers (torchrun where there
are GPUs), so a pipeline run is exactly what a user would type by hand. Each stage leaves a stamp in
<output_dir>/.stages/ with a key of its options and inputs; a re-run skips a stage whose stamp matches and whose
output exists, and continues an interrupted training from its last checkpoint.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from . import beir_train, cli
from .errors import ConfigError, StageFailed
from .eval_args import check_depth_curve
from .files import write_json

logger = logging.getLogger("reranker.pipeline")

REPO = Path(__file__).resolve().parent.parent
# Options the driver sets itself, per stage: a config giving them would be silently overridden otherwise.
MANAGED = {
    "mine": {"input_file", "output_file", "corpus", "candidate_pool", "overwrite"},
    "train": {"train_data", "output_dir", "dev_file", "overwrite_output_dir", "resume_from_checkpoint"},
    "eval": {"models", "datasets", "split", "output_dir", "dev_qrels", "expand_from", "expand_per_pair"},
}
STAGES = ("data", "mine", "expand", "train", "eval")
STAGE_SCRIPTS = {"mine": "hn_mine.py", "train": "run.py", "eval": "eval.py"}


@dataclass
class PipelineConfig:
    beir: str
    output_dir: str
    train_split: str = "train"
    test_split: str = "test"
    dev_queries: int = 80  # carved from the train queries: dev metrics in training, fusion weights in eval
    dev_depth: int = 30  # BM25 candidates per dev query ranked during training
    seed: int = 42
    # Document expansion (reranker/expansion.py): before each document the reranker reads this many training
    # queries that judged it, those most like the query first, in training, dev and eval alike (0: off).
    expand_documents: int = 0
    mine: dict = field(default_factory=dict)  # hn_mine.py options
    train: dict = field(default_factory=dict)  # run.py options
    eval: dict = field(default_factory=dict)  # eval.py options

    @classmethod
    def load(cls, path: str) -> PipelineConfig:
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text()) if Path(path).suffix in (".yaml", ".yml") else \
                json.loads(Path(path).read_text())
        except (yaml.YAMLError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: not valid YAML/JSON: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of options at the top level")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for required in ("beir", "output_dir"):
            if not raw.get(required):
                raise ConfigError(f"{path}: '{required}' is required")
        config = cls(**raw)
        config.validate(path)
        return config

    def validate(self, path: str) -> None:
        for stage in ("mine", "train", "eval"):
            options = getattr(self, stage)
            if not isinstance(options, dict):
                raise ConfigError(f"{path}: '{stage}' must be a mapping of {stage} options")
            clash = sorted(set(options) & MANAGED[stage])
            if clash:
                raise ConfigError(f"{path}: {stage}.{clash[0]} is set by the pipeline; remove it from the config")
        check_option_names({"mine": self.mine, "train": self.train, "eval": self.eval}, path)
        if not isinstance(self.dev_queries, int) or self.dev_queries < 0:
            raise ConfigError(f"{path}: dev_queries must be a non-negative integer, got {self.dev_queries!r}")
        if not isinstance(self.dev_depth, int) or self.dev_depth < 1:
            raise ConfigError(f"{path}: dev_depth must be a positive integer, got {self.dev_depth!r}")
        if not isinstance(self.expand_documents, int) or isinstance(self.expand_documents, bool) or \
                self.expand_documents < 0:
            raise ConfigError(f"{path}: expand_documents must be 0 (off) or a positive integer, got "
                              f"{self.expand_documents!r}")
        if "bm25_expanded" in (self.eval.get("first_stage") or []) and not self.expand_documents:
            raise ConfigError(f"{path}: eval.first_stage bm25_expanded indexes documents with their training "
                              "queries: set expand_documents")
        if self.expand_documents and not self.dev_queries:
            # The dev queries are the only ones in no document's expansion: without them no figure says whether
            # reading the questions helps before the test split is scored.
            raise ConfigError(f"{path}: expand_documents needs dev_queries > 0")
        if not isinstance(self.seed, int):
            raise ConfigError(f"{path}: seed must be an integer, got {self.seed!r}")
        if self.train_split == self.test_split:
            raise ConfigError(f"{path}: train_split and test_split are both {self.train_split!r}: the model would "
                              "be trained and tuned on the queries it is evaluated on")
        if self.train.get("auto_bf16") and (self.train.get("bf16") or self.train.get("fp16")):
            raise ConfigError(f"{path}: train.auto_bf16 chooses the precision itself; remove train.bf16 / fp16")
        try:
            check_depth_curve(self.eval.get("depth_curve") or [], self.eval.get("top_k", 100), "eval.depth_curve",
                              "top_k")
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
        if self.eval.get("tune_hybrid") and not self.dev_queries:
            raise ConfigError(f"{path}: eval.tune_hybrid needs dev_queries > 0 (weights are tuned on dev queries)")
        if not (Path(self.beir) / "corpus.jsonl").is_file():
            raise ConfigError(f"{path}: beir {self.beir} is not a BEIR folder (no corpus.jsonl)")
        for split in (self.train_split, self.test_split):
            if not (Path(self.beir) / "qrels" / f"{split}.tsv").is_file():
                raise ConfigError(f"{path}: {self.beir}/qrels/{split}.tsv does not exist")


def stage_option_names() -> dict[str, set[str]]:
    """The options each stage's entry point accepts (the fields of the dataclasses its parser is built from)."""
    from .arguments import DataArguments, EmbedArguments, MineArguments, ModelArguments, RerankerTrainingArguments
    from .eval_args import EvalArguments

    parsers = {"mine": (EmbedArguments, MineArguments),
               "train": (ModelArguments, DataArguments, RerankerTrainingArguments),
               "eval": (EvalArguments,)}
    # HfArgumentParser also makes a --no_<name> for every boolean that defaults to True.
    return {stage: {name for dc in classes for f in fields(dc)
                    for name in (f.name, f"no_{f.name}" if f.type in (bool, "bool") and f.default is True else None)
                    if name}
            for stage, classes in parsers.items()}


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
                raise ConfigError(f"{path}: {stage}.{name} is not an option of {STAGE_SCRIPTS[stage]}{hint}")


def to_argv(options: dict) -> list[str]:
    """{name: value} as command-line options of our entry points (HfArgumentParser)."""
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


def file_key(path: Path) -> list:
    # Size and modification time: cheap for large corpora, and any edit changes them.
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class Stages:
    """Stamps of finished stages under <output_dir>/.stages."""

    def __init__(self, output_dir: Path):
        self.dir = output_dir / ".stages"

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

    def seconds(self) -> dict[str, float]:
        out = {}
        for stage in STAGES:
            path = self.dir / f"{stage}.json"
            if path.is_file():
                out[stage] = json.loads(path.read_text()).get("seconds")
        return out


def run_logged(cmd: list[str], log_path: Path, env: dict | None = None) -> None:
    """Run a stage, its output both on our stderr (progress bars included) and in its log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("$ %s  (log: %s)", " ".join(cmd), log_path)
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        # The stages run where the driver runs, so relative paths in the config mean the same to both.
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        while chunk := process.stdout.read1(4096):
            log.write(chunk)
            log.flush()
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()
        code = process.wait()
    if code != 0:
        raise StageFailed(f"{cmd[1] if len(cmd) > 1 else cmd[0]} exited with code {code}; see {log_path}")


def latest_checkpoint(model_dir: Path) -> Path | None:
    """The newest complete checkpoint: trainer_state.json is written last, so a save cut by a kill is passed over."""
    checkpoints = [p for p in model_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
                   and (p / "trainer_state.json").is_file()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1])) if checkpoints else None


def run_pipeline(config: PipelineConfig, config_path: str, until: str = "eval") -> dict:
    """Run the stages up to and including `until` (benchmarks/compare_peers.py stops after "mine", and the
    expansion where the config asks for it)."""
    out = Path(config.output_dir)
    report = out / "report"
    stages = Stages(out)
    env = {**os.environ, "PYTHON": sys.executable}
    python = sys.executable
    write_json(report / "config.json", {"config_file": str(config_path), **asdict(config)})

    # 1. training records (and the dev split) from the BEIR folder's train qrels
    beir = Path(config.beir)
    data_key = key_of("data", file_key(beir / "corpus.jsonl"), file_key(beir / "queries.jsonl"),
                      file_key(beir / "qrels" / f"{config.train_split}.tsv"), config.train_split, config.dev_queries,
                      config.dev_depth, config.seed)
    data_dir = out / "data"
    if stages.done("data", data_key) and (data_dir / "train.jsonl").is_file():
        logger.info("data: done before, skipped")
    else:
        t = time.perf_counter()
        summary = beir_train.build(config.beir, data_dir, config.train_split, config.dev_queries, config.seed,
                                   config.dev_depth, test_split=config.test_split)
        write_json(report / "data_summary.json", summary)
        stages.mark("data", data_key, time.perf_counter() - t)
    dev = config.dev_queries > 0

    # 2. hard negatives
    mined = data_dir / "mined.jsonl"
    mine_options = {"range_for_sampling": "10-100", "negative_number": 15, "seed": config.seed, **config.mine}
    # Keyed on the training records themselves: a change of dev_depth alone does not redo mining and training.
    mine_key = key_of("mine", file_digest(data_dir / "train.jsonl"), file_key(beir / "corpus.jsonl"), mine_options)
    if stages.done("mine", mine_key) and mined.is_file():
        logger.info("mine: done before, skipped")
    else:
        t = time.perf_counter()
        run_logged(["bash", str(REPO / "scripts" / "mine.sh"), "--input_file", str(data_dir / "train.jsonl"),
                    "--output_file", str(mined), "--corpus", config.beir, "--overwrite", "true",
                    *to_argv(mine_options)], report / "mine.log", env)
        shutil.copyfile(mined.with_name("mined.summary.json"), report / "mining_summary.json")
        stages.mark("mine", mine_key, time.perf_counter() - t)
    # 2b. document expansion: the mined groups and the dev candidates as the reranker will read them
    train_file, dev_file, train_input_key = mined, data_dir / "dev.jsonl", mine_key
    if config.expand_documents:
        from .arguments import bundled_minilm_path
        from .embed_cache import model_fingerprint
        from .precision import resolve_dtype

        # The eval's embedder picks the questions there, so it picks them here too.
        expand_model = config.eval.get("dense_model") or bundled_minilm_path()
        train_file, dev_file = data_dir / "mined_expanded.jsonl", data_dir / "dev_expanded.jsonl"
        # What decides the training texts; the dev file is keyed apart, so that a change of dev_depth alone
        # rewrites dev_expanded.jsonl without retraining (as without expansion).
        settings = [file_digest(mined), config.expand_documents, model_fingerprint(expand_model),
                    config.eval.get("dense_pooling"), resolve_dtype(config.eval.get("dtype", "fp32"), "eval.dtype")]
        expand_key = key_of("expand", mine_key, settings, file_digest(data_dir / "dev.jsonl"))
        if stages.done("expand", expand_key) and train_file.is_file() and dev_file.is_file():
            logger.info("expand: done before, skipped")
        else:
            from .expansion import expand_files

            t = time.perf_counter()
            summary = expand_files(data_dir / "train.jsonl", mined, data_dir / "dev.jsonl", train_file, dev_file,
                                   config.beir, config.expand_documents, expand_model,
                                   config.eval.get("dtype", "fp32"), config.train_split,
                                   config.eval.get("dense_pooling"))
            write_json(report / "expansion_summary.json", summary)
            stages.mark("expand", expand_key, time.perf_counter() - t)
        train_input_key = key_of(mine_key, settings)
    if until == "mine":  # the training data as our own training would read it: expanded where the config says so
        return {"train_file": str(train_file), "dev_file": str(dev_file) if dev else None,
                "dev_qrels": str(data_dir / "dev_qrels.tsv") if dev else None, "seconds": stages.seconds(),
                "expand_from": str(data_dir / "train.jsonl") if config.expand_documents else None}

    # 3. training, resumed from its last checkpoint when the same training was interrupted
    model_dir = out / "model"
    train_options = {"seed": config.seed, **config.train}
    train_key = key_of("train", train_input_key, train_options, dev)
    if stages.done("train", train_key) and (model_dir / "config.json").is_file():
        logger.info("train: done before, skipped")
    else:
        t = time.perf_counter()
        checkpoint = latest_checkpoint(model_dir)
        if checkpoint is not None and stages.started("train") == train_key:
            logger.info("train: continuing the interrupted run from %s", checkpoint)
            where = ["--resume_from_checkpoint", str(checkpoint)]
        else:
            if stages.started("train") is None and (model_dir / "config.json").exists():
                raise FileExistsError(f"{model_dir} holds a model this pipeline did not train; move it or choose "
                                      "another output_dir")
            where = ["--overwrite_output_dir", "true"]
        stages.started("train", train_key)
        run_logged(["bash", str(REPO / "scripts" / "train.sh"), "--train_data", str(train_file), "--output_dir",
                    str(model_dir), *where, *(["--dev_file", str(dev_file)] if dev else []),
                    *to_argv(train_options)], report / "train.log", env)
        for name in ("dev_metrics.json", "trainer_state.json"):
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, report / name)
        stages.mark("train", train_key, time.perf_counter() - t)

    # 4. evaluation on the test split; fusion weights tuned on the dev queries
    eval_options = {"first_stage": ["bm25", "dense"], "top_k": 100, **config.eval}
    if config.expand_documents:
        eval_options.update(expand_from=str(data_dir / "train.jsonl"), expand_per_pair=config.expand_documents)
    # The model files' times are in the key: a training that ran again (resumed, say) is evaluated again.
    eval_key = key_of("eval", train_key, eval_options, file_key(beir / "qrels" / f"{config.test_split}.tsv"),
                      [file_key(p) for p in sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]])
    if stages.done("eval", eval_key) and (report / "results.json").is_file():
        logger.info("eval: done before, skipped")
    else:
        t = time.perf_counter()
        run_logged([python, str(REPO / "eval.py"), "--models", str(model_dir), "--datasets", config.beir, "--split",
                    config.test_split, "--output_dir", str(report),
                    *(["--dev_qrels", str(data_dir / "dev_qrels.tsv")] if dev else []), *to_argv(eval_options)],
                   report / "eval.log", env)
        stages.mark("eval", eval_key, time.perf_counter() - t)

    results = json.loads((report / "results.json").read_text())
    seconds = stages.seconds()
    write_json(report / "stages.json", seconds)
    logger.info("Pipeline done in %s; report in %s", ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()), report)
    return {"report": str(report), "seconds": seconds, "results": results}


def config_argument(argv: list[str] | None, script: str) -> str:
    """The drivers' one argument: an existing config file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 1:
        raise ConfigError(f"usage: scripts/{script} CONFIG (a .yaml or .json file)")
    if not Path(argv[0]).is_file():
        raise FileNotFoundError(f"config {argv[0]} does not exist")
    return argv[0]


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    path = config_argument(argv, "pipeline.sh")
    return run_pipeline(PipelineConfig.load(path), path)


if __name__ == "__main__":
    sys.exit(cli.run(main, logger))
