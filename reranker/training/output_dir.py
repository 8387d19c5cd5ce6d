"""The output folder of a run: refusing to write over a model, finding the checkpoint to resume, clearing the
previous run's files only when the new run is about to write (after its data, options and model have all been
checked and loaded), and putting staged saves into place (the trainer writes every save to a staging folder)."""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from pathlib import Path

from reranker.common import dist
from reranker.common.errors import ConfigError
from reranker.models import interop
from reranker.models.loading import check_model_folder, missing_model_files

logger = logging.getLogger(__name__)

MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "adapter_config.json",
               "adapter_model.safetensors")
# What a finished run leaves beside its checkpoints: the model, its tokenizer, and our reports on it. Removed when a
# new run overwrites the folder, so that an interrupted new run never leaves the old model looking like its result.
PREVIOUS_RUN_FILES = (
    "config.json", "generation_config.json", "model.safetensors", "model-*.safetensors", "*.safetensors.index.json",
    "pytorch_model*.bin", "*.bin.index.json", "adapter_config.json", "adapter_model.*", "reranker_config.json",
    "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt", "*.model",
    "chat_template.*", "training_args.bin", "trainer_state.json", "dev_metrics.json", "README.md", *interop.FILES,
)
# Folders a save writes into before renaming them into place (reranker/training/trainer.py); the leading underscore
# keeps them out of the Trainer's uploads with --push_to_hub.
STAGING_PREFIX = "_saving-"


def checkpoints(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("checkpoint-*") if p.is_dir())


def is_finished_checkpoint(folder: Path) -> bool:
    return (folder / "trainer_state.json").is_file() and not missing_model_files(folder)


def last_checkpoint(out: Path) -> Path | None:
    """The newest finished checkpoint (saved whole, with the Trainer's state); an older run's half-written one is
    passed over."""
    done = [p for p in checkpoints(out) if p.name.split("-")[-1].isdigit() and is_finished_checkpoint(p)]
    return max(done, key=lambda p: int(p.name.split("-")[-1])) if done else None


def resolve_resume(value: str | bool | None, out: Path) -> str | None:
    """--resume_from_checkpoint: true means the last checkpoint in output_dir (as the Trainer reads True), false
    none; anything else is a checkpoint folder, which must exist. Checked before anything loads."""
    if value is None or value is False or str(value).lower() == "false":
        return None
    if value is True or str(value).lower() == "true":
        found = last_checkpoint(out) if out.is_dir() else None
        if found is None:
            raise ConfigError(f"--resume_from_checkpoint true: there is no checkpoint in {out} to resume from")
        logger.info("--resume_from_checkpoint true: resuming from %s", found)
        return str(found)
    if not Path(value).is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {value} does not exist (or is not a folder)")
    check_model_folder(value)
    if not (Path(value) / "trainer_state.json").is_file():
        raise ConfigError(f"--resume_from_checkpoint: {value} has no trainer_state.json, so it is not a Trainer "
                          "checkpoint to resume; start a new run from it with --model_name_or_path instead")
    return str(value)


def check_output_dir(out: Path, overwrite: bool, resuming: bool) -> None:
    """Refuse to write over a model or checkpoints a user already has, unless asked to or resuming. Removes
    nothing: that waits until the new run is about to write (`clear_previous_run`)."""
    if not out.is_dir() or resuming or overwrite:
        return
    existing = [name for name in MODEL_FILES if (out / name).exists()] + [p.name for p in checkpoints(out)]
    if existing:
        raise FileExistsError(
            f"output_dir {out} already holds {', '.join(existing[:3])}; pass --overwrite_output_dir to replace it "
            "or --resume_from_checkpoint to continue a run"
        )


def previous_run_files(out: Path) -> list[Path]:
    """The checkpoints, unfinished saves and final model files of an earlier run in `out`."""
    found = checkpoints(out) + sorted(p for p in out.glob(f"{STAGING_PREFIX}*") if p.is_dir())
    found += sorted(p for p in out.iterdir()
                    if (p.is_file() or p.name == interop.LOGIT_SCORE_FOLDER)
                    and any(fnmatch.fnmatch(p.name, pattern) for pattern in PREVIOUS_RUN_FILES))
    return found


def clear_previous_run(out: Path) -> None:
    """--overwrite_output_dir: remove the previous run (rank zero only). Old checkpoints would mix with the new
    run's in rotation and in a later resume; an old final model would look like the new run's result."""
    if not out.is_dir() or not dist.is_main_process():
        return
    old = previous_run_files(out)
    if not old:
        return
    logger.warning("--overwrite_output_dir: removing the previous run in %s (%s)", out,
                   ", ".join(p.name for p in old[:6]) + (", ..." if len(old) > 6 else ""))
    for path in old:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


# Weight files, shards included: what publish() moves last and clears when a save brings other ones.
WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "*.bin.index.json",
                   "adapter_model.*")


def is_weights(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in WEIGHT_PATTERNS)


def discard(path: Path) -> None:
    """Remove what a save cut short left behind (rank zero, before the same save runs again)."""
    if path.is_dir():
        logger.warning("Removing %s, left by a save that did not finish", path)
        shutil.rmtree(path)


def move_into_place(staged: Path, target: Path) -> None:
    """Rename a whole staged folder (a checkpoint) to its name; one rename, so it appears complete or not at all."""
    if target.exists():  # a checkpoint of the same step, from a run resumed before it
        shutil.rmtree(target)
    os.replace(staged, target)


def publish(staging: Path, target: Path) -> None:
    """Move the files of a staged final save into `target`, the weights last: a save cut short leaves the folder
    without weights (refused by the loaders), never a new config beside old weights. Weights of another layout
    (an old pytorch_model.bin beside a new model.safetensors) are removed first."""
    new = sorted(p.name for p in staging.iterdir())
    for old in target.iterdir():
        if old.is_file() and is_weights(old.name) and old.name not in new:
            old.unlink()
    for name in sorted(new, key=is_weights):
        if (target / name).is_dir():
            shutil.rmtree(target / name)
        os.replace(staging / name, target / name)
    staging.rmdir()
