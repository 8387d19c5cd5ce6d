"""Loading training sources: jsonl files, folders of jsonl files, saved Hugging Face datasets and hub ids."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reranker.common.errors import DataError
from reranker.common.files import iter_jsonl
from reranker.data.records import GroupExample, SoftExample, is_soft_row, parse_group, parse_soft

logger = logging.getLogger(__name__)

# An argument ending so names a local file, never a hub dataset.
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".txt", ".arrow")
# save_to_disk writes these (a Dataset: dataset_info.json and state.json; a DatasetDict: dataset_dict.json).
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class Source:
    """One training set as the user named it, with its parsed examples and what was skipped."""

    name: str
    examples: list[GroupExample] | list[SoftExample]
    kind: str  # "group" or "soft"
    skipped_no_negatives: int = 0


def _jsonl_files(folder: Path) -> list[Path]:
    # *.jsonl only: a .json beside them is a summary or a config (the miner writes mined.summary.json), not data.
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".jsonl")


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / name).is_file() for name in SAVED_DATASET_FILES)


def is_hub_id(spec: str) -> bool:
    """`owner/name` that cannot be a local path: no other separator, no leading '.' or '~', no data file suffix,
    and no local folder called `owner` (then `owner/name` is a path with a typo)."""
    return (_HUB_ID.fullmatch(spec) is not None and not spec.lower().endswith(DATA_SUFFIXES)
            and not Path(spec.split("/")[0]).exists())


def iter_rows(spec: str, sub_data_name: str | None = None, split: str = "train") -> Iterator[tuple[str, int, dict]]:
    """Yield (where, line or row number, row) from a jsonl file, a folder of *.jsonl files, a folder written by
    save_to_disk, or a hub id `owner/name`.

    A file named explicitly is read as JSON lines whatever its suffix. Anything else that is not on disk is a
    FileNotFoundError at once: only a bare `owner/name` reaches datasets.load_dataset (and the network), so a
    typo in a path is not retried against the hub, and no folder is handed to load_dataset's guessing (it read
    stray .txt files as data)."""
    path = Path(spec).expanduser()
    if path.is_file():
        for line, row in iter_jsonl(path):
            yield str(path), line, row
        return
    if path.is_dir():
        if _is_saved_dataset(path):
            yield from _iter_dataset_rows(spec, sub_data_name, split, saved=path)
            return
        files = _jsonl_files(path)
        if not files:
            raise DataError(spec, "holds no *.jsonl files and is not a saved Hugging Face dataset (a save_to_disk "
                                  f"folder, with one of {', '.join(SAVED_DATASET_FILES)})")
        others = sum(1 for p in path.iterdir() if p not in files)
        logger.info("%s: reading %d jsonl files%s", path, len(files),
                    f" (ignoring {others} other entries)" if others else "")
        for file in files:
            for line, row in iter_jsonl(file):
                yield str(file), line, row
        return
    if is_hub_id(spec):
        yield from _iter_dataset_rows(spec, sub_data_name, split)
        return
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    hint = "" if "/" in spec or path.suffix else "; a hub dataset is named owner/name"
    raise FileNotFoundError(f"{spec} does not exist{where}{hint}")


def _iter_dataset_rows(spec: str, sub_data_name: str | None, split: str,
                       saved: Path | None = None) -> Iterator[tuple[str, int, dict]]:
    import datasets

    label = f"{spec}" + (f" [{sub_data_name}]" if sub_data_name else "") + f" split '{split}'"
    try:
        if saved is not None:
            loaded = datasets.load_from_disk(str(saved))
            data = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            data = datasets.load_dataset(spec, name=sub_data_name, split=split)
    except (FileNotFoundError, ValueError, KeyError, ConnectionError, OSError) as error:
        what = "a saved dataset" if saved is not None else "a hub dataset"
        raise DataError(spec, f"could not be loaded as {what} ({label}): {type(error).__name__}: {error}") from None
    for number, row in enumerate(data, start=1):
        yield label, number, dict(row)


def load_source(spec: str, group_size: int, sub_data_name: str | None = None, split: str = "train") -> Source:
    """Parse every row of one source; all rows must share one format. Errors name the file and line."""
    examples: list = []
    kind = None
    skipped = 0
    for where, line, row in iter_rows(spec, sub_data_name, split):
        row_kind = "soft" if is_soft_row(row) else "group"
        if kind is None:
            kind = row_kind
        elif row_kind != kind:
            raise DataError(where, f"mixes formats: earlier rows are '{kind}' records, this one is '{row_kind}'",
                            line=line)
        if row_kind == "soft":
            examples.append(parse_soft(row, where, line))
            continue
        example = parse_group(row, where, line)
        if group_size > 1 and not example.neg:
            skipped += 1  # a group needs negatives; counted and reported, never silently dropped
            continue
        examples.append(example)
    if not examples:
        raise DataError(spec, "holds no usable training records"
                        + (f" ({skipped} skipped for having no negatives)" if skipped else ""))
    if skipped:
        logger.warning("%s: skipped %d of %d records that have no negatives (train_group_size=%d needs them)",
                       spec, skipped, skipped + len(examples), group_size)
    return Source(name=spec, examples=examples, kind=kind, skipped_no_negatives=skipped)
