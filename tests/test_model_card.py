"""The model card: built from dicts, updated by reranker-eval, written by reranker-train beside the weights."""

from __future__ import annotations

import json

import yaml
from conftest import write_jsonl

import eval as eval_cli
import run
from reranker.training import model_card

INFO = {"name": "my-reranker", "base_model": "sentence-transformers/all-MiniLM-L6-v2", "license": "apache-2.0",
        "base_model_name": "all-MiniLM-L6-v2", "train_data": [{"name": "train.jsonl", "queries": 1234},
                                                              {"name": "extra.jsonl", "queries": 56}],
        "group_size": 8, "positives": 1, "query_max_len": 64, "passage_max_len": 256, "max_length": 323,
        "steps": 500, "learning_rate": 2e-5, "batch_size": 8, "world_size": 2, "gradient_accumulation_steps": 1,
        "loss": "softmax_ce", "precision": "bf16", "seed": 42}
DEV = {"dev_file": "/data/dev.jsonl", "queries": 60, "saved_step": 400,
       "saved": {"step": 400, "nDCG@10": 0.71234, "MRR@10": 0.65, "first_stage_nDCG@10": 0.6543,
                 "first_stage_MRR@10": 0.6}}
ROWS = [
    {"dataset": "scifact", "first_stage": "bm25", "system": "bm25", "nDCG@10": 0.665},
    {"dataset": "scifact", "first_stage": "bm25", "system": "bm25 > my-reranker", "nDCG@10": 0.7, "MRR@10": 0.66,
     "Recall@100": 0.9, "MAP": 0.65, "delta_nDCG@10": 0.035},
    {"dataset": "scifact", "first_stage": "bm25", "system": "bm25 > my-reranker @10", "nDCG@10": 0.69},
    {"dataset": "scifact", "first_stage": "bm25", "system": "bm25 > my-reranker + fusion", "nDCG@10": 0.72},
    {"dataset": "scifact", "first_stage": "bm25", "system": "bm25 > other", "nDCG@10": 0.5},
]


def test_card_has_hub_metadata_training_budgets_dev_metrics_and_loading():
    text = model_card.build_card(INFO, DEV)
    meta, body = model_card.parse(text)
    assert meta == {"library_name": "transformers", "pipeline_tag": "text-ranking", "tags": model_card.TAGS,
                    "base_model": "sentence-transformers/all-MiniLM-L6-v2", "license": "apache-2.0"}
    for expected in ("`train.jsonl` (1,234 queries), `extra.jsonl` (56 queries)", "8 passages per query (1 positive)",
                     "query 64, passage 256 tokens (323 for the pair", "| Steps | 500 |", "| Learning rate | 2e-05 |",
                     "16 queries per step (8 per device x 2 device(s)", "| Precision | bf16 |",
                     "`dev.jsonl` (60 queries)", "step 400", "| This model | 0.7123 | 0.6500 |",
                     "| First stage | 0.6543 | 0.6000 |", 'Reranker("my-reranker")',
                     'AutoModelForSequenceClassification.from_pretrained("my-reranker")', "max_length=323",
                     "Not evaluated yet"):
        assert expected in body, expected
    assert model_card.is_ours(text)
    local = model_card.build_card({**INFO, "base_model": None, "license": None, "base_model_name": "ckpt"})
    assert "base_model" not in model_card.parse(local)[0] and "`ckpt` (a local checkpoint)" in local
    assert "## Dev metrics" not in local


def test_evaluation_results_merge_into_table_and_model_index():
    results = model_card.results_from_rows(ROWS, "my-reranker", "test", 100)
    assert results == [{"dataset": "scifact", "split": "test", "first_stage": "bm25", "top_k": 100,
                        "metrics": {"nDCG@10": 0.7, "MRR@10": 0.66, "Recall@100": 0.9, "MAP": 0.65,
                                    "first_stage_nDCG@10": 0.7 - 0.035}}]
    card = model_card.build_card(INFO, DEV)
    once = model_card.with_evaluation(card, "my-reranker", results)
    newer = [{**results[0], "metrics": {"nDCG@10": 0.75}},
             {"dataset": "pairs.jsonl", "split": "test", "first_stage": "own candidates", "top_k": None,
              "metrics": {"nDCG@10": 0.8, "AUC": 0.9}}]
    twice = model_card.with_evaluation(once, "my-reranker", newer)
    meta, body = model_card.parse(twice)
    (model,) = meta["model-index"]
    assert model["name"] == "my-reranker"
    scifact, pairs = model["results"]  # the scifact result replaced, not repeated
    assert scifact["task"]["type"] == "text-ranking"
    assert scifact["dataset"] == {"name": "scifact", "type": "scifact", "split": "test",
                                  "args": {"first_stage": "bm25", "top_k": 100}}
    assert scifact["metrics"] == [{"type": "ndcg_at_10", "value": 0.75, "name": "nDCG@10"}]
    assert pairs["dataset"]["args"] == {"first_stage": "own candidates"}
    assert "| scifact | test | bm25 | 100 | 0.7500 |" in body and "| pairs.jsonl | test | own candidates |" in body
    assert "Not evaluated yet" not in body and body.count("## Evaluation") == 1
    # Everything else is kept as it was.
    for section in ("## Training", "## Dev metrics"):
        start = card.index(section)
        assert card[start:card.index("\n## ", start + 3)] in twice
    assert card[card.index("## How to load"):] in twice
    assert model_card.parse(twice)[0]["tags"] == model_card.TAGS


def test_only_our_local_cards_are_updated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not model_card.record_evaluation("sentence-transformers/all-MiniLM-L6-v2", ROWS, "test", 100)
    assert not (tmp_path / "sentence-transformers").exists()
    theirs = tmp_path / "my-reranker"
    theirs.mkdir()
    (theirs / "README.md").write_text("---\nlicense: mit\n---\n\nSomeone else's card.\n")
    assert not model_card.record_evaluation(str(theirs), ROWS, "test", 100)
    assert (theirs / "README.md").read_text() == "---\nlicense: mit\n---\n\nSomeone else's card.\n"


def test_trained_folder_gets_a_card_that_eval_fills_in(tiny_model, train_file, tmp_path):
    dev = write_jsonl(tmp_path / "dev.jsonl", [
        {"query": "what is the capital of france", "candidates": [{"id": "a", "text": "berlin is in germany"},
                                                                 {"id": "b", "text": "paris is the capital"}],
         "relevance": {"b": 1}}])
    out = tmp_path / "reranker"
    trainer = run.main(["--model_name_or_path", str(tiny_model), "--train_data", str(train_file), "--output_dir",
                        str(out), "--train_group_size", "3", "--per_device_train_batch_size", "2", "--max_steps",
                        "2", "--save_steps", "2", "--use_cpu", "--dev_file", str(dev), "--learning_rate", "1e-3"])
    card = (out / "README.md").read_text()
    meta, body = model_card.parse(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-ranking"
    assert "base_model" not in meta  # a local checkpoint
    assert "`train.jsonl` (12 queries)" in body and "| Steps | 2 |" in body and "| Precision | fp32 |" in body
    saved = json.loads((out / "dev_metrics.json").read_text())["saved"]
    assert f"| This model | {saved['nDCG@10']:.4f} |" in body
    trainer.create_model_card()  # what --push_to_hub calls: our card stays
    assert (out / "README.md").read_text() == card

    rows = eval_cli.main(["--models", str(out), str(tiny_model), "--datasets", str(train_file), "--output_dir",
                          str(tmp_path / "eval"), "--cache_dir", "none"])
    meta, body = model_card.parse((out / "README.md").read_text())
    (result,) = meta["model-index"][0]["results"]
    ours = next(r for r in rows if r["system"] == "reranker")
    assert result["dataset"]["name"] == "train.jsonl"
    assert {m["name"]: m["value"] for m in result["metrics"]}["nDCG@10"] == round(ours["nDCG@10"], 6)
    assert "| train.jsonl | test | own candidates |" in body and "## Training" in body
    assert not (tiny_model / "README.md").exists()  # a folder without our card is left alone
    assert yaml.safe_load((out / "README.md").read_text().split("---\n")[1])["tags"] == model_card.TAGS
