"""BEIR folders: corpus.jsonl, queries.jsonl and qrels/<split>.tsv, validated, with the known quirks handled."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from reranker.common.errors import DataError
from reranker.common.files import iter_jsonl, iter_lines
from reranker.common.hashing import digest_of, file_digest
from reranker.data.corpus import iter_corpus

logger = logging.getLogger(__name__)

QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass
class BeirData:
    name: str
    corpus: dict[str, str]  # doc id -> title + " " + text
    queries: dict[str, str]  # query id -> text, only the queries judged in this split
    qrels: dict[str, dict[str, int]]  # graded relevance kept for nDCG
    missing_docs: int  # qrels entries whose doc is not in the corpus (kept: they count as unretrieved)
    fingerprint: str  # content hash of the files read, for caching first-stage runs


def is_beir_folder(path: str | Path) -> bool:
    return (Path(path) / "corpus.jsonl").is_file()


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> document id -> grade, from a header line and `query-id<TAB>corpus-id<TAB>score` lines.

    A pair judged twice keeps its last grade, with a warning that counts them: refusing would block a downloaded
    benchmark that the user cannot fix, and keeping the last is what a dict-based reader would do anyway."""
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None or tuple(first[1].strip().split("\t")) != QRELS_HEADER:
        found = first[1].strip() if first else "an empty file"
        raise DataError(str(path), f"expected the header 'query-id<TAB>corpus-id<TAB>score', found {found!r}", line=1)
    qrels: dict[str, dict[str, int]] = {}
    repeated, conflicting, example = 0, 0, None
    for number, line in lines:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(str(path), f"expected 3 tab-separated fields, found {len(fields)}", line=number)
        try:
            score = int(fields[2])
        except ValueError:
            raise DataError(str(path), f"relevance {fields[2]!r} is not an integer", line=number,
                            field="score") from None
        judged = qrels.setdefault(fields[0], {})
        if fields[1] in judged:
            repeated += 1
            conflicting += judged[fields[1]] != score
            example = example or (fields[0], fields[1], number)
        judged[fields[1]] = score
    if repeated:
        logger.warning("%s: %d (query, document) pairs are judged more than once, %d with different grades; the "
                       "last grade of each is kept (e.g. query %r, document %r again on line %d)", path, repeated,
                       conflicting, *example)
    return qrels


def load_queries(path: Path) -> dict[str, str]:
    """query id -> text; a query id given twice is refused, naming both lines (as for corpus ids)."""
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, row in iter_jsonl(path):
        if "_id" not in row or not isinstance(row.get("text"), str):
            raise DataError(str(path), "needs '_id' and a string 'text'", line=line)
        qid = str(row["_id"])
        if qid in lines:
            raise DataError(str(path), f"duplicate id {qid!r}, first on line {lines[qid]}", line=line, field="_id")
        lines[qid] = line
        queries[qid] = row["text"]
    return queries


def load_beir(folder: str | Path, split: str = "test", qrels_path: str | Path | None = None) -> BeirData:
    """The folder's corpus and queries with the qrels of `split` (or the qrels file at `qrels_path`)."""
    folder = Path(folder)
    paths = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
             "qrels": Path(qrels_path) if qrels_path else folder / "qrels" / f"{split}.tsv"}
    for what, path in paths.items():
        if not path.is_file():
            raise DataError(str(folder), f"is not a complete BEIR folder: {path} ({what}) is missing")
    corpus = {passage.id: passage.full for passage in iter_corpus(paths["corpus"])}
    all_queries = load_queries(paths["queries"])
    qrels = read_qrels(paths["qrels"])
    unknown = [q for q in qrels if q not in all_queries]
    if unknown:
        raise DataError(str(paths["qrels"]), f"{len(unknown)} judged queries are not in queries.jsonl, e.g. "
                                             f"{unknown[0]!r}")
    missing = sum(d not in corpus for judged in qrels.values() for d in judged)
    if missing:
        logger.warning("%s: %d qrels entries name documents missing from the corpus; kept (they count as never "
                       "retrieved)", folder, missing)
    queries = {q: all_queries[q] for q in qrels}
    fingerprint = digest_of([split, *(file_digest(p) for p in paths.values())], 24)
    return BeirData(folder.name, corpus, queries, qrels, missing, fingerprint)
