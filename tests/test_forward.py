"""Training forward passes over length-sorted slices: the scores, gradients and trained weights of one pass."""

import pytest
import torch
from conftest import TOPICS
from safetensors.torch import load_file
from test_train import args, logged_losses
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

import run
from reranker.common.errors import ConfigError
from reranker.training.forward import CPU_FORWARD_TOKENS, by_length, length_slices, resolve_forward_tokens


def pairs_batch(tokenizer):
    queries = [q for q, _, negs in TOPICS for _ in range(1 + len(negs))]
    passages = [p for _, pos, negs in TOPICS for p in [pos, *negs]]
    return tokenizer(queries, passages, padding=True, pad_to_multiple_of=8, return_tensors="pt")


def scores_and_grads(model, inputs, budget):
    model.zero_grad()
    calls = []

    def score(part):
        calls.append(part["input_ids"].shape)
        return model(**part).logits.view(-1)

    scores = by_length(score, inputs, budget)
    # A loss that weighs every pair differently: a pair put back in the wrong place changes the gradients.
    (scores * torch.arange(1, len(scores) + 1)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return scores.detach(), grads, calls


@pytest.mark.parametrize("side", ["right", "left"])
def test_slices_give_the_scores_and_gradients_of_one_pass(tiny_model, side):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.padding_side = side
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    inputs = pairs_batch(tokenizer)
    width = inputs["input_ids"].shape[1]
    whole, whole_grads, one = scores_and_grads(model, inputs, 0)
    sliced, sliced_grads, calls = scores_and_grads(model, inputs, 64)
    assert len(one) == 1 and len(calls) > 3
    assert all(rows * cols <= 64 or rows == 1 for rows, cols in calls)
    assert sum(rows for rows, _ in calls) == len(whole)
    if side == "right":
        assert any(cols < width for _, cols in calls)  # slices were cut to the columns they use
    else:  # leading padding stays: BERT numbers positions by column
        assert all(cols == width for _, cols in calls)
    assert all(cols % 8 == 0 for _, cols in calls)
    torch.testing.assert_close(sliced, whole, atol=1e-5, rtol=1e-4)
    assert sliced_grads.keys() == whole_grads.keys()
    for name in whole_grads:
        torch.testing.assert_close(sliced_grads[name], whole_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_slices_keep_every_row_once_within_the_budget_and_other_inputs_by_row():
    mask = torch.zeros(7, 40, dtype=torch.long)
    lengths = [40, 3, 17, 9, 33, 12, 5]
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    slices = [index for index, _ in length_slices(mask, 64)]
    assert sorted(torch.cat(slices).tolist()) == list(range(7))
    widths = [max(-(-lengths[i] // 8) * 8 for i in s.tolist()) for s in slices]
    assert [width for _, width in length_slices(mask, 64)] == widths
    assert all(len(s) * w <= 64 or len(s) == 1 for s, w in zip(slices, widths, strict=True))
    # Sorted by length: no slice holds a row longer than any row of the next slice.
    for a, b in zip(slices, slices[1:], strict=False):
        assert max(lengths[i] for i in a.tolist()) <= min(lengths[i] for i in b.tolist())
    # A per-pair input that is not a token row (a seq2seq decoder start) travels with its rows.
    inputs = {"attention_mask": mask, "input_ids": mask * 2, "decoder_input_ids": torch.arange(7).view(7, 1)}
    out = by_length(lambda part: part["decoder_input_ids"].view(-1) * 100 + part["attention_mask"].sum(1),
                    inputs, 64)
    assert out.tolist() == [row * 100 + n for row, n in enumerate(lengths)]


def test_defaults_and_bad_values(tiny_model, train_file, tmp_path):
    assert resolve_forward_tokens(None, "cpu") == CPU_FORWARD_TOKENS
    assert resolve_forward_tokens(None, "cuda") == 0
    assert resolve_forward_tokens(512, "cuda") == 512
    with pytest.raises(ConfigError, match="--forward_tokens"):
        run.main(args(tiny_model, train_file, tmp_path / "out", "--max_steps", "1", "--forward_tokens", "-1"))


def test_training_in_slices_equals_one_pass(tiny_model, train_file, tmp_path, caplog, monkeypatch):
    from reranker.training import trainer as trainer_module

    calls = []

    def spy(score, inputs, budget):
        calls.append(budget and inputs["attention_mask"].numel() > budget)  # whether this batch was sliced
        return by_length(score, inputs, budget)

    monkeypatch.setattr(trainer_module, "by_length", spy)
    # SGD: Adam would turn the float noise of ~0 gradients (the bias, unused positions) into full-size steps.
    common = ("--max_steps", "6", "--learning_rate", "0.5", "--optim", "sgd")
    with caplog.at_level("INFO"):
        sliced = run.main(args(tiny_model, train_file, tmp_path / "sliced", *common, "--forward_tokens", "48"))
    assert "forward passes of at most 48 padded tokens" in caplog.text
    assert len(calls) == 6 and all(calls)
    whole = run.main(args(tiny_model, train_file, tmp_path / "whole", *common, "--forward_tokens", "0"))
    assert logged_losses(sliced) == pytest.approx(logged_losses(whole), rel=1e-4)
    a = load_file(tmp_path / "sliced" / "model.safetensors")
    b = load_file(tmp_path / "whole" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)


def test_dev_ranking_in_slices_equals_one_pass(tiny_model):
    from reranker.data.collator import GroupCollator
    from reranker.models.scorers.encoder import EncoderScorer
    from reranker.training.dev_eval import DevQuery, score_dev

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    dev = [DevQuery(f"q{n}", q, tuple(f"d{n}-{i}" for i in range(1 + len(negs))), (pos, *negs), {f"d{n}-0": 1})
           for n, (q, pos, negs) in enumerate(TOPICS)]
    collator = GroupCollator(tokenizer, 16, 24)
    args = (model, EncoderScorer(tokenizer), collator, dev, 12, torch.device("cpu"))
    whole, sliced = score_dev(*args, forward_tokens=0), score_dev(*args, forward_tokens=48)
    assert whole.keys() == sliced.keys()
    for qid in whole:
        assert sliced[qid] == pytest.approx(whole[qid], abs=1e-5)


@pytest.mark.parametrize("family, side", [("seq2seq", "right"), ("decoder", "right"), ("decoder", "left")])
def test_slices_in_the_other_families(tmp_path, family, side):
    from tiny import build_tiny_family_model

    from reranker.models.loading import load_model
    from reranker.models.scorers import scorer_for

    folder = build_tiny_family_model(tmp_path / family, family)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = side
    scorer = scorer_for(AutoConfig.from_pretrained(folder), tokenizer)
    model = load_model(str(folder), tokenizer, auto_class=scorer.auto_class, **scorer.model_kwargs)
    queries = [q for q, _, negs in TOPICS for _ in range(1 + len(negs))]
    passages = [p for _, pos, negs in TOPICS for p in [pos, *negs]]
    inputs = scorer.encode(queries, passages, 16, 24, pad_to_multiple_of=8)
    budget = 2 * inputs["input_ids"].shape[1]  # two of the longest pairs a slice: several slices
    results = {}
    for name, tokens in (("whole", 0), ("sliced", budget)):
        model.zero_grad()
        scores = by_length(lambda part: scorer.scores(model, part), inputs, tokens)
        (scores * torch.arange(1, len(scores) + 1)).sum().backward()
        results[name] = scores.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        if family == "seq2seq" or scorer.has_pair_logits:
            logits = by_length(lambda part: scorer.pair_logits(model, part), inputs, tokens)
            results[name + " logits"] = logits.detach()
    torch.testing.assert_close(results["sliced"][0], results["whole"][0], atol=1e-5, rtol=1e-4)
    for name, grad in results["whole"][1].items():
        torch.testing.assert_close(results["sliced"][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    if "whole logits" in results:
        assert results["whole logits"].shape[1] == 2
        torch.testing.assert_close(results["sliced logits"], results["whole logits"], atol=1e-5, rtol=1e-4)


def test_settings_where_ranks_would_hang_are_refused():
    from types import SimpleNamespace

    from reranker.training.forward import check_slicing

    def settings(**changes):
        base = dict(fsdp=None, deepspeed=None, world_size=2, ddp_broadcast_buffers=False,
                    gradient_checkpointing=False, gradient_checkpointing_kwargs=None)
        return SimpleNamespace(**{**base, **changes})

    check_slicing(settings(), 2048)
    check_slicing(settings(gradient_checkpointing=True), 2048)  # non-reentrant: fine
    check_slicing(settings(ddp_broadcast_buffers=True, world_size=1), 2048)  # one process: nothing to wait on
    check_slicing(settings(ddp_broadcast_buffers=True, fsdp="full_shard"), 0)  # one pass: anything goes
    for changes, option in ((dict(ddp_broadcast_buffers=True), "--ddp_broadcast_buffers"),
                            (dict(gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True}),
                             "use_reentrant"),
                            (dict(fsdp="full_shard"), "--fsdp"), (dict(deepspeed="ds.json", world_size=1),
                                                                  "--deepspeed")):
        with pytest.raises(ConfigError, match=option):
            check_slicing(settings(**changes), 2048)
