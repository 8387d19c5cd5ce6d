"""BEIR data by hub id: a folder laid out like BeIR/<name> (dataset card with corpus and queries configs) and
BeIR/<name>-qrels, read through datasets.load_dataset into a local BEIR folder, then evaluated like any folder."""

import json

import pytest

from reranker.common.errors import DataError
from reranker.data.beir import load_beir
from reranker.data.beir_hub import cache_folder, is_hub_layout, materialize

CARD = """---
configs:
- config_name: corpus
  data_files:
  - split: corpus
    path: corpus.jsonl
- config_name: queries
  data_files:
  - split: queries
    path: queries.jsonl
---
"""
DOCS = [("d1", "Paris", "Paris is the capital of France."), ("d2", "", "Berlin is the capital of Germany."),
        ("d3", "", "Bread is baked in an oven.")]
QUERIES = [("1", "capital of france"), ("2", "capital of germany"), ("3", "how is bread made")]


def hub_layout(root):
    repo = root / "BeIR" / "toy"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text(CARD)
    (repo / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n"
                                               for i, t, x in DOCS))
    (repo / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": x}) + "\n" for i, x in QUERIES))
    qrels = root / "BeIR" / "toy-qrels"
    qrels.mkdir()
    (qrels / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n2\td2\t1\n")
    (qrels / "train.tsv").write_text("query-id\tcorpus-id\tscore\n3\td3\t1\n")
    return repo


def test_hub_layout_becomes_a_local_beir_folder(tmp_path):
    repo = hub_layout(tmp_path)
    assert is_hub_layout(str(repo)) and is_hub_layout("BeIR/scifact")
    assert not is_hub_layout(str(tmp_path / "nothing")) and not is_hub_layout("data/train.jsonl")
    cache = tmp_path / "cache"
    folder = materialize(str(repo), ["test"], str(cache))
    assert folder == cache_folder(str(repo), str(cache)) == cache / "BeIR" / "toy"
    data = load_beir(folder, "test")
    assert data.name == "toy" and data.corpus["d1"] == "Paris Paris is the capital of France."
    assert data.queries == {"1": "capital of france", "2": "capital of germany"}
    assert data.qrels == {"1": {"d1": 1}, "2": {"d2": 1}}
    assert load_beir(folder, "train").qrels == {"3": {"d3": 1}}
    # Read once: a second call reuses the folder without loading the dataset again.
    mtime = (folder / "corpus.jsonl").stat().st_mtime_ns
    assert materialize(str(repo), ["test"], str(cache)) == folder
    assert (folder / "corpus.jsonl").stat().st_mtime_ns == mtime
    with pytest.raises(DataError, match="toy-qrels: has no split 'dev'"):
        materialize(str(repo), ["dev"], str(cache))
    assert is_hub_layout(str(repo)) and (folder / "qrels" / "test.tsv").is_file()  # the old copy is intact


def test_eval_reads_a_hub_layout_dataset(tmp_path, monkeypatch):
    from reranker.cli import eval as eval_cli

    repo = hub_layout(tmp_path)
    monkeypatch.setattr("reranker.data.beir_hub.DEFAULT_CACHE", str(tmp_path / "cache"))
    rows = eval_cli.main(["--datasets", str(repo), "--first_stage", "bm25", "--top_k", "3", "--cache_dir", "none"])
    assert [(r["dataset"], r["system"], r["queries"]) for r in rows] == [("toy", "bm25", 2)]
    assert rows[0]["nDCG@10"] == pytest.approx(1.0)


def test_pipeline_config_takes_a_hub_id(tmp_path, monkeypatch):
    import yaml

    from reranker.workflows.pipeline import PipelineConfig

    repo = hub_layout(tmp_path)
    monkeypatch.setattr("reranker.data.beir_hub.DEFAULT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"beir": str(repo), "output_dir": str(tmp_path / "out"), "dev_queries": 0}))
    config = PipelineConfig.load(str(path))
    assert config.beir == str(tmp_path / "cache" / "BeIR" / "toy")
    assert (tmp_path / "cache" / "BeIR" / "toy" / "qrels" / "train.tsv").is_file()
