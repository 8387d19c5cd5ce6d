"""Demo check: how often a reranker scores the positive above every negative of a {query, pos, neg} file."""

from __future__ import annotations

import argparse
import logging

from transformers import set_seed

from reranker import Reranker
from reranker.data.records import parse_group
from reranker.data.sources import iter_rows

logger = logging.getLogger("demo_score")


def positive_first_rate(reranker: Reranker, data: str, batch_size: int = 64) -> tuple[float, int]:
    groups = [parse_group(row, where, line) for where, line, row in iter_rows(data)]
    pairs = [(g.query, p) for g in groups for p in g.pos[:1] + g.neg]
    scores = reranker.compute_score(pairs, batch_size=batch_size, show_progress=True)
    wins, start = 0, 0
    for g in groups:
        n = 1 + len(g.neg)
        group_scores = scores[start:start + n]
        wins += all(group_scores[0] > s for s in group_scores[1:])
        start += n
    return wins / len(groups), len(groups)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="cross-encoder checkpoint folder")
    parser.add_argument("--data", required=True, help="{query, pos, neg} jsonl file")
    parser.add_argument("--label", default="", help="what to call this model in the output line")
    parser.add_argument("--dtype", default="auto", choices=["fp32", "bf16", "fp16", "auto"],
                        help="auto: bf16 where the CPU or GPU has it natively, else fp32")
    parser.add_argument("--seed", type=int, default=0, help="seeds the new head of an untrained checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # A checkpoint without a ranking head gets a random one at load time: seed it so "before" is reproducible.
    set_seed(args.seed)
    rate, n = positive_first_rate(Reranker(args.model, dtype=args.dtype), args.data)
    guess = 1 / 6
    print(f"{args.label or args.model}: positive ranked first in {rate:.1%} of {n} test queries "
          f"(random guessing: about {guess:.0%})", flush=True)


if __name__ == "__main__":
    main()
