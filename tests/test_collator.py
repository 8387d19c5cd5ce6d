import torch

from reranker.data.collator import GroupCollator, cut_to_budget, truncation_report
from reranker.data.groups import Group


def test_pairs_are_real_pairs_in_group_order(tokenizer):
    collator = GroupCollator(tokenizer, query_max_len=8, passage_max_len=16, pad_to_multiple_of=None)
    groups = [Group("the sky", ("blue sky", "red fire")), Group("a cat", ("the cat", "a dog"))]
    batch = collator(groups)
    assert batch["input_ids"].shape[0] == 4
    first = tokenizer.decode(batch["input_ids"][0], skip_special_tokens=False)
    assert first.startswith("[CLS] the sky [SEP] blue sky [SEP]")
    assert tokenizer.decode(batch["input_ids"][3], skip_special_tokens=True) == "a cat a dog"
    # Segment ids mark the passage.
    assert batch["token_type_ids"][0].tolist()[:7] == [0, 0, 0, 0, 1, 1, 1]
    assert "teacher_scores" not in batch and "soft_labels" not in batch


def test_long_query_is_cut_to_its_budget_and_passage_keeps_its_own(tokenizer):
    collator = GroupCollator(tokenizer, query_max_len=4, passage_max_len=6, pad_to_multiple_of=8)
    long_query = "what is the capital of france and why is the sky blue " * 20
    long_passage = "paris is the capital of france " * 20
    batch = collator([Group(long_query, (long_passage,))])
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    # [CLS] 4 query tokens [SEP] 6 passage tokens [SEP]
    assert len(ids) == 1 + 4 + 1 + 6 + 1
    assert tokenizer.decode(ids[1:5]) == "what is the capital"
    assert tokenizer.decode(ids[6:12]) == "paris is the capital of france"
    assert batch["input_ids"].shape[1] % 8 == 0  # padded to a multiple of 8


def test_targets_are_collated(tokenizer):
    collator = GroupCollator(tokenizer, 8, 8)
    batch = collator([Group("q", ("a", "b"), teacher_scores=(1.0, 0.0)), Group("r", ("c", "d"), (0.5, 0.2))])
    assert torch.equal(batch["teacher_scores"], torch.tensor([[1.0, 0.0], [0.5, 0.2]]))
    soft = collator([Group("q", ("a",), soft_label=0.9), Group("r", ("b",), soft_label=0.1)])
    assert soft["soft_labels"].shape == (2, 1)


def test_cut_to_budget_and_truncation_report(tokenizer):
    texts, cut = cut_to_budget(tokenizer, ["the sky is blue", "one two"], budget=2)
    assert texts == ["the sky", "one two"] and cut == [True, False]
    report = truncation_report(tokenizer, [Group("the sky is blue", ("a b c d e", "a"))], 3, 2)
    assert report == {"queries": 1, "queries_truncated": 1.0, "passages": 2, "passages_truncated": 0.5}
