"""Training data: seeded group sampling, the dataset of groups, and the weighted multi-dataset sampler."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset, Sampler

from reranker.common.errors import ConfigError
from reranker.data.records import GroupExample, SoftExample
from reranker.data.sources import Source

logger = logging.getLogger(__name__)

MIXING_MODES = ("mixed", "alternate", "concat")
# Length grouping sorts within windows of this many global batches, as transformers' LengthGroupedSampler does:
# batches of similar length without giving up the shuffle.
LENGTH_WINDOW_BATCHES = 50


@dataclass(frozen=True)
class Group:
    """What the collator receives: a query, its passages (positive first) and optional targets."""

    query: str
    passages: tuple[str, ...]
    teacher_scores: tuple[float, ...] | None = None
    soft_label: float | None = None


def sample_group(example: GroupExample, group_size: int, seed: int, epoch: int, source: int, index: int,
                 positives: int = 1) -> Group:
    """`positives` positives and `group_size - positives` negatives, a pure function of (seed, epoch, source,
    index).

    With fewer negatives (or positives) than needed, every one is used once and the rest are drawn with
    replacement. One positive draws exactly as before the option existed, so earlier runs reproduce.
    """
    rng = np.random.default_rng([seed, epoch, source, index])
    if positives == 1:
        picked = [int(rng.integers(len(example.pos)))]
    else:
        picked = _draw(rng, len(example.pos), positives)
    chosen = _draw(rng, len(example.neg), group_size - positives)
    passages = (*(example.pos[p] for p in picked), *(example.neg[j] for j in chosen))
    scores = None
    if example.pos_scores is not None and example.neg_scores is not None:
        scores = (*(example.pos_scores[p] for p in picked), *(example.neg_scores[j] for j in chosen))
    return Group(query=example.query, passages=passages, teacher_scores=scores)


def _draw(rng: np.random.Generator, available: int, need: int) -> list[int]:
    """`need` of `available` items: without replacement when there are enough, else each once and the rest again."""
    if need == 0:
        return []
    if available >= need:
        return rng.choice(available, size=need, replace=False).tolist()
    return rng.permutation(available).tolist() + rng.integers(available, size=need - available).tolist()


def soft_group(example: SoftExample) -> Group:
    # The teacher's probability of "relevant": softmax over its (true, false) logits.
    label = float(1.0 / (1.0 + np.exp(example.false_logit - example.true_logit)))
    # The logits themselves too: the faithful InRanker loss reads them, and P(true) rounds to 1 in float32 once
    # the teacher's margin passes about 16.
    return Group(query=example.query, passages=(example.passage,), soft_label=label,
                 teacher_scores=(example.false_logit, example.true_logit))


class GroupDataset(Dataset):
    """Groups from one or more sources. Keys are (source, index, epoch), so a group is a pure function of its key.

    The Trainer (through accelerate) calls `set_epoch` on the dataset on every path, resume included, so the
    epoch lives here and the sampler reads it.
    """

    def __init__(self, sources: list[Source], group_size: int, seed: int, positives: int = 1,
                 min_negatives: int = 1):
        """`min_negatives` 0: groups of a positive alone are allowed (a bi-encoder's in-batch negatives stand in)."""
        kinds = {s.kind for s in sources}
        if len(kinds) > 1:
            names = ", ".join(f"{s.name} ({s.kind})" for s in sources)
            raise ConfigError(f"training sources mix group records and InRanker soft-label records: {names}")
        self.sources = sources
        self.kind = kinds.pop()
        self.group_size = 1 if self.kind == "soft" else group_size
        self.positives = 1 if self.kind == "soft" else positives
        if self.kind == "group" and group_size < 1 + min_negatives:
            raise ConfigError("--train_group_size must be at least 2 for {query, pos, neg} records (one positive "
                              "and at least one negative); with 1 the group loss is zero whatever the model does")
        if self.kind == "group" and not 1 <= positives <= group_size - min_negatives:
            raise ConfigError(f"--positives_per_group must be at least 1 and below --train_group_size "
                              f"{group_size} (a group needs a negative), got {positives}")
        self.seed = seed
        self.epoch = 0
        self.offsets = np.cumsum([0] + [len(s.examples) for s in sources])
        groups = [e for s in sources if s.kind == "group" for e in s.examples]
        self.short = sum(len(e.neg) < group_size - self.positives for e in groups)
        if self.short:
            logger.warning("%d of %d queries have fewer than %d negatives: their groups repeat negatives "
                           "(sampled with replacement)", self.short, len(self), group_size - self.positives)
        self.few_positives = sum(len(e.pos) < self.positives for e in groups) if self.positives > 1 else 0
        if self.few_positives:
            logger.warning("%d of %d queries have fewer than %d positives (--positives_per_group): their groups "
                           "repeat positives (sampled with replacement)", self.few_positives, len(self),
                           self.positives)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def source_sizes(self) -> list[int]:
        return [len(s.examples) for s in self.sources]

    @functools.cached_property
    def _lengths(self) -> list[list[int]]:
        def proxy(example) -> int:
            if isinstance(example, SoftExample):
                return len(example.query) + len(example.passage)
            texts = example.pos + example.neg
            return len(example.query) + sum(map(len, texts)) // len(texts)

        return [[proxy(e) for e in s.examples] for s in self.sources]

    def approx_length(self, source: int, index: int) -> int:
        """Characters in the query plus its average passage: a cheap proxy for padded length, computed once
        (length grouping sorts by it every epoch)."""
        return self._lengths[source][index]

    def __getitem__(self, key) -> Group:
        if isinstance(key, (int, np.integer)):  # plain index: used outside our sampler
            source = int(np.searchsorted(self.offsets, key, side="right") - 1)
            key = (source, int(key - self.offsets[source]), self.epoch)
        source, index, epoch = key
        example = self.sources[source].examples[index]
        if isinstance(example, SoftExample):
            return soft_group(example)
        return sample_group(example, self.group_size, self.seed, epoch, source, index, self.positives)


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split `total` by weight (largest remainder): exact sum and stable. A source rounded to zero borrows one
    from the largest when there are enough to go round, so a small weight never silently drops a source."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    if total >= len(w):
        for i in np.flatnonzero(counts == 0):
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return counts.tolist()


def _spread(counts: list[int]) -> np.ndarray:
    """Source labels interleaved evenly and deterministically: the j-th of n_s items sits at (j + 0.5) / n_s."""
    labels = np.repeat(np.arange(len(counts)), counts)
    positions = np.concatenate([(np.arange(n) + 0.5) / n for n in counts if n]) if any(counts) else np.array([])
    return labels[np.argsort(positions, kind="stable")]


class MixingSampler(Sampler):
    """Yields dataset keys for one epoch; the same sequence on every rank (accelerate then shards the batches).

    mixed:     each batch draws its groups from the sources in proportion to the weights.
    alternate: each optimizer step (all ranks, all accumulation steps) draws from a single source; steps are
               interleaved in proportion to the weights.
    concat:    the sources concatenated and shuffled together.
    With strategy 'sequential' nothing is shuffled and the sources are interleaved evenly by weight.
    """

    def __init__(self, dataset: GroupDataset, mode: str, weights: list[float] | None, global_batch: int,
                 seed: int, strategy: str = "random"):
        if mode not in MIXING_MODES:
            raise ConfigError(f"mixing mode must be one of {MIXING_MODES}, got {mode!r}")
        if strategy not in ("random", "sequential", "group_by_length"):
            raise ConfigError(f"train_sampling_strategy {strategy!r} is not supported by the group sampler; "
                             "use random, sequential or group_by_length")
        self.dataset = dataset
        self.mode = mode
        sizes = dataset.source_sizes()
        self.weights = list(weights) if weights is not None else [float(n) for n in sizes]
        self.global_batch = global_batch
        self.seed = seed
        self.strategy = strategy
        total = len(dataset)
        if mode == "alternate":
            n_batches = -(-total // global_batch)
            self.blocks = _apportion(n_batches, self.weights)
            self.draws = [b * global_batch for b in self.blocks]
        elif mode == "mixed":
            self.draws = _apportion(total, self.weights)
        else:
            self.draws = sizes
        if len(sizes) > 1:
            logger.info("Each epoch draws %s groups from the %d sources (sizes %s, mixing %s)",
                        self.draws, len(sizes), sizes, mode)

    def __len__(self) -> int:
        return int(sum(self.draws))

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.dataset.epoch, *keys])

    def _source_order(self, source: int, count: int) -> list[int]:
        """`count` indices of one source: whole seeded permutations back to back, so oversampling cycles."""
        size = self.dataset.source_sizes()[source]
        order: list[int] = []
        lap = 0
        while len(order) < count:
            if self.strategy == "sequential":
                order.extend(range(size))
            else:
                order.extend(self._rng(1, source, lap).permutation(size).tolist())
            lap += 1
        return order[:count]

    def _by_length(self, keys: list[tuple[int, int]]) -> list[tuple[int, int]]:
        window = self.global_batch * LENGTH_WINDOW_BATCHES
        out: list[tuple[int, int]] = []
        for start in range(0, len(keys), window):
            chunk = keys[start:start + window]
            out.extend(sorted(chunk, key=lambda k: -self.dataset.approx_length(*k)))
        return out

    def _interleave(self, per_source: list[list], counts: list[int], chunk: int, stream: int) -> list:
        """Take `chunk` keys at a time from the sources, `counts[s]` times from source s, in a seeded order."""
        if self.strategy == "sequential":
            order = _spread(counts)
        else:
            order = self._rng(stream).permutation(np.repeat(np.arange(len(counts)), counts))
        cursors = [0] * len(per_source)
        keys = []
        for s in order.tolist():
            keys.extend(per_source[s][cursors[s]:cursors[s] + chunk])
            cursors[s] += chunk
        return keys

    def keys(self) -> list[tuple[int, int]]:
        """The (source, index) sequence of the current epoch."""
        per_source = [[(s, i) for i in self._source_order(s, n)] for s, n in enumerate(self.draws)]
        grouped = self.strategy == "group_by_length"
        if self.mode == "alternate":
            if grouped:
                per_source = [self._by_length(keys) for keys in per_source]
            return self._interleave(per_source, self.blocks, chunk=self.global_batch, stream=2)
        if self.mode == "mixed":
            keys = self._interleave(per_source, self.draws, chunk=1, stream=3)
        else:
            keys = [key for source_keys in per_source for key in source_keys]
            if self.strategy != "sequential":
                keys = [keys[i] for i in self._rng(4).permutation(len(keys))]
        return self._by_length(keys) if grouped else keys

    def __iter__(self):
        epoch = self.dataset.epoch
        return iter([(s, i, epoch) for s, i in self.keys()])
