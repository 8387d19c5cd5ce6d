"""What the entry points share: argument parsing (config files, other spellings of our options, unknown options),
the options every command takes (--encoding, --disable_tqdm), logging set-up, and exit codes.

Other spellings live here, in one table per command, and are rewritten to our option names before
HfArgumentParser sees the command line or a config file: FlagEmbedding's names where they mean exactly what ours
mean, and our own older spellings (deprecated: a warning names the one to use).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from transformers import HfArgumentParser

from reranker.common import dist
from reranker.common.errors import ConfigError, DataError, StageFailed
from reranker.training.health import TrainingDiverged

logger = logging.getLogger(__name__)


class UsageError(ConfigError):
    """A command line the parser cannot take (an unknown option, a bad value): one line and exit code 2."""

    def __init__(self, prog: str, message: str):
        self.prog = prog
        super().__init__(message)


# Errors in what the user gave us: reported as one line and exit code 1, no traceback.
USER_ERRORS = (DataError, ConfigError, StageFailed, TrainingDiverged, FileExistsError, FileNotFoundError)

DROP = object()  # what a translation returns when the option has no counterpart to pass on
TRUE, FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")


def _as_bool(value, option: str, prog: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in TRUE + FALSE:
        return str(value).lower() in TRUE
    raise UsageError(prog, f"--{option} takes true or false, got {value!r}")


@dataclass(frozen=True)
class Alias:
    """Another spelling of one of our options.

    `canonical` None: a peer's option we have no equivalent of, refused with `note`. `translate`: maps the value
    given to the canonical option's value (DROP: nothing to pass on); None passes the value through. `flag`: the
    option is a switch (`--x`, `--x true`). `when`: the alias applies only to these values (an old spelling of a
    value, such as `--cache_dir none`)."""

    name: str
    canonical: str | None
    origin: str  # "FlagEmbedding", "deprecated" or "shared" (the spelling another of our commands uses)
    translate: Callable | None = None
    flag: bool = False
    when: Callable | None = None
    note: str = ""


def _is_none(value) -> bool:
    return isinstance(value, str) and value.lower() == "none"


FLAGEMBEDDING_MINER = {  # FlagEmbedding's scripts/hn_mine.py: the embedder
    "embedder_name_or_path": "model_name_or_path", "pooling_method": "pooling",
    "query_instruction_for_retrieval": "query_instruction", "embedder_query_max_length": "query_max_len",
    "embedder_passage_max_length": "passage_max_len", "embedder_batch_size": "embed_batch_size",
}
FLAGEMBEDDING_EVAL = {  # FlagEmbedding's evaluation arguments: the dense first stage and the reranker's pair budget
    "embedder_name_or_path": "dense_model", "pooling_method": "dense_pooling",
    "query_instruction_for_retrieval": "query_instruction", "embedder_query_max_length": "dense_query_max_len",
    "embedder_passage_max_length": "dense_passage_max_len", "reranker_max_length": "rerank_max_length",
}
NO_RERANK_INSTRUCTION = ("a model trained with an instruction must be scored with it, and reranker-eval and "
                         "Reranker take none; write the instruction into the queries (or passages) of the data")
REFUSED = [Alias(name, None, "FlagEmbedding", note=NO_RERANK_INSTRUCTION)
           for name in ("query_instruction_for_rerank", "passage_instruction_for_rerank")]

ALIASES: dict[str, list[Alias]] = {
    "reranker-train": [
        Alias("data_split", "split", "deprecated"),
        Alias("knowledge_distillation", "loss", "FlagEmbedding", flag=True,
              translate=lambda on: "distill" if on else DROP, note="true: --loss distill (on teacher scores)"),
        *REFUSED,
    ],
    "reranker-mine": [
        *(Alias(name, ours, "FlagEmbedding") for name, ours in FLAGEMBEDDING_MINER.items()),
        Alias("use_fp16", "embed_dtype", "FlagEmbedding", flag=True, translate=lambda on: "fp16" if on else DROP,
              note="true: --embed_dtype fp16"),
        # `--cache_dir none` turns the cache off in reranker-eval; here it made a folder named none.
        Alias("cache_dir", "no_cache", "deprecated", when=_is_none, translate=lambda _: True, note="use --no_cache"),
    ],
    "reranker-eval": [
        *(Alias(name, ours, "FlagEmbedding") for name, ours in FLAGEMBEDDING_EVAL.items()),
        Alias("use_fp16", "dtype", "FlagEmbedding", flag=True, translate=lambda on: "fp16" if on else DROP,
              note="true: --dtype fp16"),
        Alias("no_cache", "cache_dir", "shared", flag=True, translate=lambda on: "none" if on else DROP,
              note="no run cache (reranker-mine's spelling)"),
        Alias("cache_dir", "cache_dir", "deprecated", when=_is_none, note="use --no_cache"),
        *REFUSED,
    ],
    "reranker-synth": [],
    "reranker-train-embedder": [  # FlagEmbedding's embedder fine-tuning arguments
        *(Alias(name, ours, "FlagEmbedding") for name, ours in {
            "sentence_pooling_method": "pooling", "normalize_embeddings": "normalize",
            "negatives_cross_device": "gather_across_devices",
            "query_instruction_for_retrieval": "query_instruction",
            "passage_instruction_for_retrieval": "passage_instruction"}.items()),
        Alias("data_split", "split", "deprecated"),
    ],
}

# Which command a parse is for, by its last dataclass (reranker/cli/train.py names none).
COMMAND_OF = {"RerankerTrainingArguments": "reranker-train", "EmbedderTrainingArguments": "reranker-train-embedder",
              "MineArguments": "reranker-mine",
              "EvalArguments": "reranker-eval", "SynthArguments": "reranker-synth",
              "ExportArguments": "reranker-export"}


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if dist.is_main_process() else logging.WARNING)


# --- the options every command takes -------------------------------------------------------------------------


def set_encoding(name: str, prog: str) -> None:
    """--encoding: the encoding of user files that are not UTF-8 (reranker.common.files decides how it is used)."""
    from reranker.common import files

    setter = getattr(files, "set_encoding", None)
    if setter is None:
        raise UsageError(prog, "--encoding is not supported by this version: reranker.common.files has no "
                               "set_encoding (files that are not UTF-8 are decoded by detection)")
    setter(name)


def disable_progress_bars() -> None:
    """Turn every progress bar of this process off, and of its children (TQDM_DISABLE=1 in their environment).

    tqdm reads TQDM_DISABLE once, when it is imported, and a call's own disable=False wins over it; so the switch
    is applied where every bar starts: each tqdm (the Trainer's, ours, the hub's) is created disabled."""
    import tqdm.std

    os.environ["TQDM_DISABLE"] = "1"
    init = tqdm.std.tqdm.__init__
    if getattr(init, "quiet", False):
        return

    @functools.wraps(init)
    def quiet(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    quiet.quiet = True
    tqdm.std.tqdm.__init__ = quiet


# --- the command line as items ---------------------------------------------------------------------------------


@dataclass
class Item:
    """One option of a command line and the tokens after it, or (name None) tokens before any option."""

    name: str | None
    head: str | None  # the option as typed, e.g. --pooling-method=cls
    values: list[str]

    @property
    def inline(self) -> str | None:
        return self.head.split("=", 1)[1] if self.head and "=" in self.head else None

    def tokens(self) -> list[str]:
        return ([self.head] if self.head else []) + self.values


def _is_option(token: str) -> bool:
    return (token.startswith("--") and len(token) > 2) or token == "-h"


def split_items(argv: list[str]) -> list[Item]:
    items = [Item(None, None, [])]
    for token in argv:
        if _is_option(token):
            name = "help" if token == "-h" else token[2:].split("=", 1)[0].replace("-", "_")
            items.append(Item(name, token, []))
        else:
            items[-1].values.append(token)
    return [item for item in items if item.head or item.values]


def _take_value(item: Item, flag: bool, prog: str) -> tuple[object, list[str]]:
    """(the value of an item's option, the tokens after it that are not its value). A switch takes an optional
    true/false; any other option one value."""
    if item.inline is not None:
        return item.inline, item.values
    if flag:
        if item.values and item.values[0].lower() in TRUE + FALSE:
            return item.values[0], item.values[1:]
        return True, item.values
    if not item.values:
        raise UsageError(prog, f"{item.head} needs a value")
    return item.values[0], item.values[1:]


def _tokens(option: str, value) -> list[str]:
    if isinstance(value, bool):
        return [f"--{option}", str(value).lower()]
    if isinstance(value, (list, tuple)):
        return [f"--{option}", *map(str, value)]
    return [f"--{option}", str(value)]


def _find(aliases: list[Alias], name: str, value) -> Alias | None:
    for alias in aliases:
        if alias.name == name and (alias.when is None or alias.when(value)):
            return alias
    return None


def _apply(alias: Alias, value, prog: str):
    """The canonical value of an alias given `value`; DROP when there is none. A refused alias raises."""
    if alias.canonical is None:
        raise UsageError(prog, f"--{alias.name} ({alias.origin}) has no equivalent here: {alias.note}")
    if alias.translate is None:
        return value
    return alias.translate(_as_bool(value, alias.name, prog) if alias.flag else value)


def _check_and_warn(given: list[tuple[str, str]], used: list[tuple[Alias, object]], prog: str) -> None:
    """`given`: (canonical option, spelling used); an option given under two spellings is an error. Then each
    deprecated spelling in `used` (alias, value) is warned about."""
    seen: dict[str, str] = {}
    for canonical, spelling in given:
        if canonical in seen and seen[canonical] != spelling:
            raise UsageError(prog, f"--{seen[canonical]} and --{spelling} set the same option (--{canonical}); "
                                   "give one")
        seen.setdefault(canonical, spelling)
    for alias, value in used:
        if alias.origin == "deprecated":
            spelled = f"--{alias.name} {value}" if alias.when else f"--{alias.name}"
            logger.warning("%s: %s is deprecated; %s", prog, spelled, alias.note or f"use --{alias.canonical}")


def rewrite_argv(argv: list[str], command: str) -> list[str]:
    """The command line with other spellings replaced by our option names (see ALIASES)."""
    aliases = ALIASES.get(command, [])
    out, given, used = [], [], []
    for item in split_items(argv):
        alias = None
        candidates = [a for a in aliases if a.name == item.name]
        if candidates:
            if candidates[0].canonical is None:
                _apply(candidates[0], None, command)  # refused
            value, rest = _take_value(item, candidates[0].flag, command)
            alias = _find(candidates, item.name, value)
        if alias is None:
            if item.name is not None:
                given.append((item.name, item.name))
            out += item.tokens()
            continue
        canonical = _apply(alias, value, command)
        given.append((alias.canonical, item.name))
        used.append((alias, value))
        if alias.translate is None and alias.canonical != item.name:
            # A plain rename keeps the user's tokens (a list option's values included).
            head = f"--{alias.canonical}" + (f"={item.inline}" if item.inline is not None else "")
            out += [head, *item.values]
        elif canonical is not DROP:
            out += _tokens(alias.canonical, canonical) + rest
        else:
            out += rest
    _check_and_warn(given, used, command)
    return out


def rewrite_config(config: dict, command: str, path: str) -> dict:
    """A config file's mapping with other spellings replaced by our option names (see ALIASES)."""
    aliases = ALIASES.get(command, [])
    out, given, used = {}, [], []
    for key, value in config.items():
        alias = _find(aliases, key, value)
        if alias is None:
            out[key] = value
            given.append((key, key))
            continue
        canonical = _apply(alias, value, f"{command} {path}")
        given.append((alias.canonical, key))
        used.append((alias, value))
        if canonical is not DROP:
            out[alias.canonical] = canonical
    _check_and_warn(given, used, f"{command} {path}")
    return out


# --- parsing ---------------------------------------------------------------------------------------------------


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option list (as HfArgumentParser shows them), the epilog as written."""


class _Parser(HfArgumentParser):
    """HfArgumentParser whose errors are a UsageError (one line, exit code 2) instead of usage text and exit."""

    def error(self, message: str):
        raise UsageError(self.prog, message)


def epilog(command: str, has_disable_tqdm: bool) -> str:
    lines = [f"Options may also come from one .json or .yaml config file with the same names: {command} CONFIG.",
             "", "Options of every command:",
             "  --encoding NAME   the encoding of user files that are not UTF-8 (e.g. latin-1)",
             "  --disable_tqdm    no progress bars" + (" (the Trainer's option, ours too)" * has_disable_tqdm),
             "  TQDM_DISABLE=1 in the environment turns the progress bars off as well."]
    aliases = ALIASES.get(command, [])
    if aliases:
        lines += ["", "Other spellings accepted (one given with the option it stands for is an error):"]
    for alias in aliases:
        if alias.canonical is None:
            meaning = "refused: no instruction at inference; write it into the data"
        else:
            meaning = alias.note or f"--{alias.canonical}"
        spelled = f"--{alias.name} none" if alias.when else f"--{alias.name}"
        lines.append(f"  {spelled:<36} {meaning}  [{alias.origin}]")
    return "\n".join(lines)


def _option_names(parser: argparse.ArgumentParser) -> list[str]:
    return [s[2:] for action in parser._actions for s in action.option_strings
            if s.startswith("--") and "-" not in s[2:]]


def _unknown(prog: str, token: str, known: list[str], where: str = "") -> UsageError:
    name = token[2:].split("=", 1)[0] if token.startswith("--") else None
    if name is None:
        return UsageError(prog, f"unexpected argument {token!r}{where}")
    close = difflib.get_close_matches(name.replace("-", "_"), known, n=1)
    hint = f" (did you mean --{close[0]}?)" if close else ""
    return UsageError(prog, f"unknown option --{name}{where}{hint}")


def _pop_common(options: dict, parser_names: set[str], prog: str) -> None:
    """--encoding and --disable_tqdm, taken out (disable_tqdm left in where the command has its own field)."""
    if "encoding" in options:
        set_encoding(str(options.pop("encoding")), prog)
    if "disable_tqdm" in options:
        on = _as_bool(options["disable_tqdm"], "disable_tqdm", prog)
        if "disable_tqdm" not in parser_names:
            del options["disable_tqdm"]
        if on:
            disable_progress_bars()


def _common_from_argv(argv: list[str], parser_names: set[str], prog: str) -> list[str]:
    """The command line without --encoding (applied) and --disable_tqdm (applied; left in for the Trainer)."""
    out = []
    for item in split_items(argv):
        if item.name in ("encoding", "disable_tqdm"):
            value, rest = _take_value(item, item.name == "disable_tqdm", prog)
            options = {item.name: value}
            _pop_common(options, parser_names, prog)
            out += (item.tokens() if options else rest)
        else:
            out += item.tokens()
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in TRUE:
        disable_progress_bars()
    return out


def _read_config(path: str) -> dict:
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        config = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return config


def parse(dataclasses: tuple, argv: list[str] | None, command: str | None = None) -> tuple:
    """Command-line options, or a single .json / .yaml argument read as a config file with the same names.

    Other spellings are rewritten first (ALIASES); an unknown option is a UsageError naming the closest one."""
    command = command or COMMAND_OF.get(dataclasses[-1].__name__, "reranker")
    parser = _Parser(dataclasses, prog=command, allow_abbrev=False, formatter_class=_Formatter)
    names = set(_option_names(parser))
    parser.epilog = epilog(command, "disable_tqdm" in names)
    argv = sys.argv[1:] if argv is None else list(argv)
    argv = _common_from_argv(argv, names, command)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = argv[0]
        if not Path(path).is_file():
            raise FileNotFoundError(f"config {path} does not exist")
        config = _read_config(path)
        _pop_common(config, names, command)
        config = rewrite_config(config, command, path)
        known = [f.name for dc in dataclasses for f in fields(dc) if f.init]
        for key in config:
            if key not in known:
                raise _unknown(command, f"--{key}", known, where=f" in {path}")
        return tuple(parser.parse_dict(config))
    argv = rewrite_argv(argv, command)
    _, remaining = parser.parse_known_args(argv)
    if remaining:
        raise _unknown(command, remaining[0], sorted(names | {a.name for a in ALIASES.get(command, [])}))
    return tuple(parser.parse_args_into_dataclasses(argv))


def run(main: Callable, logger: logging.Logger) -> int:
    """Call `main()`; a usage error becomes one line on stderr and exit code 2, a user error one logged line and
    exit code 1."""
    try:
        main()
    except UsageError as error:
        print(f"{error.prog}: error: {error}", file=sys.stderr, flush=True)
        return 2
    except USER_ERRORS as error:
        logger.error("%s", error)
        return 1
    return 0


# --- the drivers: one config file --------------------------------------------------------------------------------


def describe_config(cls, helps: dict[str, str]) -> str:
    """The keys of a driver's config, each with its default (from the dataclass) and what it does."""
    lines = []
    for f in fields(cls):
        if f.default is not MISSING:
            shown = f"default: {f.default!r}"
        elif f.default_factory is not MISSING:
            shown = f"default: {f.default_factory()!r}"
        else:
            shown = "required"
        lines.append(f"  {f.name} ({shown})\n" + textwrap.fill(helps[f.name], 100, initial_indent=" " * 6,
                                                              subsequent_indent=" " * 6))
    return "\n".join(lines)


def config_argument(argv: list[str] | None, command: str, help_text: str = "") -> str:
    """The drivers' one argument: an existing config file. `--help` prints `help_text` (what the config holds).
    --disable_tqdm reaches the stages, which are subprocesses, through TQDM_DISABLE; --encoding applies to the
    driver's own reading (the data stage)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = f"usage: {command} CONFIG (a .yaml or .json file) [--encoding NAME] [--disable_tqdm]"
    if any(token in ("-h", "--help") for token in argv):
        paragraphs = [p if p.startswith(" ") else textwrap.fill(p, 100) for p in help_text.split("\n\n")]
        print("\n\n".join([usage, *paragraphs]).rstrip(), flush=True)
        raise SystemExit(0)
    argv = _common_from_argv(argv, set(), command)
    for token in argv:
        if token.startswith("-"):
            raise _unknown(command, token, ["help", "encoding", "disable_tqdm"])
    if len(argv) != 1:
        raise UsageError(command, f"expected one config file: {command} CONFIG (see {command} --help)")
    if not Path(argv[0]).is_file():
        raise FileNotFoundError(f"config {argv[0]} does not exist")
    return argv[0]
