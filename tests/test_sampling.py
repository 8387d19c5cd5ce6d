import logging
from collections import Counter

import pytest

from reranker.common.errors import ConfigError
from reranker.data.groups import GroupDataset, MixingSampler, _apportion, sample_group
from reranker.data.records import GroupExample
from reranker.data.sources import Source

EXAMPLE = GroupExample("q", ("p0", "p1"), tuple(f"n{i}" for i in range(10)), (9.0, 8.0),
                       tuple(float(i) for i in range(10)))


def test_sample_group_is_pure_and_varies_by_epoch():
    a = sample_group(EXAMPLE, 5, seed=1, epoch=0, source=0, index=3)
    assert a == sample_group(EXAMPLE, 5, seed=1, epoch=0, source=0, index=3)
    assert a.passages[0] in EXAMPLE.pos and len(a.passages) == 5
    assert len(set(a.passages[1:])) == 4 and set(a.passages[1:]) <= set(EXAMPLE.neg)
    epochs = {sample_group(EXAMPLE, 5, seed=1, epoch=e, source=0, index=3).passages for e in range(6)}
    assert len(epochs) > 1
    # Teacher scores follow their passages.
    for passage, score in zip(a.passages[1:], a.teacher_scores[1:], strict=True):
        assert score == float(passage[1:])
    assert a.teacher_scores[0] == (9.0 if a.passages[0] == "p0" else 8.0)


def test_too_few_negatives_uses_each_then_repeats():
    example = GroupExample("q", ("p",), ("a", "b", "c"))
    group = sample_group(example, 8, seed=0, epoch=0, source=0, index=0)
    counts = Counter(group.passages[1:])
    assert sum(counts.values()) == 7 and set(counts) == {"a", "b", "c"}


def test_one_positive_draws_as_before_the_option():
    # The draws of runs made before --positives_per_group existed: one positive index, then the negatives.
    import numpy as np

    for index in range(20):
        rng = np.random.default_rng([1, 0, 0, index])
        p = int(rng.integers(2))
        negatives = rng.choice(10, size=4, replace=False).tolist()
        group = sample_group(EXAMPLE, 5, seed=1, epoch=0, source=0, index=index)
        assert group.passages == (EXAMPLE.pos[p], *(EXAMPLE.neg[j] for j in negatives))


def test_several_positives_lead_the_group():
    example = GroupExample("q", tuple(f"p{i}" for i in range(5)), tuple(f"n{i}" for i in range(10)),
                           tuple(float(i) for i in range(5)), tuple(10.0 + i for i in range(10)))
    group = sample_group(example, 8, seed=3, epoch=0, source=0, index=1, positives=3)
    assert len(group.passages) == 8
    assert len(set(group.passages[:3])) == 3 and set(group.passages[:3]) <= set(example.pos)
    assert len(set(group.passages[3:])) == 5 and set(group.passages[3:]) <= set(example.neg)
    for passage, score in zip(group.passages, group.teacher_scores, strict=True):
        assert score == (float(passage[1:]) if passage[0] == "p" else 10.0 + float(passage[1:]))
    # Two positives for three places: both used, one again.
    short = sample_group(EXAMPLE, 6, seed=1, epoch=0, source=0, index=0, positives=3)
    assert set(short.passages[:3]) == {"p0", "p1"} and set(short.passages[3:]) <= set(EXAMPLE.neg)


def test_positives_per_group_is_checked_and_short_queries_counted(caplog):
    source = Source("s", [EXAMPLE, GroupExample("q2", tuple("abc"), tuple("defgh"))], "group")
    with pytest.raises(ConfigError, match="below --train_group_size 4"):
        GroupDataset([source], group_size=4, seed=0, positives=4)
    with pytest.raises(ConfigError, match="at least 1"):
        GroupDataset([source], group_size=4, seed=0, positives=0)
    with caplog.at_level(logging.WARNING):
        dataset = GroupDataset([source], group_size=6, seed=0, positives=3)
    assert dataset.few_positives == 1 and "1 of 2 queries have fewer than 3 positives" in caplog.text
    # Negatives needed: group size less the positives. q2's 5 fill 8 - 3 places, not 8 - 2.
    assert GroupDataset([source], group_size=8, seed=0, positives=3).short == 0
    assert GroupDataset([source], group_size=8, seed=0, positives=2).short == 1
    assert sorted(dataset[(0, 1, 0)].passages[:3]) == ["a", "b", "c"]


def _dataset(sizes, seed=0):
    sources = [Source(f"s{s}", [GroupExample(f"s{s}q{i}" + "x" * (i % 7), ("p",), ("n",)) for i in range(n)], "group")
               for s, n in enumerate(sizes)]
    return GroupDataset(sources, group_size=2, seed=seed)


def test_apportion_is_exact_and_keeps_every_source():
    assert _apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(_apportion(1000, [33, 33, 34])) == 1000
    assert _apportion(100, [1, 300]) == [1, 99]  # a tiny weight still gets drawn from
    assert _apportion(1, [1, 1]) == [1, 0]  # not enough to go round: as many as there are


def test_concat_covers_each_example_once_and_is_seeded():
    dataset = _dataset([5, 7])
    sampler = MixingSampler(dataset, "concat", None, global_batch=4, seed=3)
    keys = sampler.keys()
    assert sorted(keys) == sorted([(0, i) for i in range(5)] + [(1, i) for i in range(7)])
    assert keys == MixingSampler(dataset, "concat", None, 4, seed=3).keys()
    dataset.set_epoch(1)
    assert sampler.keys() != keys  # a new epoch, a new order
    assert all(epoch == 1 for *_, epoch in sampler)


def test_mixed_follows_weights():
    dataset = _dataset([10, 10, 10])
    keys = MixingSampler(dataset, "mixed", [1, 2, 7], global_batch=5, seed=0).keys()
    assert len(keys) == 30
    assert Counter(s for s, _ in keys) == {0: 3, 1: 6, 2: 21}
    # Source 2 is drawn 21 times from 10 examples: each at least twice (whole permutations back to back).
    assert min(Counter(i for s, i in keys if s == 2).values()) == 2


def test_alternate_global_batches_come_from_one_source():
    dataset = _dataset([12, 24])
    sampler = MixingSampler(dataset, "alternate", [1, 1], global_batch=4, seed=0)
    keys = sampler.keys()
    batches = [keys[i:i + 4] for i in range(0, len(keys), 4)]
    assert len(batches) == 9  # ceil(36 / 4), split 1:1 by weight -> 5 and 4 batches
    assert all(len({s for s, _ in b}) == 1 for b in batches)
    assert sorted(Counter(b[0][0] for b in batches).values()) == [4, 5]


def test_group_by_length_sorts_within_windows():
    dataset = _dataset([300])
    sampler = MixingSampler(dataset, "concat", None, global_batch=2, seed=0, strategy="group_by_length")
    keys = sampler.keys()
    window = 2 * 50
    lengths = [dataset.approx_length(*k) for k in keys]
    for start in range(0, len(keys), window):
        chunk = lengths[start:start + window]
        assert chunk == sorted(chunk, reverse=True)
    assert sorted(keys) == [(0, i) for i in range(300)]


def test_sequential_keeps_order_and_bad_strategy_is_refused():
    dataset = _dataset([4])
    assert MixingSampler(dataset, "concat", None, 2, 0, strategy="sequential").keys() == [(0, i) for i in range(4)]
    # Mixed and sequential: sources interleaved evenly by weight, not one after the other.
    two = _dataset([4, 4])
    keys = MixingSampler(two, "mixed", [1, 1], 2, 0, strategy="sequential").keys()
    assert [s for s, _ in keys] == [0, 1] * 4
    assert [i for s, i in keys if s == 0] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="batch_rebalance"):
        MixingSampler(dataset, "concat", None, 2, 0, strategy="batch_rebalance")


def test_dataset_plain_index_and_short_negatives_warning(caplog):
    dataset = _dataset([2, 3])
    assert dataset[3].query.startswith("s1q1")
    assert dataset.short == 0
    with caplog.at_level(logging.WARNING):
        short = GroupDataset([Source("s", [GroupExample("q", ("p",), ("n",))], "group")], group_size=4, seed=0)
    assert short.short == 1
    assert "1 of 1 queries have fewer than 3 negatives" in caplog.text
