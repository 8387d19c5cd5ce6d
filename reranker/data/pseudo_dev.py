"""Reading a pseudo-dev folder (reranker-synth --pseudo_dev; written by reranker.workflows.pseudo_dev): synthetic
queries over a corpus, each with the document it was made from as its one relevant document, standing in for
judged dev queries where a corpus has none."""

from __future__ import annotations

import json
from pathlib import Path

from reranker.common.errors import ConfigError, DataError
from reranker.common.hashing import file_digest
from reranker.data.beir import load_queries, read_qrels

SUMMARY = "pseudo_dev.json"


def check_target(out: Path, overwrite: bool) -> None:
    """A pseudo-dev folder may replace only an earlier pseudo-dev folder (one holding its summary), and only with
    overwrite: never a folder of the user's."""
    if not out.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not (out / SUMMARY).is_file():
        raise FileExistsError(f"{out} exists and is not a pseudo-dev folder (no {SUMMARY}): not replaced; name a new "
                              "folder")


def load_pseudo_dev(folder: str, corpus_path: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(queries, qrels) of a pseudo-dev folder, refused unless it was built over this very corpus file."""
    where = Path(folder)
    summary_path = where / SUMMARY
    if not summary_path.is_file():
        raise DataError(folder, f"is not a pseudo-dev folder ({SUMMARY} is missing; reranker-synth --pseudo_dev "
                                "writes one)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(str(summary_path), f"is not valid JSON ({error.msg}, line {error.lineno})") from None
    if summary.get("corpus_sha256") != file_digest(corpus_path):
        raise ConfigError(f"--pseudo_dev {folder} was built over {summary.get('corpus')}, not over {corpus_path} "
                          "(the corpus files differ): its queries' sources would not be this corpus's documents")
    queries = load_queries(where / "queries.jsonl")
    qrels = read_qrels(where / "dev_qrels.tsv")
    unknown = [q for q in qrels if q not in queries]
    if unknown:
        raise DataError(str(where / "dev_qrels.tsv"), f"{len(unknown)} queries are not in queries.jsonl, e.g. "
                                                      f"{unknown[0]!r}")
    return {q: queries[q] for q in qrels}, qrels
