"""benchmarks/group_agreement.py: BM25's own verdict on a training file's groups."""

import json
import math

import numpy as np
import pytest
from conftest import load_benchmark, write_jsonl

from reranker.common.errors import ConfigError


def load_tool():
    return load_benchmark("group_agreement")


def test_agreement_by_hand():
    tool = load_tool()
    result = tool.agreement([np.array([2.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])])
    assert result["groups"] == 2
    assert result["positive_above_negative"] == pytest.approx(0.5)  # 1.0 and 0.0
    assert result["positive_tied_with_negative"] == pytest.approx(0.25)  # 0.0 and 0.5
    expected = ((math.log(math.exp(2) + 2) - 2) + (math.log(2 + math.e) - 0)) / 2
    assert result["group_loss"] == pytest.approx(expected)


def test_groups_that_agree_and_disagree_with_bm25(tmp_path):
    tool = load_tool()
    berlin, bread = "The capital of Germany is Berlin.", "Bread is baked in an oven."
    corpus = tmp_path / "beir"
    write_jsonl(corpus / "corpus.jsonl", [{"_id": "d0", "title": "", "text": berlin},
                                          {"_id": "d1", "title": "", "text": bread}])
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"query": "capital of germany", "pos": [berlin], "neg": [bread]},  # BM25 agrees
        {"query": "capital of germany", "pos": [bread], "neg": [berlin]},  # BM25 disagrees
        {"query": "capital of germany", "pos": [berlin]},  # no negatives: skipped, as run.py does
        {"query": "capital of germany", "pos": [berlin], "neg": ["not a pool document"]},
    ])
    out = tmp_path / "agreement.json"
    result = tool.main(["--train_data", str(train), "--corpus", str(corpus), "--train_group_size", "2",
                        "--json", str(out)])
    assert result["groups"] == 2 and result["positive_above_negative"] == pytest.approx(0.5)
    assert result["skipped_no_negatives"] == 1 and result["skipped_outside_pool"] == 1
    assert result["chance_loss"] == pytest.approx(math.log(2))
    assert json.loads(out.read_text()) == result
    only_bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "pos": [berlin]}])
    with pytest.raises(ConfigError, match="no group could be scored"):
        tool.main(["--train_data", str(only_bad), "--corpus", str(corpus)])
