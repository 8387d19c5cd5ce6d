"""How far a training file's groups agree with BM25: one group per record, sampled as run.py samples its first
epoch, scored by BM25 itself.

    python benchmarks/group_agreement.py --train_data outputs/pipeline/nfcorpus/data/mined.jsonl \\
        --corpus ../shared/data/beir/nfcorpus

Prints the share of (positive, negative) pairs that BM25 orders right and BM25's group softmax loss against
chance, ln(group size). A reranker only reorders its first stage's top candidates; groups that BM25 gets mostly
wrong (nfcorpus's random judged documents against BM25's unjudged top ones) ask the model to rank against the
first stage it will rerank. Every passage must be a pool document (matched by text); groups with other texts
(synth.py crops, say) and records without negatives are skipped and counted.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reranker.cli import common as cli  # noqa: E402
from reranker.common.errors import ConfigError  # noqa: E402
from reranker.common.text import normalize_text  # noqa: E402
from reranker.data.groups import sample_group  # noqa: E402
from reranker.data.records import parse_group  # noqa: E402
from reranker.data.sources import iter_rows  # noqa: E402
from reranker.mining.pool import pool_from_beir, pool_from_jsonl  # noqa: E402
from reranker.retrieval.search import BM25  # noqa: E402

logger = logging.getLogger("group_agreement")


def agreement(groups: list[np.ndarray]) -> dict:
    """Each array: one group's scores, the positive first. Shares of (positive, negative) pairs per group,
    averaged over groups; the group softmax loss of the scores as logits."""
    above = [float(np.mean(g[0] > g[1:])) for g in groups]
    tied = [float(np.mean(g[0] == g[1:])) for g in groups]
    losses = [float(np.log(np.exp(g - g.max()).sum()) - (g[0] - g.max())) for g in groups]
    return {"groups": len(groups), "positive_above_negative": float(np.mean(above)),
            "positive_tied_with_negative": float(np.mean(tied)), "group_loss": float(np.mean(losses))}


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_data", required=True, help="a {query, pos, neg} jsonl file, as run.py reads it")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--corpus", help="a BEIR folder whose corpus.jsonl holds every passage")
    where.add_argument("--candidate_pool", help="a jsonl of {text} or {_id, title, text} passages")
    parser.add_argument("--train_group_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42, help="run.py's --seed")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.train_group_size < 2:
        raise ConfigError("--train_group_size must be at least 2 (a positive and a negative)")
    pool = pool_from_beir(args.corpus) if args.corpus else pool_from_jsonl(args.candidate_pool)
    bm25 = BM25(pool.texts)
    groups, no_negatives, outside_pool, no_terms = [], 0, 0, 0
    index = 0  # run.py's index: records without negatives are skipped before indexing
    for path, line, row in iter_rows(args.train_data):
        example = parse_group(row, path, line)
        if not example.neg:
            no_negatives += 1
            continue
        group = sample_group(example, args.train_group_size, args.seed, 0, 0, index)
        index += 1
        rows = [pool.by_key.get(normalize_text(text)) for text in group.passages]
        if any(r is None for r in rows):
            outside_pool += 1
            continue
        try:
            groups.append(np.asarray(bm25.score_rows(example.query, rows), dtype=np.float64))
        except IndexError:  # bm25s cannot score a query that is all stop words: every passage scores 0
            no_terms += 1
            groups.append(np.zeros(len(rows)))
    if not groups:
        raise ConfigError(f"{args.train_data}: no group could be scored ({no_negatives} records without negatives, "
                          f"{outside_pool} groups with passages outside the pool)")
    result = {"train_data": args.train_data, "train_group_size": args.train_group_size, "seed": args.seed,
              **agreement(groups), "chance_loss": math.log(args.train_group_size),
              "skipped_no_negatives": no_negatives, "skipped_outside_pool": outside_pool,
              "queries_without_bm25_terms": no_terms}
    logger.info("%s: %d groups; BM25 puts the positive above a negative in %.1f%% of pairs (tied in %.1f%%); "
                "BM25's group loss %.3f (chance %.3f); skipped %d records without negatives and %d groups with "
                "passages outside the pool", args.train_data, result["groups"],
                100 * result["positive_above_negative"], 100 * result["positive_tied_with_negative"],
                result["group_loss"], result["chance_loss"], no_negatives, outside_pool)
    if args.json:
        from reranker.common.files import write_json

        write_json(Path(args.json), result)
    return result


if __name__ == "__main__":
    sys.exit(cli.run(main, logger))
