import logging
import re

import pytest
from conftest import write_jsonl

from reranker.common.errors import DataError
from reranker.data.records import parse_group
from reranker.data.sources import load_source


def test_aliases_and_scores(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"query": "q", "positive": ["p"], "negative": ["n1", "n2"], "pos_scores": [3], "neg_scores": [1, 0.5]},
    ])
    (example,) = load_source(str(path), group_size=3).examples
    assert example.pos == ("p",) and example.neg == ("n1", "n2")
    assert example.pos_scores == (3.0,) and example.neg_scores == (1.0, 0.5)


@pytest.mark.parametrize("row, message", [
    ({"pos": ["p"], "neg": ["n"]}, "field 'query': missing"),
    ({"query": "q", "neg": ["n"]}, "field 'pos': missing"),
    ({"query": "q", "pos": [], "neg": ["n"]}, "field 'pos': is empty"),
    ({"query": "q", "pos": "p", "neg": ["n"]}, r"field 'pos': expected a list of strings, got str \(wrap it"),
    ({"query": 7, "pos": ["p"], "neg": ["n"]}, "field 'query': expected a string, got int"),
    ({"query": "q", "pos": ["p"], "neg": ["n", 3]}, r"field 'neg\[1\]': expected a string, got int"),
    ({"query": "q", "pos": ["p"], "neg": ""}, "field 'neg': expected a list of strings, got str"),
    ({"query": "q", "pos": ["p"], "neg": 0}, "field 'neg': expected a list of strings, got int"),
    ({"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [1], "neg_scores": [1, 2]},
     "field 'neg_scores': has 2 scores for 1 'neg' texts"),
    ({"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [1]},
     "field 'pos_scores': 'pos_scores' given without the other"),
    ({"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [True], "neg_scores": [1]},
     r"field 'pos_scores\[0\]': expected a finite number, got True"),
])
def test_bad_rows_name_file_line_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"query": "ok", "pos": ["p"], "neg": ["n"]}, row])
    with pytest.raises(DataError, match=r"bad\.jsonl:2 " + message):
        load_source(str(path), group_size=2)


def test_records_without_negatives_are_skipped_and_counted(tmp_path, caplog):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"query": "q1", "pos": ["p"], "neg": ["n"]}, {"query": "q2", "pos": ["p"]}, {"query": "q3", "pos": ["p"]},
    ])
    with caplog.at_level(logging.WARNING):
        source = load_source(str(path), group_size=4)
    assert len(source.examples) == 1 and source.skipped_no_negatives == 2
    assert "skipped 2 of 3 records that have no negatives" in caplog.text
    # Group size 1 (pointwise) needs no negatives: nothing is skipped.
    assert len(load_source(str(path), group_size=1).examples) == 3


def test_inranker_rows_and_mixed_formats(tmp_path):
    soft = {"query": "q", "contents": "c", "true_logit": 2.0, "false_logit": -1}
    (example,) = load_source(str(write_jsonl(tmp_path / "s.jsonl", [soft])), group_size=8).examples
    assert example.passage == "c" and example.true_logit == 2.0
    mixed = write_jsonl(tmp_path / "m.jsonl", [soft, {"query": "q", "pos": ["p"], "neg": ["n"]}])
    with pytest.raises(DataError, match=r"m\.jsonl:2: mixes formats"):
        load_source(str(mixed), group_size=2)
    with pytest.raises(DataError, match="field 'false_logit': missing"):
        load_source(str(write_jsonl(tmp_path / "x.jsonl", [{"query": "q", "contents": "c", "true_logit": 1}])), 2)


def test_folder_of_jsonl_files_in_name_order(tmp_path):
    write_jsonl(tmp_path / "d" / "b.jsonl", [{"query": "second", "pos": ["p"], "neg": ["n"]}])
    write_jsonl(tmp_path / "d" / "a.jsonl", [{"query": "first", "pos": ["p"], "neg": ["n"]}])
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    source = load_source(str(tmp_path / "d"), group_size=2)
    assert [e.query for e in source.examples] == ["first", "second"]


@pytest.fixture
def no_hub(monkeypatch):
    """datasets.load_dataset fails the test if called: reaching it may mean a trip to the hub."""
    import datasets

    def fail(*args, **kwargs):
        raise AssertionError(f"datasets.load_dataset{args} was called")

    monkeypatch.setattr(datasets, "load_dataset", fail)


def test_hub_ids_go_to_load_dataset_with_config_and_split(monkeypatch):
    import datasets

    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"query": "from the hub", "pos": ["p"], "neg": ["n1", "n2"]}])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    source = load_source("owner/name", group_size=3, sub_data_name="beta", split="dev")
    assert calls == [("owner/name", "beta", "dev")]
    assert [e.query for e in source.examples] == ["from the hub"] and source.examples[0].neg == ("n1", "n2")


@pytest.mark.parametrize("spec", [
    "data/trian.jsonl", "data/trian", "./trian", "../trian", "~/surely-not-here-7f3a", "trian.parquet", "a/b/c",
    "trian",
])
def test_missing_local_paths_fail_at_once_without_the_hub(tmp_path, monkeypatch, no_hub, spec):
    """A typo used to be sent to the hub: about 23 s of retries, then 'hub unreachable'."""
    (tmp_path / "data").mkdir()  # so data/trian is a local path with a typo, not the hub dataset data/trian
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(spec) + ".* does not exist"):
        load_source(spec, group_size=2)


def test_folder_without_jsonl_is_refused_without_load_dataset(tmp_path, no_hub):
    """load_dataset read stray .txt files as data (and wrote a copy into the user's datasets cache)."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("not training data\n")
    (tmp_path / "d" / "train.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"d: holds no \*\.jsonl files and is not a saved Hugging Face dataset"):
        load_source(str(tmp_path / "d"), group_size=2)


def test_miner_output_folder_is_training_data(tmp_path, no_hub):
    """Folders give their *.jsonl files only: the miner's mined.summary.json beside mined.jsonl is not data."""
    write_jsonl(tmp_path / "round" / "mined.jsonl", [{"query": "q", "pos": ["p"], "neg": ["n"]}])
    (tmp_path / "round" / "mined.summary.json").write_text('{\n  "pool_size": 9\n}\n')
    assert [e.query for e in load_source(str(tmp_path / "round"), group_size=2).examples] == ["q"]
    # Named explicitly, a file is read as JSON lines whatever its suffix.
    explicit = write_jsonl(tmp_path / "train.json", [{"query": "q2", "pos": ["p"], "neg": ["n"]}])
    assert [e.query for e in load_source(str(explicit), group_size=2).examples] == ["q2"]


def test_save_to_disk_folder_and_bad_row_in_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"query": "q", "pos": ["p"], "neg": ["n"]}, {"query": "q2", "pos": [], "neg": ["n"]}]
                               ).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataError, match=r"saved split 'train':2 field 'pos': is empty"):
        load_source(str(tmp_path / "saved"), group_size=2)


def test_parse_group_keeps_order():
    example = parse_group({"query": "q", "pos": ["a", "b"], "neg": ["c", "d"]}, "f", 1)
    assert example.pos == ("a", "b") and example.neg == ("c", "d")
