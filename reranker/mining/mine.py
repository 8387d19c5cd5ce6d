"""Hard-negative mining: load -> embed (sharded, cached) or BM25 -> search -> select negatives -> score -> write."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from reranker.common import dist
from reranker.common.errors import ConfigError, DataError
from reranker.common.files import atomic_write, write_json
from reranker.common.text import normalize_text
from reranker.data.records import GroupExample, parse_group, positive_ids
from reranker.data.sources import iter_rows
from reranker.mining.arguments import EmbedArguments, MineArguments
from reranker.mining.negatives import Selection, SelectionRules, select_negatives
from reranker.mining.pool import Pool, pool_from_beir, pool_from_jsonl, pool_from_texts
from reranker.models import embed_cache

logger = logging.getLogger(__name__)


class Ranking(NamedTuple):
    """One retriever's candidates for every query, best first, with the rules its negatives are chosen by."""

    scores: np.ndarray  # [queries, depth]
    rows: np.ndarray  # [queries, depth] pool rows, -1 where a query has fewer candidates
    positive_scores: list[float | None]  # each query's lowest positive score, for the false-negative filters
    rules: SelectionRules


@dataclass
class Query:
    row: dict  # the user's record, written back with its new negatives
    example: GroupExample
    positive_rows: set[int]
    positive_keys: set[str]  # normalised texts of the positives
    # A crop's positive is a span, the candidates are whole documents: the false-negative filters compare the
    # candidates with the whole source document instead (its pool row), so that both sides have one format.
    reference_row: int | None = None
    unknown_ids: int = 0  # pos_ids / pos_id not found among the pool's ids


def relevance_grades(row: dict, n_positives: int, where: str, line: int) -> list[float]:
    """The grade of each positive: `pos_relevance` (one number each, as the pipeline writes from graded qrels),
    else 1."""
    grades = row.get("pos_relevance")
    if grades is None:
        return [1.0] * n_positives
    if not (isinstance(grades, list) and len(grades) == n_positives
            and all(isinstance(g, (int, float)) and not isinstance(g, bool) for g in grades)):
        raise DataError(where, f"expected one number per positive ({n_positives}), got {grades!r}", line=line,
                        field="pos_relevance")
    return [float(g) for g in grades]


def load_queries(spec: str) -> list[tuple[dict, GroupExample]]:
    out = []
    for where, line, row in iter_rows(spec):
        example = parse_group(row, where, line)
        pos_ids = row.get("pos_ids")
        if pos_ids is not None and (not isinstance(pos_ids, list) or not all(isinstance(x, str) for x in pos_ids)):
            raise DataError(where, "expected a list of strings (ids of the positives)", line=line, field="pos_ids")
        if row.get("pos_id") is not None and not isinstance(row["pos_id"], str):
            raise DataError(where, "expected a string (the id of the positive's document)", line=line,
                            field="pos_id")
        relevance_grades(row, len(example.pos), where, line)
        crop = row.get("neg_crop")
        if crop is not None and not (isinstance(crop, list) and len(crop) == 2 and all(type(x) is int for x in crop)
                                     and 1 <= crop[0] <= crop[1]):
            raise DataError(where, f"expected [low, high] word counts with 1 <= low <= high, got {crop!r}",
                            line=line, field="neg_crop")
        out.append((row, example))
    if not out:
        raise DataError(spec, "holds no records to mine for")
    return out


def load_pool(args: MineArguments, examples: list[GroupExample]) -> Pool:
    if args.candidate_pool:
        return pool_from_jsonl(args.candidate_pool)
    if args.corpus:
        return pool_from_beir(args.corpus)
    return pool_from_texts(t for e in examples for t in (*e.pos, *e.neg))


def make_query(pool: Pool, row: dict, example: GroupExample) -> Query:
    keys = {normalize_text(p) for p in example.pos}
    # reranker-synth writes pos_id, the source document of a crop or generated query: its positive text is a span of
    # that document (or the whole of it), and the document itself must never come back as a negative.
    ids = positive_ids(row)
    rows = {pool.by_id[i] for i in ids if i in pool.by_id}
    rows.update(pool.by_key[k] for k in keys if k in pool.by_key)
    reference = pool.by_id.get(row["pos_id"]) if row.get("neg_crop") is not None and row.get("pos_id") else None
    return Query(row, example, rows, keys, reference, sum(i not in pool.by_id for i in ids))


# Per-positive fields kept aligned with `pos` when --positive_depth drops some (aliases as records.ALIASES).
ALIGNED = ("pos", "positive", "pos_ids", "pos_scores", "positive_scores", "pos_relevance")


def positive_pool_rows(pool: Pool, q: Query) -> list[int | None]:
    """The pool row of each positive, in order: by its id where pos_ids is aligned with pos (or a single
    positive has reranker-synth's pos_id), else by its text."""
    ids = q.row.get("pos_ids")
    if ids is None and q.row.get("pos_id") is not None:
        ids = [q.row["pos_id"]]
    aligned = isinstance(ids, list) and len(ids) == len(q.example.pos)
    return [pool.by_id.get(ids[j]) if aligned and ids[j] in pool.by_id else pool.by_key.get(normalize_text(p))
            for j, p in enumerate(q.example.pos)]


def keep_ranked_positives(pool: Pool, queries: list[Query], rankings: list, depth: int, source: str):
    """--positive_depth: keep the positives some retriever ranks in its top `depth`; drop queries left with none.

    The dropped positives stay in `positive_rows`, so they are never sampled as negatives. Returns the kept
    queries, the rankings cut to them (same order), the kept indices and counts for the summary."""
    kept_queries, kept_index = [], []
    dropped_positives = kept_positives = 0
    for i, q in enumerate(queries):
        top = {int(r) for ranking in rankings for r in ranking.rows[i][:depth] if r >= 0}
        keep = [j for j, r in enumerate(positive_pool_rows(pool, q)) if r is not None and r in top]
        dropped_positives += len(q.example.pos) - len(keep)
        kept_positives += len(keep)
        if not keep:
            continue
        for key in ALIGNED:
            value = q.row.get(key)
            if isinstance(value, list) and len(value) == len(q.example.pos):
                q.row[key] = [value[j] for j in keep]
        scores = q.example.pos_scores
        q.example = replace(q.example, pos=tuple(q.example.pos[j] for j in keep),
                            pos_scores=None if scores is None else tuple(scores[j] for j in keep))
        kept_queries.append(q)
        kept_index.append(i)
    index = np.asarray(kept_index, dtype=np.int64)
    cut = [Ranking(r.scores[index], r.rows[index], [r.positive_scores[i] for i in kept_index], r.rules)
           for r in rankings]
    counts = {"depth": depth, "kept_positives": kept_positives, "dropped_positives": dropped_positives,
              "dropped_queries": len(queries) - len(kept_queries)}
    logger.info("--positive_depth %d: kept %d positives, dropped %d that no retriever ranks in its top %d",
                depth, kept_positives, dropped_positives, depth)
    if counts["dropped_queries"]:
        logger.warning("--positive_depth %d: %d of %d queries of %s have no positive in any retriever's top %d "
                       "and are left out of the output", depth, counts["dropped_queries"], len(queries), source,
                       depth)
    return kept_queries, cut, kept_index, counts


def retrieved_share(args: MineArguments, queries: list[Query], rankings: list, summary: dict) -> None:
    """How many labelled positives each retriever finds in its top --search_depth, in the summary and the log.

    A reranker reorders its first stage's top candidates. When most positives lie outside them (as on corpora
    with many judged documents per query, such as nfcorpus), groups of such a positive and the retriever's top
    documents ask the model to rank against the first stage, and training sits at chance."""
    names = [name for name in ("dense", "bm25") if args.retriever in (name, "both")]
    total = sum(len(q.positive_rows) for q in queries)
    if not total:
        return
    found = {name: [q.positive_rows.intersection(rows[i].tolist()) for i, q in enumerate(queries)]
             for name, (_, rows, _, _) in zip(names, rankings, strict=True)}
    shares = {name: round(sum(map(len, sets)) / total, 4) for name, sets in found.items()}
    if len(names) > 1:
        union = sum(len(set().union(*parts)) for parts in zip(*found.values(), strict=True))
        shares["any"] = round(union / total, 4)
    summary["positives_in_search_depth"] = {"search_depth": args.search_depth, **shares}
    share = shares.get("any", shares[names[0]])
    logger.info("Positive documents found in the top %d: %s", args.search_depth,
                ", ".join(f"{name} {value:.1%}" for name, value in shares.items()))
    if share < 0.5 and not args.positive_depth:
        logger.warning("Only %.1f%% of the %d positive documents are in a retriever's top %d. Groups of a "
                       "positive the first stage does not retrieve and its top documents ask the model to rank "
                       "against that first stage; --positive_depth keeps the positives it ranks (docs/mining.md)",
                       100 * share, total, args.search_depth)


def crop_negatives(queries: list[Query], selections: list[Selection], negatives: list[list[str]],
                   seed: int) -> int:
    """Cut the negatives of records that ask for it (reranker-synth crops: "neg_crop": [low, high]) to random spans
    of that many words, as their positive is, so that format cannot tell the positive apart. Seeded per query
    and pool row (a document gets the same span whatever its rank); returns how many were cut."""
    from reranker.common.text import random_span

    cropped = 0
    for i, (q, selection, negs) in enumerate(zip(queries, selections, negatives, strict=True)):
        if q.row.get("neg_crop") is None:
            continue
        low, high = q.row["neg_crop"]
        for j, (row, text) in enumerate(zip(selection.rows, negs, strict=True)):
            negs[j] = random_span(text.split(), low, high, np.random.default_rng([seed, i, int(row)]))
            cropped += 1
    return cropped


def encode_sharded(embedder, texts: list[str], max_length: int, batch_size: int, instruction: str,
                   desc: str) -> np.ndarray | None:
    """Each torchrun rank encodes every world_size-th text; rank 0 gets them all back (None elsewhere)."""
    rows = dist.shard(len(texts))
    local = embedder.encode([texts[i] for i in rows], max_length, batch_size, instruction, desc=desc,
                            show_progress=dist.is_main_process())
    return dist.gather_shards(local, len(texts))


class Timer(dict):
    def stage(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self[name] = round(self.get(name, 0.0) + now - start, 3)
        return now


def encode_pool_and_queries(embed_args: EmbedArguments, args: MineArguments, pool: Pool, queries: list[Query],
                            timer: Timer, summary: dict):
    """(embedder, pool vectors, query vectors) on rank 0, the pool from the cache when it was encoded before;
    None on other ranks once they have encoded their share."""
    from reranker.models.embed import Embedder

    t = time.perf_counter()
    device = dist.init_from_env()
    embedder = Embedder(embed_args.model_name_or_path, embed_args.pooling, embed_args.embed_dtype, device=device,
                        trust_remote_code=embed_args.trust_remote_code, backend=embed_args.embed_backend)
    settings = {"pooling": embed_args.pooling, "max_length": embed_args.passage_max_len,
                "dtype": embed_args.embed_dtype, "normalize": True}
    settings |= embed_cache.variant(embed_args.model_name_or_path, embedder.backend, embedder.bf16_weights)
    key = embed_cache.cache_key(embed_args.model_name_or_path, settings, pool.content_hash())
    cache_dir = Path(args.cache_dir).expanduser()
    cached = None if args.no_cache else embed_cache.load(cache_dir, key, len(pool))
    summary["embedding_cache"] = "off" if args.no_cache else ("hit" if cached is not None else "miss")
    t = timer.stage("load_embedder", t)
    if cached is None:
        passages = encode_sharded(embedder, pool.texts, embed_args.passage_max_len, embed_args.embed_batch_size,
                                  "", "Encoding pool")
        if passages is not None and not args.no_cache:
            embed_cache.save(cache_dir, key, passages)
    else:
        passages = cached
    t = timer.stage("encode_pool", t)
    query_vectors = encode_sharded(embedder, [q.example.query for q in queries], embed_args.query_max_len,
                                   embed_args.embed_batch_size, embed_args.query_instruction, "Encoding queries")
    timer.stage("encode_queries", t)
    if not dist.is_main_process():
        return None
    return embedder, passages, query_vectors


def dense_retrieve(embed_args: EmbedArguments, args: MineArguments, pool: Pool, queries: list[Query],
                   timer: Timer, summary: dict, kept: dict | None = None):
    """(scores, rows, positive scores) on rank 0; None on other ranks once they have done their share.

    With `kept`, the pool and query vectors and the encoder are left in it for the embedder teacher."""
    from reranker.retrieval.search import build_index, dense_search

    encoded = encode_pool_and_queries(embed_args, args, pool, queries, timer, summary)
    if encoded is None:
        return None
    embedder, passages, query_vectors = encoded
    t = time.perf_counter()
    positive_scores: list[float | None] = [None] * len(queries)
    if args.fn_relative_threshold is not None:
        # Only the relative filter reads them: from the pool's vectors, or encoded here when absent from it.
        outside = list(dict.fromkeys(p for q in queries if q.reference_row is None for p in q.example.pos
                                     if normalize_text(p) not in pool.by_key))
        outside_vectors = dict(zip(outside, embedder.encode(outside, embed_args.passage_max_len,
                                                            embed_args.embed_batch_size, desc="Encoding positives",
                                                            show_progress=bool(outside)), strict=True))
        for i, (q, vector) in enumerate(zip(queries, query_vectors, strict=True)):
            vecs = [passages[q.reference_row]] if q.reference_row is not None else [
                passages[pool.by_key[k]] if k in pool.by_key else outside_vectors[p]
                for p, k in ((p, normalize_text(p)) for p in q.example.pos)]
            positive_scores[i] = float(min(np.dot(v, vector) for v in vecs))
        t = timer.stage("score_positives", t)
    index = build_index(passages, args.index, args.ivf_nlist, args.ivf_nprobe, args.hnsw_m, args.hnsw_ef_search)
    if kept is not None:
        # The teacher scores need every pair's similarity after selection: keep the vectors (and the encoder for
        # positives outside the pool).
        kept.update(passages=passages, query_vectors=query_vectors, embedder=embedder)
    del passages, encoded  # the index holds its own copy; keep one pool matrix in memory, not two
    scores, rows = dense_search(index, query_vectors, args.search_depth, args.query_chunk_size)
    timer.stage("search", t)
    return scores, rows, positive_scores


def bm25_retrieve(args: MineArguments, pool: Pool, queries: list[Query], timer: Timer, positive_scores: bool = True,
                  kept: dict | None = None):
    """(scores, rows, positive scores); with `kept`, the index is left in it for the teacher's BM25 part."""
    from reranker.retrieval.search import BM25

    t = time.perf_counter()
    bm25 = BM25(pool.texts, language=args.bm25_language)
    if kept is not None:
        kept["bm25"] = bm25
    t = timer.stage("index", t)
    scores, rows = bm25.search([q.example.query for q in queries], args.search_depth)
    # A positive's score costs a pass over the whole pool per query: only when the relative filter reads it.
    positive_scores = [min(bm25.score_rows(q.example.query, sorted(q.positive_rows)))
                       if q.positive_rows and positive_scores and args.fn_relative_threshold is not None else None
                       for q in queries]
    timer.stage("search", t)
    return scores, rows, positive_scores


def rerank_candidates(args: MineArguments, pool: Pool, queries: list[Query], rankings: list, rules: SelectionRules,
                      timer: Timer, summary: dict):
    """One ranking per query: the union of every retriever's candidates, in the order of --rerank_model's scores,
    with the positive's score (the lowest positive's) from the same model for the false-negative filters."""
    from reranker.models.inference import Reranker

    t = time.perf_counter()
    reranker = Reranker(args.rerank_model, dtype=None if args.rerank_dtype == "fp32" else args.rerank_dtype,
                        max_length=args.rerank_max_length, max_length_option="--rerank_max_length")
    candidates = [list(dict.fromkeys(int(r) for ranking in rankings for r in ranking.rows[i] if r >= 0))
                  for i in range(len(queries))]
    pairs = [(q.example.query, pool.texts[r]) for q, rows in zip(queries, candidates, strict=True) for r in rows]
    positives = [[pool.texts[q.reference_row]] if q.reference_row is not None else q.example.pos for q in queries]
    pairs += [(q.example.query, p) for q, texts in zip(queries, positives, strict=True) for p in texts]
    scores = iter(reranker.compute_score(pairs, batch_size=args.rerank_batch_size, show_progress=True))
    width = max((len(c) for c in candidates), default=0)
    out_rows = np.full((len(queries), width), -1, dtype=np.int64)
    out_scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
    for i, rows in enumerate(candidates):
        query_scores = np.array([next(scores) for _ in rows], dtype=np.float32)
        order = np.argsort(-query_scores, kind="stable")
        out_rows[i, : len(rows)] = np.asarray(rows, dtype=np.int64)[order]
        out_scores[i, : len(rows)] = query_scores[order]
    positive_scores = [float(min(next(scores) for _ in texts)) for texts in positives]
    summary["reranked_pairs"] = len(pairs)
    timer.stage("rerank", t)
    return Ranking(out_scores, out_rows, positive_scores, rules)


def interleave(selections: tuple[Selection, ...], n: int) -> Selection:
    """One retriever's selection as is; several alternate (dense, BM25, dense, ...) without repeats, up to n.

    A passage one retriever's filter dropped as a likely false negative is not taken from another's list
    (BM25's list is unfiltered: its scores say nothing about closeness to the positive).
    """
    if len(selections) == 1:
        return selections[0]
    dropped = {row for s in selections for row in s.dropped}
    merged = Selection(excluded=sum(s.excluded for s in selections), dropped=sorted(dropped),
                       false_negatives=sum(s.false_negatives for s in selections),
                       topped_up=sum(s.topped_up for s in selections))
    queues = [list(s.rows) for s in selections]
    seen: set[int] = set()
    while len(merged.rows) < n and any(queues):
        for queue in queues:
            while queue and (queue[0] in seen or queue[0] in dropped):
                queue.pop(0)
            if queue and len(merged.rows) < n:
                seen.add(queue[0])
                merged.rows.append(queue.pop(0))
    return merged


# A neighbour's vote is its cosine to the query to this power: the closest few of the K count most (chosen on
# nfcorpus's carved dev queries against a power of 1; results/nfcorpus-ablations.md).
NEIGHBOR_POWER = 4


def judged_rows(pool: Pool, q: Query) -> dict[int, float]:
    """The pool rows of a query's positives in the pool with their grades (pos_relevance, checked on load, else 1)."""
    grades = q.row.get("pos_relevance") or [1] * len(q.example.pos)  # checked on load by relevance_grades
    return {r: float(g) for r, g in zip(positive_pool_rows(pool, q), grades, strict=True) if r is not None and g > 0}


def neighbor_votes(judged: list[dict], vectors: np.ndarray, k: int, chunk_size: int = 4096,
                   targets: np.ndarray | None = None) -> list[dict]:
    """--teacher_neighbors: for each query, the documents judged for the k queries most like it, each scored by
    the sum over those queries of cosine^NEIGHBOR_POWER x grade.

    `judged[j]` maps the documents of voter j (pool rows or ids) to their grades; `vectors` are the voters'
    normalised embeddings. Without `targets` the voters vote for each other, each query left out by position, so
    its own labels never reach its teacher; a duplicate of it elsewhere in the file does count, as a duplicate of
    a test query in the training labels would. With `targets` (other queries' vectors) every voter may vote.
    """
    from reranker.retrieval.search import build_index, dense_search

    voters = np.ascontiguousarray(vectors, dtype=np.float32)
    own = targets is None
    sims, rows = dense_search(build_index(voters), voters if own else targets, k + own, chunk_size)
    votes = []
    for i, (sim_row, neighbor_row) in enumerate(zip(sims, rows, strict=True)):
        taken = [(float(s), int(j)) for s, j in zip(sim_row, neighbor_row, strict=True)
                 if j >= 0 and not (own and j == i)][:k]
        scores: dict = {}
        for s, j in taken:
            if s <= 0.0:  # an unlike query votes nothing (an even power would turn its cosine positive)
                continue
            weight = s ** NEIGHBOR_POWER
            for doc, grade in judged[j].items():
                scores[doc] = scores.get(doc, 0.0) + weight * grade
        votes.append(scores)
    return votes


def embedder_teacher_scores(args: MineArguments, embed_args: EmbedArguments, pool: Pool, queries: list[Query],
                            selections: list[Selection], vectors: dict) -> None:
    """pos_scores / neg_scores from the embedder itself (scale x cosine) when no cross-encoder teacher exists: a
    graded target over every passage of a group for `reranker-train --loss distill`.

    With --teacher_bm25_weight w, the teacher is the first stages fused instead: scale x ((1 - w) x cosine + w x
    BM25), each min-max normalised over the record's own positives and negatives (the passages its groups are
    drawn from), as reranker-eval fuses scores. On nfcorpus's dev queries BM25 and the embedder fused rank better than
    either, and better than a reranker trained on the labels alone.

    With --teacher_neighbors, the votes of similar queries' labels (`neighbor_votes`) join at
    --teacher_neighbor_weight, min-max normalised the same way; the first stages share the rest.
    """
    passages, query_vectors, embedder = vectors["passages"], vectors["query_vectors"], vectors["embedder"]
    weight = args.teacher_bm25_weight
    if weight and "bm25" not in vectors:  # the dense retriever alone: index the pool for the teacher's BM25 part
        from reranker.retrieval.search import BM25

        vectors["bm25"] = BM25(pool.texts, language=args.bm25_language)
    bm25 = vectors.get("bm25")
    from reranker.common.scores import minmax_array  # as reranker-eval normalises scores before fusing them
    outside = list(dict.fromkeys(p for q in queries for p in q.example.pos if normalize_text(p) not in pool.by_key))
    if outside and weight:
        raise DataError(args.input_file, f"{len(outside)} positives are not passages of the pool (e.g. "
                                         f"{outside[0][:60]!r}): BM25 can only score the pool's own passages, so "
                                         "--teacher_bm25_weight needs them there; use the embedder alone (0)")
    outside_vectors = dict(zip(outside, embedder.encode(outside, embed_args.passage_max_len,
                                                        embed_args.embed_batch_size, desc="Encoding positives",
                                                        show_progress=bool(outside)), strict=True))
    votes = vectors.get("votes")
    for i, (q, selection, vector) in enumerate(zip(queries, selections, query_vectors, strict=True)):
        pos_rows = [pool.by_key.get(normalize_text(p)) for p in q.example.pos]
        pos = [passages[r] if r is not None else outside_vectors[p] for p, r in zip(q.example.pos, pos_rows,
                                                                                      strict=True)]
        cosine = np.array([np.dot(v, vector) for v in pos] + [np.dot(passages[r], vector) for r in selection.rows],
                          dtype=np.float64)
        if weight:
            lexical = np.array(bm25.score_rows(q.example.query, [*pos_rows, *selection.rows]), dtype=np.float64)
            teacher = (1.0 - weight) * minmax_array(cosine) + weight * minmax_array(lexical)
        elif votes is not None:  # fused with the votes: the cosine on their [0, 1] scale too
            teacher = minmax_array(cosine)
        else:
            teacher = cosine
        if votes is not None:
            voted = np.array([0.0 if r is None else votes[i].get(r, 0.0) for r in [*pos_rows, *selection.rows]])
            teacher = (1.0 - args.teacher_neighbor_weight) * teacher + args.teacher_neighbor_weight * minmax_array(
                voted)
        scores = [round(float(args.embedder_teacher_scale * x), 4) for x in teacher]
        q.row["pos_scores"], q.row["neg_scores"] = scores[:len(pos)], scores[len(pos):]


def load_teacher(args: MineArguments):
    from reranker.models.inference import Reranker

    return Reranker(args.teacher_model, dtype=None if args.teacher_dtype == "fp32" else args.teacher_dtype,
                    max_length=args.teacher_max_length, max_length_option="--teacher_max_length")


def teacher_pairs(queries: list[Query], negatives: list[list[str]]) -> list[tuple[str, str]]:
    """Every (query, passage) pair the teacher scores: each query's positives, then its negatives."""
    return [(q.example.query, p) for q, negs in zip(queries, negatives, strict=True) for p in (*q.example.pos, *negs)]


def teacher_scores(args: MineArguments, queries: list[Query], negatives: list[list[str]]) -> None:
    """Fill pos_scores / neg_scores in place with the teacher cross-encoder's logits."""
    teacher = load_teacher(args)
    pairs = teacher_pairs(queries, negatives)
    scores = iter(teacher.compute_score(pairs, batch_size=args.teacher_batch_size, show_progress=True))
    for q, negs in zip(queries, negatives, strict=True):
        q.row["pos_scores"] = [next(scores) for _ in q.example.pos]
        q.row["neg_scores"] = [next(scores) for _ in negs]


def check_pair_teacher(args: MineArguments) -> None:
    """--teacher_format inranker needs a teacher with (false, true) logits; read from its config and tokenizer, before
    any model loads."""
    from reranker.models.loading import load_config, load_tokenizer
    from reranker.models.scorers import scorer_for

    scorer = scorer_for(load_config(args.teacher_model), load_tokenizer(args.teacher_model))
    if not scorer.has_pair_logits:
        raise ConfigError(f"--teacher_format inranker: --teacher_model {args.teacher_model} is scored as "
                          f"{scorer.describe()}, one number per pair, while InRanker records hold a teacher's "
                          "(false, true) logits. Use a seq2seq teacher (monoT5) or a decoder scored by "
                          "logit(yes) - logit(no), or --teacher_format scores (pos_scores / neg_scores)")


def inranker_records(args: MineArguments, queries: list[Query], negatives: list[list[str]]) -> list[dict]:
    """--teacher_format inranker: one InRanker record {query, contents, true_logit, false_logit} per (query, passage)
    pair, each query's positives then its negatives, with the teacher's answer logits (reranker-train
    --loss inranker reads them, zero-centred as InRanker does)."""
    pairs = teacher_pairs(queries, negatives)
    logits = load_teacher(args).compute_logits(pairs, batch_size=args.teacher_batch_size, show_progress=True)
    return [{"query": query, "contents": passage, "true_logit": true, "false_logit": false}
            for (query, passage), (false, true) in zip(pairs, logits.tolist(), strict=True)]


def summary_path(output_file: str | Path) -> Path:
    path = Path(output_file)
    return path.with_name(path.stem + ".summary.json")


def prepare(args: MineArguments) -> tuple[Pool, list[Query], list | None, dict]:
    """Load and check the records and the pool: (pool, queries, the rows each query's labels vote for with
    --teacher_neighbors, the summary so far). Everything here runs before any model loads."""
    output = Path(args.output_file)
    # Rank 0 alone writes, so it alone checks: another rank checking later could find the file rank 0 has just
    # written for this very run (BM25 mining leaves the other ranks nothing to wait for). When rank 0 refuses,
    # torchrun stops the other ranks.
    if dist.is_main_process() and output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    loaded = load_queries(args.input_file)
    if args.teacher_format == "inranker":
        check_pair_teacher(args)
    if args.embedder_teacher and any(row.get("neg_crop") is not None for row, _ in loaded):
        raise ConfigError(f"{args.input_file}: records with neg_crop get cropped negatives, and --embedder_teacher "
                          "scores whole documents; use --teacher_model (it scores the cropped text) or no teacher")
    pool = load_pool(args, [e for _, e in loaded])
    check_range(args, len(pool))
    queries = [make_query(pool, row, example) for row, example in loaded]
    judged = None
    if args.teacher_neighbors:  # checked before any encoding: the votes need positives that are pool passages
        judged = [judged_rows(pool, q) for q in queries]
        if not any(judged):
            raise DataError(args.input_file, "--teacher_neighbors: no query can vote (no positive of any query is a "
                                             "pool passage, by pos_ids or by text)")
    no_positive = sum(not q.positive_rows for q in queries)
    unknown_ids = sum(q.unknown_ids for q in queries)
    summary: dict = {"queries": len(queries), "pool_size": len(pool), "retriever": args.retriever,
                     "queries_without_positive_in_pool": no_positive, "positive_ids_not_in_pool": unknown_ids}
    if unknown_ids:
        logger.warning("%d pos_ids/pos_id values of %s are not ids of the pool (%s): those documents are not "
                       "kept out of the negatives", unknown_ids, args.input_file,
                       "it has no '_id' field" if not pool.by_id else "another corpus?")
    logger.info("Mining %d queries against a pool of %d passages (%s); %d queries have no positive in the pool",
                len(queries), len(pool), args.retriever, no_positive)
    return pool, queries, judged, summary


def check_range(args: MineArguments, pool_size: int) -> None:
    """A sampling range that starts past the pool's end can give no negative at all: say so before any work."""
    if args.range_start >= pool_size:
        raise ConfigError(f"--range_for_sampling {args.range_for_sampling} starts at rank {args.range_start}, but "
                          f"the pool holds only {pool_size} passages: no query could get a negative. Lower the "
                          "range or mine from a larger pool (--corpus / --candidate_pool)")


def retrieve(embed_args: EmbedArguments, args: MineArguments, pool: Pool, queries: list[Query], timer: Timer,
             summary: dict, rules: SelectionRules) -> tuple[list[Ranking], dict | None] | None:
    """Each retriever's ranking, in the order their negatives alternate, and what the embedder teacher keeps
    (vectors, encoder, BM25 index). None on ranks other than 0 once their share of the encoding is done."""
    vectors: dict | None = {} if args.embedder_teacher else None
    rankings = []
    if args.retriever in ("dense", "both"):
        retrieved = dense_retrieve(embed_args, args, pool, queries, timer, summary, vectors)
        if retrieved is None:  # another rank's share is done; rank 0 writes
            return None
        rankings.append(Ranking(*retrieved, rules))
    elif args.embedder_teacher:
        # BM25 retrieves; the embedder only scores the chosen pairs for the teacher.
        encoded = encode_pool_and_queries(embed_args, args, pool, queries, timer, summary)
        if encoded is None:
            return None
        vectors.update(zip(("embedder", "passages", "query_vectors"), encoded, strict=True))
    elif not dist.is_main_process():
        logger.warning("BM25 runs in one process; rank %d has nothing to do", dist.rank())
        return None
    if args.retriever in ("bm25", "both"):
        both = args.retriever == "both"
        # BM25 often ranks a positive low, so "close to the positive's BM25 score" would drop most of its hard
        # negatives: with both retrievers the false-negative filters read the embedder's similarity only.
        bm25_rules = replace(rules, relative_threshold=None, absolute_threshold=None) if both else rules
        rankings.append(Ranking(*bm25_retrieve(args, pool, queries, timer, positive_scores=not both,
                                               kept=vectors if args.teacher_bm25_weight else None), bm25_rules))
    return rankings, vectors


def add_neighbor_votes(args: MineArguments, judged: list, queries: list[Query], vectors: dict, timer: Timer,
                       summary: dict) -> None:
    """--teacher_neighbors, before --positive_depth: every input query's labels vote, those it drops and their
    unretrieved positives too."""
    t = time.perf_counter()
    vectors["votes"] = neighbor_votes(judged, vectors["query_vectors"], args.teacher_neighbors,
                                      args.query_chunk_size)
    voted = sum(bool(v) for v in vectors["votes"])
    summary["teacher_neighbors"] = {"k": args.teacher_neighbors, "weight": args.teacher_neighbor_weight,
                                    "queries_with_votes": voted}
    logger.info("--teacher_neighbors %d: %d of %d queries have positives in the pool to vote with; %d got votes",
                args.teacher_neighbors, sum(bool(j) for j in judged), len(queries), voted)
    timer.stage("neighbors", t)


def apply_positive_depth(args: MineArguments, pool: Pool, queries: list[Query], rankings: list[Ranking],
                         vectors: dict | None, summary: dict) -> tuple[list[Query], list[Ranking]]:
    """--positive_depth: the queries and rankings cut to those with a positive in some retriever's top."""
    n_before = len(queries)
    queries, rankings, kept_index, summary["positive_depth"] = keep_ranked_positives(
        pool, queries, rankings, args.positive_depth, args.input_file)
    if not queries:
        raise DataError(args.input_file, f"no query has a positive in any retriever's top {args.positive_depth}"
                                         f" (of {n_before}): raise --positive_depth")
    if vectors:
        vectors["query_vectors"] = vectors["query_vectors"][kept_index]
        if "votes" in vectors:
            vectors["votes"] = [vectors["votes"][i] for i in kept_index]
    return queries, rankings


def choose_negatives(args: MineArguments, pool: Pool, queries: list[Query],
                     rankings: list[Ranking]) -> tuple[list[Selection], list[list[str]], int]:
    """Each query's negatives: selected from every ranking, interleaved, cropped where the record asks."""
    per_retriever = [
        [select_negatives(ranking.rows[i], ranking.scores[i], pool.keys, q.positive_rows, q.positive_keys,
                          normalize_text(q.example.query), ranking.positive_scores[i], ranking.rules,
                          query_index=i)
         for i, q in enumerate(queries)]
        for ranking in rankings
    ]
    selections = [interleave(parts, args.negative_number) for parts in zip(*per_retriever, strict=True)]
    negatives = [[pool.texts[r] for r in s.rows] for s in selections]
    cropped = crop_negatives(queries, selections, negatives, args.seed)
    for q, negs in zip(queries, negatives, strict=True):
        q.row["neg"] = negs
    return selections, negatives, cropped


def selection_summary(args: MineArguments, embed_args: EmbedArguments, selections: list[Selection]) -> dict:
    counts = [len(s.rows) for s in selections]
    return {
        "negatives_per_query": {"mean": float(np.mean(counts)), "min": min(counts), "max": max(counts)},
        "queries_short_of_negatives": sum(c < args.negative_number for c in counts),
        "queries_without_negatives": sum(c == 0 for c in counts),
        "filtered_false_negatives": sum(s.false_negatives for s in selections),
        "excluded_positives_duplicates_or_query": sum(s.excluded for s in selections),
        "topped_up_queries": sum(s.topped_up > 0 for s in selections),
        "topped_up_negatives": sum(s.topped_up for s in selections),
        "teacher_model": args.teacher_model,
        "settings": {**{k: v for k, v in asdict(args).items() if k not in ("input_file", "output_file")},
                     "embedder": embed_args.model_name_or_path if args.retriever != "bm25" else None,
                     "pooling": embed_args.pooling if args.retriever != "bm25" else None},
    }


def mine(embed_args: EmbedArguments, args: MineArguments) -> dict | None:
    """Run the whole job; returns the summary on rank 0 (None on other ranks)."""
    timer = Timer()
    t = time.perf_counter()
    pool, queries, judged, summary = prepare(args)
    timer.stage("load", t)
    rules = SelectionRules(args.range_start, args.range_end, args.negative_number, args.fn_relative_threshold,
                           args.fn_absolute_threshold, args.seed, args.fn_margin)
    retrieved = retrieve(embed_args, args, pool, queries, timer, summary, rules)
    if retrieved is None:
        return None
    rankings, vectors = retrieved
    retrieved_share(args, queries, rankings, summary)
    if args.teacher_neighbors:
        add_neighbor_votes(args, judged, queries, vectors, timer, summary)
    if args.positive_depth:
        queries, rankings = apply_positive_depth(args, pool, queries, rankings, vectors, summary)
    if args.rerank_model:
        rankings = [rerank_candidates(args, pool, queries, rankings, rules, timer, summary)]

    t = time.perf_counter()
    selections, negatives, summary["cropped_negatives"] = choose_negatives(args, pool, queries, rankings)
    summary.update(selection_summary(args, embed_args, selections))
    if summary["queries_without_negatives"] == len(queries):
        raise DataError(args.input_file, f"no query got a negative: {why_short(args, summary)}. Nothing was "
                                         f"written to {args.output_file}")
    t = timer.stage("select", t)
    records = None  # --teacher_format inranker: rows of their own, one per pair
    if args.teacher_model and args.teacher_format == "inranker":
        records = inranker_records(args, queries, negatives)
        summary["inranker_records"] = len(records)
        t = timer.stage("teacher", t)
    elif args.teacher_model:
        teacher_scores(args, queries, negatives)
        t = timer.stage("teacher", t)
    elif args.embedder_teacher:
        embedder_teacher_scores(args, embed_args, pool, queries, selections, vectors)
        del vectors
        t = timer.stage("teacher", t)

    with atomic_write(args.output_file) as handle:
        for row in records if records is not None else (q.row for q in queries):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    timer.stage("write", t)
    summary["timings_s"] = dict(timer)
    write_json(summary_path(args.output_file), summary)
    warn_short(args, summary, len(queries))
    return summary


def warn_short(args: MineArguments, summary: dict, n_queries: int) -> None:
    """Say loudly when queries come out with no negatives: group training skips them, and they are often the
    queries the first stage finds hardest (its candidates all outscore the positive, so the filter drops them)."""
    empty = summary["queries_without_negatives"]
    if empty:
        logger.warning("%d of %d queries have no negatives in %s: %s. reranker-train skips such records (group "
                       "training needs negatives) and counts them.", empty, n_queries, args.output_file,
                       why_short(args, summary))


def why_short(args: MineArguments, summary: dict) -> str:
    """Why queries came out without negatives, in the user's option names."""
    filters = [f"{name} {value}" for name, value in (("fn_relative_threshold", args.fn_relative_threshold),
                                                      ("fn_absolute_threshold", args.fn_absolute_threshold),
                                                      ("fn_margin", args.fn_margin)) if value is not None]
    scale = ("--rerank_model's scores" if args.rerank_model else
             "BM25 scores" if args.retriever == "bm25" else "the embedder's similarity")
    if filters:
        return (f"the false-negative filters ({', '.join(filters)}, on {scale}) dropped "
                f"{summary['filtered_false_negatives']} candidates in all")
    return (f"ranks {args.range_for_sampling} and the top-up below them (search depth {args.search_depth}) "
            "held no candidate that is not a positive")
