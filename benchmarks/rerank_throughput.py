"""Reranking throughput: Reranker.compute_score beside FlagReranker.compute_score and CrossEncoder.predict.

Same model, pairs, batch size, max length, precision and threads, measured in this process after a warm-up
each, in interleaved rounds (the best of each system kept). FlagEmbedding's reranker runs in fp32 on CPU
whatever it is asked, so in bf16 it has no entry. Prints pairs/s and the ratios ours / theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def beir_pairs(folder: Path, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Test queries paired with corpus documents at random: real query and passage lengths."""
    from reranker.common.files import iter_jsonl

    docs = [(r.get("title", "") + " " + r["text"]).strip() for _, r in iter_jsonl(folder / "corpus.jsonl")]
    queries = [r["text"] for _, r in iter_jsonl(folder / "queries.jsonl")]
    rng = random.Random(seed)
    return [(rng.choice(queries), rng.choice(docs)) for _ in range(n)]


def toy_pairs(n: int) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (ROOT / "data/toy/test.jsonl").read_text().splitlines()]
    pairs = [(r["query"], p) for r in rows for p in r["pos"] + r["neg"]]
    return (pairs * (n // len(pairs) + 1))[:n]


def timed(fn, pairs, warmup) -> float:
    fn(pairs[:warmup])
    start = time.perf_counter()
    fn(pairs)
    return len(pairs) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    import torch

    from reranker import Reranker
    from reranker.models.loading import bundled_minilm_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="cross-encoder checkpoint (default: bundled MiniLM)")
    parser.add_argument("--beir", default=str(ROOT.parent / "shared/data/beir/scifact"),
                        help="BEIR folder to draw pairs from (the toy data when it is missing)")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=3, help="measurements per system, interleaved; best kept")
    a = parser.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = a.model or bundled_minilm_path()
    pairs = beir_pairs(Path(a.beir), a.pairs) if (Path(a.beir) / "corpus.jsonl").exists() else toy_pairs(a.pairs)
    warmup = min(64, len(pairs))
    results: dict[str, dict[str, float]] = {}
    for dtype in a.dtypes:
        from FlagEmbedding import FlagReranker
        from sentence_transformers import CrossEncoder

        ours = Reranker(model, dtype=None if dtype == "fp32" else dtype, device="cpu")
        kwargs = {"torch_dtype": torch.bfloat16} if dtype == "bf16" else {}
        cross = CrossEncoder(model, device="cpu", max_length=a.max_length, model_kwargs=kwargs)
        systems = {
            "reranker Reranker": lambda p, r=ours: r.compute_score(p, batch_size=a.batch_size,
                                                                   max_length=a.max_length),
            "sentence-transformers CrossEncoder": lambda p, r=cross: r.predict(p, batch_size=a.batch_size,
                                                                               show_progress_bar=False),
        }
        if dtype == "fp32":  # FlagReranker casts to fp32 on CPU whatever it is asked
            flag = FlagReranker(model, use_fp16=False, devices="cpu")
            systems["FlagEmbedding FlagReranker"] = lambda p, r=flag: r.compute_score(p, batch_size=a.batch_size,
                                                                                      max_length=a.max_length)
        # Rounds interleave the systems, and each round starts with a different one: oneDNN builds kernels for
        # each new input shape on first sight, which would otherwise always cost whoever goes first. Best kept.
        names = list(systems)
        for r in range(a.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn = systems[name]
                rate = timed(fn, pairs, warmup)
                results.setdefault(name, {})[dtype] = max(rate, results.get(name, {}).get(dtype, 0.0))

    print(f"\n{len(pairs)} pairs, batch {a.batch_size}, max_length {a.max_length}, {a.threads} threads, "
          f"model {model}\n")
    print("| system | " + " | ".join(f"{d} pairs/s" for d in a.dtypes) + " |")
    print("|---|" + "---|" * len(a.dtypes))
    for name, by_dtype in results.items():
        print(f"| {name} | " + " | ".join(f"{by_dtype[d]:.1f}" if d in by_dtype else "n/a" for d in a.dtypes) + " |")
    ours = results["reranker Reranker"]
    for name, by_dtype in results.items():
        if name == "reranker Reranker":
            continue
        for d in a.dtypes:
            if d in by_dtype:
                print(f"ratio ours / {name} ({d}): {ours[d] / by_dtype[d]:.2f}x")


if __name__ == "__main__":
    main()
