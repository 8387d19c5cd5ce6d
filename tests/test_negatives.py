"""select_negatives on hand-built rankings where the right answer is known."""

import numpy as np

from reranker.common.text import normalize_text
from reranker.mining.negatives import SelectionRules, select_negatives

KEYS = [f"p{i}" for i in range(20)]


def pick(rows, scores=None, rules=None, positive_rows=(), positive_keys=(), query_key="query", pos_score=None, qi=0):
    rows = np.asarray(rows)
    scores = np.asarray(scores if scores is not None else np.linspace(1, 0, len(rows)), dtype=np.float32)
    rules = rules or SelectionRules(2, 6, 3)
    return select_negatives(rows, scores, KEYS, set(positive_rows), set(positive_keys), query_key, pos_score, rules,
                            qi)


def test_samples_only_from_the_range_in_rank_order_and_seeded():
    ranking = list(range(12))
    chosen = pick(ranking).rows
    assert len(chosen) == 3 and set(chosen) <= {2, 3, 4, 5}
    assert chosen == sorted(chosen)  # stable: rank order
    assert pick(ranking).rows == chosen  # same seed and query -> same choice
    assert {tuple(pick(ranking, qi=q).rows) for q in range(20)} != {tuple(chosen)}  # varies by query


def test_positives_query_and_duplicates_are_never_negatives():
    keys = KEYS.copy()
    keys[4] = keys[3]  # row 4 is a duplicate of row 3
    keys[5] = "the query"
    keys[6] = normalize_text("P7 ")  # a positive's text under another row
    rules = SelectionRules(0, 8, 8)
    sel = select_negatives(np.arange(10), np.linspace(1, 0, 10, dtype=np.float32), keys, {1}, {"p7"},
                           "the query", None, rules, 0)
    assert 1 not in sel.rows and 4 not in sel.rows and 5 not in sel.rows and 6 not in sel.rows and 7 not in sel.rows
    assert sel.excluded == 5  # row 1 (positive id), 4 (duplicate), 5 (query), 6 and 7 (positive text)
    assert 3 in sel.rows


def test_relative_and_absolute_false_negative_filters():
    scores = [0.99, 0.95, 0.9, 0.85, 0.8, 0.5, 0.4, 0.3]
    rules = SelectionRules(0, 8, 8, relative_threshold=0.9)
    # Positive scored 1.0: everything above 0.9 is a likely unlabelled positive.
    sel = pick(range(8), scores, rules, pos_score=1.0)
    assert sel.rows == [2, 3, 4, 5, 6, 7] and sel.false_negatives == 2
    absolute = pick(range(8), scores, SelectionRules(0, 8, 8, absolute_threshold=0.6))
    assert absolute.rows == [5, 6, 7] and absolute.false_negatives == 5
    # The stricter of the two applies; a non-positive positive score disables the relative rule.
    both = pick(range(8), scores, SelectionRules(0, 8, 8, 0.9, 0.82), pos_score=1.0)
    assert both.rows == [4, 5, 6, 7]
    assert pick(range(8), scores, rules, pos_score=-0.5).false_negatives == 0


def test_filtered_count_ignores_ranks_above_the_range():
    sel = pick(range(8), [0.99, 0.98, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], SelectionRules(2, 8, 3, absolute_threshold=0.9))
    assert sel.false_negatives == 0


def test_top_up_from_below_the_range_when_short():
    # Range 2-6 holds rows 2..5, two of which are positives: only 2 left for 3 wanted.
    sel = pick(range(12), rules=SelectionRules(2, 6, 3), positive_rows={2, 4})
    assert sel.rows == [3, 5, 6] and sel.topped_up == 1
    # Nothing left anywhere: a short list, never a positive.
    short = pick([0, 1, 2, 3], rules=SelectionRules(0, 4, 5), positive_rows={0})
    assert short.rows == [1, 2, 3] and short.topped_up == 0


def test_faiss_padding_is_ignored():
    sel = pick([3, 4, -1, -1], rules=SelectionRules(0, 4, 4))
    assert sel.rows == [3, 4]
