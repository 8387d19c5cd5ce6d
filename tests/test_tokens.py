"""TokenizedTexts: tokenized once, batched exactly as the tokenizer batches."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from reranker.models.tokens import TokenizedTexts, _compact, fast_backend

TEXTS = ["the sky is blue", "", "why is the sky blue because light from the sun is scattered " * 5,
         "paris, the capital of france!", "a", "water freezes at zero degrees celsius and becomes ice"]


def expected(tokenizer, texts, rows, max_length, prefix):
    return tokenizer([prefix + texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                     return_tensors="pt")


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("padding_side, truncation_side", [("right", "right"), ("left", "left")])
def test_batches_equal_the_tokenizers(tiny_model_master, fast, padding_side, truncation_side):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_master, use_fast=fast)
    tokenizer.padding_side, tokenizer.truncation_side = padding_side, truncation_side
    for prefix in ("", "query: "):
        tokens = TokenizedTexts(tokenizer, TEXTS, max_length=12, prefix=prefix, chunk=4)  # chunks of 4 and 2
        assert len(tokens) == len(TEXTS)
        real = [int(m.sum()) for m in expected(tokenizer, TEXTS, range(6), 12, prefix)["attention_mask"]]
        assert tokens.lengths.tolist() == real
        assert tokens.lengths[2] == 12  # the long text was cut
        for rows in ([2, 0, 5], [1], [4, 3], list(range(6))):
            ours, theirs = tokens.batch(rows), expected(tokenizer, TEXTS, rows, 12, prefix)
            assert ours.keys() == theirs.keys()
            for name in theirs:
                assert ours[name].dtype == torch.int64
                assert torch.equal(ours[name], theirs[name]), (prefix, rows, name)


def test_compact_ids_and_a_missing_pad_token(tokenizer):
    tokens = TokenizedTexts(tokenizer, TEXTS, max_length=16)
    assert len(tokens.ids) == 1 and tokens.ids[0].dtype == np.uint16 and len(tokens.ids[0]) == tokens.lengths.sum()
    assert tokens.types == [None]  # single texts: all segment ids 0, none stored
    assert _compact([[1, 70000], [2]], np.uint16, np.int32).tolist() == [1, 70000, 2]  # ids past 2 bytes kept whole
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        TokenizedTexts(tokenizer, TEXTS, max_length=16)


def test_a_decoder_tokenizer_left_padded_and_split_special_tokens(tmp_path, tiny_model_master):
    from tiny import build_tiny_word_tokenizer

    decoder = build_tiny_word_tokenizer(tmp_path / "decoder", "decoder")
    decoder.pad_token, decoder.padding_side = decoder.eos_token, "left"
    bert = AutoTokenizer.from_pretrained(tiny_model_master)
    bert.split_special_tokens = True
    texts = [*TEXTS, "[SEP] hi there </s> <s>"]
    for tokenizer in (decoder, bert):
        tokens = TokenizedTexts(tokenizer, texts, max_length=10)
        for rows in ([6, 2, 0], list(range(7))):
            ours, theirs = tokens.batch(rows), expected(tokenizer, texts, rows, 10, "")
            assert ours.keys() == theirs.keys()
            for name in theirs:
                assert torch.equal(ours[name], theirs[name]), (type(tokenizer).__name__, rows, name)


def test_a_tokenizer_class_with_its_own_encoding_is_not_bypassed(tiny_model_master):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_master)
    assert fast_backend(tokenizer, 8) is not None

    class Shouting(type(tokenizer)):
        def _encode_plus(self, *args, **kwargs):  # work of its own before the backend
            return super()._encode_plus(*args, **kwargs)

    tokenizer.__class__ = Shouting
    assert fast_backend(tokenizer, 8) is None
    tokens = TokenizedTexts(tokenizer, TEXTS, max_length=8)  # through the tokenizer's own call
    assert torch.equal(tokens.batch([0, 2])["input_ids"], expected(tokenizer, TEXTS, [0, 2], 8, "")["input_ids"])
