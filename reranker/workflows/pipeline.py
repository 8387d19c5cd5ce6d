"""mine -> train -> evaluate on a BEIR folder, driven by one small config (`reranker-pipeline CONFIG`).

The stages are the project's own commands run as subprocesses (`python -m reranker.cli.<stage>`, training under
torchrun with one process per visible GPU), so a pipeline run is exactly what a user would type by hand. Each
stage leaves a stamp in <output_dir>/.stages/ with a key of its options and inputs; a re-run skips a stage whose
stamp matches and whose output exists, and continues an interrupted training from its last checkpoint.

With an `embedder:` section an embedder is fine-tuned first (on the data stage's records, with BM25 negatives
mined for it), and then mines the reranker's negatives and is the dense half of the evaluation's first stages;
report/embedder_comparison.md puts it beside the embedder it started from.
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
from reranker.training.output_dir import last_checkpoint  # noqa: F401  (the resume rule, named here for callers)
from reranker.workflows import beir_train
from reranker.workflows.stages import (
    Stages,
    check_embedder_section,
    check_option_names,
    command,
    copy_if_present,
    embedder_default,
    read_config,
    run_logged,
    start_options,
    to_argv,
)

logger = logging.getLogger("reranker.pipeline")

# Options the driver sets itself, per stage: a config giving them would be silently overridden otherwise.
MANAGED = {
    "mine": {"input_file", "output_file", "corpus", "candidate_pool", "overwrite"},
    "train": {"train_data", "output_dir", "dev_file", "overwrite_output_dir", "resume_from_checkpoint"},
    "eval": {"models", "datasets", "split", "output_dir", "dev_qrels", "expand_from", "expand_per_pair"},
    "embedder": {"train_data", "output_dir", "dev_file", "dev_corpus", "overwrite_output_dir",
                 "resume_from_checkpoint"},
    "embedder_mine": {"input_file", "output_file", "corpus", "candidate_pool", "overwrite"},
}
# With an embedder section, eval's dense first stage is the fine-tuned embedder, read with the pooling and query
# prompt saved beside it: an eval option naming another would evaluate something other than what was trained.
EMBEDDER_EVAL = ("dense_model", "dense_pooling", "query_instruction")
# The eval options that shape a dense run, shared by the comparison of the base and the fine-tuned embedder.
DENSE_EVAL = ("top_k", "dtype", "batch_size", "cache_dir", "dense_query_max_len", "dense_passage_max_len",
              "max_queries", "keep_self_matches")
STAGES = ("data", "embedder_mine", "embedder", "mine", "expand", "train", "eval", "embedder_eval")


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
    # reranker-train-embedder options. None (absent): no embedder stage, mining and eval use their own embedder
    # options as before; a mapping, even {}: an embedder is fine-tuned first and mines and retrieves for the rest.
    embedder: dict | None = None
    embedder_mine: dict = field(default_factory=dict)  # reranker-mine options for the embedder's own negatives

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
        sections = ["mine", "train", "eval", "embedder_mine"] + (["embedder"] if self.embedder is not None else [])
        for stage in sections:
            options = getattr(self, stage)
            if not isinstance(options, dict):
                raise ConfigError(f"{path}: '{stage}' must be a mapping of {stage} options")
            clash = sorted(set(options) & MANAGED[stage])
            if clash:
                raise ConfigError(f"{path}: {stage}.{clash[0]} is set by the pipeline; remove it from the config")
        check_option_names({stage: getattr(self, stage) for stage in sections}, path)
        if self.embedder is not None:
            self.validate_embedder(path)
        elif self.embedder_mine:
            raise ConfigError(f"{path}: embedder_mine mines the negatives of the embedder's training records, but "
                              "there is no embedder section (write 'embedder: {}' for its defaults)")
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


    def validate_embedder(self, path: str) -> None:
        """What the embedder section must be for the rest of the pipeline to read the embedder as it was trained."""
        clash = [name for name in EMBEDDER_EVAL if name in self.eval]
        if clash:
            raise ConfigError(f"{path}: eval.{clash[0]} is set by the pipeline when there is an embedder section: "
                              "eval's dense first stage is the fine-tuned embedder, read with the pooling and query "
                              "prompt saved with it (set embedder.model_name_or_path, embedder.pooling or "
                              "embedder.query_instruction instead)")
        group = check_embedder_section(self.embedder, path)
        if group == 1 and self.embedder_mine:
            raise ConfigError(f"{path}: embedder.train_group_size 1 trains on in-batch negatives alone, so nothing "
                              "is mined for the embedder: remove embedder_mine, or raise embedder.train_group_size")
        if self.embedder_mine.get("teacher_format") == "inranker":
            raise ConfigError(f"{path}: embedder_mine.teacher_format inranker writes one record per pair, which an "
                              "embedder cannot train on: use the default, scores")
        loss = self.embedder.get("loss", embedder_default("loss"))
        teacher = self.embedder_mine.get("teacher_model") or self.embedder_mine.get("embedder_teacher")
        if loss != "mnrl" and (group < 2 or not teacher):
            raise ConfigError(f"{path}: embedder.loss {loss} distils a teacher's scores of each record's passages: it "
                              "needs embedder.train_group_size 2 or more and a teacher to score the mined records "
                              "(embedder_mine.teacher_model, a cross-encoder, or embedder_mine.embedder_teacher)")


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
    def embedder(self) -> Path:
        return self.out / "embedder"

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


def base_embedder(config: PipelineConfig) -> str:
    """The embedder the embedder stage starts from: its section's model_name_or_path, else the trainer's default."""
    from reranker.models.loading import bundled_minilm_path

    return config.embedder.get("model_name_or_path") or bundled_minilm_path()


def embedder_mine_stage(config: PipelineConfig, stages: Stages, where: Layout, env: dict) -> tuple[Path, str]:
    """1b. The embedder's training records: the data stage's, with negatives mined for them (BM25 unless
    embedder_mine says otherwise: the embedder cannot mine its own before it is trained). With
    embedder.train_group_size 1 (in-batch negatives alone) the data stage's records as they are. Returns the file
    and the key the embedder's training depends on."""
    records = where.data / "train.jsonl"
    if config.embedder.get("train_group_size", embedder_default("train_group_size")) == 1:
        logger.info("embedder_mine: embedder.train_group_size 1, in-batch negatives only: training on %s as it is",
                    records)
        return records, key_of("embedder records", file_digest(records))
    mined = where.data / "embedder_mined.jsonl"
    options = {"seed": config.seed, "retriever": "bm25", **config.embedder_mine}
    if options["retriever"] != "bm25" or options.get("embedder_teacher"):
        options.setdefault("model_name_or_path", base_embedder(config))  # the embedder before fine-tuning
    key = key_of("embedder_mine", file_digest(records), file_key(Path(config.beir) / "corpus.jsonl"), options)

    def work():
        run_logged([*command("mine"), "--input_file", str(records), "--output_file", str(mined), "--corpus",
                    config.beir, "--overwrite", "true", *to_argv(options)], where.report / "embedder_mine.log", env)
        shutil.copyfile(mined.with_name("embedder_mined.summary.json"),
                        where.report / "embedder_mining_summary.json")

    stages.run("embedder_mine", key, [mined], work)
    return mined, key


def embedder_stage(config: PipelineConfig, stages: Stages, where: Layout, env: dict, train_file: Path,
                   input_key: str) -> str:
    """1c. The embedder, fine-tuned from embedder.model_name_or_path; with dev queries, checked on them retrieved
    from the whole corpus. Returns what the stages after it depend on: this stage's key and the saved files."""
    from reranker.models.embed_cache import model_fingerprint

    dev = config.dev_queries > 0
    options = {"seed": config.seed, **config.embedder}
    key = key_of("embedder", input_key, options, dev)

    def work():
        start = start_options(stages, "embedder", key, where.embedder, guard=where.embedder / "config.json")
        dev_options = ["--dev_file", str(where.data / "dev.jsonl"), "--dev_corpus", config.beir] if dev else []
        run_logged([*command("embedder"), "--train_data", str(train_file), "--output_dir", str(where.embedder),
                    *start, *dev_options, *to_argv(options)], where.report / "embedder.log", env)
        if (where.embedder / "dev_metrics.json").is_file():
            shutil.copyfile(where.embedder / "dev_metrics.json", where.report / "embedder_dev_metrics.json")

    stages.run("embedder", key, [where.embedder / "config.json", where.embedder / "1_Pooling" / "config.json"],
               work)
    # The weights' names, sizes and times too: an embedder trained again (resumed, say) is mined with again.
    return key_of(key, model_fingerprint(str(where.embedder)))


def mine_stage(config: PipelineConfig, stages: Stages, where: Layout, env: dict, embedder_id: str | None) -> str:
    """2. Hard negatives. Keyed on the training records themselves: a change of dev_depth alone does not redo
    mining and training. With an embedder stage, mined with the fine-tuned embedder (dense retrieval) unless the
    mine section names its own retriever or model: the user's options win, and the log says so."""
    mined = where.data / "mined.jsonl"
    options = {"seed": config.seed, **config.mine}  # the miner's own defaults otherwise
    uses_embedder = False
    if embedder_id is not None:
        for name, value in (("retriever", "dense"), ("model_name_or_path", str(where.embedder))):
            if name in config.mine:
                logger.warning("mine: mine.%s %s is the config's and wins over the pipeline's %s (the fine-tuned "
                               "embedder's)", name, config.mine[name], value)
            options.setdefault(name, value)
        uses_embedder = options["model_name_or_path"] == str(where.embedder) and (
            options["retriever"] != "bm25" or bool(options.get("embedder_teacher")))
        if not uses_embedder:
            logger.warning("mine: the fine-tuned embedder mines nothing (mine.retriever %s, model %s); it is still "
                           "the dense first stage of eval", options["retriever"], options["model_name_or_path"])
    key = key_of("mine", file_digest(where.data / "train.jsonl"), file_key(Path(config.beir) / "corpus.jsonl"),
                 options, *([embedder_id] if uses_embedder else []))

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

    # The eval's embedder picks the questions there, so it picks them here too: the fine-tuned one where there is one.
    model = str(where.embedder) if config.embedder is not None else config.eval.get("dense_model") or \
        bundled_minilm_path()
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
        start = start_options(stages, "train", key, where.model, guard=where.model_config)
        run_logged([*command("train"), "--train_data", str(train_file), "--output_dir", str(where.model), *start,
                    *(["--dev_file", str(dev_file)] if dev_file else []), *to_argv(options)],
                   where.report / "train.log", env)
        copy_if_present(("dev_metrics.json", "trainer_state.json"), where.model, where.report)

    stages.run("train", key, [where.model_config], work)
    return key


def eval_options(config: PipelineConfig, where: Layout) -> dict:
    options = {"first_stage": ["bm25", "dense"], "top_k": 100, **config.eval}
    if config.embedder is not None:
        options["dense_model"] = str(where.embedder)  # its pooling and query prompt are read from its folder
    return options


def eval_stage(config: PipelineConfig, stages: Stages, where: Layout, env: dict, train_key: str,
               embedder_id: str | None) -> None:
    """4. Evaluation on the test split; fusion weights tuned on the dev queries."""
    dev = config.dev_queries > 0
    options = eval_options(config, where)
    if config.expand_documents:
        options.update(expand_from=str(where.data / "train.jsonl"), expand_per_pair=config.expand_documents)
    # The model files' times are in the key: a training that ran again (resumed, say) is evaluated again. So is
    # the fine-tuned embedder's (the dense first stage, and the expansion's question picker).
    key = key_of("eval", train_key, options, file_key(Path(config.beir) / "qrels" / f"{config.test_split}.tsv"),
                 [file_key(p) for p in sorted(where.model.glob("*.safetensors")) + [where.model_config]],
                 *([embedder_id] if embedder_id is not None else []))

    def work():
        # A graph backend scores from a graph of the model this pipeline trained (and of its embedder): exported
        # here, calibrated and checked on the mined training file (positives and negatives), never on test queries.
        # Another dense model's graph is its owner's to export.
        exports = [(where.model, options.get("backend", "torch"))]
        if config.embedder is not None:
            exports.append((where.embedder, options.get("dense_backend", "torch")))
        for folder, backend in exports:
            if backend not in ("torch", "auto"):  # auto takes what was exported, and exports nothing
                run_logged([*command("export"), str(folder), "--backend", backend, "--probe_data",
                            str(where.data / "mined.jsonl")], where.report / "eval.log", env)
        run_logged([*command("eval"), "--models", str(where.model), "--datasets", config.beir, "--split",
                    config.test_split, "--output_dir", str(where.report),
                    *(["--dev_qrels", str(where.data / "dev_qrels.tsv")] if dev else []), *to_argv(options)],
                   where.report / "eval.log", env)

    stages.run("eval", key, [where.report / "results.json"], work)


def embedder_eval_stage(config: PipelineConfig, stages: Stages, where: Layout, env: dict,
                        embedder_id: str) -> dict:
    """5. The base embedder beside the fine-tuned one: the dense retrieval of the test split by each, with eval's
    settings. The fine-tuned one's figures are eval's own dense row when eval has one (nothing run twice); else it
    is evaluated here too. Each is a first-stage-only run of reranker-eval; writes report/embedder_comparison.*."""
    from reranker.models.embed_cache import model_fingerprint

    results = json.loads((where.report / "results.json").read_text())["results"]
    tuned_row = next((r for r in results if r.get("system") == "dense"), None)
    shared = {k: v for k, v in eval_options(config, where).items() if k in DENSE_EVAL}
    # The base as the embedder stage read it at its start (its dev figure is the trainer's "base"): the section's
    # pooling and query prompt where given, else the base's saved ones (eval's defaults, as the trainer's).
    runs = {"base": {"dense_model": base_embedder(config), "dense_pooling": config.embedder.get("pooling"),
                     "query_instruction": config.embedder.get("query_instruction")}}
    if tuned_row is None:
        runs["fine_tuned"] = {"dense_model": str(where.embedder)}
    folders = {name: where.report / f"embedder_{name}" for name in runs}
    key = key_of("embedder_eval", model_fingerprint(runs["base"]["dense_model"]), runs, shared,
                 file_key(Path(config.beir) / "qrels" / f"{config.test_split}.tsv"),
                 file_key(Path(config.beir) / "corpus.jsonl"), *([embedder_id] if tuned_row is None else []))

    def work():
        for name, options in runs.items():
            run_logged([*command("eval"), "--datasets", config.beir, "--split", config.test_split, "--output_dir",
                        str(folders[name]), "--first_stage", "dense", *to_argv({**shared, **options})],
                       where.report / "embedder_eval.log", env)

    stages.run("embedder_eval", key, [folders[name] / "results.json" for name in runs], work)

    def dense_row(name: str) -> dict:
        rows = json.loads((folders[name] / "results.json").read_text())["results"]
        return next(r for r in rows if r.get("system") == "dense")

    dev_metrics = where.embedder / "dev_metrics.json"
    dev = json.loads(dev_metrics.read_text()) if dev_metrics.is_file() else {}
    table = []
    for name, model, row, dev_figures in (
            ("base", runs["base"]["dense_model"], dense_row("base"), dev.get("base") or {}),
            ("fine-tuned", str(where.embedder), tuned_row or dense_row("fine_tuned"), dev.get("saved") or {})):
        table.append({"embedder": name, "model": model, "dev_nDCG@10": dev_figures.get("nDCG@10"),
                      **{m: row.get(m) for m in ("nDCG@10", "MRR@10", "Recall@100")}})
    write_json(where.report / "embedder_comparison.json",
               {"split": config.test_split, "top_k": shared["top_k"], "rows": table})

    def cell(value):
        return "" if value is None else f"{value:.4f}"

    lines = [f"| embedder | dev nDCG@10 | {config.test_split} nDCG@10 | {config.test_split} MRR@10 | "
             f"{config.test_split} Recall@100 | model |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['embedder']} | {cell(r['dev_nDCG@10'])} | {cell(r['nDCG@10'])} | {cell(r['MRR@10'])} | "
              f"{cell(r['Recall@100'])} | {r['model']} |" for r in table]
    (where.report / "embedder_comparison.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("Dense retrieval, the embedder before and after fine-tuning:\n%s", "\n".join(lines))
    return {"rows": table}


def run_pipeline(config: PipelineConfig, config_path: str, until: str = "eval") -> dict:
    """Run the stages up to and including `until`: "mine" (benchmarks/compare_peers.py; with the expansion where
    the config asks for it), "train" (a model alone, as configs/cross_domain/nfcorpus_model.yaml was run) or
    "eval"."""
    if until not in ("mine", "train", "eval"):
        raise ValueError(f"until must be mine, train or eval, got {until!r}")
    where = Layout(Path(config.output_dir), lora=bool(config.train.get("use_lora")))
    stages = Stages(where.out, STAGES)
    env = {**os.environ, "PYTHON": sys.executable}
    write_json(where.report / "config.json", {"config_file": str(config_path), **asdict(config)})
    dev = config.dev_queries > 0

    data_stage(config, stages, where)
    embedder_id = None
    if config.embedder is not None:
        embedder_file, embedder_input = embedder_mine_stage(config, stages, where, env)
        embedder_id = embedder_stage(config, stages, where, env, embedder_file, embedder_input)
    mine_key = mine_stage(config, stages, where, env, embedder_id)
    train_file, dev_file, train_input_key = expand_stage(config, stages, where, mine_key)
    if until == "mine":  # the training data as our own training would read it: expanded where the config says so
        return {"train_file": str(train_file), "dev_file": str(dev_file) if dev else None,
                "dev_qrels": str(where.data / "dev_qrels.tsv") if dev else None, "seconds": stages.seconds(),
                "expand_from": str(where.data / "train.jsonl") if config.expand_documents else None,
                "embedder": str(where.embedder) if embedder_id is not None else None}
    train_key = train_stage(config, stages, where, env, train_file, dev_file if dev else None, train_input_key)
    if until == "train":  # the model alone (benchmarks/cross_domain.py evaluates it on other corpora)
        return {"model": str(where.model), "seconds": stages.seconds()}
    eval_stage(config, stages, where, env, train_key, embedder_id)
    if embedder_id is not None:
        embedder_eval_stage(config, stages, where, env, embedder_id)

    results = json.loads((where.report / "results.json").read_text())
    seconds = stages.seconds()
    write_json(where.report / "stages.json", seconds)
    logger.info("Pipeline done in %s; report in %s", ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
                where.report)
    return {"report": str(where.report), "seconds": seconds, "results": results}
