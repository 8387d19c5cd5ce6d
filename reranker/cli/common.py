"""What the entry points share: argument parsing with config files, logging set-up, and exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from transformers import HfArgumentParser

from reranker.common import dist
from reranker.common.errors import ConfigError, DataError, StageFailed
from reranker.training.health import TrainingDiverged

# Errors in what the user gave us: reported as one line and exit code 1, no traceback.
USER_ERRORS = (DataError, ConfigError, StageFailed, TrainingDiverged, FileExistsError, FileNotFoundError)


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if dist.is_main_process() else logging.WARNING)


def parse(dataclasses: tuple, argv: list[str] | None) -> tuple:
    """Command-line options, or a single .json / .yaml argument read as a config file with the same names."""
    parser = HfArgumentParser(dataclasses)
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return tuple(parser.parse_json_file(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return tuple(parser.parse_yaml_file(argv[0]))
    return tuple(parser.parse_args_into_dataclasses(argv))


def run(main: Callable, logger: logging.Logger) -> int:
    """Call `main()`; a user error becomes one logged line and exit code 1."""
    try:
        main()
    except USER_ERRORS as error:
        logger.error("%s", error)
        return 1
    return 0


def config_argument(argv: list[str] | None, command: str) -> str:
    """The drivers' one argument: an existing config file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 1:
        raise ConfigError(f"usage: {command} CONFIG (a .yaml or .json file)")
    if not Path(argv[0]).is_file():
        raise FileNotFoundError(f"config {argv[0]} does not exist")
    return argv[0]
