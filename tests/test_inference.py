import math

import pytest

from reranker import Reranker

PAIRS = [("what is the capital of france", "paris is the capital of france and a big city with a long history"),
         ("sky", "blue"), ("why is water cold", "ice"), ("a", "the cat and the dog in the tree by the river")]


@pytest.fixture
def reranker(tiny_model):
    return Reranker(str(tiny_model))


def test_scores_keep_input_order_despite_length_sorting(reranker):
    batched = reranker.compute_score(PAIRS, batch_size=2)
    one_by_one = [reranker.compute_score(pair) for pair in PAIRS]
    assert batched == pytest.approx(one_by_one, abs=1e-5)
    assert isinstance(one_by_one[0], float)
    normalized = reranker.compute_score(PAIRS, normalize=True)
    assert normalized == pytest.approx([1 / (1 + math.exp(-s)) for s in batched], abs=1e-6)


def test_rerank_sorts_and_cuts(reranker):
    passages = [p for _, p in PAIRS]
    ranked = reranker.rerank("sky", passages, top_k=2)
    scores = reranker.compute_score([("sky", p) for p in passages])
    assert [r["index"] for r in ranked] == sorted(range(4), key=lambda i: -scores[i])[:2]
    assert ranked[0]["text"] == passages[ranked[0]["index"]]


def test_long_query_does_not_crash_and_bf16_runs(reranker, tiny_model):
    long_pair = ("what is the capital " * 200, "paris")
    assert math.isfinite(reranker.compute_score(long_pair, max_length=32))
    bf16 = Reranker(str(tiny_model), dtype="bf16")
    assert bf16.compute_score(PAIRS) == pytest.approx(reranker.compute_score(PAIRS), abs=0.05)
    with pytest.raises(ValueError, match="fp16 on CPU"):
        Reranker(str(tiny_model), dtype="fp16", device="cpu")


def test_missing_model_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-model' does not exist locally"):
        Reranker(str(tmp_path / "no-such-model"))


def test_training_budgets_are_the_default_truncation(tiny_model, train_file, tmp_path):
    import json

    import run
    from reranker.data.collator import cut_to_budget
    from reranker.evaluation.arguments import EvalArguments
    from reranker.evaluation.evaluate import load_rerankers

    out = tmp_path / "out"
    run.main(["--model_name_or_path", str(tiny_model), "--train_data", str(train_file), "--output_dir", str(out),
              "--train_group_size", "3", "--per_device_train_batch_size", "2", "--query_max_len", "5",
              "--passage_max_len", "7", "--max_steps", "1", "--save_steps", "1", "--use_cpu"])
    for folder in (out, out / "checkpoint-1"):
        saved = json.loads((folder / "config.json").read_text())["reranker"]
        assert saved == {"query_max_len": 5, "passage_max_len": 7, "max_length": 15}  # + [CLS] and two [SEP]
    trained = Reranker(str(out))
    assert trained.max_length == 15
    # Each side cut to its own budget, as the training collator cut it (not 15 tokens shared longest-first).
    query, passage = "what is the capital of france " * 3, "paris is the capital of france and a big city " * 3
    (cut_query,), _ = cut_to_budget(trained.tokenizer, [query], 5)
    (cut_passage,), _ = cut_to_budget(trained.tokenizer, [passage], 7)
    wide = Reranker(str(out), max_length=64)  # an explicit length wins: one budget for the pair
    assert wide.max_length == 64
    assert trained.compute_score((query, passage)) == pytest.approx(wide.compute_score((cut_query, cut_passage)),
                                                                     abs=1e-5)
    assert wide.compute_score((query, passage)) != pytest.approx(trained.compute_score((query, passage)), abs=1e-5)
    args = EvalArguments(models=[str(out)], datasets=[str(train_file)])
    assert args.rerank_max_length is None  # read from the model
    assert load_rerankers(args)["out"].max_length == 15
    assert Reranker(str(tiny_model)).max_length == 512  # a model we did not train: as before
