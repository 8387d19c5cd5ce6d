"""Rounds of mining and training (`reranker-iterate CONFIG`): each round mines with the previous round's reranker.

Round 0 mines negatives with the embedder. Round r > 0 retrieves the same way, reranks the candidates with round
r - 1's model, samples negatives from a rank range of that ordering, and drops candidates the previous model
scores within a margin of the positive (likely unlabelled positives). Every round trains a new model from the
backbone and ranks the dev file during training; the rounds stop when the dev nDCG@10 of the saved model stops
improving, or after max_rounds. Each round keeps its data, model and metrics in round_<r>/; rounds.json and
rounds.md compare them. Finished rounds are skipped on a re-run, as in the pipeline.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reranker.common.errors import ConfigError
from reranker.common.files import atomic_write, write_json
from reranker.common.hashing import file_key, key_of
from reranker.training.output_dir import last_checkpoint
from reranker.workflows.beir_train import carve_pairs_dev
from reranker.workflows.stages import (
    Stages,
    check_option_names,
    command,
    read_config,
    run_logged,
    to_argv,
)

logger = logging.getLogger("reranker.iterate")

MANAGED_MINE = {"input_file", "output_file", "corpus", "candidate_pool", "overwrite", "rerank_model"}
MANAGED_TRAIN = {"train_data", "output_dir", "dev_file", "overwrite_output_dir", "resume_from_checkpoint"}


@dataclass
class IterateConfig:
    train_file: str | list[str]  # {query, pos} records, labelled or from reranker-synth; a list is concatenated
    corpus: str  # the pool to mine from: a BEIR folder or a pool jsonl
    output_dir: str
    dev_file: str | None = None  # dev queries with candidates (reranker-train --dev_file format): the stopping metric
    # Without labels: hold out this many pairs of the first train file (they need pos_id) as the dev queries,
    # with the corpus's BM25 top dev_depth as candidates (beir_train.carve_pairs_dev). Instead of dev_file.
    dev_queries: int = 0
    dev_depth: int = 30
    seed: int = 42
    max_rounds: int = 3  # rounds after round 0
    min_improvement: float = 0.0  # a round must beat the best dev nDCG@10 so far by more than this to continue
    range_for_sampling: str = "10-60"  # rank range of the previous reranker's ordering, rounds > 0
    fn_margin: float = 1.0  # rounds > 0: drop candidates scored within this of the positive (logits)
    mine: dict = field(default_factory=dict)  # reranker-mine options for every round (retriever, embedder, ...)
    train: dict = field(default_factory=dict)  # reranker-train options

    @classmethod
    def load(cls, path: str) -> IterateConfig:
        raw = read_config(path, cls)
        for required in ("train_file", "corpus", "output_dir"):
            if not raw.get(required):
                raise ConfigError(f"{path}: '{required}' is required")
        if bool(raw.get("dev_file")) == bool(raw.get("dev_queries")):
            raise ConfigError(f"{path}: give one of 'dev_file' (labelled dev queries with candidates) or "
                              "'dev_queries' (hold out that many pairs of the first train file)")
        for name in ("max_rounds", "dev_queries", "dev_depth", "seed"):
            if name in raw and type(raw[name]) is not int:
                raise ConfigError(f"{path}: '{name}' must be a whole number, got {raw[name]!r}")
        config = cls(**raw)
        if isinstance(config.train_file, str):
            config.train_file = [config.train_file]
        if not isinstance(config.train_file, list) or not all(isinstance(f, str) for f in config.train_file):
            raise ConfigError(f"{path}: 'train_file' must be a path or a list of paths")
        for name, managed in (("mine", MANAGED_MINE), ("train", MANAGED_TRAIN)):
            options = getattr(config, name)
            if not isinstance(options, dict):
                raise ConfigError(f"{path}: '{name}' must be a mapping of options")
            clash = sorted(set(options) & managed)
            if clash:
                raise ConfigError(f"{path}: {name}.{clash[0]} is set by the driver; remove it from the config")
        check_option_names({"mine": config.mine, "train": config.train}, path)
        for what, file in [("train_file", f) for f in config.train_file] + [("dev_file", config.dev_file)]:
            if file and not Path(file).is_file():
                raise ConfigError(f"{path}: {what} {file} does not exist")
        if config.dev_queries < 0 or config.dev_depth < 1:
            raise ConfigError(f"{path}: dev_queries must be non-negative and dev_depth positive")
        if not Path(config.corpus).exists():
            raise ConfigError(f"{path}: corpus {config.corpus} does not exist")
        if config.max_rounds < 0:
            raise ConfigError(f"{path}: max_rounds must be non-negative")
        return config


def should_stop(history: list[float], min_improvement: float) -> bool:
    """Stop when the latest round is not better than the best before it by more than min_improvement."""
    return len(history) > 1 and history[-1] <= max(history[:-1]) + min_improvement


def prepare_data(config: IterateConfig, out: Path, stages: Stages, corpus_key: str) -> tuple[str, str]:
    """The training and dev files the rounds use: the config's own, or data/ with a dev split carved out."""
    if config.dev_file and len(config.train_file) == 1:
        return config.train_file[0], config.dev_file
    data = out / "data"
    carve = (config.dev_queries, config.dev_depth, config.seed) if not config.dev_file else ()
    key = key_of("data", [file_key(Path(f)) for f in config.train_file], corpus_key, *carve)
    made = [data / "train.jsonl", *([] if config.dev_file else [data / "dev.jsonl"])]

    def work():
        from reranker.mining.mine import load_queries

        for f in config.train_file:  # checked here, so that an error names the user's file and line, not data/
            load_queries(f)
        if config.dev_file:  # several train files, labelled dev: concatenate
            with atomic_write(data / "train.jsonl") as handle:
                for f in config.train_file:
                    with open(f, encoding="utf-8") as source:
                        for line in source:
                            handle.write(line if line.endswith("\n") else line + "\n")
        else:
            summary = carve_pairs_dev(config.train_file, config.corpus, data, config.dev_queries, config.seed,
                                      config.dev_depth)
            write_json(data / "summary.json", summary)

    stages.run("data", key, made, work)
    return str(data / "train.jsonl"), config.dev_file or str(data / "dev.jsonl")


def run_rounds(config: IterateConfig) -> list[dict]:
    out = Path(config.output_dir)
    stages = Stages(out)
    env = {**os.environ, "PYTHON": sys.executable}
    write_json(out / "config.json", asdict(config))
    corpus_flag = "--corpus" if Path(config.corpus).is_dir() else "--candidate_pool"
    corpus_key = file_key(Path(config.corpus) / "corpus.jsonl" if Path(config.corpus).is_dir()
                          else Path(config.corpus))
    train_file, dev_file = prepare_data(config, out, stages, corpus_key)
    rows: list[dict] = []
    previous_key = key_of("inputs", file_key(Path(train_file)), file_key(Path(dev_file)), corpus_key)
    for r in range(config.max_rounds + 1):
        folder = out / f"round_{r}"
        mined, model = folder / "mined.jsonl", folder / "model"
        mine_options = dict(config.mine)
        if r > 0:
            mine_options.update({"rerank_model": str(out / f"round_{r - 1}" / "model"),
                                 "range_for_sampling": config.range_for_sampling, "fn_margin": config.fn_margin})
        key = key_of("round", r, previous_key, mine_options, config.train)

        def work(r=r, key=key, folder=folder, mined=mined, model=model, mine_options=mine_options):
            run_logged([*command("mine"), "--input_file", train_file, "--output_file", str(mined), corpus_flag,
                        config.corpus, "--overwrite", "true", *to_argv(mine_options)], folder / "mine.log", env)
            checkpoint = last_checkpoint(model)
            start = (["--resume_from_checkpoint", str(checkpoint)]
                     if checkpoint is not None and stages.started(f"round_{r}") == key
                     else ["--overwrite_output_dir", "true"])
            stages.started(f"round_{r}", key)
            run_logged([*command("train"), "--train_data", str(mined), "--output_dir", str(model), "--dev_file",
                        dev_file, *start, *to_argv(config.train)], folder / "train.log", env)

        stages.run(f"round_{r}", key, [model / "dev_metrics.json"], work)
        previous_key = key
        dev = json.loads((model / "dev_metrics.json").read_text())
        summary = json.loads(mined.with_name("mined.summary.json").read_text())
        rows.append({"round": r, "negatives_from": "embedder" if r == 0 else f"round_{r - 1} reranker",
                     "dev_nDCG@10": dev["saved"]["nDCG@10"], "dev_MRR@10": dev["saved"]["MRR@10"],
                     "first_stage_dev_nDCG@10": dev["saved"]["first_stage_nDCG@10"],
                     "filtered_false_negatives": summary["filtered_false_negatives"],
                     "model": str(model)})
        write_json(folder / "metrics.json", rows[-1])
        logger.info("round %d: dev nDCG@10 %.4f", r, rows[-1]["dev_nDCG@10"])
        if should_stop([row["dev_nDCG@10"] for row in rows], config.min_improvement):
            logger.info("round %d did not improve the dev nDCG@10 by more than %.4f: stopping", r,
                        config.min_improvement)
            break
    best = max(rows, key=lambda row: row["dev_nDCG@10"])
    for row in rows:
        row["best"] = row is best
    write_json(out / "rounds.json", rows)
    with atomic_write(out / "rounds.md") as handle:
        handle.write("| round | negatives from | dev nDCG@10 | dev MRR@10 | first stage dev nDCG@10 | "
                     "filtered false negatives | best |\n|---|---|---|---|---|---|---|\n")
        for row in rows:
            handle.write(f"| {row['round']} | {row['negatives_from']} | {row['dev_nDCG@10']:.4f} | "
                         f"{row['dev_MRR@10']:.4f} | {row['first_stage_dev_nDCG@10']:.4f} | "
                         f"{row['filtered_false_negatives']} | {'yes' if row['best'] else ''} |\n")
    logger.info("Rounds:\n%s\nBest model: %s", (out / "rounds.md").read_text(), best["model"])
    return rows
