"""One corpus reader behind the evaluator's BEIR folders, the miner's pools and the synthesizer's documents."""

import pytest
from conftest import write_jsonl

from reranker.common.errors import DataError
from reranker.data.beir import load_beir
from reranker.mining.pool import pool_from_beir, pool_from_jsonl
from reranker.synth.synthesize import load_documents

CORPUS = [
    {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France."},
    {"_id": "d2", "text": "  Berlin is the capital of Germany.  "},  # no title, padded text
    {"_id": "d3", "title": None, "text": "Rome is in Italy."},
    {"_id": 4, "title": "Bread ", "text": " is baked in an oven."},  # an int id; spaces at the join
    {"_id": "d5", "title": "Only a title", "text": ""},
]
JOINED = {"d1": "Paris Paris is the capital of France.", "d2": "Berlin is the capital of Germany.",
          "d3": "Rome is in Italy.", "4": "Bread   is baked in an oven.", "d5": "Only a title"}


def beir_folder(tmp_path, corpus):
    folder = tmp_path / "beir"
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", [{"_id": "q1", "text": "capital"}])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


READERS = {
    "evaluator": lambda folder: load_beir(folder).corpus,
    "miner (BEIR)": lambda folder: dict(zip(pool_from_beir(folder).ids, pool_from_beir(folder).texts, strict=True)),
    "miner (pool)": lambda folder: (lambda p: dict(zip(p.ids, p.texts, strict=True)))(
        pool_from_jsonl(folder / "corpus.jsonl")),
    "synthesizer": lambda folder: {d.id: d.full for d in load_documents(str(folder))},
}


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_joins_title_and_text_alike(tmp_path, reader):
    assert READERS[reader](beir_folder(tmp_path, CORPUS)) == JOINED


@pytest.mark.parametrize("reader", READERS)
def test_duplicate_ids_are_refused_naming_both_lines(tmp_path, reader):
    """The evaluator kept the last of two records with one id, the miner refused: now all refuse."""
    corpus = [*CORPUS[:3], {"_id": "d1", "title": "", "text": "another Paris"}]
    with pytest.raises(DataError, match=r"corpus\.jsonl:4 field '_id': duplicate id 'd1', first on line 1"):
        READERS[reader](beir_folder(tmp_path, corpus))


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("record, message", [
    ({"_id": "x", "title": 3, "text": "t"}, r":2 field 'title': expected a string, got int"),
    ({"_id": "x", "body": "t"}, r":2 field 'text': missing or not a string"),
    ({"_id": ["x"], "text": "t"}, r":2 field '_id': expected a string or an integer, got list"),
])
def test_bad_records_are_refused_alike(tmp_path, reader, record, message):
    with pytest.raises(DataError, match=r"corpus\.jsonl" + message):
        READERS[reader](beir_folder(tmp_path, [CORPUS[0], record]))


def test_ids_are_required_in_beir_and_all_or_none_in_pools(tmp_path):
    folder = beir_folder(tmp_path, [CORPUS[0], {"text": "no id"}])
    with pytest.raises(DataError, match=r"corpus\.jsonl:2 field '_id': missing"):
        load_beir(folder)
    with pytest.raises(DataError, match=r"corpus\.jsonl:2 field '_id': missing, though earlier records have one"):
        pool_from_jsonl(folder / "corpus.jsonl")
    pool = pool_from_jsonl(write_jsonl(tmp_path / "p.jsonl", [{"text": " a "}, {"title": "T", "text": "b"}]))
    assert pool.ids is None and pool.texts == ["a", "T b"]
    docs = load_documents(str(tmp_path / "p.jsonl"))
    assert [d.id for d in docs] == ["line-1", "line-2"] and [d.full for d in docs] == ["a", "T b"]
