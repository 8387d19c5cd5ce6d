"""Training health: stop on a non-finite loss, warn when the group loss stays at chance."""

from __future__ import annotations

import logging
import math
from collections import deque

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; continuing would only write a broken model."""


def check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"loss is {loss} at step {step}: training diverged. Lower --learning_rate, add warm-up, or use --bf16 "
            "instead of --fp16 (fp16 overflows more easily). Teacher scores with extreme values can also cause it."
        )


class CollapseMonitor:
    """Watches per-step losses; warns once when the mean of the last `window` sits within `tolerance` of chance.

    Chance for a group softmax over G passages is ln(G): the model scores every passage alike. A fresh head on
    a bi-encoder checkpoint can sit there for many steps at low learning rates, and the peers say nothing.
    """

    def __init__(self, group_size: int, window: int, tolerance: float = 0.03):
        self.chance = math.log(group_size) if group_size > 1 else 0.0
        self.window = window
        self.tolerance = tolerance
        self.losses: deque[float] = deque(maxlen=max(window, 1))
        self.last_step = -1
        self.warned = False

    def update(self, step: int, loss: float) -> bool:
        """Record the loss of optimizer step `step` (the first micro-batch of a step stands for it).

        Returns True when this call emitted the warning.
        """
        if self.window <= 0 or self.chance == 0.0 or self.warned or step == self.last_step:
            return False
        self.last_step = step
        self.losses.append(loss)
        if len(self.losses) < self.window:
            return False
        mean = sum(self.losses) / len(self.losses)
        if abs(mean - self.chance) <= self.tolerance * self.chance:
            self.warned = True
            logger.warning(
                "The loss has stayed at chance, ln(%d) = %.3f, for the last %d steps (mean %.3f): the model scores "
                "every passage alike and is not learning to rank. A fresh classification head on an embedding "
                "checkpoint often needs a higher learning rate (try 1e-4) or more warm-up; check also that the "
                "positive is really relevant in your data.",
                round(math.exp(self.chance)), self.chance, self.window, mean,
            )
            return True
        return False
