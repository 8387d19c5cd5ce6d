"""Is one ranking better than another on the same queries, or is the gap noise? A paired randomization test on
the per-query nDCG@10 of two TREC run files.

    python benchmarks/paired_test.py --data ../shared/data/beir/nfcorpus --split test \\
        --runs outputs/pipeline/nfcorpus/report/runs/nfcorpus.bm25.trec \\
               outputs/pipeline/nfcorpus/report/runs/nfcorpus.bm25.model.trec

Each query's difference (second run minus first) has its sign flipped at random, 10,000 times (seeded); p is
the share of flips whose mean difference is at least as far from zero as the observed one (two-sided, with the
observed assignment counted). A query a run does not answer scores 0 (reranker.metrics.per_query_metrics).
Prints the mean difference, how many queries went up and down, and p.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reranker.cli import common as cli  # noqa: E402
from reranker.data.beir import load_beir  # noqa: E402
from reranker.retrieval.first_stage import read_run  # noqa: E402
from reranker.retrieval.metrics import per_query_metrics  # noqa: E402


def paired_randomization(first: np.ndarray, second: np.ndarray, flips: int = 10_000, seed: int = 0) -> dict:
    """Mean of second - first, queries up and down, and the two-sided p of the sign-flip test."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 1 or not len(first):
        raise ValueError("two equal-length, non-empty lists of per-query values are needed")
    diff = second - first
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(flips, len(diff)))
    observed = abs(diff.mean())
    # A small tolerance: flips equal to the observed mean must count despite float rounding.
    extreme = int((np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum())
    return {"queries": len(diff), "mean_difference": float(diff.mean()), "up": int((diff > 1e-12).sum()),
            "down": int((diff < -1e-12).sum()), "p": (extreme + 1) / (flips + 1)}


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the BEIR folder the runs rank")
    parser.add_argument("--split", default="test", help="its qrels split")
    parser.add_argument("--runs", nargs=2, required=True, metavar=("FIRST", "SECOND"), help="two TREC run files")
    parser.add_argument("--metric", default="nDCG@10")
    parser.add_argument("--flips", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    data = load_beir(a.data, a.split)
    values = [per_query_metrics(data.qrels, read_run(path, data))[a.metric] for path in a.runs]
    result = {"first": a.runs[0], "second": a.runs[1], "metric": a.metric,
              **paired_randomization(*values, flips=a.flips, seed=a.seed)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
