"""Has a reranker learnt its teacher? Ranks dev queries' BM25 candidates with BM25, the embedder, the two fused
(the teacher `hn_mine.py --embedder_teacher --teacher_bm25_weight W` writes) and the reranker, then the reranker
fused into the teacher.

    python benchmarks/teacher_gap.py --model outputs/pipeline/nfcorpus/model \\
        --dev_file outputs/pipeline/nfcorpus/data/dev.jsonl --corpus ../shared/data/beir/nfcorpus

Prints nDCG@10 of each. A student well below its teacher has not learnt it; one that adds nothing when fused into
the teacher has learnt nothing beside it. Every list is min-max normalised per query before fusing, as eval.py
and the miner's teacher do. Dev queries only: the dev file is the pipeline's (carved from the training queries),
and its own candidates are ignored for BM25's top --depth.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reranker.cli import common as cli  # noqa: E402
from reranker.common.errors import ConfigError, DataError  # noqa: E402
from reranker.data.runs import Run  # noqa: E402
from reranker.mining.pool import pool_from_beir  # noqa: E402
from reranker.retrieval.fusion import fuse_with_stages  # noqa: E402
from reranker.retrieval.metrics import ranking_metrics  # noqa: E402
from reranker.retrieval.search import BM25  # noqa: E402
from reranker.training.dev_eval import load_dev, qrels_of  # noqa: E402

logger = logging.getLogger("teacher_gap")

MODEL_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the trained reranker")
    parser.add_argument("--dev_file", required=True, help="the pipeline's dev.jsonl (query_id, query, relevance)")
    parser.add_argument("--corpus", required=True, help="the BEIR folder the dev queries come from")
    parser.add_argument("--depth", type=int, default=100, help="BM25 candidates per query")
    parser.add_argument("--teacher_bm25_weight", type=float, default=0.5, help="BM25's weight in the teacher")
    parser.add_argument("--teacher_words", type=int, default=0,
                        help="score the teacher's BM25 part over each document's first N words only (0: whole), "
                             "about what a student with a short passage budget sees; the candidates stay BM25's "
                             "over whole documents")
    parser.add_argument("--teacher_neighbors", type=int, default=0,
                        help="also fuse into the teacher the labels of the K --train_file queries most like each dev "
                             "query, as hn_mine.py --teacher_neighbors does (0: off)")
    parser.add_argument("--teacher_neighbor_weight", type=float, default=1 / 3,
                        help="the neighbours' weight in the teacher; BM25 and the embedder share the rest")
    parser.add_argument("--train_file", help="with --teacher_neighbors: the training queries that vote (query, "
                                             "pos_ids, pos_relevance), e.g. the pipeline's train.jsonl")
    parser.add_argument("--embedder", help="default: the bundled all-MiniLM-L6-v2, the miner's default")
    parser.add_argument("--max_length", type=int, default=288, help="reranker tokens a pair (eval.py's default)")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "auto"], default="auto",
                        help="auto: bf16 where the CPU or GPU has it natively, else fp32")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.depth < 10:
        raise ConfigError(f"--depth must be at least 10 (nDCG@10), got {args.depth}")
    if args.teacher_words < 0:
        raise ConfigError(f"--teacher_words must be 0 (whole documents) or more, got {args.teacher_words}")
    if args.teacher_neighbors < 0 or (args.teacher_neighbors and not args.train_file):
        raise ConfigError("--teacher_neighbors takes K >= 0, and the voting queries from --train_file")
    if not 0.0 < args.teacher_neighbor_weight <= 1.0:
        raise ConfigError(f"--teacher_neighbor_weight must be in (0, 1], got {args.teacher_neighbor_weight}")
    if not 0.0 <= args.teacher_bm25_weight <= 1.0:
        raise ConfigError(f"--teacher_bm25_weight must be in [0, 1], got {args.teacher_bm25_weight}")

    from reranker.mining.arguments import EmbedArguments
    from reranker.models.embed import Embedder
    from reranker.models.inference import Reranker

    dev = load_dev(args.dev_file)
    pool = pool_from_beir(args.corpus)
    if pool.ids is None:
        raise ConfigError(f"{args.corpus}: corpus.jsonl has no _id fields to match the dev relevance against")
    scores, rows = BM25(pool.texts).search([q.query for q in dev], args.depth)
    bm25: Run = {q.qid: {pool.ids[r]: float(s) for r, s in zip(rr, ss, strict=True) if r >= 0}
                 for q, rr, ss in zip(dev, rows, scores, strict=True)}

    embed_args = EmbedArguments(model_name_or_path=args.embedder)  # the miner's defaults: pooling, token budgets
    embedder = Embedder(embed_args.model_name_or_path, pooling=embed_args.pooling, dtype=args.dtype)
    query_vectors = embedder.encode([q.query for q in dev], embed_args.query_max_len, args.batch_size,
                                    instruction=embed_args.query_instruction,
                                    desc="Encoding queries")
    docs = sorted({d for run in bm25.values() for d in run})
    row_of = {d: i for i, d in enumerate(pool.ids)}
    doc_vectors = dict(zip(docs, embedder.encode([pool.texts[row_of[d]] for d in docs], embed_args.passage_max_len,
                                                 args.batch_size, desc="Encoding passages"), strict=True))
    dense: Run = {q.qid: {d: float(np.dot(v, doc_vectors[d])) for d in bm25[q.qid]}
                  for q, v in zip(dev, query_vectors, strict=True)}

    reranker = Reranker(args.model, dtype=None if args.dtype == "fp32" else args.dtype, max_length=args.max_length)
    keys = [(q, d) for q in dev for d in bm25[q.qid]]
    logits = reranker.compute_score([(q.query, pool.texts[row_of[d]]) for q, d in keys],
                                    batch_size=args.batch_size, show_progress=True)
    model: Run = {}
    for (q, d), s in zip(keys, logits, strict=True):
        model.setdefault(q.qid, {})[d] = float(s)

    qrels = qrels_of(dev)

    def ndcg(run: Run) -> float:
        return round(ranking_metrics(qrels, run)["nDCG@10"], 4)

    lexical = bm25
    if args.teacher_words:
        cut = BM25([" ".join(t.split()[:args.teacher_words]) for t in pool.texts])
        lexical = {q.qid: dict(zip(bm25[q.qid], cut.score_rows(q.query, [row_of[d] for d in bm25[q.qid]]),
                                   strict=True)) for q in dev}
    w = args.teacher_bm25_weight
    # eval.py's fusion: each list min-max normalised per query, the last one getting the rest of the weight
    parts, weights = [lexical, dense], [w, 1.0 - w]
    if args.teacher_neighbors:
        votes = neighbour_run(args, dev, bm25, embedder, embed_args, query_vectors)
        v = args.teacher_neighbor_weight
        parts, weights = [*parts, votes], [(1.0 - v) * w, (1.0 - v) * (1.0 - w), v]
    teacher = fuse_with_stages(parts[1:], parts[0], tuple(weights[:-1]))
    result = {"queries": len(dev), "depth": args.depth, "teacher_bm25_weight": w, "teacher_words": args.teacher_words,
              "teacher_neighbors": args.teacher_neighbors,
              "bm25": ndcg(bm25), "teacher_bm25_part": ndcg(lexical), "embedder": ndcg(dense),
              "teacher": ndcg(teacher), "model": ndcg(model),
              # the model at weight m, the teacher's parts sharing the rest in the teacher's proportions
              "model_fused_into_teacher": {m: ndcg(fuse_with_stages(parts, model,
                                                                    (m, *((1 - m) * x for x in weights[:-1]))))
                                           for m in MODEL_WEIGHTS}}
    best = max(result["model_fused_into_teacher"].items(), key=lambda kv: (kv[1], -kv[0]))
    logger.info("%d dev queries, BM25 top %d: BM25 %.4f, embedder %.4f, teacher (BM25 weight %.2f) %.4f, "
                "model %.4f (%+.4f against its teacher); fused into the teacher at best %.4f (model weight %.1f)",
                len(dev), args.depth, result["bm25"], result["embedder"], w, result["teacher"], result["model"],
                result["model"] - result["teacher"], best[1], best[0])
    if args.json:
        from reranker.common.files import write_json

        write_json(Path(args.json), result)
    return result


def neighbour_run(args, dev, bm25: Run, embedder, embed_args, query_vectors) -> Run:
    """The votes of the --train_file queries most like each dev query (hn_mine.py's neighbor_votes) for its
    candidates; a candidate no neighbour judged gets 0."""
    from reranker.common.files import iter_jsonl
    from reranker.mining.mine import neighbor_votes, relevance_grades

    texts, judged = [], []
    for line, row in iter_jsonl(args.train_file):
        ids = row.get("pos_ids")
        if not isinstance(row.get("query"), str) or not isinstance(ids, list):
            raise DataError(args.train_file, "expected a query with the ids of its judged documents", line=line,
                            field="pos_ids")
        grades = relevance_grades(row, len(ids), args.train_file, line)
        texts.append(row["query"])
        judged.append({d: g for d, g in zip(ids, grades, strict=True) if g > 0})
    train_vectors = embedder.encode(texts, embed_args.query_max_len, args.batch_size,
                                    instruction=embed_args.query_instruction, desc="Encoding training queries")
    votes = neighbor_votes(judged, train_vectors, args.teacher_neighbors, targets=query_vectors)
    return {q.qid: {d: v.get(d, 0.0) for d in bm25[q.qid]} for q, v in zip(dev, votes, strict=True)}


if __name__ == "__main__":
    sys.exit(cli.run(main, logger))
