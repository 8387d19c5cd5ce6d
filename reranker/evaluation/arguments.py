"""Configuration of reranker-eval: what to score, the first stages, and where outputs go."""

from __future__ import annotations

from dataclasses import dataclass, field

from reranker.common.errors import ConfigError
from reranker.models.backends import CHOICES
from reranker.retrieval.fusion import DEFAULT_WEIGHT
from reranker.retrieval.search import check_bm25_language


def check_depth_curve(depths: list, top_k: int, option: str, top_k_option: str) -> list[int]:
    """The depths, sorted and unique; each must be an integer below top_k (the full depth is reported anyway)."""
    bad = [k for k in depths if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < top_k]
    if bad:
        raise ConfigError(f"{option} depths must be integers from 1 to {top_k_option} - 1 ({top_k - 1}), got {bad}")
    return sorted(set(depths))


@dataclass
class EvalArguments:
    models: list[str] = field(
        default_factory=list,
        metadata={"help": "Cross-encoder checkpoints to evaluate (none: report the first stages alone).",
                  "nargs": "*"},
    )
    datasets: list[str] = field(
        default_factory=list,
        metadata={"help": "BEIR folders (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), or {query, pos, neg} "
                          "jsonl files, folders of them, or dataset ids.", "nargs": "+"},
    )
    split: str = field(default="test", metadata={"help": "qrels split of BEIR folders / split of dataset ids."})
    sub_data_name: str | None = field(default=None, metadata={"help": "Configuration name for dataset ids."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Write results.json, TREC run files and ndcg10.png here."}
    )
    first_stage: list[str] = field(
        default_factory=lambda: ["bm25"],
        metadata={"help": "First stages for BEIR data: bm25, dense, hybrid (the two fused by reciprocal rank), "
                          "bm25_expanded (BM25 over each document and the training queries that judged it; needs "
                          "--expand_from), and/or paths of TREC run files.", "nargs": "+"},
    )
    max_queries: int = field(
        default=0, metadata={"help": "Evaluate only the first N judged queries of each BEIR split (0: all), for "
                                     "quick checks; the figures are then not comparable with published ones."}
    )
    rrf_k: int = field(default=60, metadata={"help": "k of the reciprocal-rank fusion in the hybrid first stage."})
    hybrid_bm25_weight: float = field(
        default=0.5, metadata={"help": "Weight of BM25 in the hybrid first stage (dense gets 1 - it)."}
    )
    tune_hybrid: bool = field(
        default=False, metadata={"help": "Tune --hybrid_bm25_weight on the --dev_qrels queries (grid 0 to 1)."}
    )
    dev_qrels: str | None = field(
        default=None,
        metadata={"help": "BEIR-format qrels of dev queries from the same folder's queries.jsonl (never the test "
                          "queries; pipeline.sh carves them from the train split). With it, each reranker's score is "
                          "also fused with its first stage's (the hybrid's: with BM25's and the embedder's scores), "
                          "the weights tuned on these queries, and reported as '<stage> > <model> + fusion'."},
    )
    pseudo_dev: str | None = field(
        default=None,
        metadata={"help": "For a corpus without judged dev queries: a pseudo-dev folder (reranker-synth "
                          "--pseudo_dev) built over the one --datasets folder's corpus, whose synthetic queries (each "
                          "with its source document) stand in for --dev_qrels: the fusion weights are tuned on them "
                          "and they are the evidence that the pure reranker beats its first stage. Agreement with "
                          "real dev queries: results/cross-domain.md."},
    )
    fusion_weight: float = field(
        default=DEFAULT_WEIGHT,
        metadata={"help": "Every reranker is also reported fused with each first stage at this reranker weight "
                          "(the stage gets 1 - it; both min-max normalised per query), tuned on nothing: "
                          "'<stage> > <model> + fusion (default)', the ranking to ship without dev queries. The "
                          "default was chosen on cross-domain dev queries (results/cross-domain.md)."},
    )
    fusion_tuning: str = field(
        default="bagged",
        metadata={"help": "How the fusion weights (and the hybrid's) are chosen on the dev queries: bagged, the "
                          "mean of the best grid weights of 200 bootstrap resamples of the queries (a weight that "
                          "rests on a few queries is pulled back), or argmax, the best grid weight.",
                  "choices": ["bagged", "argmax"]},
    )
    top_k: int = field(default=100, metadata={"help": "Candidates per query taken from the first stage and reranked."})
    depth_curve: list[int] = field(
        default_factory=list,
        metadata={"help": "Also report each reranker at these shallower depths, from the same scores: only the first "
                          "stage's top k reordered, the rest left in its order below them ('<stage> > <model> @k'; "
                          "with --dev_qrels, with the dev queries' nDCG@10 at each depth). Reranking costs grow "
                          "with the depth; this shows what each depth buys before --top_k is chosen.",
                  "nargs": "+"},
    )
    expand_from: str | None = field(
        default=None,
        metadata={"help": "Document expansion for models trained with it (pipeline option expand_documents): a "
                          "training file (query_id, query, pos_ids per line; the pipeline's data/train.jsonl). Before "
                          "each document the reranker reads the training queries that judged it, those most like "
                          "the query first. The first stages bm25, dense and hybrid still see the plain corpus; "
                          "bm25_expanded indexes each document with all its training queries."},
    )
    expand_per_pair: int = field(default=3, metadata={"help": "With --expand_from: questions per document."})
    bm25_k1: float = field(default=1.2, metadata={"help": "BM25 k1."})
    bm25_b: float = field(default=0.75, metadata={"help": "BM25 b."})
    bm25_language: str = field(
        default="english",
        metadata={"help": "The language of BM25's Snowball stemmer and stop words (german, french, ...; any "
                          "PyStemmer algorithm), or none: lower-cased words as they are."},
    )
    dense_model: str | None = field(
        default=None, metadata={"help": "Embedder of the dense first stage. Default: bundled all-MiniLM-L6-v2."}
    )
    dense_pooling: str | None = field(
        default=None, metadata={"help": "cls, mean or last (default: from the checkpoint)."}
    )
    query_instruction: str | None = field(
        default=None,
        metadata={"help": "Query prefix for the dense first stage. Default: the --dense_model's saved query prompt "
                          "(config_sentence_transformers.json, which reranker-train-embedder writes), else none."},
    )
    dense_query_max_len: int = field(default=64, metadata={"help": "Token budget of queries for the embedder."})
    dense_passage_max_len: int = field(default=256, metadata={"help": "Token budget of passages for the embedder."})
    rerank_max_length: int | None = field(
        default=None,
        metadata={"help": "Token budget of a query-passage pair. Default: what the model was trained with (saved in "
                          "its config.json by reranker-train: query and passage each cut to its own budget, as in "
                          "training); for other models 512, or fewer where the model holds fewer."},
    )
    batch_size: int = field(default=64, metadata={"help": "Pairs (or texts) per batch."})
    dtype: str = field(default="auto", metadata={"help": "fp32, bf16 or fp16 for rerankers and the embedder, or auto: "
                                                         "bf16 where the device has it natively, else fp32 (bf16 on a "
                                                         "CPU without bf16 instructions is several times slower).",
                                                 "choices": ["fp32", "bf16", "fp16", "auto"]})
    backend: str = field(default="torch", metadata={
        "help": "What scores the rerankers: torch (the weights), or the graph reranker-export wrote beside them: "
                "onnx, onnx-int8, openvino, openvino-int8 (any family, CPU; docs/backends.md); auto: the fastest "
                "graph its export measured faster than torch on this CPU, else torch.",
        "choices": list(CHOICES)})
    dense_backend: str = field(default="torch", metadata={
        "help": "The same for the dense first stage's embedder (--dense_model).",
        "choices": list(CHOICES)})
    threshold: float = field(default=0.5, metadata={"help": "Sigmoid threshold for precision/recall/F1 on pairs."})
    keep_self_matches: bool = field(
        default=False,
        metadata={"help": "Keep candidates whose doc id equals the query id (dropped by default: in ArguAna-style "
                          "datasets that document is the query itself)."},
    )
    cache_dir: str | None = field(
        default="~/.cache/reranker/runs", metadata={"help": "Cache of first-stage runs; --no_cache turns it off."}
    )

    def __post_init__(self):
        check_bm25_language(self.bm25_language, "--bm25_language")
        if isinstance(self.models, str):
            self.models = [self.models]
        if isinstance(self.datasets, str):
            self.datasets = [self.datasets]
        if isinstance(self.first_stage, str):
            self.first_stage = [self.first_stage]
        if not self.datasets:
            raise ConfigError("--datasets is required")
        if not 0.0 <= self.hybrid_bm25_weight <= 1.0:
            raise ConfigError(f"--hybrid_bm25_weight must be in [0, 1], got {self.hybrid_bm25_weight}")
        if self.tune_hybrid and "hybrid" not in self.first_stage:
            raise ConfigError("--tune_hybrid tunes the hybrid first stage: add hybrid to --first_stage")
        if self.tune_hybrid and not (self.dev_qrels or self.pseudo_dev):
            raise ConfigError("--tune_hybrid needs --dev_qrels (or --pseudo_dev): the weight is tuned on dev "
                              "queries, never on test")
        if self.dev_qrels and self.pseudo_dev:
            raise ConfigError("give --dev_qrels or --pseudo_dev, not both: judged dev queries are the better "
                              "evidence where they exist")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ConfigError(f"--fusion_weight must be in [0, 1], got {self.fusion_weight}")
        if self.rrf_k < 0:
            raise ConfigError("--rrf_k must be non-negative")
        if self.max_queries < 0:
            raise ConfigError("--max_queries must be non-negative")
        if self.rerank_max_length is not None and self.rerank_max_length < 1:
            raise ConfigError(f"--rerank_max_length must be positive, got {self.rerank_max_length}")
        if self.top_k < 1:
            raise ConfigError("--top_k must be positive")
        if "bm25_expanded" in self.first_stage and not self.expand_from:
            raise ConfigError("--first_stage bm25_expanded indexes documents with their training queries: give "
                              "--expand_from")
        if self.expand_per_pair < 1:
            raise ConfigError(f"--expand_per_pair must be 1 or more, got {self.expand_per_pair}")
        if isinstance(self.depth_curve, int):
            self.depth_curve = [self.depth_curve]
        self.depth_curve = check_depth_curve(self.depth_curve, self.top_k, "--depth_curve", "--top_k")
        from reranker.common.precision import resolve_dtype

        self.dtype = resolve_dtype(self.dtype, "--dtype")
        if self.cache_dir in ("none", ""):
            self.cache_dir = None
        if self.dense_model is None:
            from reranker.models.loading import bundled_minilm_path

            self.dense_model = bundled_minilm_path()
        if self.dense_pooling is None:
            from reranker.models.embed import default_pooling

            self.dense_pooling = default_pooling(self.dense_model)
        if self.query_instruction is None:
            from reranker.models.embed import saved_query_instruction

            # Resolved here, so the dense run's cache key holds the prompt actually used.
            self.query_instruction = saved_query_instruction(self.dense_model)
