"""The Trainer subclass: group sampling, the ranking loss in compute_loss, and the health checks."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from reranker.common import precision
from reranker.data.groups import GroupDataset, MixingSampler
from reranker.models import interop, lora
from reranker.models.scorers import Scorer, saved_metadata
from reranker.models.scorers.encoder import EncoderScorer
from reranker.training import dev_eval, losses, model_card
from reranker.training.forward import by_length, check_slicing, resolve_forward_tokens
from reranker.training.health import CollapseMonitor, HealthCallback, check_finite_scores
from reranker.training.output_dir import STAGING_PREFIX, discard, move_into_place, publish

logger = logging.getLogger(__name__)

# A fresh head's learning rate over the encoder's, by default: 30x left the chance plateau soonest in our
# seed-averaged comparisons of 10x and 30x (docs/training.md, "Defaults").
HEAD_LR_FACTOR = 30


def autocast_dtype(args) -> torch.dtype | None:
    """The autocast precision the training arguments ask for (None: full precision)."""
    return precision.autocast_dtype("bf16" if args.bf16 else ("fp16" if args.fp16 else None))


class GroupTrainer(Trainer):
    """What every trainer of this package shares: weighted multi-source sampling (MixingSampler), checkpoints and
    the final save written whole before they appear, resume that trains nothing past --max_steps, and the health
    checks. The reranker's and the embedder's trainers add their loss, dev check and files."""

    def __init__(self, *args, mixing: str = "mixed", data_weights: list[float] | None = None,
                 monitor: CollapseMonitor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mixing = mixing
        self.data_weights = data_weights
        self._staging_dir: str | None = None  # set while a checkpoint is written into its staging folder
        # Our losses are per-batch means: let the Trainer divide them by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        self.add_callback(HealthCallback(monitor))

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, *args, **kwargs):
        """Resuming a run that had reached max_steps trains nothing more.

        The Trainer checks the step budget only after a step, so resuming from the last checkpoint of a finished
        run took one more (a checkpoint-(max_steps + 1) and a loss logged for it). Starting past the last epoch
        runs no step; the end of training (the best model reloaded, the final save) happens as usual.
        """
        epochs_trained, steps_in_epoch = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, *args, **kwargs)
        if self.state.global_step >= max_steps:
            logger.info("The checkpoint is at step %d of --max_steps %d: nothing left to train",
                        self.state.global_step, max_steps)
            return num_train_epochs, 0
        return epochs_trained, steps_in_epoch

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is saved, the Trainer writes it under the staging folder (see _save_checkpoint).
        return self._staging_dir or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Each checkpoint is written whole into `_saving-checkpoint-N/` beside it, then renamed to checkpoint-N:
        a kill mid-save leaves no checkpoint-N that would resume or load wrongly.

        The Trainer's own save runs with its output folder pointed at the staging folder; the best-checkpoint
        path it looked up there is then pointed back at the real folder, the rank(s) that wrote the model
        rename, and old checkpoints rotate as the Trainer would have rotated them.
        """
        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = run_dir / f"{STAGING_PREFIX}{name}"
        previous_best = self.state.best_model_checkpoint
        if self.args.should_save:
            discard(staging)
        self.accelerator.wait_for_everyone()
        self._staging_dir = str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
        self.state.best_model_checkpoint = self._best_checkpoint(run_dir, previous_best)
        if self.args.should_save:
            self.state.save_to_json(str(staging / name / "trainer_state.json"))
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state into the staged folder
        if self.args.should_save:
            move_into_place(staging / name, run_dir / name)
            shutil.rmtree(staging)
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()
        if self.args.local_process_index == 0 and (staging / name).is_dir():
            # A node that does not share the writer's disk holds only its ranks' RNG states: placed the same way.
            move_into_place(staging / name, run_dir / name)
            shutil.rmtree(staging)

    def _best_checkpoint(self, run_dir: Path, previous: str | None) -> str | None:
        """Where the best checkpoint lives once renamed (the Trainer looked for it in the staging folder)."""
        step = self.state.best_global_step
        if not step:
            return previous
        path = str(run_dir / f"{PREFIX_CHECKPOINT_DIR}-{step}")
        return path if step == self.state.global_step or os.path.isdir(path) else previous

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The final save (and --push_to_hub's) goes to `_saving-model/` first and then into `output_dir`, the
        weights last: a save cut short leaves no config.json without weights, nor new files beside old weights.
        The folder also holds the checkpoints, so it cannot be renamed whole."""
        if self._staging_dir is not None:  # a checkpoint: its whole folder is being staged already
            return super().save_model(output_dir, _internal_call)
        target = Path(output_dir or self.args.output_dir)
        staging = target / f"{STAGING_PREFIX}model"
        if self.args.should_save:
            discard(staging)
        self.accelerator.wait_for_everyone()
        super().save_model(str(staging), _internal_call=True)  # the push, if asked for, once the files are in place
        self.accelerator.wait_for_everyone()
        if self.args.should_save and staging.is_dir():  # sharded FSDP states write no model here
            # The step travels with the weights: the loaders compare it with the checkpoints beside them.
            self.state.save_to_json(str(staging / "trainer_state.json"))
            publish(staging, target)
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def create_model_card(self, *args, **kwargs) -> None:
        """--push_to_hub: keep the card reranker-train wrote (the Trainer would replace it with its own)."""
        card = Path(self.args.output_dir) / "README.md"
        if card.is_file() and model_card.is_ours(card.read_text(encoding="utf-8")):
            return
        super().create_model_card(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # Keys of one optimizer step: every rank's batch (n_gpu included) for every accumulation step.
        step_batch = self.args.train_batch_size * max(1, self.args.world_size) * self.args.gradient_accumulation_steps
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return MixingSampler(dataset, self.mixing, self.data_weights, step_batch, seed=seed,
                             strategy=self.args.train_sampling_strategy)


class RerankerTrainer(GroupTrainer):
    """Trains a plain Hugging Face model of any family with a group-wise ranking loss.

    The model's family shows only in `scorer` (pairs -> inputs -> one score per pair; default: the encoder's).
    The group size comes from the dataset (the data's format and --train_group_size), never from the model.
    """

    def __init__(self, *, args, train_dataset: GroupDataset, scorer: Scorer | None = None,
                 adapter_metadata: dict | None = None, **kwargs):
        # Chance is ln(negatives + 1) only for the group softmax; other losses have no such fixed point.
        monitor = CollapseMonitor(train_dataset.group_size - train_dataset.positives + 1,
                                  args.collapse_warning_steps) if args.loss == "softmax_ce" else None
        super().__init__(args=args, train_dataset=train_dataset, monitor=monitor, **kwargs)
        self.scorer = scorer or EncoderScorer(self.processing_class)
        # LoRA: what reranker_config.json holds beside each saved adapter (models/lora.py); None for a full model.
        self.adapter_metadata = adapter_metadata
        # The InRanker losses read a two-logit student's (false, true) logits, as InRanker does; a one-score student
        # (an encoder, or one token's logit) is trained on the logit difference (losses.inranker_mse).
        self.pair_loss = self.args.loss in losses.INRANKER_LOSSES and self.scorer.has_pair_logits
        if self.args.loss in losses.INRANKER_LOSSES:
            logger.info("--loss %s on the student's %s", self.args.loss, "(false, true) logits" if self.pair_loss
                        else "one score per pair, read as logit(true) - logit(false)")
        self.forward_tokens = resolve_forward_tokens(self.args.forward_tokens, self.args.device.type)
        check_slicing(self.args, self.forward_tokens)
        if self.forward_tokens:
            logger.info("Each training batch is scored in forward passes of at most %d padded tokens, over pairs of "
                        "similar length (--forward_tokens; 0 for one pass)", self.forward_tokens)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Every save (checkpoints, the final model): the Trainer's (weights, config, tokenizer); for a LoRA run
        reranker_config.json beside the adapter, since there is no config.json to hold the scoring metadata; then
        what sentence-transformers needs to load a decoder reranker as a CrossEncoder that scores as ours does
        (reranker/models/interop.py). Everything lands in the staging folder with the rest."""
        super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return
        folder = output_dir or self.args.output_dir
        if self.adapter_metadata is not None:
            lora.write_metadata(folder, self.adapter_metadata)
        config = self.accelerator.unwrap_model(self.model).config
        metadata = self.adapter_metadata if self.adapter_metadata is not None else saved_metadata(config)
        interop.write_sentence_transformers_files(folder, self.scorer, metadata.get("max_length"))

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with the freshly initialised parameters in groups of their own learning rate.

        A new head on an embedding checkpoint starts at chance; at the encoder's small learning rate it stays there
        for many steps (the peers' runs sit at ln(group size) for ~80 of 202 steps), at a larger one the encoder
        would be damaged. The LR schedule scales every group alike.
        """
        optimizer = super().create_optimizer(model)
        head_lr = self.args.head_learning_rate
        if head_lr is None:
            head_lr = HEAD_LR_FACTOR * self.args.learning_rate
        fresh = set(getattr(self.model, "fresh_parameter_names", []))
        if not head_lr or not fresh or getattr(optimizer, "_head_groups_split", False):
            return optimizer
        head_ids = {id(p) for n, p in self.model.named_parameters() if n in fresh}
        groups = list(optimizer.param_groups)
        optimizer.param_groups.clear()
        for group in groups:
            body = [p for p in group["params"] if id(p) not in head_ids]
            head = [p for p in group["params"] if id(p) in head_ids]
            for params, lr in ((body, group["lr"]), (head, head_lr)):
                if params:
                    optimizer.add_param_group({**group, "params": params, "lr": lr})
        optimizer._head_groups_split = True
        logger.info("Learning rate %.2g for the %d freshly initialised parameters (%s), %.2g for the rest",
                    head_lr, len(fresh), ", ".join(sorted(fresh)), self.args.learning_rate)
        return optimizer

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Rank the dev queries' candidates; every rank scores them all (a dev set is small), so every rank
        takes the same best-checkpoint decision."""
        dev = eval_dataset if eval_dataset is not None else self.eval_dataset
        dtype = autocast_dtype(self.args)
        start = time.perf_counter()
        # The training collator: dev pairs are cut to the same token budgets as training pairs.
        run = dev_eval.score_dev(self.model, self.scorer, self.data_collator, dev,
                                 self.args.per_device_eval_batch_size, self.args.device, dtype, self.forward_tokens)
        raw = dev_eval.dev_metrics(dev, run)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in raw.items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 2)
        self.log(metrics)  # into state.log_history, which reranker-train's report reads (and a resume restores)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if self.is_world_process_zero():
            first = raw[dev_eval.FIRST_STAGE + "nDCG@10"]
            if raw["nDCG@10"] < first:
                logger.warning(
                    "!!! Step %d: the model ranks the %d dev queries WORSE than the first stage it will rerank "
                    "(nDCG@10 %.4f < %.4f). Reranking with it now would make results worse.",
                    self.state.global_step, len(dev), raw["nDCG@10"], first)
            else:
                logger.info("Step %d: dev nDCG@10 %.4f (first stage %.4f, %+.4f), MRR@10 %.4f",
                            self.state.global_step, raw["nDCG@10"], first, raw["nDCG@10"] - first, raw["MRR@10"])
        return metrics

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_scores = inputs.pop("teacher_scores", None)
        soft_labels = inputs.pop("soft_labels", None)
        group_size = self.train_dataset.group_size
        if self.pair_loss:
            # InRanker regresses both answer logits: [pairs, 2] (false, true), one pair per group.
            logits = by_length(lambda part: self.scorer.pair_logits(model, part), inputs, self.forward_tokens)
            check_finite_scores(logits, self.state.global_step)
            scores = (logits[:, 1] - logits[:, 0]).view(-1, group_size)
        else:
            logits = scores = by_length(lambda part: self.scorer.scores(model, part), inputs,
                                        self.forward_tokens).view(-1, group_size)
            # A non-finite score can leave the loss finite (BCE of -inf against 0), so the scores are checked.
            check_finite_scores(scores, self.state.global_step)
        loss = losses.compute(self.args.loss, logits, teacher_scores=teacher_scores, soft_labels=soft_labels,
                              temperature=self.args.distill_temperature, alpha=self.args.distill_alpha,
                              positives=self.train_dataset.positives)
        return (loss, {"scores": scores}) if return_outputs else loss
