"""A kill simulated in-process: a callback that raises right after a given step's checkpoint was written."""

from transformers import TrainerCallback


class Crash(RuntimeError):
    pass


class CrashAfterSave(TrainerCallback):
    """Stands for a kill right after the checkpoint of `step` was written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Crash(f"killed after the checkpoint of step {self.step}")
