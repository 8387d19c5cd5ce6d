"""The Trainer subclass: group sampling, the ranking loss in compute_loss, and the health checks."""

from __future__ import annotations

from transformers import Trainer

from . import losses
from .data import GroupDataset, MixingSampler
from .health import CollapseMonitor, HealthCallback


class RerankerTrainer(Trainer):
    """Trains a plain sequence-classification model with a group-wise ranking loss.

    The group size comes from the dataset (the data's format and --train_group_size), never from the model.
    """

    def __init__(self, *args, mixing: str = "mixed", data_weights: list[float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mixing = mixing
        self.data_weights = data_weights
        # Our loss is a per-batch mean: let the Trainer divide it by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        dataset: GroupDataset = self.train_dataset
        # Chance is ln(group size) only for the group softmax; other losses have no such fixed point.
        monitor = CollapseMonitor(dataset.group_size, self.args.collapse_warning_steps) \
            if self.args.loss == "softmax_ce" else None
        self.add_callback(HealthCallback(monitor))

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # Keys of one optimizer step: every rank's batch (n_gpu included) for every accumulation step.
        step_batch = self.args.train_batch_size * max(1, self.args.world_size) * self.args.gradient_accumulation_steps
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return MixingSampler(dataset, self.mixing, self.data_weights, step_batch, seed=seed,
                             strategy=self.args.train_sampling_strategy)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_scores = inputs.pop("teacher_scores", None)
        soft_labels = inputs.pop("soft_labels", None)
        outputs = model(**inputs)
        group_size = self.train_dataset.group_size
        scores = outputs.logits.view(-1, group_size)
        loss = losses.compute(self.args.loss, scores, teacher_scores=teacher_scores, soft_labels=soft_labels,
                              temperature=self.args.distill_temperature, alpha=self.args.distill_alpha)
        return (loss, outputs) if return_outputs else loss
