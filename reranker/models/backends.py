"""Inference backends beside torch: an exported graph run by ONNX Runtime or OpenVINO, behind the same call as a
Hugging Face model, so that the scorers and the embedder's pooling read it unchanged.

`reranker-export` writes the graphs beside the weights (reranker/models/export.py); this module finds and runs them.
A backend is named `RUNTIME` or `RUNTIME-int8`:

    onnx            onnx/model.onnx, ONNX Runtime, fp32
    onnx-int8       onnx/model_qint8.onnx, ONNX Runtime, weights int8 per channel, activations quantised on the fly
    openvino        openvino/openvino_model.xml, OpenVINO, fp32 or bf16 (the precision option)
    openvino-int8   openvino/openvino_model_qint8.xml, OpenVINO, int8 calibrated on probe pairs at export

The file names follow sentence-transformers' `backend="onnx"`/`"openvino"` layout. Each
folder's export.json records how each graph was made and from which weights; a graph whose weights have changed
since is refused, never run silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from reranker.common.errors import ConfigError

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
CHOICES = (*BACKENDS, "auto")  # auto: the fastest graph export measured on this CPU, else torch
RECORD = "export.json"
EXTRA = {"onnx": "onnx", "openvino": "openvino"}  # the pip extra that installs each runtime
GRAPH_FILES = {"onnx": "onnx/model.onnx", "onnx-int8": "onnx/model_qint8.onnx",
               "openvino": "openvino/openvino_model.xml", "openvino-int8": "openvino/openvino_model_qint8.xml"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def check_backend(backend: str, option: str = "backend") -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"{option} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def this_cpu() -> str:
    """The processor's model name and the vector extensions that decide bf16 and int8 speed: where an export's
    speed was measured (a speed measured elsewhere says nothing here; "AMD EPYC" alone names several generations)."""
    from reranker.common.precision import cpu_flags

    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text(errors="replace") if cpuinfo.is_file() else ""
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                "unknown")
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
    flags = cpu_flags() or frozenset()
    return f"{name} ({', '.join(f for f in wanted if f in flags)})"


def choose_backend(model_path: str | Path, backend: str, device_type: str = "cpu", kind: str | None = None,
                   accept=None) -> str:
    """`backend`, or for "auto": of the graphs exported beside the weights, the one whose export measured it faster
    than torch (in precision auto) on this very CPU model, fastest first, its runtime installed, its weights
    unchanged, exported as `kind` ("reranker" or "embedder") and its record accepted by `accept(record)` (a
    reranker's: made for its scorer); torch where none qualifies, and always on a GPU."""
    if backend != "auto":
        return check_backend(backend)
    if device_type != "cpu":
        return "torch"
    cpu, digest, measured = this_cpu(), None, []
    for name in BACKENDS[1:]:
        try:
            record = read_record(model_path, name)
            import_runtime(runtime_of(name))
        except ConfigError:
            continue
        if (kind is not None and record["kind"] != kind) or (accept is not None and not accept(record)):
            continue
        speed = record.get("speed") or {}
        if speed.get("cpu") == cpu and speed.get("graph_pairs_per_s", 0) > speed.get("torch_pairs_per_s", 0):
            digest = digest or weights_digest(model_path)  # hashed once, and only where a graph qualifies
            if record["weights_sha256"] == digest:
                measured.append((speed["graph_pairs_per_s"] / speed["torch_pairs_per_s"], name))
    if measured:
        ratio, name = max(measured)
        logger.info("backend auto: %s, measured %.1fx torch on this CPU at export", name, ratio)
        return name
    logger.info("backend auto: torch (no exported graph measured faster on this CPU)")
    return "torch"


def runtime_of(backend: str) -> str:
    """"onnx" or "openvino": the runtime a backend name runs on."""
    return check_backend(backend).split("-")[0]


def import_runtime(runtime: str):
    """The runtime's module, or a clear error naming the extra that installs it."""
    try:
        if runtime == "onnx":
            import onnxruntime
            return onnxruntime
        import openvino
        return openvino
    except ImportError:
        raise ConfigError(f"the {runtime} backend needs its runtime, which is not installed: "
                          f"pip install 'rerank-toolkit[{EXTRA[runtime]}]'") from None


def weights_digest(model_path: str | Path) -> str:
    """sha256 of the checkpoint's weights file: what an export is tied to."""
    for name in WEIGHT_FILES:
        path = Path(model_path) / name
        if path.is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
            return digest.hexdigest()
    raise ConfigError(f"{model_path} holds no weights file ({' or '.join(WEIGHT_FILES)}) to export or check "
                      "an exported graph against")


def graph_path(model_path: str | Path, backend: str) -> Path:
    return Path(model_path) / GRAPH_FILES[check_backend(backend)]


def read_record(model_path: str | Path, backend: str) -> dict:
    """The export record of one graph: how it was made, from which weights, and what its probe check measured."""
    graph = graph_path(model_path, backend)
    record_file = graph.parent / RECORD
    if not graph.is_file():
        raise ConfigError(f"{model_path} has no {backend} graph ({graph} is missing): export it first with "
                          f"reranker-export {model_path} --backend {backend}")
    if not record_file.is_file():
        raise ConfigError(f"{graph} has no {record_file.name} beside it: it was not made by reranker-export, so "
                          "nothing says which weights it came from; export it again")
    records = json.loads(record_file.read_text(encoding="utf-8"))
    if graph.name not in records:
        raise ConfigError(f"{record_file} has no entry for {graph.name}; export it again")
    return records[graph.name]


def graph_runner(path: str | Path, runtime: str, output: str, hint: str = "f32", threads: int | None = None,
                 static_copies: int = 0):
    """(input names, `run(feed) -> float32 array`) of a graph file, loaded once: ONNX Runtime on the CPU, or OpenVINO
    with `hint` ("f32" or "bf16") as its inference precision; `threads` defaults to default_threads() (torch's).
    `static_copies`: how many batch shapes OpenVINO may compile a copy of the graph for (OpenVinoShapes)."""
    module = import_runtime(runtime)
    threads = threads or default_threads()
    if runtime == "onnx":
        options = module.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = module.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return [i.name for i in session.get_inputs()], lambda feed: session.run([output], feed)[0]
    run = OpenVinoRun(OpenVinoShapes(module, path, hint, threads, "LATENCY", static_copies), output)
    return [_input_name(port) for port in run.shapes.dynamic.inputs], run


class OpenVinoRun:
    """`run(feed) -> float32 array` on an OpenVINO graph: one infer request per compiled graph (OpenVinoShapes)."""

    def __init__(self, shapes, output: str):
        self.shapes, self.output = shapes, output
        self.requests: list[tuple[object, object]] = []  # (compiled graph, its request)

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        compiled = self.shapes.compiled(feed)
        request = next((r for c, r in self.requests if c is compiled), None)
        if request is None:
            request = compiled.create_infer_request()
            self.requests.append((compiled, request))
        return request.infer(feed)[compiled.output(self.output)].copy()


def _input_name(port) -> str:
    """The tokenizer's name of a compiled graph's input. Compiling may give an input a second name, an internal
    tensor's merged into it (T5's input_ids gained "34"), and get_any_name may return that one."""
    names = port.get_names()
    known = sorted(names & {"input_ids", "attention_mask", "token_type_ids"})
    return known[0] if known else port.get_any_name()


def bf16_crash(family: str | None, threads_per_stream: int) -> str | None:
    """Why OpenVINO must not compile this graph in bf16 here, or None. OpenVINO 2026.4's CPU plugin kills the process
    (SIGFPE: no exception to catch) compiling a decoder-family graph in bf16 for a stream of one thread on a CPU with
    AMX: measured on a Xeon with amx_bf16, tiny Llama graphs of every size tried, one thread (or the throughput
    streams of one thread each) crashed and two threads ran. The caller runs such a graph in f32 and says so."""
    from reranker.common.precision import cpu_flags

    if family == "decoder" and threads_per_stream <= 1 and "amx_bf16" in (cpu_flags() or ()):
        return ("OpenVINO crashes compiling a decoder graph in bf16 for one thread on a CPU with AMX, so it runs in "
                "f32 here (give it two or more threads, torch.set_num_threads or OMP_NUM_THREADS, for bf16)")
    return None


def _compile_openvino(core, model, hint: str, threads: int, mode: str):
    """The graph (a file path or a read model) compiled for the CPU with `hint` as its inference precision and `mode`
    as OpenVINO's performance hint (LATENCY: one request on all threads; THROUGHPUT: several streams sharing them)."""
    return core.compile_model(str(model) if isinstance(model, Path | str) else model, "CPU",
                              {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint,
                               "PERFORMANCE_HINT": mode})


# A batch shape met this many times gets a copy of the graph compiled for that shape alone.
STATIC_AFTER = 3
# At most this many such copies per graph: each holds its own weights (about 90 MB for MiniLM in int8) and costs
# about half a second to compile, so a shape that came back only a few times may not repay it.
STATIC_COPIES = 2
# Measured for these families only (MiniLM rerankers and embedders), and for graphs up to this size.
STATIC_FAMILIES = ("encoder", "embedder")
STATIC_MAX_BYTES = 256 << 20


class OpenVinoShapes:
    """An OpenVINO graph compiled for any shape (dynamic), plus copies compiled each for one batch shape (static).

    The same graph compiled for one fixed shape ran 1.10-1.14x faster than compiled for any shape here (MiniLM,
    OpenVINO 2026.4, int8 and bf16, 256-token pairs in batches of 32 and 34-token texts in batches of 128;
    results/backends.md). Batches sorted by length share their shape where texts meet the token budget: 72-79% of
    scifact's and nfcorpus's passages fill 256 tokens, so most batches of a long corpus are (batch, budget). A shape
    gets its copy on its STATIC_AFTER-th batch, up to `copies` shapes; the rest run on the dynamic graph. The inputs
    are never padded or changed, but the two compiles are not bit-equal (kernels chosen per shape round
    differently): a shape's first STATIC_AFTER - 1 batches and its later ones can differ by what int8 or bf16 rounding
    allows, each as close to fp32 torch as the other. `copies=0` (Reranker/Embedder shape_copies=False) keeps every
    batch on the dynamic graph, for scores that repeat exactly within a process."""

    def __init__(self, module, path: str | Path, hint: str, threads: int, mode: str, copies: int = 0):
        self.core, self.path, self.hint, self.threads, self.mode = module.Core(), path, hint, threads, mode
        self.copies = copies
        self.dynamic = _compile_openvino(self.core, path, hint, threads, mode)
        self.static: dict[tuple, object] = {}
        self.seen: dict[tuple, int] = {}

    def compiled(self, feed: dict[str, np.ndarray]):
        """The compiled graph to run this feed on."""
        key = tuple((name, array.shape) for name, array in sorted(feed.items()))
        if key in self.static:
            return self.static[key]
        if len(self.static) < self.copies:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] >= STATIC_AFTER:
                model = self.core.read_model(str(self.path))
                model.reshape({name: list(shape) for name, shape in key})
                self.static[key] = _compile_openvino(self.core, model, self.hint, self.threads, self.mode)
                logger.debug("%s: compiled for shape %s", self.path, key)
                return self.static[key]
        return self.dynamic


def static_copies_for(record: dict, path: str | Path) -> int:
    """How many one-shape copies (OpenVinoShapes) an OpenVINO graph gets: STATIC_COPIES for the families and sizes
    where they were measured faster, else none."""
    weights = Path(path).with_suffix(".bin")
    small = weights.is_file() and weights.stat().st_size <= STATIC_MAX_BYTES
    return STATIC_COPIES if record.get("family") in STATIC_FAMILIES and small else 0


def static_copies_of(model_path: str | Path, backend: str, record: dict | None = None) -> int:
    """How many one-shape copies GraphModel gives the exported graph of `backend` (0 for ONNX Runtime); `record`:
    its export record, when already read."""
    if runtime_of(backend) != "openvino":
        return 0
    return static_copies_for(record or read_record(model_path, backend), graph_path(model_path, backend))


# one_torch_thread's state: how many callers are inside it, and the thread count to give back when the last leaves.
_ONE_THREAD_LOCK = threading.Lock()
_one_thread = {"inside": 0, "restore": None}


@contextlib.contextmanager
def one_torch_thread():
    """torch's intra-op threads set to one for the duration, then restored (a process-wide setting). Callers that
    overlap, in several Python threads, share it: the first saves the count, the last to leave restores it.

    For the caller's own work while OpenVINO's streams run on the graph's threads (GraphModel.map): torch's pool of
    threads would wait on the cores the streams keep busy. An embedder's pooling between batches on one thread
    encoded 34-token texts 1.08x faster than on two (2 cores, OpenVINO int8 on two streams; results/backends.md)."""
    with _ONE_THREAD_LOCK:
        if _one_thread["inside"] == 0:
            _one_thread["restore"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _one_thread["inside"] += 1
    try:
        yield
    finally:
        with _ONE_THREAD_LOCK:
            _one_thread["inside"] -= 1
            if _one_thread["inside"] == 0:
                torch.set_num_threads(_one_thread["restore"])


def default_threads() -> int:
    """The thread count a graph takes when none is given: torch's, or, while one_torch_thread holds torch at one,
    the count it will restore (a graph loaded meanwhile must not be held to one core for good)."""
    with _ONE_THREAD_LOCK:
        return _one_thread["restore"] if _one_thread["inside"] else torch.get_num_threads()


def openvino_stream(path: str | Path, output: str, hint: str = "f32", threads: int | None = None,
                    static_copies: int = 0):
    """`run_many(feeds) -> iterator of float32 arrays`, in the feeds' order, for an OpenVINO graph compiled for
    throughput: several batches in flight on streams that share the threads. On 2 cores, two streams of one thread
    each encoded short texts faster than one request on both threads (results/backends.md): a batch's small
    matrices keep two threads waiting on each other. `static_copies` as in graph_runner; `threads` defaults to
    default_threads()."""
    module = import_runtime("openvino")
    shapes = OpenVinoShapes(module, path, hint, threads or default_threads(), "THROUGHPUT", static_copies)

    def run_many(feeds):
        done: dict[int, np.ndarray] = {}
        queues = {}  # one queue of requests per compiled graph
        following, running = 0, None
        for n, feed in enumerate(feeds):
            compiled = shapes.compiled(feed)
            if id(compiled) not in queues:
                jobs = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
                queues[id(compiled)] = module.AsyncInferQueue(compiled, jobs)
                port = compiled.output(output)
                queues[id(compiled)].set_callback(
                    lambda request, n, port=port: done.__setitem__(n, request.get_tensor(port).data.copy()))
            queue = queues[id(compiled)]
            if running is not None and running is not queue:
                running.wait_all()  # one graph's streams at a time: two would share the threads
            running = queue
            queue.start_async(feed, n)  # waits for a free request when all are busy
            while following in done:
                yield done.pop(following)
                following += 1
        if running is not None:
            running.wait_all()
        while following in done:
            yield done.pop(following)
            following += 1

    run_many.shapes = shapes  # which shapes got copies: for the tests
    return run_many


class GraphModel:
    """An exported graph behind a Hugging Face model's call: `model(**inputs)` returns `.logits` (an encoder-family
    reranker's graph), `.answer_logits` (a seq2seq or decoder reranker's: its answer tokens' logits, which its
    scorer reads) or `.last_hidden_state` (an embedder's), as float32 torch tensors on the CPU.

    Inputs the graph does not take (token_type_ids of a model without segments) are left out; int64 ids in.

    `dtype` is the precision option as given (None, "auto", "fp32", "bf16") and `resolved` what it resolved to on
    this CPU (a torch dtype or None): ONNX Runtime runs fp32 ("auto" included: it has no bf16 kernels worth having);
    OpenVINO takes bf16 as its precision hint. `shape_copies`: whether OpenVINO may compile copies of the graph for
    batch shapes that recur (OpenVinoShapes)."""

    def __init__(self, model_path: str | Path, backend: str, config, dtype: str | None = None,
                 resolved: torch.dtype | None = None, threads: int | None = None, kind: str | None = None,
                 shape_copies: bool = True):
        self.backend = check_backend(backend)
        if backend == "torch":
            raise ValueError("GraphModel runs an exported graph; the torch backend is the model itself")
        self.runtime = runtime_of(backend)
        import_runtime(self.runtime)
        self.record = read_record(model_path, backend)
        if kind is not None and self.record["kind"] != kind:
            raise ConfigError(f"the {backend} graph of {model_path} was exported with kind "
                              f"{self.record['kind']!r}; it cannot serve as kind {kind!r}")
        if self.record["weights_sha256"] != weights_digest(model_path):
            raise ConfigError(f"{graph_path(model_path, backend)} was exported from other weights than the ones now "
                              f"in {model_path} (trained or copied over since): export it again with "
                              f"reranker-export {model_path} --backend {backend}")
        self.config = config
        self.output = self.record["output"]
        if self.runtime == "onnx" and dtype not in (None, "auto") and resolved not in (None, torch.float32):
            raise ConfigError(f"the {backend} backend runs in fp32 (its int8 variant quantises the weights); "
                              f"precision {dtype} is for torch or openvino")
        if resolved not in (None, torch.float32, torch.bfloat16):
            raise ConfigError(f"the {backend} backend runs in fp32 or bf16, not {dtype}")
        hint = "bf16" if self.runtime == "openvino" and resolved == torch.bfloat16 else "f32"
        self.graph = graph_path(model_path, backend)
        # Fixed here, for the call and for map's streams compiled later: the caller may run its own work between
        # batches on one torch thread (one_torch_thread), which must not become the graph's.
        threads = threads or default_threads()
        if hint == "bf16" and (why := bf16_crash(self.record.get("family"), threads)):
            logger.warning("%s: %s", self.graph, why)
            hint = "f32"
        self.static_copies = static_copies_of(model_path, backend, self.record) if shape_copies else 0
        self.inputs, self._run = graph_runner(self.graph, self.runtime, self.output, hint, threads,
                                              self.static_copies)
        self.hint, self.threads = hint, threads
        self._stream = None  # map()'s throughput-compiled graph, made on first use

    def _feed(self, inputs: dict) -> dict[str, np.ndarray]:
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise ConfigError(f"the {self.backend} graph needs inputs {missing} the tokenizer did not give")
        return {name: np.asarray(inputs[name].cpu().numpy() if torch.is_tensor(inputs[name]) else inputs[name],
                                 dtype=np.int64) for name in self.inputs}

    def __call__(self, **inputs) -> SimpleNamespace:
        return SimpleNamespace(**{self.output: torch.from_numpy(np.asarray(self._run(self._feed(inputs)),
                                                                           dtype=np.float32))})

    @property
    def streams(self) -> bool:
        """Whether map() keeps batches in flight on OpenVINO's streams (which then keep the graph's threads busy)."""
        # The throughput streams are taken to have one thread each, as on a few cores (not measured per machine).
        return self.runtime == "openvino" and not (self.hint == "bf16" and bf16_crash(self.record.get("family"), 1))

    def map(self, batches):
        """The output tensor of each batch of inputs, in order: OpenVINO keeps several batches in flight
        (openvino_stream, compiled on first use), ONNX Runtime runs them one by one, and so does OpenVINO where
        its streams of one thread each could not run this graph in its precision (bf16_crash). While batches are
        in flight, do the caller's own torch work between them under one_torch_thread()."""
        if not self.streams:
            for inputs in batches:
                yield getattr(self(**inputs), self.output)
            return
        if self._stream is None:
            self._stream = openvino_stream(self.graph, self.output, self.hint, self.threads, self.static_copies)
        for out in self._stream(self._feed(inputs) for inputs in batches):
            yield torch.from_numpy(np.asarray(out, dtype=np.float32))

    # What Reranker and Embedder call on a torch model, here meaning nothing: the graph lives on the CPU.
    def to(self, device):
        if torch.device(device).type != "cpu":
            raise ConfigError(f"the {self.backend} backend runs on the CPU; use backend torch on {device}")
        return self

    def eval(self):
        return self
