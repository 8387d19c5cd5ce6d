"""BEIR data by hub id: `BeIR/scifact` (configs `corpus` and `queries`) with its qrels in `BeIR/scifact-qrels`
(splits named after the qrels files), read through `datasets.load_dataset` and written once as a local BEIR
folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) that everything else reads as it reads any folder.

A local folder laid out like those hub repositories (a dataset card whose `configs` name `corpus` and `queries`,
and a `<name>-qrels` folder beside it) is read the same way, which is how this is tested offline.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from reranker.common.errors import DataError
from reranker.data.beir import QRELS_HEADER, is_beir_folder
from reranker.data.sources import is_hub_id

logger = logging.getLogger(__name__)

DEFAULT_CACHE = "~/.cache/reranker/beir"


def is_hub_layout(spec: str) -> bool:
    """Whether `spec` names a BEIR dataset in the hub's layout: a hub id, or a local folder whose dataset card
    declares `corpus` and `queries` configs. A plain BEIR folder is not (it is read directly)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "qrels").is_dir():  # a plain BEIR folder
            return False
        card = path / "README.md"
        return card.is_file() and "config_name: corpus" in card.read_text(encoding="utf-8", errors="replace")
    return is_hub_id(spec)


def cache_folder(spec: str, cache_dir: str | None = None) -> Path:
    # owner/name, for a hub id and for a local folder alike: the dataset keeps its name in tables and run files.
    parts = spec.rstrip("/").replace("\\", "/").split("/")[-2:]
    return Path(cache_dir or DEFAULT_CACHE).expanduser().joinpath(*parts)


def materialize(spec: str, splits: list[str] | None = None, cache_dir: str | None = None) -> Path:
    """The local BEIR folder of a hub-layout dataset, written on first use (atomically: a temporary folder renamed
    into place) and reused after; `splits` are the qrels splits needed (all the qrels dataset has by default)."""
    folder = cache_folder(spec, cache_dir)
    if is_beir_folder(folder) and all((folder / "qrels" / f"{s}.tsv").is_file() for s in splits or []):
        logger.info("BEIR %s: reading the local copy %s", spec, folder)
        return folder
    import datasets

    logger.info("BEIR %s: reading corpus, queries and %s-qrels through datasets.load_dataset", spec, spec)
    try:
        corpus = _single_split(datasets.load_dataset(spec, "corpus"), spec, "corpus")
        queries = _single_split(datasets.load_dataset(spec, "queries"), spec, "queries")
        qrels = datasets.load_dataset(f"{spec.rstrip('/')}-qrels")
    except (FileNotFoundError, ValueError, ConnectionError) as error:
        raise DataError(spec, f"could not be read as a BEIR dataset with configs corpus and queries and a "
                              f"{spec}-qrels dataset: {error}") from None
    missing = [s for s in splits or [] if s not in qrels]
    if missing:
        raise DataError(f"{spec}-qrels", f"has no split {missing[0]!r} (it has {', '.join(qrels)})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write_jsonl(tmp / "corpus.jsonl", corpus, ("_id", "title", "text"), spec)
        _write_jsonl(tmp / "queries.jsonl", queries, ("_id", "text"), spec)
        (tmp / "qrels").mkdir()
        for split, rows in qrels.items():
            _write_qrels(tmp / "qrels" / f"{split}.tsv", rows, f"{spec}-qrels")
        if folder.exists():  # an older copy missing a split: replaced only now that the new one is complete
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("BEIR %s: %d documents, %d queries, qrels %s -> %s", spec, len(corpus), len(queries),
                ", ".join(qrels), folder)
    return folder


def _single_split(dataset_dict, spec: str, config: str):
    if len(dataset_dict) != 1:
        raise DataError(spec, f"config {config!r} should hold one split, has {', '.join(dataset_dict)}")
    return next(iter(dataset_dict.values()))


def _write_jsonl(path: Path, rows, fields: tuple[str, ...], spec: str) -> None:
    need = [f for f in fields if f != "title"]
    absent = [f for f in need if f not in rows.column_names]
    if absent:
        raise DataError(spec, f"{path.stem} has no {absent[0]!r} column (it has {', '.join(rows.column_names)})")
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            record = {f: ("" if row.get(f) is None else str(row[f])) for f in fields if f in row}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_qrels(path: Path, rows, spec: str) -> None:
    absent = [c for c in QRELS_HEADER if c not in rows.column_names]
    if absent:
        raise DataError(spec, f"{path.stem} has no {absent[0]!r} column (it has {', '.join(rows.column_names)})")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(QRELS_HEADER) + "\n")
        for row in rows:
            handle.write(f"{row['query-id']}\t{row['corpus-id']}\t{int(row['score'])}\n")
