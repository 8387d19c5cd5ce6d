"""Training forward passes over length-sorted slices: the scores, gradients and trained weights of one pass."""

import pytest
import torch
from conftest import TOPICS
from safetensors.torch import load_file
from test_train import args, logged_losses
from transformers import AutoModelForSequenceClassification, AutoTokenizer

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
    slices = length_slices(mask, 64)
    assert sorted(torch.cat(slices).tolist()) == list(range(7))
    widths = [max(-(-lengths[i] // 8) * 8 for i in s.tolist()) for s in slices]
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


def test_training_in_slices_equals_one_pass(tiny_model, train_file, tmp_path, caplog):
    # SGD: Adam would turn the float noise of ~0 gradients (the bias, unused positions) into full-size steps.
    common = ("--max_steps", "6", "--learning_rate", "0.5", "--optim", "sgd")
    with caplog.at_level("INFO"):
        sliced = run.main(args(tiny_model, train_file, tmp_path / "sliced", *common, "--forward_tokens", "48"))
    assert "forward passes of at most 48 padded tokens" in caplog.text
    whole = run.main(args(tiny_model, train_file, tmp_path / "whole", *common, "--forward_tokens", "0"))
    assert logged_losses(sliced) == pytest.approx(logged_losses(whole), rel=1e-4)
    a = load_file(tmp_path / "sliced" / "model.safetensors")
    b = load_file(tmp_path / "whole" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
