"""Configuration of the miner: the embedder's options and the mining options, parsed by HfArgumentParser."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from reranker.common.errors import ConfigError
from reranker.common.precision import resolve_dtype
from reranker.models.backends import CHOICES
from reranker.models.embed import POOLINGS, default_pooling, saved_query_instruction
from reranker.models.loading import bundled_minilm_path
from reranker.retrieval.search import check_bm25_language

logger = logging.getLogger(__name__)


@dataclass
class EmbedArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Encoder checkpoint (bge-style). Default: the bundled all-MiniLM-L6-v2."},
    )
    pooling: str | None = field(
        default=None,
        metadata={"help": "cls (bge), mean (MiniLM / sentence-transformers) or last (decoder embedders). Default: "
                          "read from the checkpoint's 1_Pooling/config.json, else cls.",
                  "choices": [*POOLINGS, None]},
    )
    query_instruction: str | None = field(
        default=None,
        metadata={"help": "Prefix for queries, e.g. bge's 'Represent this sentence for searching relevant "
                          "passages: '. Passages get none. Default: the checkpoint's saved query prompt "
                          "(config_sentence_transformers.json, which reranker-train-embedder writes), else none."},
    )
    query_max_len: int = field(default=64, metadata={"help": "Token budget of queries when embedding."})
    passage_max_len: int = field(default=256, metadata={"help": "Token budget of passages when embedding."})
    embed_batch_size: int = field(default=64, metadata={"help": "Texts per encoder batch."})
    embed_dtype: str = field(
        default="auto",
        metadata={"help": "fp32, bf16 (faster on CPUs with AVX512-BF16, and on GPUs; several times slower than fp32 "
                          "on a CPU without bf16 instructions), fp16 (GPU), or auto: bf16 where the device has it, "
                          "else fp32.", "choices": ["fp32", "bf16", "fp16", "auto"]},
    )
    embed_backend: str = field(default="torch", metadata={
        "help": "What embeds: torch (the weights), or the graph reranker-export wrote beside them: onnx, onnx-int8, "
                "openvino, openvino-int8 (CPU; docs/backends.md); auto: the fastest graph its export measured "
                "faster than torch on this CPU, else torch.",
        "choices": list(CHOICES)})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped inside the checkpoint."})

    def __post_init__(self):
        if self.model_name_or_path is None:
            self.model_name_or_path = bundled_minilm_path()
            logger.info("No --model_name_or_path given: embedding with the bundled all-MiniLM-L6-v2")
        if self.pooling is None:
            self.pooling = default_pooling(self.model_name_or_path)
            logger.info("Pooling: %s (from the checkpoint)", self.pooling)
        if self.query_instruction is None:
            # A fine-tuned embedder is read with the prompt it was trained with, without the user repeating it.
            self.query_instruction = saved_query_instruction(self.model_name_or_path)
            if self.query_instruction:
                logger.info("Query instruction: %r (from the checkpoint)", self.query_instruction)
        self.embed_dtype = resolve_dtype(self.embed_dtype, "--embed_dtype")


@dataclass
class MineArguments:
    input_file: str = field(
        default=None, metadata={"help": "Training records {query, pos, neg?} to mine for: a jsonl file or folder."}
    )
    output_file: str = field(default=None, metadata={"help": "Where the mined records go (jsonl)."})
    candidate_pool: str | None = field(
        default=None, metadata={"help": "jsonl of {text} or {_id, title, text} passages to mine from."}
    )
    corpus: str | None = field(
        default=None, metadata={"help": "A BEIR folder whose corpus.jsonl is the pool. Default pool (neither "
                                        "given): every pos and neg text of the input, as FlagEmbedding does."}
    )
    range_for_sampling: str = field(
        default="2-60",
        metadata={"help": "a-b: sample negatives from retrieval ranks a (inclusive) to b (exclusive), 0-based "
                          "as in FlagEmbedding (whose default is 10-100). 2-60, just below the top, measured best "
                          "for rerankers of BM25 (docs/mining.md, 'Defaults')."},
    )
    negative_number: int = field(default=15, metadata={"help": "Negatives per query."})
    retriever: str = field(
        default="bm25", metadata={"help": "bm25 (bm25s), dense (the embedder + faiss) or both (negatives taken "
                                          "alternately from the two rankings, no repeats). Mine with the first "
                                          "stage the reranker will sit behind: BM25's own negatives measured best "
                                          "for reranking BM25 (docs/mining.md, 'Defaults').",
                                   "choices": ["dense", "bm25", "both"]}
    )
    bm25_language: str = field(
        default="english",
        metadata={"help": "The language of BM25's Snowball stemmer and stop words (german, french, ...; any "
                          "PyStemmer algorithm), or none: lower-cased words as they are."},
    )
    index: str = field(
        default="flat", metadata={"help": "faiss index: flat (exact), ivf or hnsw (approximate, large pools).",
                                  "choices": ["flat", "ivf", "hnsw"]}
    )
    ivf_nlist: int = field(default=0, metadata={"help": "IVF lists (0: about 4 x sqrt(pool size))."})
    ivf_nprobe: int = field(default=32, metadata={"help": "IVF lists visited per query."})
    hnsw_m: int = field(default=32, metadata={"help": "HNSW links per node."})
    hnsw_ef_search: int = field(default=128, metadata={"help": "HNSW search breadth."})
    search_depth: int = field(
        default=0,
        metadata={"help": "Candidates retrieved per query (0: b + 50 + 2 x negative_number, room for exclusions "
                          "and top-ups)."},
    )
    query_chunk_size: int = field(default=4096, metadata={"help": "Queries per faiss search call."})
    positive_depth: int = field(
        default=0,
        metadata={"help": "Keep as positives only the labelled documents a retriever ranks in its top K (0: all). "
                          "For broad labels (dozens of judged documents per query): a positive the first stage "
                          "never retrieves teaches little about reranking its top K. The others stay out of "
                          "the negatives; a query left with none is dropped (counted)."},
    )
    fn_relative_threshold: float | None = field(
        default=None,
        metadata={"help": "Drop a candidate scoring above this fraction of the (lowest) positive's score: a likely "
                          "unlabelled positive. E.g. 0.95. Applies when the positive's score is positive."},
    )
    fn_absolute_threshold: float | None = field(
        default=None, metadata={"help": "Drop a candidate scoring above this value."}
    )
    fn_margin: float | None = field(
        default=None,
        metadata={"help": "Drop a candidate scoring above the (lowest) positive's score minus this margin. Works on "
                          "any score scale; meant for --rerank_model logits, e.g. 1.0."},
    )
    rerank_model: str | None = field(
        default=None,
        metadata={"help": "A cross-encoder (e.g. the previous round's) that rescores the retrieved candidates; "
                          "negatives are then sampled from its ordering and the false-negative filters read its "
                          "scores. The candidates are the top --search_depth of each retriever."},
    )
    rerank_batch_size: int = field(default=64, metadata={"help": "Pairs per batch of --rerank_model."})
    rerank_max_length: int = field(default=320, metadata={"help": "Token budget of a --rerank_model pair."})
    rerank_dtype: str = field(default="auto", metadata={"help": "fp32, bf16, fp16 or auto for --rerank_model.",
                                                        "choices": ["fp32", "bf16", "fp16", "auto"]})
    teacher_model: str | None = field(
        default=None, metadata={"help": "Cross-encoder that scores every positive and negative (pos_scores / "
                                        "neg_scores, the distillation input of reranker-train)."}
    )
    teacher_format: str = field(
        default="scores",
        metadata={"help": "scores: the teacher's scores as pos_scores / neg_scores in each record (for --loss "
                          "distill). inranker: instead one InRanker record {query, contents, true_logit, "
                          "false_logit} per (query, passage) pair, positives and negatives, for --loss inranker; "
                          "the teacher must answer with two logits (a seq2seq model such as monoT5, or a decoder "
                          "scored by logit(yes) - logit(no)).", "choices": ["scores", "inranker"]},
    )
    embedder_teacher: bool = field(
        default=False,
        metadata={"help": "Without a cross-encoder teacher: write the embedder's own similarity (scale x cosine) as "
                          "pos_scores / neg_scores, for reranker-train --loss distill. With --retriever bm25 the "
                          "embedder only scores the chosen pairs."},
    )
    embedder_teacher_scale: float = field(
        default=20.0, metadata={"help": "Scale of the cosine in --embedder_teacher scores (20: sentence-"
                                        "transformers' contrastive scale, logits of a sensible sharpness)."}
    )
    teacher_bm25_weight: float = field(
        default=0.0,
        metadata={"help": "With --embedder_teacher: fuse BM25 into the teacher, scale x ((1 - w) x cosine + w x "
                          "BM25), each min-max normalised over the record's positives and negatives (0: the "
                          "embedder's cosine alone, not normalised). The first stages fused, for labels too broad "
                          "to teach alone (nfcorpus)."},
    )
    teacher_neighbors: int = field(
        default=0,
        metadata={"help": "With --embedder_teacher: also fuse into the teacher the labels of the K input queries "
                          "most like each query (the embedder's cosine; the query itself left out): a document "
                          "scores the sum, over those of the K that judged it, of cosine^4 x grade. The labels of "
                          "similar queries, a supervised signal the first stages lack (0: off)."},
    )
    teacher_neighbor_weight: float = field(
        default=1 / 3,
        metadata={"help": "With --teacher_neighbors: the neighbours' weight in the teacher, min-max normalised like "
                          "its other parts, which share the rest as --teacher_bm25_weight says."},
    )
    teacher_batch_size: int = field(default=32, metadata={"help": "Pairs per teacher batch."})
    teacher_max_length: int = field(default=512, metadata={"help": "Token budget of a teacher pair."})
    teacher_dtype: str = field(default="auto", metadata={"help": "fp32, bf16, fp16 or auto for the teacher.",
                                                         "choices": ["fp32", "bf16", "fp16", "auto"]})
    seed: int = field(default=42, metadata={"help": "Seed of the negative sampling."})
    cache_dir: str = field(
        default="~/.cache/reranker/embeddings",
        metadata={"help": "Where pool embeddings are cached (keyed by model, pooling, length and pool content)."},
    )
    no_cache: bool = field(default=False, metadata={"help": "Neither read nor write the embedding cache."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output file."})

    def __post_init__(self):
        self._check_files()
        self._parse_range()
        self._check_teachers()
        self._check_depths()

    def _check_files(self) -> None:
        check_bm25_language(self.bm25_language, "--bm25_language")
        if not self.input_file or not self.output_file:
            raise ConfigError("--input_file and --output_file are required")
        if self.candidate_pool and self.corpus:
            raise ConfigError("give --candidate_pool or --corpus, not both")

    def _parse_range(self) -> None:
        try:
            start, end = (int(x) for x in self.range_for_sampling.split("-"))
        except ValueError:
            raise ConfigError(f"--range_for_sampling must look like 10-100, got {self.range_for_sampling!r}") from None
        if not 0 <= start < end:
            raise ConfigError(f"--range_for_sampling needs 0 <= a < b, got {self.range_for_sampling!r}")
        self.range_start, self.range_end = start, end
        if self.negative_number < 1:
            raise ConfigError("--negative_number must be at least 1")

    def _check_teachers(self) -> None:
        if self.embedder_teacher and self.teacher_model:
            raise ConfigError("give --teacher_model or --embedder_teacher, not both")
        if self.teacher_format == "inranker" and not self.teacher_model:
            raise ConfigError("--teacher_format inranker writes a --teacher_model's (false, true) logits: give "
                              "--teacher_model (a seq2seq or decoder reranker)")
        if self.rerank_model:
            self.rerank_dtype = resolve_dtype(self.rerank_dtype, "--rerank_dtype")
        if self.teacher_model:
            self.teacher_dtype = resolve_dtype(self.teacher_dtype, "--teacher_dtype")
        if not 0.0 <= self.teacher_bm25_weight <= 1.0:
            raise ConfigError(f"--teacher_bm25_weight must be in [0, 1], got {self.teacher_bm25_weight}")
        if self.teacher_bm25_weight and not self.embedder_teacher:
            raise ConfigError("--teacher_bm25_weight fuses BM25 into --embedder_teacher's scores: add "
                              "--embedder_teacher")
        if self.teacher_neighbors < 0:
            raise ConfigError(f"--teacher_neighbors must be 0 (off) or more, got {self.teacher_neighbors}")
        if self.teacher_neighbors and not self.embedder_teacher:
            raise ConfigError("--teacher_neighbors fuses similar queries' labels into --embedder_teacher's scores: "
                              "add --embedder_teacher")
        if not 0.0 < self.teacher_neighbor_weight <= 1.0:
            raise ConfigError(f"--teacher_neighbor_weight must be in (0, 1], got {self.teacher_neighbor_weight}")

    def _check_depths(self) -> None:
        end = self.range_end
        if self.search_depth and self.search_depth < end:
            raise ConfigError(f"--search_depth {self.search_depth} is shallower than the sampling range end {end}")
        if self.positive_depth < 0:
            raise ConfigError(f"--positive_depth must be 0 (all positives) or more, got {self.positive_depth}")
        if self.positive_depth and not self.rerank_model and (self.fn_relative_threshold is not None
                                                               or self.fn_margin is not None):
            # These read the lowest positive's score, computed over all positives before the depth is applied.
            raise ConfigError("--positive_depth with --fn_relative_threshold or --fn_margin needs --rerank_model "
                              "(it scores the kept positives); or filter with --fn_absolute_threshold")
        if self.search_depth and self.search_depth < self.positive_depth:
            raise ConfigError(f"--search_depth {self.search_depth} is shallower than --positive_depth "
                              f"{self.positive_depth}")
        if self.rerank_model and not self.search_depth:
            # Every candidate costs a cross-encoder pass: rerank just past the sampling range.
            self.search_depth = max(end + self.negative_number, self.positive_depth)
        self.search_depth = self.search_depth or max(end + 50 + 2 * self.negative_number, self.positive_depth)
