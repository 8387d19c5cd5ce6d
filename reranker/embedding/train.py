"""Training an embedder: validate the data, load the encoder, train with in-batch negatives (and distillation),
save it loadable by `Embedder`, the miner, reranker-eval and sentence-transformers, and report on dev.

`run_training` takes the three parsed dataclasses (what `reranker-train-embedder` builds from argv);
`train_embedder` takes keyword options with the command line's names, for notebooks and scripts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from transformers import AutoModel, set_seed

from reranker.common.errors import ConfigError
from reranker.common.files import write_json
from reranker.data.groups import GroupDataset
from reranker.data.sources import load_source
from reranker.models.loading import check_fits, load_model, load_tokenizer
from reranker.training import dev_eval, model_card
from reranker.training.dev_eval import load_dev
from reranker.training.output_dir import check_output_dir, clear_previous_run
from reranker.training.train import base_model_id, log_truncation, saved_dev_entry

from .arguments import EmbedderDataArguments, EmbedderModelArguments, EmbedderTrainingArguments
from .collator import EmbedderCollator
from .dev import dev_pool
from .trainer import BASE, EmbedderTrainer

logger = logging.getLogger(__name__)


def check_data(dataset: GroupDataset, sources: list, training_args: EmbedderTrainingArguments) -> None:
    if dataset.kind == "soft":
        raise ConfigError("the training data is in the InRanker format (one passage and a teacher's logits): an "
                          "embedder needs {query, pos, neg?} records")
    if training_args.loss == "mnrl":
        return
    if dataset.group_size < 2:
        raise ConfigError(f"--loss {training_args.loss} distils over each record's passages: it needs hard "
                          "negatives, --train_group_size 2 or more")
    missing = [(s.name, i) for s in sources for i, e in enumerate(s.examples) if e.pos_scores is None]
    if missing:
        name, index = missing[0]
        raise ConfigError(f"--loss {training_args.loss} needs pos_scores and neg_scores in every record; "
                          f"{len(missing)} lack them (first: {name}, record {index + 1}); reranker-mine "
                          "--teacher_model writes them")


def base_from_checkpoint(checkpoint: str) -> dict[str, float] | None:
    """On resume: the starting embedder's dev figure, logged in the checkpoint's history."""
    state = Path(checkpoint) / "trainer_state.json"
    if not state.is_file():
        return None
    for entry in json.loads(state.read_text()).get("log_history", []):
        if f"eval_{BASE}nDCG@10" in entry:
            return {"nDCG@10": entry[f"eval_{BASE}nDCG@10"]}
    return None


def run_training(model_args: EmbedderModelArguments, data_args: EmbedderDataArguments,
                 training_args: EmbedderTrainingArguments, callbacks: list | None = None) -> EmbedderTrainer:
    """Load and validate all data, train, and save the final embedder with its tokenizer and module files."""
    out = Path(training_args.output_dir)
    check_output_dir(out, training_args.overwrite_output_dir, bool(training_args.resume_from_checkpoint))
    set_seed(training_args.seed)

    # All data is validated before the model is loaded: a bad line fails in seconds, not after an hour.
    sources = [load_source(spec, data_args.train_group_size, data_args.sub_data_name, data_args.data_split)
               for spec in data_args.train_data]
    dataset = GroupDataset(sources, data_args.train_group_size, seed=training_args.seed, min_negatives=0)
    check_data(dataset, sources, training_args)
    logger.info("Training data: %s; %d queries, %d passages per record (1 positive) and the batch's others as "
                "negatives, mixing %s", ", ".join(f"{s.name} ({len(s.examples)})" for s in sources), len(dataset),
                dataset.group_size, data_args.mixing)
    dev = pool = None
    if training_args.dev_file:
        dev = load_dev(training_args.dev_file)
        pool = dev_pool(dev, training_args.dev_corpus)
        logger.info("Dev check: %d queries retrieved from %d passages (%s) every %s steps", len(dev), len(pool[0]),
                    training_args.dev_corpus or "the dev file's candidates", training_args.eval_steps)

    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path,
                               model_args.trust_remote_code)
    model = load_model(model_args.model_name_or_path, tokenizer, model_args.trust_remote_code, AutoModel)
    # A BERT-style pooler feeds nothing an embedding is read from; frozen, it is kept as loaded and DDP does not
    # wait for gradients it never gets.
    for name, parameter in model.named_parameters():
        if name.startswith("pooler."):
            parameter.requires_grad_(False)
    check_fits(model.config, max(data_args.query_max_len, data_args.passage_max_len),
               f"--query_max_len {data_args.query_max_len} / --passage_max_len {data_args.passage_max_len}")
    log_truncation(dataset, tokenizer, data_args, training_args.seed)
    settings = {"pooling": model_args.pooling, "normalize": model_args.normalize,
                "query_instruction": model_args.query_instruction,
                "passage_instruction": model_args.passage_instruction,
                "query_max_len": data_args.query_max_len, "passage_max_len": data_args.passage_max_len}
    logger.info("Embedder: %s pooling%s, loss %s at temperature %g%s", model_args.pooling,
                ", L2-normalised" if model_args.normalize else "", training_args.loss, training_args.temperature,
                f", query instruction {model_args.query_instruction!r}" if model_args.query_instruction else "")
    collator = EmbedderCollator(tokenizer, data_args.query_max_len, data_args.passage_max_len,
                                model_args.query_instruction, model_args.passage_instruction)
    trainer = EmbedderTrainer(
        model=model, args=training_args, train_dataset=dataset, eval_dataset=dev, data_collator=collator,
        processing_class=tokenizer, callbacks=callbacks, mixing=data_args.mixing,
        data_weights=data_args.data_weights, settings=settings, dev_pool=pool,
    )
    if training_args.overwrite_output_dir and not training_args.resume_from_checkpoint:
        # Only now, with the data, the options and the model all loaded, does the new run replace the old one.
        clear_previous_run(out)
        trainer.accelerator.wait_for_everyone()
    if dev is not None:
        resumed = training_args.resume_from_checkpoint
        trainer.base_metrics = base_from_checkpoint(resumed) if resumed else None
        if trainer.base_metrics is None:
            model.to(training_args.device)
            trainer.base_metrics = trainer.dense_metrics()
            logger.info("Before training: dense dev nDCG@10 %.4f (first stage %.4f)",
                        trainer.base_metrics["nDCG@10"], trainer.base_metrics[dev_eval.FIRST_STAGE + "nDCG@10"])
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(_internal_call=True)
    if trainer.is_world_process_zero():
        logger.info("Saved the fine-tuned embedder to %s", training_args.output_dir)
        report_dev(trainer, dev)
        trainer.save_state()
        write_card(trainer, model_args, data_args, sources)
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return trainer


def report_dev(trainer: EmbedderTrainer, dev) -> None:
    """The last word of a run: does the saved embedder retrieve better than the one it started from?"""
    out = Path(trainer.args.output_dir)
    if dev is None:
        logger.warning("No --dev_file: nothing has checked that this embedder retrieves better than the one it "
                       "started from. Evaluate it with reranker-eval --first_stage dense before using it.")
        return
    saved, history = saved_dev_entry(trainer)
    base = trainer.base_metrics or {}
    write_json(out / "dev_metrics.json", {"dev_file": trainer.args.dev_file, "queries": len(dev),
                                          "pool": trainer.args.dev_corpus or "dev candidates",
                                          "saved_step": saved["step"], "saved": saved, "base": base,
                                          "history": history})
    first = saved[dev_eval.FIRST_STAGE + "nDCG@10"]
    if base and saved["nDCG@10"] < base["nDCG@10"]:
        logger.warning(
            "!!! THE FINE-TUNED EMBEDDER RETRIEVES WORSE THAN THE ONE IT STARTED FROM on the %d dev queries: "
            "nDCG@10 %.4f against %.4f (step %d). Mining or retrieving with it will make results worse. Try a lower "
            "--learning_rate, fewer steps, or check the data.", len(dev), saved["nDCG@10"], base["nDCG@10"],
            saved["step"])
    else:
        logger.info("Saved embedder (step %d): dense dev nDCG@10 %.4f, started from %s, first stage %.4f; history "
                    "in %s", saved["step"], saved["nDCG@10"],
                    f"{base['nDCG@10']:.4f}" if base else "?", first, out / "dev_metrics.json")


def write_card(trainer: EmbedderTrainer, model_args: EmbedderModelArguments, data_args: EmbedderDataArguments,
               sources: list) -> None:
    """README.md beside the weights: what the embedder was trained from, on and how, and how to load it."""
    args, out, s = trainer.args, Path(trainer.args.output_dir), trainer.settings
    meta = {"library_name": "sentence-transformers", "pipeline_tag": "sentence-similarity",
            "tags": [model_card.TAG, "sentence-transformers", "feature-extraction"]}
    base = base_model_id(model_args.model_name_or_path)
    if base:
        meta["base_model"] = base
    data = ", ".join(f"`{Path(src.name).name}` ({len(src.examples):,} queries)" for src in sources)
    rows = [("Base model", base or f"`{Path(model_args.model_name_or_path.rstrip('/')).name}` (a local checkpoint)"),
            ("Training data", data), ("Pooling", s["pooling"] + (", L2-normalised" if s["normalize"] else "")),
            ("Query instruction", repr(s["query_instruction"]) if s["query_instruction"] else "none"),
            ("Max lengths", f"query {s['query_max_len']}, passage {s['passage_max_len']} tokens"),
            ("Loss", f"{args.loss}, temperature {args.temperature:g}"
                     + (f", distill alpha {args.distill_alpha:g}" if args.loss != "mnrl" else "")),
            ("Passages per record", f"{data_args.train_group_size} (1 positive), plus the batch's others"),
            ("Steps", f"{trainer.state.global_step:,}"), ("Learning rate", f"{args.learning_rate:g}"),
            ("Batch size", f"{args.per_device_train_batch_size} per device x {args.world_size} device(s)"),
            ("Precision", "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"), ("Seed", str(args.seed))]
    body = [f"# {out.resolve().name}", "", "An embedder fine-tuned with rerank-toolkit's reranker-train-embedder.",
            "", "## Training", "", "| | |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), ""]
    dev_file = out / "dev_metrics.json"
    if args.dev_file and dev_file.is_file():
        dev = json.loads(dev_file.read_text())
        saved, base_dev = dev["saved"], dev.get("base") or {}
        body += ["## Dev check", "", f"{dev['queries']} held-out queries retrieved from {dev['pool']}: nDCG@10 "
                 f"{saved['nDCG@10']:.4f} (the starting embedder: {base_dev.get('nDCG@10', float('nan')):.4f}; the "
                 f"dev file's first stage: {saved[dev_eval.FIRST_STAGE + 'nDCG@10']:.4f}), step {saved['step']}.", ""]
    body += ["## Usage", "", "```python", "from sentence_transformers import SentenceTransformer",
             "model = SentenceTransformer(\"path/to/this/folder\")",
             "queries = model.encode([\"a question\"], prompt_name=\"query\")",
             "passages = model.encode([\"a passage\"])", "```", "",
             "or `reranker.models.embed.Embedder(path)`, `reranker-mine --model_name_or_path path` and "
             "`reranker-eval --first_stage dense --dense_model path`, which read the pooling and query prompt saved "
             "here.", ""]
    model_card.write(out / "README.md", model_card.render(meta, "\n".join(body)))


def train_embedder(callbacks: list | None = None, **options) -> EmbedderTrainer:
    """Train from keyword options named as on the command line, e.g.
    `train_embedder(train_data=["train.jsonl"], output_dir="out", max_steps=100)`. An unknown name is an error."""
    classes = (EmbedderModelArguments, EmbedderDataArguments, EmbedderTrainingArguments)
    known = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.init:
                known.setdefault(f.name, cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown embedder training option(s): {', '.join(unknown)}")
    if isinstance(options.get("train_data"), str):
        options["train_data"] = [options["train_data"]]
    parts = [cls(**{k: v for k, v in options.items() if known[k] is cls}) for cls in classes]
    return run_training(*parts, callbacks)
