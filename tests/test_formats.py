"""The peers' training data formats (sentence-transformers columns, Tevatron passages) read as our groups: mapping,
errors naming file, line and field, and both formats through reranker-train and reranker-mine."""

import json

import pytest
from conftest import TOPICS, write_jsonl
from test_mining import POOL, mine
from test_train import args

from reranker.cli import train as train_cli
from reranker.common.errors import DataError
from reranker.data.records import parse_group, to_group_row
from reranker.data.sources import load_source


def st_rows() -> list[dict]:
    return [{"anchor": q, "positive": pos, **{f"negative_{i + 1}": n for i, n in enumerate(negs)}}
            for q, pos, negs in TOPICS]


def tevatron_rows() -> list[dict]:
    return [{"query_id": str(i), "query": q, "positive_passages": [{"docid": f"p{i}", "title": "", "text": pos}],
             "negative_passages": [{"docid": f"n{i}.{j}", "title": "", "text": n} for j, n in enumerate(negs)]}
            for i, (q, pos, negs) in enumerate(TOPICS)]


def test_sentence_transformers_columns():
    assert to_group_row({"anchor": "q", "positive": "p", "negative": "n"}, "f", 1) == \
        {"query": "q", "pos": ["p"], "neg": ["n"]}
    assert to_group_row({"query": "q", "positive": ["p1", "p2"], "negative": ["n"], "id": 7}, "f", 1) == \
        {"query": "q", "pos": ["p1", "p2"], "neg": ["n"], "id": 7}
    # negative_1 .. negative_n in numeric order (negative_10 after negative_2), and pairs without negatives.
    row = {"query": "q", "positive": "p", "negative_10": "c", "negative_2": "b", "negative_1": "a"}
    assert parse_group(row, "f", 1).neg == ("a", "b", "c")
    assert parse_group({"anchor": "q", "positive": "p"}, "f", 1).neg == ()


def test_tevatron_passages():
    row = {"query_id": "3", "query_text": "q", "positive_passages": [{"docid": 11, "title": "T", "text": "body"}],
           "negative_passages": [{"docid": "x", "title": None, "text": "other"}, {"text": "third"}]}
    example = parse_group(row, "f", 1)
    assert example.query == "q" and example.pos == ("T body",) and example.neg == ("other", "third")
    # Rewritten in place into our format: the miner writes it back so; the positives' docids become pos_ids.
    assert row == {"query": "q", "pos": ["T body"], "pos_ids": ["11"], "neg": ["other", "third"], "query_id": "3"}
    assert to_group_row({"query": "q", "positive_passages": [{"text": "p"}]}, "f", 1) == \
        {"query": "q", "pos": ["p"], "neg": []}  # no docids, no pos_ids


def test_our_rows_are_left_as_they_are():
    row = {"query": "q", "positive": ["p"], "negative": ["n"], "positive_scores": [1], "negative_scores": [0]}
    assert parse_group(row, "f", 1).pos_scores == (1.0,)
    assert row == {"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [1], "neg_scores": [0]}
    ours = {"query": "q", "pos": ["p"], "neg": ["n"], "extra": 1}
    parse_group(ours, "f", 1)
    assert list(ours) == ["query", "pos", "neg", "extra"]


@pytest.mark.parametrize("row, message", [
    ({"query": "q", "pos": ["p"], "positive_passages": [{"text": "p"}]},
     "field 'positive_passages': mixes formats: 'pos' is a field of our group rows, 'positive_passages' of "
     "Tevatron rows"),
    ({"query": "q", "pos": ["p"], "negative_1": "n"}, "field 'negative_1': mixes formats"),
    ({"anchor": "q", "positive": "p", "negative_passages": []}, "field 'negative_passages': mixes formats"),
    ({"anchor": "q", "query": "q", "positive": "p"}, "field 'query': 'anchor' and 'query' both given"),
    ({"query": "q", "query_text": "q", "positive_passages": [{"text": "p"}]},
     "field 'query_text': 'query' and 'query_text' both given"),
    ({"query": "q", "positive": "p", "negative": "n", "negative_1": "m"},
     "field 'negative_1': 'negative' and 'negative_1' both given"),
    ({"anchor": "q", "negative": "n"}, "field 'positive': missing"),
    ({"positive": "p"}, "field 'anchor': missing"),
    ({"query": "q", "positive": 3}, "field 'positive': expected a string or a list of strings, got int"),
    ({"query": "q", "positive": ""}, "field 'positive': is empty"),
    ({"query": "q", "positive": "p", "negative_1": None}, "field 'negative_1': expected a string, got NoneType"),
    ({"query": "q", "negative_passages": []}, "field 'positive_passages': missing"),
    ({"positive_passages": [{"text": "p"}]}, "field 'query': missing"),
    ({"query": "q", "positive_passages": [{"title": "t"}]}, r"field 'positive_passages\[0\].text': missing"),
    ({"query": "q", "positive_passages": ["p"]}, r"field 'positive_passages\[0\]': expected a \{docid"),
    ({"query": "q", "positive_passages": []}, "field 'positive_passages': is empty"),
    ({"query": "q", "positive_passages": [{"docid": "a", "text": "p"}, {"text": "r"}]},
     r"field 'positive_passages\[1\].docid': missing, while other passages"),
    ({"query": "q", "positive_passages": [{"docid": "a", "text": "p"}], "pos_ids": ["a"]}, "field 'pos_ids'"),
    ({"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [1], "positive_scores": [1]},
     "field 'positive_scores': 'pos_scores' and 'positive_scores' both given"),
])
def test_bad_rows_name_file_line_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"anchor": "ok", "positive": "p", "negative": "n"}, row])
    with pytest.raises(DataError, match=r"bad\.jsonl:2 " + message):
        load_source(str(path), group_size=2)


def test_inranker_row_with_group_fields_is_refused(tmp_path):
    row = {"query": "q", "contents": "c", "true_logit": 1.0, "false_logit": 0.0, "pos": ["p"]}
    with pytest.raises(DataError, match=r"s\.jsonl:1 field 'pos': mixes formats: an InRanker row"):
        load_source(str(write_jsonl(tmp_path / "s.jsonl", [row])), group_size=1)


def test_one_file_may_hold_rows_of_several_formats(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [st_rows()[0], tevatron_rows()[1],
                                              {"query": "q", "pos": ["p"], "neg": ["n"]}])
    assert [e.query for e in load_source(str(path), group_size=2).examples] == [TOPICS[0][0], TOPICS[1][0], "q"]


@pytest.mark.parametrize("rows", [st_rows, tevatron_rows])
def test_peer_formats_train_end_to_end(tiny_model, tmp_path, rows):
    data = write_jsonl(tmp_path / "train.jsonl", rows())
    trainer = train_cli.main(args(tiny_model, data, tmp_path / "out", "--max_steps", "2"))
    assert trainer.state.global_step == 2
    (source,) = trainer.train_dataset.sources
    assert [(e.query, e.pos, e.neg) for e in source.examples] == [(q, (p,), tuple(n)) for q, p, n in TOPICS]


def test_peer_formats_mine_end_to_end(tmp_path):
    # The first of test_mining's records in each format: BM25's known answers are the same, and the output is our
    # format, with the user's other fields (query_id) and the Tevatron positive's docid as pos_ids.
    paris = {"docid": "d0", "title": "Paris", "text": "Paris is the capital of France."}
    tevatron = [{"query_id": "q0", "query": "what is the capital of france", "positive_passages": [paris],
                 "negative_passages": [{"docid": "old", "title": "", "text": "old"}]}]
    bm25 = ("--retriever", "bm25", "--range_for_sampling", "0-7", "--negative_number", "4")
    (row,), _ = mine(tmp_path, *bm25, records=tevatron)
    assert row["neg"][0] == "France has many cities; its capital draws tourists."
    assert len(row["neg"]) == 4 and set(row["neg"][1:]) == {p["text"] for p in POOL[3:6]}
    assert row["pos"] == ["Paris Paris is the capital of France."] and row["pos_ids"] == ["d0"]
    assert set(row) == {"query", "pos", "pos_ids", "neg", "query_id"}

    st = [{"anchor": "capital of germany", "positive": "The capital of Germany is Berlin.", "negative": "old"}]
    (row,), _ = mine(tmp_path, *bm25, "--overwrite", records=st)
    assert set(row) == {"query", "pos", "neg"} and row["pos"] == ["The capital of Germany is Berlin."]
    assert "The capital of Germany is Berlin." not in row["neg"] and len(row["neg"]) == 4
    # What the miner writes is read back as our group format.
    (example,) = load_source(str(tmp_path / "mined.jsonl"), group_size=2).examples
    assert example.query == "capital of germany" and len(example.neg) == 4
    lines = (tmp_path / "mined.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["query"] == "capital of germany"
