"""Mining at scale: hn_mine.py beside sentence-transformers' mine_hard_negatives on one synthetic pool.

Both use the same model, pool, queries, precision, batch size, sampling range and negative count, each in its
own process (peak resident memory of that process tree is reported). For sentence-transformers the encode
calls are timed inside its process by wrapping encode_document / encode_query; the rest is its search and
selection. Ours reports its own stage timings. Ratios are ours / theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from common import run_measured

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the sentence-transformers child: times its encoding, then the whole call.
ST_CHILD = r"""
import json, sys, time, torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
kwargs = {"torch_dtype": torch.bfloat16} if cfg["dtype"] == "bf16" else {}
model = SentenceTransformer(cfg["model"], device="cpu", model_kwargs=kwargs)
model.max_seq_length = cfg["max_length"]
timing = {"encode_document": 0.0, "encode_query": 0.0}
for name in timing:
    original = getattr(model, name)
    def timed(*a, _original=original, _name=name, **k):
        start = time.perf_counter(); out = _original(*a, **k); timing[_name] += time.perf_counter() - start
        return out
    setattr(model, name, timed)
pool = [json.loads(l)["text"] for l in open(cfg["pool"])]
rows = [json.loads(l) for l in open(cfg["queries"])]
data = Dataset.from_dict({"query": [r["query"] for r in rows], "positive": [r["pos"][0] for r in rows]})
start = time.perf_counter()
out = mine_hard_negatives(data, model, corpus=pool, range_min=cfg["range_min"], range_max=cfg["range_max"],
                          num_negatives=cfg["negatives"], sampling_strategy="random", batch_size=cfg["batch_size"],
                          use_faiss=cfg["use_faiss"], output_format="n-tuple", verbose=False)
total = time.perf_counter() - start
print("ST_RESULT " + json.dumps({"total_s": total, **timing, "rows": len(out)}))
"""


def synthetic(pool_size: int, n_queries: int, words_per_passage: int, seed: int, folder: Path,
              model: str) -> tuple[Path, Path]:
    """Passages of random whole words from the model's vocabulary (one token each, so lengths are realistic);
    each query is 6 words of its own positive."""
    rng = np.random.default_rng(seed)
    vocab_file = Path(model) / "vocab.txt"
    vocab = [w for w in vocab_file.read_text(encoding="utf-8").split() if w.isalpha() and len(w) >= 3]
    pool_path, query_path = folder / "pool.jsonl", folder / "queries.jsonl"
    passages = []
    with pool_path.open("w") as handle:
        for i in range(pool_size):
            words = [vocab[j] for j in rng.integers(len(vocab), size=words_per_passage)]
            passages.append(words)
            handle.write(json.dumps({"_id": str(i), "text": " ".join(words)}) + "\n")
    with query_path.open("w") as handle:
        for i in rng.choice(pool_size, size=n_queries, replace=False).tolist():
            words = passages[i]
            handle.write(json.dumps({"query": " ".join(rng.choice(words, 6)), "pos": [" ".join(words)],
                                     "pos_ids": [str(i)]}) + "\n")
    return pool_path, query_path


def main(argv: list[str] | None = None) -> None:
    from reranker.models.loading import bundled_minilm_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool_size", type=int, default=200_000, help="passages (the issue asks 200,000; "
                        "1,000,000 for the large run)")
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--words", type=int, default=32, help="words (tokens) per synthetic passage")
    parser.add_argument("--max_length", type=int, default=64, help="token budget of passages (and queries)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16"],
                        help="default: bf16 where the CPU has bf16 instructions, else fp32")
    parser.add_argument("--range", default="10-100", help="sampling range a-b")
    parser.add_argument("--negatives", type=int, default=15)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--st_without_faiss", action="store_true",
                        help="run sentence-transformers with use_faiss=False (similarity chunks of 16384 x pool)")
    parser.add_argument("--skip_st", action="store_true", help="measure ours only")
    parser.add_argument("--model", default=None, help="embedder folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--embed_backend", default="torch",
                        choices=["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"],
                        help="our miner's embedder backend (the graph must have been exported beside --model, e.g. "
                             "by benchmarks/embed_speed.py); sentence-transformers encodes with torch in --dtype")
    parser.add_argument("--index", nargs="+", default=["flat"], choices=["flat", "ivf", "hnsw"],
                        help="our faiss index; several: one run each, the first encoding the pool and the others "
                             "reading its embeddings back (their time is the index's)")
    parser.add_argument("--workdir", default=str(ROOT / "outputs/bench_mine"))
    parser.add_argument("--json", default=None, help="also write the figures here")
    a = parser.parse_args(argv)
    if a.dtype is None:
        from reranker.common.precision import cpu_has_bf16

        a.dtype = "bf16" if cpu_has_bf16() else "fp32"
    model = a.model or bundled_minilm_path()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    pool, queries = synthetic(a.pool_size, a.queries, a.words, 0, work, model)
    range_min, range_max = (int(x) for x in a.range.split("-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    results = {}

    # One run per --index: the first encodes the pool (into a cache of its own, emptied first), the others read
    # those embeddings back, so their time is the index's (building, searching, selecting).
    cache = work / "embedding_cache"
    shutil.rmtree(cache, ignore_errors=True)
    negatives = {}
    for n, index in enumerate(a.index):
        name = "reranker hn_mine.py" + (f" ({index})" if len(a.index) > 1 else "")
        out = work / f"ours_{index}.jsonl"
        ours_cmd = [sys.executable, str(ROOT / "hn_mine.py"), "--model_name_or_path", model, "--pooling", "mean",
                    "--retriever", "dense",  # the miner's default is BM25; this race is about dense mining
                    "--input_file", str(queries), "--output_file", str(out), "--candidate_pool", str(pool),
                    "--range_for_sampling", a.range, "--negative_number", str(a.negatives),
                    *(["--cache_dir", str(cache)] if len(a.index) > 1 else ["--no_cache"]), "--index", index,
                    "--embed_dtype", a.dtype, "--embed_batch_size", str(a.batch_size), "--query_max_len",
                    str(a.max_length), "--passage_max_len", str(a.max_length), "--overwrite",
                    "--embed_backend", a.embed_backend]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        _, wall, peak = run_measured(ours_cmd, env)
        summary = json.loads(out.with_name(f"ours_{index}.summary.json").read_text())
        timings = summary["timings_s"]
        results[name] = {
            "wall_s": wall, "peak_rss_mb": peak, "encode_pool_s": timings["encode_pool"],
            "passages_per_s": a.pool_size / timings["encode_pool"] if n == 0 else None,
            "search_and_select_s": timings["search"] + timings["select"],
            "queries_per_s_search": a.queries / timings["search"],
        }
        negatives[index] = [tuple(json.loads(line)["neg"]) for line in out.read_text().splitlines()]
        if n:  # how far the approximate index's negatives are from the first (exact) index's
            same = sum(x == y for x, y in zip(negatives[a.index[0]], negatives[index], strict=True))
            jaccard = np.mean([len(set(x) & set(y)) / max(1, len(set(x) | set(y)))
                               for x, y in zip(negatives[a.index[0]], negatives[index], strict=True)])
            results[name].update({f"queries_with_the_{a.index[0]}_negatives": same / len(negatives[index]),
                                  f"negatives_jaccard_with_{a.index[0]}": float(jaccard)})
    if not a.skip_st:
        cfg = {"model": model, "pool": str(pool), "queries": str(queries), "range_min": range_min,
               "range_max": range_max, "negatives": a.negatives, "batch_size": a.batch_size, "dtype": a.dtype,
               "max_length": a.max_length, "use_faiss": not a.st_without_faiss, "threads": a.threads}
        print("running sentence-transformers mine_hard_negatives ...", file=sys.stderr, flush=True)
        result, wall, peak = run_measured([sys.executable, "-c", ST_CHILD, json.dumps(cfg)], env)
        st = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("ST_RESULT"))[10:])
        rest = st["total_s"] - st["encode_document"] - st["encode_query"]
        results["sentence-transformers"] = {
            "wall_s": wall, "peak_rss_mb": peak, "encode_pool_s": st["encode_document"],
            "passages_per_s": a.pool_size / st["encode_document"], "search_and_select_s": rest,
            "queries_per_s_search": a.queries / rest,
        }
    embeddings_mb = a.pool_size * 384 * 4 / 2**20
    print(f"\npool {a.pool_size:,} synthetic passages of {a.words} words, {a.queries:,} queries, {model}, "
          f"{a.dtype} (ours: backend {a.embed_backend}), max_length {a.max_length}, batch {a.batch_size}, "
          f"range {a.range}, {a.negatives} negatives, "
          f"{a.threads} threads; pool embeddings alone: {embeddings_mb:.0f} MB\n")
    print("| system | encode passages/s | search+select s | queries/s (search+select) | wall s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        encode = "(cached)" if r["passages_per_s"] is None else f"{r['passages_per_s']:.0f}"
        print(f"| {name} | {encode} | {r['search_and_select_s']:.1f} | "
              f"{r['queries_per_s_search']:.0f} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    for name, r in results.items():
        if any(k.startswith("queries_with_the") for k in r):
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items() if "_the_" in k or "jaccard" in k))
    if "sentence-transformers" in results:
        ours, theirs = next(iter(results.values())), results["sentence-transformers"]
        print(f"\nencoding speed ratio (ours / ST): {ours['passages_per_s'] / theirs['passages_per_s']:.2f}x")
        speedup = theirs["search_and_select_s"] / ours["search_and_select_s"]
        print(f"search+select speed ratio (ours / ST): {speedup:.2f}x")
        print(f"wall time ratio (ours / ST): {ours['wall_s'] / theirs['wall_s']:.2f}x "
              f"(speed: {theirs['wall_s'] / ours['wall_s']:.2f}x)")
        print(f"peak memory ratio (ours / ST): {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"settings": vars(a), "results": results}, indent=2))


if __name__ == "__main__":
    main()
