"""benchmarks/compare_peers.py: the training file all three systems share."""

import json

from conftest import load_benchmark, write_jsonl


def load_tool():
    return load_benchmark("compare_peers")


def test_records_without_negatives_are_left_out_for_every_system(tmp_path):
    # FlagEmbedding divides by len(neg) and the sentence-transformers driver samples from it: an empty list
    # crashed the quick comparison once BM25 mining left 40 scifact queries without negatives.
    rows = [{"query": "a", "pos": ["p"], "neg": ["n1", "n2"]},
            {"query": "b", "pos": ["p"], "neg": []},
            {"query": "c", "pos": ["p"], "neg": ["n3"]},
            {"query": "d", "pos": ["p"]}]
    mined = write_jsonl(tmp_path / "mined.jsonl", rows)
    path, kept, skipped = load_tool().trainable_file(str(mined), tmp_path / "train.jsonl")
    assert (kept, skipped) == (2, 2)
    written = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [r["query"] for r in written] == ["a", "c"] and written[0] == rows[0]
    assert path == str(tmp_path / "train.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mined.jsonl", "train.jsonl"]  # no temporary left


def test_peers_train_in_the_configs_precision(monkeypatch):
    from reranker.common import precision

    tool = load_tool()
    monkeypatch.delenv(precision.AUTO_ENV, raising=False)
    monkeypatch.setattr(precision, "default_device_type", lambda: "cpu")
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert tool.shared_options({"auto_bf16": True}, 10)["bf16"] is False
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert tool.shared_options({"auto_bf16": True}, 10)["bf16"] is True
    assert tool.shared_options({"bf16": True}, 10)["bf16"] is True
    assert tool.shared_options({}, 10)["bf16"] is False  # run.py's own default: fp32
