"""mine -> train -> evaluate on a BEIR folder, driven by one small config (`reranker-pipeline CONFIG`).

The stages are the project's own commands run as subprocesses (`python -m reranker.cli.<stage>`, training under
torchrun with one process per visible GPU), so a pipeline run is exactly what a user would type by hand. Each
stage leaves a stamp in <output_dir>/.stages/ with a key of its options and inputs; a re-run skips a stage whose
stamp matches and whose output exists, and continues an interrupted training from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reranker.common.errors import ConfigError
from reranker.common.files import write_json
from reranker.common.hashing import file_digest, file_key, key_of
from reranker.evaluation.arguments import check_depth_curve
from reranker.training.output_dir import last_checkpoint
from reranker.workflows import beir_train
from reranker.workflows.stages import (
    Stages,
    check_option_names,
    command,
    copy_if_present,
    read_config,
    run_logged,
    to_argv,
)

logger = logging.getLogger("reranker.pipeline")

# Options the driver sets itself, per stage: a config giving them would be silently overridden otherwise.
MANAGED = {
    "mine": {"input_file", "output_file", "corpus", "candidate_pool", "overwrite"},
    "train": {"train_data", "output_dir", "dev_file", "overwrite_output_dir", "resume_from_checkpoint"},
    "eval": {"models", "datasets", "split", "output_dir", "dev_qrels", "expand_from", "expand_per_pair"},
}
STAGES = ("data", "mine", "expand", "train", "eval")


@dataclass
class PipelineConfig:
    beir: str
    output_dir: str
    train_split: str = "train"
    test_split: str = "test"
    dev_queries: int = 80  # carved from the train queries: dev metrics in training, fusion weights in eval
    dev_depth: int = 30  # BM25 candidates per dev query ranked during training
    seed: int = 42
    # Document expansion (reranker/data/expansion.py): before each document the reranker reads this many training
    # queries that judged it, those most like the query first, in training, dev and eval alike (0: off).
    expand_documents: int = 0
    mine: dict = field(default_factory=dict)  # reranker-mine options
    train: dict = field(default_factory=dict)  # reranker-train options
    eval: dict = field(default_factory=dict)  # reranker-eval options

    @classmethod
    def load(cls, path: str) -> PipelineConfig:
        raw = read_config(path, cls)
        for required in ("beir", "output_dir"):
            if not raw.get(required):
                raise ConfigError(f"{path}: '{required}' is required")
        config = cls(**raw)
        from reranker.data.beir_hub import is_hub_layout, materialize

        if isinstance(config.beir, str) and is_hub_layout(config.beir):  # BeIR/scifact: a local copy, made once
            config.beir = str(materialize(config.beir, [config.train_split, config.test_split]))
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


@dataclass
class Layout:
    """Where one pipeline run keeps its files."""

    out: Path
    lora: bool = False  # the train stage writes a LoRA adapter (train.use_lora)

    @property
    def report(self) -> Path:
        return self.out / "report"

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def model(self) -> Path:
        return self.out / "model"

    @property
    def model_config(self) -> Path:
        """What a finished training leaves: config.json, or adapter_config.json for a LoRA adapter."""
        adapter = self.model / "adapter_config.json"
        return adapter if adapter.is_file() or self.lora else self.model / "config.json"


def data_stage(config: PipelineConfig, stages: Stages, where: Layout) -> str:
    """1. Training records (and the dev split) from the BEIR folder's train qrels."""
    beir = Path(config.beir)
    key = key_of("data", file_key(beir / "corpus.jsonl"), file_key(beir / "queries.jsonl"),
                 file_key(beir / "qrels" / f"{config.train_split}.tsv"), config.train_split, config.dev_queries,
                 config.dev_depth, config.seed)

    def work():
        summary = beir_train.build(config.beir, where.data, config.train_split, config.dev_queries, config.seed,
                                   config.dev_depth, test_split=config.test_split)
        write_json(where.report / "data_summary.json", summary)

    stages.run("data", key, [where.data / "train.jsonl"], work)
    return key


def mine_stage(config: PipelineConfig, stages: Stages, where: Layout, env: dict) -> str:
    """2. Hard negatives. Keyed on the training records themselves: a change of dev_depth alone does not redo
    mining and training."""
    mined = where.data / "mined.jsonl"
    options = {"seed": config.seed, **config.mine}  # the miner's own defaults otherwise
    key = key_of("mine", file_digest(where.data / "train.jsonl"), file_key(Path(config.beir) / "corpus.jsonl"),
                 options)

    def work():
        run_logged([*command("mine"), "--input_file", str(where.data / "train.jsonl"), "--output_file", str(mined),
                    "--corpus", config.beir, "--overwrite", "true", *to_argv(options)], where.report / "mine.log", env)
        shutil.copyfile(mined.with_name("mined.summary.json"), where.report / "mining_summary.json")

    stages.run("mine", key, [mined], work)
    return key


def expand_stage(config: PipelineConfig, stages: Stages, where: Layout, mine_key: str) -> tuple[Path, Path, str]:
    """2b. Document expansion: the mined groups and the dev candidates as the reranker will read them. Returns
    the training file, the dev file and the key training depends on."""
    mined, dev_file = where.data / "mined.jsonl", where.data / "dev.jsonl"
    if not config.expand_documents:
        return mined, dev_file, mine_key
    from reranker.common.precision import resolve_dtype
    from reranker.models.embed_cache import model_fingerprint
    from reranker.models.loading import bundled_minilm_path
    from reranker.workflows.expand import expand_files

    # The eval's embedder picks the questions there, so it picks them here too.
    model = config.eval.get("dense_model") or bundled_minilm_path()
    train_out, dev_out = where.data / "mined_expanded.jsonl", where.data / "dev_expanded.jsonl"
    # What decides the training texts; the dev file is keyed apart, so that a change of dev_depth alone
    # rewrites dev_expanded.jsonl without retraining (as without expansion).
    settings = [file_digest(mined), config.expand_documents, model_fingerprint(model),
                config.eval.get("dense_pooling"), resolve_dtype(config.eval.get("dtype", "fp32"), "eval.dtype")]
    key = key_of("expand", mine_key, settings, file_digest(dev_file))

    def work():
        summary = expand_files(where.data / "train.jsonl", mined, dev_file, train_out, dev_out, config.beir,
                               config.expand_documents, model, config.eval.get("dtype", "fp32"), config.train_split,
                               config.eval.get("dense_pooling"))
        write_json(where.report / "expansion_summary.json", summary)

    stages.run("expand", key, [train_out, dev_out], work)
    return train_out, dev_out, key_of(mine_key, settings)


def train_stage(config: PipelineConfig, stages: Stages, where: Layout, env: dict, train_file: Path,
                dev_file: Path | None, input_key: str) -> str:
    """3. Training, resumed from its last checkpoint when the same training was interrupted."""
    options = {"seed": config.seed, **config.train}
    key = key_of("train", input_key, options, dev_file is not None)

    def work():
        checkpoint = last_checkpoint(where.model)
        if checkpoint is not None and stages.started("train") == key:
            logger.info("train: continuing the interrupted run from %s", checkpoint)
            start = ["--resume_from_checkpoint", str(checkpoint)]
        else:
            if stages.started("train") is None and where.model_config.exists():
                raise FileExistsError(f"{where.model} holds a model this pipeline did not train; move it or choose "
                                      "another output_dir")
            start = ["--overwrite_output_dir", "true"]
        stages.started("train", key)
        run_logged([*command("train"), "--train_data", str(train_file), "--output_dir", str(where.model), *start,
                    *(["--dev_file", str(dev_file)] if dev_file else []), *to_argv(options)],
                   where.report / "train.log", env)
        copy_if_present(("dev_metrics.json", "trainer_state.json"), where.model, where.report)

    stages.run("train", key, [where.model_config], work)
    return key


def eval_stage(config: PipelineConfig, stages: Stages, where: Layout, env: dict, train_key: str) -> None:
    """4. Evaluation on the test split; fusion weights tuned on the dev queries."""
    dev = config.dev_queries > 0
    options = {"first_stage": ["bm25", "dense"], "top_k": 100, **config.eval}
    if config.expand_documents:
        options.update(expand_from=str(where.data / "train.jsonl"), expand_per_pair=config.expand_documents)
    # The model files' times are in the key: a training that ran again (resumed, say) is evaluated again.
    key = key_of("eval", train_key, options, file_key(Path(config.beir) / "qrels" / f"{config.test_split}.tsv"),
                 [file_key(p) for p in sorted(where.model.glob("*.safetensors")) + [where.model_config]])

    def work():
        run_logged([*command("eval"), "--models", str(where.model), "--datasets", config.beir, "--split",
                    config.test_split, "--output_dir", str(where.report),
                    *(["--dev_qrels", str(where.data / "dev_qrels.tsv")] if dev else []), *to_argv(options)],
                   where.report / "eval.log", env)

    stages.run("eval", key, [where.report / "results.json"], work)


def run_pipeline(config: PipelineConfig, config_path: str, until: str = "eval") -> dict:
    """Run the stages up to and including `until` (benchmarks/compare_peers.py stops after "mine", and the
    expansion where the config asks for it)."""
    where = Layout(Path(config.output_dir), lora=bool(config.train.get("use_lora")))
    stages = Stages(where.out, STAGES)
    env = {**os.environ, "PYTHON": sys.executable}
    write_json(where.report / "config.json", {"config_file": str(config_path), **asdict(config)})
    dev = config.dev_queries > 0

    data_stage(config, stages, where)
    mine_key = mine_stage(config, stages, where, env)
    train_file, dev_file, train_input_key = expand_stage(config, stages, where, mine_key)
    if until == "mine":  # the training data as our own training would read it: expanded where the config says so
        return {"train_file": str(train_file), "dev_file": str(dev_file) if dev else None,
                "dev_qrels": str(where.data / "dev_qrels.tsv") if dev else None, "seconds": stages.seconds(),
                "expand_from": str(where.data / "train.jsonl") if config.expand_documents else None}
    train_key = train_stage(config, stages, where, env, train_file, dev_file if dev else None, train_input_key)
    eval_stage(config, stages, where, env, train_key)

    results = json.loads((where.report / "results.json").read_text())
    seconds = stages.seconds()
    write_json(where.report / "stages.json", seconds)
    logger.info("Pipeline done in %s; report in %s", ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
                where.report)
    return {"report": str(where.report), "seconds": seconds, "results": results}
