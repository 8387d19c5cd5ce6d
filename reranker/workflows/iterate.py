"""Rounds of mining and training (`reranker-iterate CONFIG`): each round mines with the previous round's reranker.

Round 0 mines negatives with the embedder. Round r > 0 retrieves the same way, reranks the candidates with round
r - 1's model, samples negatives from a rank range of that ordering, and drops candidates the previous model
scores within a margin of the positive (likely unlabelled positives). Every round trains a new model from the
backbone and ranks the dev file during training; the rounds stop when the dev nDCG@10 of the saved model stops
improving, or after max_rounds. Each round keeps its data, model and metrics in round_<r>/; rounds.json and
rounds.md compare them. Finished rounds are skipped on a re-run, as in the pipeline.

With an `embedder:` section each round also trains an embedder, before the reranker's mining, and the two teach
each other: round 0's embedder learns from BM25 negatives (mnrl), round r > 0's from round r - 1's embedder's
candidates scored by round r - 1's reranker (distilled, --loss kl); each round's reranker negatives are then
retrieved by that round's embedder.
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
from reranker.workflows.beir_train import carve_pairs_dev
from reranker.workflows.stages import (
    Stages,
    check_embedder_section,
    check_option_names,
    command,
    embedder_default,
    read_config,
    run_logged,
    start_options,
    to_argv,
)

logger = logging.getLogger("reranker.iterate")

MANAGED_MINE = {"input_file", "output_file", "corpus", "candidate_pool", "overwrite", "rerank_model"}
MANAGED_TRAIN = {"train_data", "output_dir", "dev_file", "overwrite_output_dir", "resume_from_checkpoint"}
MANAGED_EMBEDDER = MANAGED_TRAIN | {"dev_corpus"}
# The embedder's candidates come from the round's retriever embedder and are scored by the previous round's
# reranker: the driver names both.
MANAGED_EMBEDDER_MINE = MANAGED_MINE | {"model_name_or_path", "teacher_model", "embedder_teacher"}
DISTILL_LOSSES = ("kl", "margin_mse")


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
    # reranker-train-embedder options for every round's embedder (None: no embedder is trained); its loss is that of
    # rounds > 0 (default kl), round 0 having no reranker to distil yet.
    embedder: dict | None = None
    embedder_mine: dict = field(default_factory=dict)  # reranker-mine options for the embedder's records

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
        sections = {"mine": MANAGED_MINE, "train": MANAGED_TRAIN, "embedder_mine": MANAGED_EMBEDDER_MINE,
                    **({"embedder": MANAGED_EMBEDDER} if config.embedder is not None else {})}
        for name, managed in sections.items():
            options = getattr(config, name)
            if not isinstance(options, dict):
                raise ConfigError(f"{path}: '{name}' must be a mapping of options")
            clash = sorted(set(options) & managed)
            if clash:
                raise ConfigError(f"{path}: {name}.{clash[0]} is set by the driver; remove it from the config")
        check_option_names({name: getattr(config, name) for name in sections}, path)
        if config.embedder is not None:
            config.check_embedder(path)
        elif config.embedder_mine:
            raise ConfigError(f"{path}: embedder_mine mines the negatives of the embedder's training records, but "
                              "there is no embedder section (write 'embedder: {}' for its defaults)")
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


    def check_embedder(self, path: str) -> None:
        group = check_embedder_section(self.embedder, path)
        loss = self.embedder.get("loss", "kl")
        if loss not in DISTILL_LOSSES:
            raise ConfigError(f"{path}: embedder.loss {loss!r}: it is the loss of the rounds after 0, which distil "
                              f"the previous round's reranker's scores: one of {', '.join(DISTILL_LOSSES)} (round "
                              "0, with no reranker yet, trains with mnrl)")
        if group < 2 and self.max_rounds > 0:
            raise ConfigError(f"{path}: embedder.train_group_size {group}: the rounds after 0 distil the reranker's "
                              "scores over each record's passages, which needs 2 or more (a positive and negatives)")
        if self.embedder_mine.get("teacher_format") == "inranker":
            raise ConfigError(f"{path}: embedder_mine.teacher_format inranker writes one record per pair, which an "
                              "embedder cannot train on: use the default, scores")


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


def embedder_round(config: IterateConfig, r: int, out: Path, stages: Stages, env: dict, previous_key: str,
                   previous_embedder: str | None, train_file: str, dev_file: str, corpus_flag: str) -> tuple[str, str]:
    """Round r's embedder, trained from embedder.model_name_or_path (every round starts afresh, as the rerankers
    do): round 0 on the records with BM25 negatives (mnrl: nothing to distil yet); round r > 0 on candidates
    retrieved by round r - 1's embedder and scored by round r - 1's reranker (the embedder_mine section can name
    another retriever), distilled with embedder.loss (default kl). `previous_key` is round r - 1's key,
    `previous_embedder` what its embedder's id was (the round's reranker may not depend on it, this one does).
    Returns its folder and what depends on it."""
    from reranker.models.embed_cache import model_fingerprint
    from reranker.models.loading import bundled_minilm_path

    folder = out / f"round_{r}"
    embedder = folder / "embedder"
    group = config.embedder.get("train_group_size", embedder_default("train_group_size"))
    options = {**config.embedder, "loss": "mnrl" if r == 0 else config.embedder.get("loss", "kl")}
    mine_options = None
    if group > 1:  # the rounds after 0 have 2 or more (checked when the config is read)
        mine_options = {"retriever": "bm25" if r == 0 else "dense", **config.embedder_mine}
        if mine_options["retriever"] != "bm25":
            previous = out / f"round_{r - 1}" / "embedder"
            mine_options["model_name_or_path"] = str(previous) if r > 0 else (
                config.embedder.get("model_name_or_path") or bundled_minilm_path())
        if r > 0:
            mine_options["teacher_model"] = str(out / f"round_{r - 1}" / "model")
    key = key_of("round embedder", r, previous_key, previous_embedder, mine_options, options)
    stage = f"round_{r}_embedder"

    def work():
        records = train_file
        if mine_options is not None:
            records = str(folder / "embedder_mined.jsonl")
            run_logged([*command("mine"), "--input_file", train_file, "--output_file", records, corpus_flag,
                        config.corpus, "--overwrite", "true", *to_argv(mine_options)], folder / "embedder_mine.log",
                       env)
        if Path(config.corpus).is_dir():  # a BEIR folder: dev queries retrieved from all of it
            dev_corpus = ["--dev_corpus", config.corpus]
        else:  # a pool jsonl need not carry the ids the dev file's labels name
            dev_corpus = []
            logger.info("%s: the dev queries are retrieved from their candidates (the corpus is a pool file)", stage)
        start = start_options(stages, stage, key, embedder)
        run_logged([*command("embedder"), "--train_data", records, "--output_dir", str(embedder), "--dev_file",
                    dev_file, *dev_corpus, *start, *to_argv(options)], folder / "embedder.log", env)

    stages.run(stage, key, [embedder / "dev_metrics.json"], work)
    return str(embedder), key_of(key, model_fingerprint(str(embedder)))


def reranker_mine_options(config: IterateConfig, r: int, embedder: str | None) -> dict:
    """The reranker's mining options for round r: the mine section's, and with an embedder, its retrieval (dense)
    unless the mine section names its own retriever or model (the config wins, said once)."""
    options = dict(config.mine)
    if embedder is not None:
        for name, value in (("retriever", "dense"), ("model_name_or_path", embedder)):
            if name in config.mine and r == 0:
                logger.warning("mine.%s %s is the config's and wins over the round's embedder's %s", name,
                               config.mine[name], value)
            options.setdefault(name, value)
    return options


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
    embedder_id = None  # the previous round's embedder, for the next one's candidates
    for r in range(config.max_rounds + 1):
        folder = out / f"round_{r}"
        mined, model = folder / "mined.jsonl", folder / "model"
        embedder = None
        if config.embedder is not None:
            embedder, embedder_id = embedder_round(config, r, out, stages, env, previous_key, embedder_id,
                                                   train_file, dev_file, corpus_flag)
        mine_options = reranker_mine_options(config, r, embedder)
        if r > 0:
            mine_options.update({"rerank_model": str(out / f"round_{r - 1}" / "model"),
                                 "range_for_sampling": config.range_for_sampling, "fn_margin": config.fn_margin})
        uses_embedder = embedder is not None and mine_options.get("model_name_or_path") == embedder and (
            mine_options.get("retriever") != "bm25" or bool(mine_options.get("embedder_teacher")))
        key = key_of("round", r, previous_key, mine_options, config.train,
                     *([embedder_id] if uses_embedder else []))

        def work(r=r, key=key, folder=folder, mined=mined, model=model, mine_options=mine_options):
            run_logged([*command("mine"), "--input_file", train_file, "--output_file", str(mined), corpus_flag,
                        config.corpus, "--overwrite", "true", *to_argv(mine_options)], folder / "mine.log", env)
            start = start_options(stages, f"round_{r}", key, model)
            run_logged([*command("train"), "--train_data", str(mined), "--output_dir", str(model), "--dev_file",
                        dev_file, *start, *to_argv(config.train)], folder / "train.log", env)

        stages.run(f"round_{r}", key, [model / "dev_metrics.json"], work)
        previous_key = key
        dev = json.loads((model / "dev_metrics.json").read_text())
        summary = json.loads(mined.with_name("mined.summary.json").read_text())
        if uses_embedder:
            source = f"round_{r} embedder" + (f" + round_{r - 1} reranker" if r > 0 else "")
        else:
            source = "embedder" if r == 0 else f"round_{r - 1} reranker"
        rows.append({"round": r, "negatives_from": source,
                     "dev_nDCG@10": dev["saved"]["nDCG@10"], "dev_MRR@10": dev["saved"]["MRR@10"],
                     "first_stage_dev_nDCG@10": dev["saved"]["first_stage_nDCG@10"],
                     "filtered_false_negatives": summary["filtered_false_negatives"],
                     "model": str(model)})
        if embedder is not None:
            embedder_dev = json.loads((Path(embedder) / "dev_metrics.json").read_text())
            rows[-1].update({"embedder": embedder, "embedder_taught_by": "BM25 negatives (mnrl)" if r == 0 else
                             f"round_{r - 1} reranker ({config.embedder.get('loss', 'kl')})",
                             "embedder_dev_nDCG@10": embedder_dev["saved"]["nDCG@10"],
                             "base_embedder_dev_nDCG@10": (embedder_dev.get("base") or {}).get("nDCG@10")})
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
    with_embedder = config.embedder is not None
    with atomic_write(out / "rounds.md") as handle:
        handle.write("| round | negatives from | dev nDCG@10 | dev MRR@10 | first stage dev nDCG@10 | "
                     "filtered false negatives | best |"
                     + (" embedder taught by | embedder dev nDCG@10 |" if with_embedder else "")
                     + "\n|---|---|---|---|---|---|---|" + ("---|---|" if with_embedder else "") + "\n")
        for row in rows:
            handle.write(f"| {row['round']} | {row['negatives_from']} | {row['dev_nDCG@10']:.4f} | "
                         f"{row['dev_MRR@10']:.4f} | {row['first_stage_dev_nDCG@10']:.4f} | "
                         f"{row['filtered_false_negatives']} | {'yes' if row['best'] else ''} |"
                         + (f" {row['embedder_taught_by']} | {row['embedder_dev_nDCG@10']:.4f} |"
                            if with_embedder else "") + "\n")
    logger.info("Rounds:\n%s\nBest model: %s", (out / "rounds.md").read_text(), best["model"])
    return rows
