"""Training health: stop on a non-finite loss or score, warn when the loss stays at chance."""

from __future__ import annotations

import logging
import math

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; continuing would only write a broken model."""


def check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"loss is {loss} at step {step}: training diverged. Lower --learning_rate, add warm-up, or use --bf16 "
            "(--auto_bf16 on a CPU) instead of --fp16 (fp16 overflows more easily). Teacher scores with extreme "
            "values can also cause it."
        )


def check_finite_scores(scores, step: int) -> None:
    """Every score of the batch must be a number: NaN or infinite scores mean the forward overflowed (T5 in fp16) or
    the weights diverged, and the loss would carry them into the weights."""
    import torch

    bad = ~torch.isfinite(scores.detach())
    if bool(bad.any()):
        nan = int(torch.isnan(scores.detach()).sum())
        raise TrainingDiverged(
            f"{int(bad.sum())} of {scores.numel()} scores are not finite ({nan} NaN, {int(bad.sum()) - nan} infinite) "
            f"at step {step}: training diverged or the forward overflowed. Use bf16 or fp32 rather than fp16 (T5 "
            "overflows in fp16), lower --learning_rate or add warm-up."
        )


class CollapseMonitor:
    """Counts consecutive optimizer steps whose loss sits within `tolerance` of chance; warns once at `window`.

    Chance for a group softmax over G passages is ln(G): the model scores every passage alike. A fresh head on
    a bi-encoder checkpoint can sit there for many steps at low learning rates, and the peers say nothing.
    """

    def __init__(self, group_size: int, window: int, tolerance: float = 0.03):
        self.chance = math.log(group_size) if group_size > 1 else 0.0
        self.window = window
        self.tolerance = tolerance
        self.stuck_steps = 0
        self.last_step = 0
        self.warned = False

    def update(self, step: int, loss: float, learning_rate: float | None = None) -> bool:
        """Record the mean loss logged at `step` (covering the steps since the previous log).

        Returns True when this call emitted the warning.
        """
        covered, self.last_step = step - self.last_step, step
        if self.window <= 0 or self.chance == 0.0 or self.warned or covered <= 0:
            return False
        at_chance = abs(loss - self.chance) <= self.tolerance * self.chance
        self.stuck_steps = self.stuck_steps + covered if at_chance else 0
        if self.stuck_steps < self.window:
            return False
        self.warned = True
        logger.warning(
            "The loss has stayed at chance, ln(%d) = %.3f, for the last %d steps (now %.3f, learning rate %s): the "
            "model scores every passage alike and is not learning to rank yet. A fresh classification head on an "
            "embedding checkpoint often needs a learning rate around 1e-4 and some steps to leave chance; if it "
            "stays here much longer, raise the learning rate and check that the positives are really relevant.",
            round(math.exp(self.chance)), self.chance, self.stuck_steps, loss,
            f"{learning_rate:.2g}" if learning_rate is not None else "unknown",
        )
        return True


class HealthCallback(TrainerCallback):
    """Checks every logged loss (and gradient norm): these are already synced across ranks, so no extra GPU
    synchronisation per step, and every rank stops together."""

    def __init__(self, monitor: CollapseMonitor | None):
        self.monitor = monitor

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        for key in ("loss", "grad_norm"):
            if key in logs and logs[key] is not None:
                check_finite(float(logs[key]), state.global_step)
        if self.monitor is not None and "loss" in logs and state.is_world_process_zero:
            self.monitor.update(state.global_step, float(logs["loss"]), logs.get("learning_rate"))
