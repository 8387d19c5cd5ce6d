"""Exporting a reranker (any family) or an embedder to a graph for ONNX Runtime or OpenVINO, optionally int8,
checked against the torch fp32 model on probe pairs before anything is written beside the weights.

For ONNX Runtime the graph is traced by torch.onnx's exporter (torch.export underneath: the TorchScript one
mis-traces transformers 5's attention masks); for OpenVINO by OpenVINO's PyTorch frontend, which keeps attention
as one fused operation. int8 for onnx: ONNX Runtime's dynamic quantisation, weights per channel. int8 for openvino:
NNCF's post-training quantisation calibrated on the probe pairs; a reranker's blocks' output projections are kept
out of int8, which keeps the ranking where quantising every MatMul does not, while an embedder's retrieval held with
every layer in int8 (measured: results/backends.md). A seq2seq or decoder reranker's graph returns its answer
tokens' logits (its scorer's `token_logits`, traced); T5 goes to ONNX through the TorchScript exporter, which traces
its attention where torch.export fails.

The check: the graph's scores of the probe pairs (a reranker's logits; an embedder's query-passage similarities)
against torch fp32's, as a Pearson correlation, with the runtime in f32. An fp32 graph must agree to 1e-4 in
correlation (an export bug otherwise); an int8 graph at least `min_correlation`, else the export is refused and
nothing is written. OpenVINO's bf16 (its default where the CPU has it) is measured and recorded too, with a warning
when it falls below `min_correlation`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from reranker.common.errors import ConfigError
from reranker.common.files import iter_jsonl, write_json
from reranker.common.precision import native_bf16
from reranker.models import backends as B

logger = logging.getLogger(__name__)

FP32_MIN_CORRELATION = 0.9999
# Measured on SciFact's dev queries (results/backends.md): every MatMul in int8 lost 0.020 nDCG@10 against bf16;
# with these layers kept out of int8 it lost none, at 1.2x bf16's speed.
INT8_KEEP = r".*output\.dense.*"
# openvino-int8's default layers kept out of int8, by what is exported. A reranker keeps its blocks' output
# projections (attention output and feed-forward down-projection) under its family's layer names: measured for the
# encoder; T5's and Llama-style decoders' follow it by analogy (no trained monoT5 exists here to measure on). An
# embedder quantises every layer: all-MiniLM-L6-v2 kept its Recall@100 within 0.002 of fp32 that way on nfcorpus's
# dev and scifact's train queries, and encoded 1.2x as fast as with the projections kept (results/backends.md).
INT8_KEEP_BY_KIND = {"encoder": INT8_KEEP,
                     "seq2seq": r".*\.(SelfAttention\.o|EncDecAttention\.o|DenseReluDense\.wo)/.*",
                     "decoder": r".*\.(o_proj|down_proj)/.*",
                     "embedder": None}
# openvino-int8's calibration batches (ExportOptions.calibration_batch_size None): an encoder reranker and an embedder
# calibrate on each probe input alone, each chosen on dev queries by a rule fixed before the figures
# (benchmarks/int8_recipes.py, results/backends.md): the scifact reranker's dev nDCG@10 moved +0.0025 and +0.0047 at
# the 320- and 256-token budgets, against +0.0054 and +0.0043 from the padded probe batches (outside 0.005); the
# embedder's Recall@100 stayed within 0.005 either way and the rule's speed tie-break chose single inputs. The seq2seq
# and decoder families calibrate on the probe batches, as they were measured.
CALIBRATION_BATCH_BY_KIND = {"encoder": 1, "embedder": 1}
# A few real-looking pairs, so an fp32 export is checked even without probe data (int8 needs real data to calibrate).
DEFAULT_PROBE = [
    ("what causes high blood pressure", "Hypertension is often caused by a diet high in salt, lack of exercise and "
     "genetic factors; it raises the risk of heart disease and stroke."),
    ("what causes high blood pressure", "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."),
    ("how do vaccines work", "Vaccines train the immune system to recognise a pathogen by exposing it to an "
     "inactivated or weakened form, or to one of its proteins."),
    ("how do vaccines work", "Photosynthesis converts light energy into chemical energy stored in glucose."),
    ("python list sort stable", "Python's sort is stable: items that compare equal keep their original order."),
    ("python list sort stable", "A stable marriage matching always exists for two equally sized groups."),
    ("capital of australia", "Canberra is the capital city of Australia."),
    ("capital of australia", "Sydney is the largest city in Australia, known for its harbour and opera house."),
]


@dataclass
class ExportOptions:
    backend: str = "onnx"  # onnx, onnx-int8, openvino, openvino-int8
    probe_data: str | None = None  # a {query, pos, neg} jsonl or a BEIR folder; required for int8
    probe_pairs: int = 256
    min_correlation: float = 0.98
    max_length: int | None = None  # the reranker's pair budget / the embedder's text budget; default as it scores
    batch_size: int = 16
    # openvino-int8: the probe pairs NNCF collects its ranges on, in batches of this many (None: the kind's, from
    # CALIBRATION_BATCH_BY_KIND, else batch_size); 1 gives each pair alone, so no padding position enters the ranges.
    calibration_batch_size: int | None = None
    seed: int = 0
    opset: int = 18
    # openvino-int8: the layers kept out of int8, a regular expression over the graph's layer names; "auto": each
    # block's output projections (attention output and feed-forward down-projection) under the family's names
    # (INT8_KEEP_BY_KIND); None: every layer NNCF quantises.
    int8_keep: str | None = "auto"
    # A seq2seq or decoder reranker's prompt and answer options (ScorerOptions' names: template, true_token,
    # false_token, score_mode, ...), over those saved with the model: the graph returns those answer tokens' logits,
    # and scores only for a Reranker given the same.
    scorer_options: dict | None = None


def model_kind(model_path: str | Path) -> str:
    """"reranker" (a sequence-classification head, a seq2seq model or a causal LM: the three reranker families) or
    "embedder" (a bare encoder, or any model a sentence-transformers folder pools into embeddings)."""
    folder = Path(model_path)
    if (folder / "adapter_config.json").is_file():
        raise ConfigError(f"{model_path} is a LoRA adapter: merge it into its base first (reranker-merge), then "
                          "export the merged model")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{model_path} is not a model folder (no config.json)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    modules = folder / "modules.json"
    if modules.is_file() and any("Pooling" in str(m.get("type", "")) for m in json.loads(modules.read_text())):
        return "embedder"  # a sentence-transformers embedder, whatever its body (decoder embedders included)
    architectures = config.get("architectures") or []
    if config.get("reranker") or any(a.endswith(("ForSequenceClassification", "ForConditionalGeneration",
                                                  "ForCausalLM", "LMHeadModel")) for a in architectures):
        return "reranker"
    return "embedder"


def read_probe(probe_data: str | None, count: int, seed: int) -> list[tuple[str, str]]:
    """(query, passage) pairs: each record's query with its positives and negatives (or a dev file's candidates),
    or a BEIR folder's queries (train split first: calibrating on test queries would flatter a study) with their
    judged documents and random others; seeded, stable."""
    if probe_data is None:
        return list(DEFAULT_PROBE)
    path = Path(probe_data)
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    if path.is_dir():
        from reranker.data.beir import load_beir
        split = next((s for s in ("train", "dev", "test") if (path / "qrels" / f"{s}.tsv").is_file()), None)
        if split is None:
            raise ConfigError(f"--probe_data {path}: a BEIR folder needs a qrels/train.tsv, dev.tsv or test.tsv")
        data = load_beir(path, split)
        doc_ids = sorted(data.corpus)
        for qid in sorted(data.qrels):
            judged = [d for d in sorted(data.qrels[qid]) if d in data.corpus][:2]
            others = [rng.choice(doc_ids) for _ in range(2)]
            pairs += [(data.queries[qid], data.corpus[d]) for d in judged + others]
    elif path.is_file():
        for line, row in iter_jsonl(path):
            if not isinstance(row.get("query"), str):
                raise ConfigError(f"{path}, line {line}: field 'query' must be a string")
            for key in ("pos", "neg", "candidates"):  # a training record, or a dev file's candidates
                texts = row.get(key, [])
                for text in [texts] if isinstance(texts, str) else texts:
                    text = text.get("text") if isinstance(text, dict) else text
                    if isinstance(text, str):
                        pairs.append((row["query"], text))
    else:
        raise ConfigError(f"--probe_data {path} does not exist")
    if not pairs:
        raise ConfigError(f"--probe_data {path} gave no (query, passage) pairs")
    rng.shuffle(pairs)
    return pairs[:count]


class _AnswerLogits(torch.nn.Module):
    """A seq2seq or decoder reranker as one graph from the tokens to its answer tokens' logits [pairs, 1 or 2]: the
    scorer's own `token_logits` (the last real token's hidden state times two rows of the output embedding; T5's
    first decoder step from its start token, which the scorer builds inside the graph). The prompt is tokenized
    outside, as for torch, and the score is read from these logits by the scorer."""

    def __init__(self, scorer, model):
        super().__init__()
        self.scorer, self.model = scorer, model

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(answer_logits=self.scorer.token_logits(
            self.model, {"input_ids": input_ids, "attention_mask": attention_mask}))


class _Source:
    """The torch fp32 model, its input encoding and its reference outputs on the probe pairs."""

    def __init__(self, model_path: str, kind: str, max_length: int | None, scorer_options: dict | None = None):
        self.kind = self.family = kind
        if kind != "reranker" and scorer_options:
            raise ConfigError(f"{model_path} is an embedder: scorer options ({', '.join(scorer_options)}) are for a "
                              "seq2seq or decoder reranker")
        if kind == "reranker":
            from reranker.models.inference import Reranker
            reranker = Reranker(model_path, device="cpu", dtype="fp32", max_length=max_length,
                                **(scorer_options or {}))
            self.scorer, self.family = reranker.scorer, reranker.scorer.family
            if self.family == "encoder":
                self.model, self.output = reranker.model, "logits"
            else:
                self.model, self.output = _AnswerLogits(reranker.scorer, reranker.model), "answer_logits"
            budgets = reranker.budgets or (None, None)

            def encode(pairs):
                batch = reranker.scorer.encode([q for q, _ in pairs], [p for _, p in pairs], *budgets,
                                               max_length=reranker.max_length)
                batch.pop("decoder_input_ids", None)  # the graph starts T5's decoder itself
                return batch
            self.encode = encode
        else:
            from reranker.models.embed import Embedder
            embedder = Embedder(model_path, dtype="fp32", device="cpu")
            self.model, self.output, self.embedder = embedder.model, "last_hidden_state", embedder
            length = max_length or 256
            self.encode = lambda texts: dict(embedder.tokenizer(list(texts), padding=True, truncation=True,
                                                                max_length=length, return_tensors="pt"))
        self.model.eval()

    def batches(self, pairs: list[tuple[str, str]], size: int) -> list[dict[str, torch.Tensor]]:
        """Input batches: pairs for a reranker; for an embedder its queries, then its passages."""
        items = pairs if self.kind == "reranker" else [q for q, _ in pairs] + [p for _, p in pairs]
        return [self.encode(items[i:i + size]) for i in range(0, len(items), size)]

    @torch.inference_mode()
    def reference(self, batches) -> list[np.ndarray]:
        return [getattr(self.model(**b), self.output).float().numpy() for b in batches]

    def scores(self, outputs: list[np.ndarray], batches, pairs_count: int) -> np.ndarray:
        """What ranks: a reranker's logits, or an embedder's query-passage cosine similarities (all pairs)."""
        if self.kind == "reranker":
            if self.output == "answer_logits":
                return np.concatenate([self.scorer.answer_logits(torch.from_numpy(np.asarray(o))).numpy()
                                       for o in outputs])
            return np.concatenate([o.reshape(-1) for o in outputs])
        from reranker.models.embed import pool
        vectors = torch.cat([torch.nn.functional.normalize(
            pool(torch.from_numpy(o), b["attention_mask"], self.embedder.pooling), dim=-1)
            for o, b in zip(outputs, batches, strict=True)]).numpy()
        queries, passages = vectors[:pairs_count], vectors[pairs_count:]
        return (queries @ passages.T).reshape(-1)


class _Traceable(torch.nn.Module):
    """The model with its tensor inputs named (the exporter reads the names from forward's signature; **kwargs hides
    them) and one named output."""

    def __init__(self, model, output: str):
        super().__init__()
        self.model, self.output = model, output

    def forward(self, input_ids, attention_mask):
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask), self.output)


class _TraceableWithSegments(_Traceable):
    def forward(self, input_ids, attention_mask, token_type_ids):
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids),
                       self.output)


def _export_onnx(source: _Source, example: dict[str, torch.Tensor], target: Path, opset: int) -> None:
    names = _names(example)
    module = (_TraceableWithSegments if len(names) == 3 else _Traceable)(source.model, source.output)
    if source.family == "seq2seq":
        # torch.export cannot decompose T5's attention reshape with symbolic shapes (a view of a transposed tensor);
        # the TorchScript exporter traces it, and the probe check below holds it to torch's scores as any export.
        with _quiet("torch.onnx"), warnings.catch_warnings():
            # its deprecation notice only: TracerWarnings (a shape frozen into the graph) stay visible
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, tuple(example[n] for n in names), str(target), input_names=names,
                              output_names=[source.output], opset_version=opset, dynamo=False,
                              dynamic_axes={**{n: {0: "batch", 1: "length"} for n in names},
                                            source.output: {0: "batch"}})
        return
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", min=2, max=8192)
    with _quiet("onnxscript", "onnx_ir", "torch.onnx"):  # a line per graph rewrite otherwise
        program = torch.onnx.export(module, tuple(example[n] for n in names), input_names=names,
                                    output_names=[source.output],
                                    dynamic_shapes={n: {0: batch, 1: length} for n in names}, opset_version=opset,
                                    dynamo=True, verbose=False)
    program.save(str(target))


@contextlib.contextmanager
def _quiet(*names: str):
    """The named loggers ("": the root) at WARNING for the duration: the exporters' INFO lines are noise here."""
    loggers = [logging.getLogger(name) if name else logging.getLogger() for name in names]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)


def _names(example: dict[str, torch.Tensor]) -> list[str]:
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in example else [])
    unknown = sorted(set(example) - set(names))
    if unknown:
        raise ConfigError(f"the tokenizer gives inputs {unknown} the exporter does not know; use backend torch")
    return names


def _convert_openvino(source: _Source, example: dict[str, torch.Tensor]):
    """The model as an OpenVINO graph, through OpenVINO's PyTorch frontend: it maps attention to OpenVINO's fused
    ScaledDotProductAttention, which the ONNX route decomposes (measured: about 1.2x faster in bf16). The frontend
    is called directly: openvino.convert_model would also send usage telemetry."""
    import openvino as ov
    from openvino.frontend import FrontEndManager
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    names = _names(example)
    module = (_TraceableWithSegments if len(names) == 3 else _Traceable)(source.model, source.output)
    with torch.no_grad():
        decoder = TorchScriptPythonDecoder(module, example_input=tuple(example[n] for n in names))
    frontend = FrontEndManager().load_by_framework("pytorch")
    model = frontend.convert(frontend.load(decoder))
    for port, name in zip(model.inputs, names, strict=True):
        port.get_tensor().set_names({name})
        port.get_node().set_partial_shape(ov.PartialShape([-1, -1]))
    model.outputs[0].get_tensor().set_names({source.output})
    model.validate_nodes_and_infer_types()
    return model


def _quantize_openvino(model, target: Path, calibration: list[dict[str, torch.Tensor]], keep: str | None) -> int:
    """Writes the int8 graph; returns how many MatMul layers `keep` kept out of int8 (a pattern that matches none is
    refused: NNCF would quantise every layer without a word, and the record would claim otherwise)."""
    kept = sum(bool(re.fullmatch(keep, op.get_friendly_name())) for op in model.get_ops()
               if op.get_type_name() == "MatMul") if keep else 0
    if keep and not kept:
        raise ConfigError(f"--int8_keep {keep!r} matches no MatMul layer of this graph, so every layer would go to "
                          "int8: give a pattern over its layer names, or --int8_keep none to quantise them all")
    # NNCF sends usage telemetry unless told it runs in CI: this project never touches the network on its own.
    os.environ.setdefault("NNCF_CI", "1")
    try:
        import nncf
    except ImportError:
        raise ConfigError("openvino-int8 needs NNCF: pip install 'rerank-toolkit[openvino]'") from None
    import openvino as ov
    feeds = [{k: v.numpy().astype(np.int64) for k, v in b.items()} for b in calibration]
    # subset_size counts the dataset's items, here batches: all of them. `keep`: the layers left in the runtime's
    # precision (their inputs carry the outliers that int8 clips).
    ignored = nncf.IgnoredScope(patterns=[keep], validate=False) if keep else None
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds), ignored_scope=ignored)
    ov.save_model(quantized, str(target))
    return kept


def _graph_runner(path: Path, runtime: str, output: str, hint: str = "f32"):
    """`run(batches) -> outputs` over the graph, loaded once, compiled for any shape."""
    names, call = B.graph_runner(path, runtime, output, hint)
    return lambda batches: [call({n: b[n].numpy().astype(np.int64) for n in names}) for b in batches]


def _agreement(reference: np.ndarray, scores: np.ndarray) -> dict:
    return {"correlation": float(np.corrcoef(reference, scores)[0, 1]),
            "max_abs_diff": float(np.abs(reference - scores).max()),
            "reference_std": float(reference.std())}


def export(model_path: str, options: ExportOptions | None = None) -> Path:
    """Writes the backend's graph (and its entry in export.json) into model_path; returns the graph's path.
    Refused, with nothing written, when the graph disagrees with torch fp32 on the probe pairs."""
    options = options or ExportOptions()
    backend = B.check_backend(options.backend, "--backend")
    if backend == "torch":
        raise ConfigError("--backend torch is the checkpoint itself: nothing to export")
    runtime, int8 = B.runtime_of(backend), backend.endswith("-int8")
    B.import_runtime(runtime)
    if int8 and options.probe_data is None:
        raise ConfigError(f"--backend {backend} calibrates and checks int8 on real pairs: give --probe_data (a "
                          "{query, pos, neg} jsonl such as a training file, or a BEIR folder)")
    if not 0 < options.min_correlation <= 1:
        raise ConfigError(f"--min_correlation must be in (0, 1], got {options.min_correlation}")
    if options.batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {options.batch_size}")
    if options.calibration_batch_size is not None and options.calibration_batch_size < 1:
        raise ConfigError(f"--calibration_batch_size must be at least 1, got {options.calibration_batch_size}")
    kind = model_kind(model_path)
    digest = B.weights_digest(model_path)
    pairs = read_probe(options.probe_data, options.probe_pairs, options.seed)
    started = time.time()
    source = _Source(model_path, kind, options.max_length, options.scorer_options)
    batches = source.batches(pairs, options.batch_size)
    # Also checked on batches of another size and length than the one traced: a shape the trace froze fails there.
    extra = source.batches(pairs[:3], 3)
    keep = {"auto": INT8_KEEP_BY_KIND[source.family], "none": None}.get(options.int8_keep, options.int8_keep)
    calibration_size = (options.calibration_batch_size or CALIBRATION_BATCH_BY_KIND.get(source.family)
                        or options.batch_size)
    sets = ((batches, len(pairs)), (extra, len(extra[0]["input_ids"])))  # (batches, pairs in them)
    reference = np.concatenate([source.scores(source.reference(b), b, n) for b, n in sets])
    target = B.graph_path(model_path, backend)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    kept = 0  # MatMul layers kept out of int8 (openvino-int8)
    try:
        onnx_file = work / "model.onnx"
        built = work / target.name
        # The example batch pads (pairs of unequal length), so the traced graph keeps the attention mask's path.
        if runtime == "onnx":
            _export_onnx(source, batches[0], onnx_file, options.opset)
        if backend == "onnx-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic
            with _quiet(""):  # ONNX Runtime's quantiser logs a line per tensor on the root logger
                quantize_dynamic(str(onnx_file), str(built), weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul"])
        elif backend == "openvino-int8":
            calibration = (batches if calibration_size == options.batch_size
                           else source.batches(pairs, calibration_size))
            kept = _quantize_openvino(_convert_openvino(source, batches[0]), built, calibration, keep)
        elif backend == "openvino":
            import openvino as ov
            ov.save_model(_convert_openvino(source, batches[0]), str(built), compress_to_fp16=False)
        checks = {}
        hints = ["f32"] + (["bf16"] if runtime == "openvino" and native_bf16("cpu") else [])
        bf16_skipped = None
        if "bf16" in hints and (why := B.bf16_crash(source.family, torch.get_num_threads())):
            logger.warning("bf16 not checked: %s", why)
            hints.remove("bf16")
            bf16_skipped = f"not checked: {why}"
        for hint in hints:
            run = _graph_runner(built, runtime, source.output, hint)
            scores = [source.scores(run(b), b, n) for b, n in sets]
            checks[hint] = _agreement(reference, np.concatenate(scores))
        least = FP32_MIN_CORRELATION if not int8 else options.min_correlation
        # The gate is the graph itself (run in f32); bf16 is a run-time choice, recorded and warned about.
        if not checks["f32"]["correlation"] >= least:
            raise ConfigError(f"the {backend} graph of {model_path} agrees with torch fp32 at correlation "
                              f"{checks['f32']['correlation']:.4f} on {len(pairs)} probe pairs, below the {least} "
                              f"required ({json.dumps(checks)}): not written. For int8, a lower --min_correlation "
                              "accepts it; check its ranking (reranker-eval --backend) before you rely on it")
        if "bf16" in checks and not checks["bf16"]["correlation"] >= options.min_correlation:
            logger.warning("In bf16 (OpenVINO's default on this CPU) the %s graph agrees with torch fp32 at only %.4f "
                           "on the probe pairs: run it with dtype fp32", backend, checks["bf16"]["correlation"])
        speed = _measure_speed(source, built, runtime, batches, hints[-1])
        quantization = {"onnx-int8": "onnxruntime quantize_dynamic, QInt8 weights per channel, MatMul",
                        "openvino-int8": "nncf.quantize, ModelType.TRANSFORMER, calibrated on the probe in batches "
                                         f"of {calibration_size}, " + (
                            f"the {kept} MatMul layers matching {keep!r} kept out of int8" if keep
                            else "every layer in int8")}
        record = {"kind": kind, "family": source.family, "backend": backend, "output": source.output,
                  # the answer tokens whose logits the graph returns: a scorer told other tokens cannot use it
                  "token_ids": list(getattr(source.scorer, "token_ids", [])) if kind == "reranker" else [],
                  "weights_sha256": digest,
                  "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "seconds": round(time.time() - started, 1),
                  "quantization": quantization.get(backend),
                  # the same, as fields a program reads (openvino-int8 only)
                  **({"int8": {"layers_kept": kept, "keep": keep, "calibration_batch_size": calibration_size}}
                     if backend == "openvino-int8" else {}),
                  "probe": {"data": options.probe_data or "built-in pairs", "pairs": len(pairs), "seed": options.seed,
                            "min_correlation": least, "agreement": checks,
                            **({"bf16": bf16_skipped} if bf16_skipped else {})},
                  "speed": speed, "versions": _versions(runtime), "opset": options.opset}
        for produced in sorted(work.iterdir()):
            if produced.name != "model.onnx" or backend == "onnx":
                if produced.name.startswith(target.stem):
                    os.replace(produced, target.parent / produced.name)
        records_file = target.parent / B.RECORD
        records = json.loads(records_file.read_text(encoding="utf-8")) if records_file.is_file() else {}
        records[target.name] = record
        write_json(records_file, records)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("Wrote %s: correlation with torch fp32 %s on %d probe pairs", target,
                ", ".join(f"{h} {c['correlation']:.5f}" for h, c in checks.items()), len(pairs))
    return target


def _measure_speed(source: _Source, graph: Path, runtime: str, batches, hint: str) -> dict:
    """Inputs a second on the probe batches, torch in precision auto as Reranker and Embedder run it (bf16 weights
    for an encoder or an embedder, else autocast) against the graph compiled for any shape (without one-shape copies,
    which a probe's few batches would not repay), after a warm-up each: what backend "auto" reads (on this CPU model
    only)."""
    import copy

    from reranker.common.precision import autocast, cast_weights, casts_to_bf16, inference_dtype

    count = sum(len(b["input_ids"]) for b in batches)
    dtype = inference_dtype("auto", "cpu", "torch precision")
    model, autocast_dtype = source.model, dtype
    if casts_to_bf16(dtype, source.family):
        model, autocast_dtype = copy.deepcopy(source.model), None  # the traced fp32 model stays as it is
        cast_weights(model, dtype)
    with torch.inference_mode(), autocast("cpu", autocast_dtype):
        model(**batches[0])
        start = time.perf_counter()
        for batch in batches:
            model(**batch)
        torch_seconds = time.perf_counter() - start
    run = _graph_runner(graph, runtime, source.output, hint)
    run(batches[:1])
    start = time.perf_counter()
    run(batches)
    graph_seconds = time.perf_counter() - start
    return {"cpu": B.this_cpu(), "torch_precision": str(dtype or "fp32").replace("torch.", ""),
            "graph_precision": hint, "inputs": count, "torch_pairs_per_s": round(count / torch_seconds, 1),
            "graph_pairs_per_s": round(count / graph_seconds, 1)}


def _versions(runtime: str) -> dict:
    import onnx
    versions = {"torch": torch.__version__, "onnx": onnx.__version__}
    module = B.import_runtime(runtime)
    versions[module.__name__] = module.__version__
    return versions
