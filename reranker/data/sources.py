"""Loading training sources: jsonl files, folders of jsonl files, and hub or local Hugging Face datasets."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reranker.common.errors import DataError
from reranker.common.files import iter_jsonl
from reranker.data.records import GroupExample, SoftExample, is_soft_row, parse_group, parse_soft

logger = logging.getLogger(__name__)

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


def _is_hf_dataset_folder(folder: Path) -> bool:
    # save_to_disk writes these; a folder of plain jsonl files has neither.
    return (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists()


def iter_rows(spec: str, sub_data_name: str | None = None, split: str = "train") -> Iterator[tuple[str, int, dict]]:
    """Yield (where, line or row number, row) for a file, a folder of jsonl files, or a dataset id/folder."""
    path = Path(spec)
    if path.is_file():
        for line, row in iter_jsonl(path):
            yield str(path), line, row
        return
    if path.is_dir() and not _is_hf_dataset_folder(path):
        files = _jsonl_files(path)
        if files:
            others = sum(1 for p in path.iterdir() if p not in files)
            logger.info("%s: reading %d jsonl files%s", path, len(files),
                        f" (ignoring {others} other entries)" if others else "")
            for file in files:
                for line, row in iter_jsonl(file):
                    yield str(file), line, row
            return
    yield from _iter_dataset_rows(spec, sub_data_name, split)


def _iter_dataset_rows(spec: str, sub_data_name: str | None, split: str) -> Iterator[tuple[str, int, dict]]:
    import datasets

    label = f"{spec}" + (f" [{sub_data_name}]" if sub_data_name else "") + f" split '{split}'"
    try:
        if Path(spec).is_dir() and _is_hf_dataset_folder(Path(spec)):
            loaded = datasets.load_from_disk(spec)
            data = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            data = datasets.load_dataset(spec, name=sub_data_name, split=split)
    except (FileNotFoundError, ValueError, KeyError, ConnectionError, OSError) as error:
        raise DataError(spec, f"is not a jsonl file, a folder of jsonl files, or a loadable dataset "
                              f"({label}): {type(error).__name__}: {error}") from None
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
