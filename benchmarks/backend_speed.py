"""Scoring speed of our backends against sentence-transformers' CrossEncoder, in one run, with the ranking each
backend gives on dev queries beside it.

    python benchmarks/backend_speed.py --model outputs/pipeline/scifact/model \\
        --dev_file outputs/pipeline/scifact/data/dev.jsonl --probe_data outputs/pipeline/scifact/data/train.jsonl \\
        --peer_python /path/to/peer-venv/bin/python

Every system scores the same pairs (scifact queries with random documents, in that order: each system batches them
its own way), batch 32, the same max length and threads, after a warm-up, in interleaved rounds (best kept):
  - sentence-transformers `CrossEncoder.predict` in torch fp32 (the reference of the 2x goal) and bf16;
  - ours: `Reranker` with backend torch (fp32, bf16), onnx, onnx-int8, openvino (bf16 where the CPU has it) and
    openvino-int8, the graphs exported by reranker-export (made here when missing, int8 calibrated on --probe_data);
    and openvino-int8 again without the copies compiled for recurring batch shapes (backends.OpenVinoShapes);
  - with --peer_python (a venv with sentence-transformers, optimum-onnx and optimum-intel, which cannot sit beside
    this project's transformers): CrossEncoder with backend onnx, onnx O3-optimised, onnx int8
    (`export_dynamic_quantized_onnx_model`, avx512_vnni), openvino and openvino static int8
    (`export_static_quantized_openvino_model`, calibrated on 300 passages of --probe_data: its export tokenizes
    single texts), each exported by sentence-transformers itself from a copy of the weights.
Then each of our backends ranks the dev file's candidates: nDCG@10 against torch fp32's (the goal: within 0.005).
Our two OpenVINO graphs are also raced alone (the pairs tokenized beforehand, only the graph's calls timed): how
much of compute_score's time is the graph's, and how far the graph alone is from 1.2x the fastest peer.
The multiply-add rate counts the real (unpadded) tokens of the pairs: per layer 12 d^2 per token (attention
projections and the feed-forward, ff = 4d) plus 2 d n per token for attention itself, against this CPU's peak
(cores x clock x multiply-adds per cycle for the precision: two FMA units of the widest vector the CPU has, twice
that for bf16 dot products, four times for int8, or AMX's tile rate where the CPU has AMX; stated in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from common import ST_STATIC_OPENVINO, race, run_peer, without_shape_copies  # noqa: E402
from rerank_throughput import beir_pairs  # noqa: E402

# "-dynamic": the same graph run without the copies OpenVINO compiles for recurring batch shapes (what they add).
OURS = ["torch-fp32", "torch-bf16", "onnx", "onnx-int8", "openvino", "openvino-int8", "openvino-int8-dynamic"]

# Run in the peer venv: sentence-transformers exports and scores with its own backends.
PEER = r'''
import json, sys, time
cfg = json.loads(sys.argv[1])
import torch
torch.set_num_threads(cfg["threads"])
from sentence_transformers import CrossEncoder
from sentence_transformers.backend import export_dynamic_quantized_onnx_model, export_optimized_onnx_model
pairs = [tuple(p) for p in json.load(open(cfg["payload"]))]
path, out = cfg["model"], {}
def load(**kw):
    return CrossEncoder(path, device="cpu", max_length=cfg["max_length"], **kw)
systems = {}
systems["onnx"] = load(backend="onnx")
export_optimized_onnx_model(systems["onnx"], "O3", path)
systems["onnx-O3"] = load(backend="onnx", model_kwargs={"file_name": "onnx/model_O3.onnx"})
export_dynamic_quantized_onnx_model(systems["onnx"], "avx512_vnni", path)
systems["onnx-qint8"] = load(backend="onnx", model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"})
systems["openvino"] = load(backend="openvino")
''' + ST_STATIC_OPENVINO + r'''
best = {}
for name, model in systems.items():
    model.predict(pairs[:64], batch_size=cfg["batch_size"], show_progress_bar=False)
for _ in range(cfg["rounds"]):
    for name, model in systems.items():
        start = time.perf_counter()
        model.predict(pairs, batch_size=cfg["batch_size"], show_progress_bar=False)
        best[name] = max(best.get(name, 0.0), len(pairs) / (time.perf_counter() - start))
print("PEER " + json.dumps(best))
'''


def peak_macs(precision: str, threads: int) -> tuple[float, str]:
    """Multiply-adds per second this CPU can do at most in `precision`, and how that was counted."""
    from reranker.common.precision import cpu_flags

    flags = cpu_flags() or frozenset()
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    ghz = (max(mhz) / 1000) if mhz else 2.0
    lanes = 16 if "avx512f" in flags else 8  # fp32 lanes of one vector FMA
    # Two vector FMA units of that width (an assumption: Zen 4 runs 512-bit instructions as two halves, which would
    # halve the peak; the clock is /proc/cpuinfo's, not the boost clock). A ceiling to compare against, not a spec.
    per_cycle = 2 * lanes
    per_cycle *= {"fp32": 1, "bf16": 2 if "avx512_bf16" in flags else 1, "int8": 4 if "avx512_vnni" in flags
                  or "avx_vnni" in flags else 2}[precision]
    # AMX tiles, where the CPU has them for the precision: Intel's stated 1,024 bf16 and 2,048 int8 operations a
    # cycle a core, that is 512 and 1,024 multiply-adds.
    per_cycle = max(per_cycle, {"bf16": 512 if "amx_bf16" in flags else 0,
                                "int8": 1024 if "amx_int8" in flags else 0}.get(precision, 0))
    return threads * ghz * 1e9 * per_cycle, f"{threads} cores x {ghz:.2f} GHz x {per_cycle:g} MAC/cycle"


def count_macs(model_path: str, pairs, max_length: int) -> float:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    lengths = tokenizer([q for q, _ in pairs], [p for _, p in pairs], truncation="only_second",
                        max_length=max_length, return_length=True)["length"]
    d, layers, ff = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    return float(sum(layers * (n * (4 * d * d + 2 * d * ff) + 2 * d * n * n) for n in lengths))


def ours(model: str, name: str, max_length: int):
    from reranker import Reranker

    if name.endswith("-dynamic"):
        with without_shape_copies():
            return ours(model, name.removesuffix("-dynamic"), max_length)
    if name.startswith("torch"):
        return Reranker(model, device="cpu", dtype=name.split("-")[1], max_length=max_length)
    # openvino runs bf16 where the CPU has it (auto); ONNX Runtime fp32 or int8 weights.
    return Reranker(model, device="cpu", dtype="auto", max_length=max_length, backend=name)


def graph_alone(reranker, pairs, batch_size: int):
    """A call that runs the reranker's graph by itself over `pairs`: tokenized here, beforehand, in the batches
    compute_score makes (Reranker.encoded_batches), each batch run STATIC_AFTER times first so that the shapes that
    recur get their one-shape copies (up to STATIC_COPIES shapes, as in compute_score). The call then times only the
    graph's calls (with their numpy conversions): our graph in this runtime, with no tokenizing."""
    from reranker.models.backends import STATIC_AFTER

    batches = [batch for _, batch in reranker.encoded_batches(pairs, batch_size)]
    for _ in range(STATIC_AFTER):
        for batch in batches:
            reranker.model(**batch)

    def call(_items):
        for batch in batches:
            reranker.model(**batch)

    return call


def dev_ndcg(reranker, dev, batch_size: int) -> float:
    from reranker.training.dev_eval import dev_metrics

    pairs = [(q.query, text) for q in dev for text in q.texts]
    scores = iter(reranker.compute_score(pairs, batch_size=batch_size))
    run = {q.qid: {d: float(next(scores)) for d in q.doc_ids} for q in dev}
    return dev_metrics(dev, run)["nDCG@10"]


def main(argv: list[str] | None = None) -> dict:
    import torch

    from reranker.cli import common as cli
    from reranker.models import backends
    from reranker.models.export import ExportOptions, export
    from reranker.training.dev_eval import load_dev

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an encoder-family reranker folder")
    parser.add_argument("--dev_file", required=True, help="dev queries with candidates (the pipeline's dev.jsonl)")
    parser.add_argument("--probe_data", required=True, help="training pairs to calibrate int8 on (not the dev file)")
    parser.add_argument("--beir", default=str(ROOT.parent / "shared/data/beir/scifact"))
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer_python", default=None, help="python of a venv with sentence-transformers' backends")
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    a = parser.parse_args(argv)
    cli.setup_logging()
    torch.set_num_threads(a.threads)
    for backend in ("onnx", "onnx-int8", "openvino", "openvino-int8"):
        if not backends.graph_path(a.model, backend).is_file():
            export(a.model, ExportOptions(backend=backend, probe_data=a.probe_data))
    pairs = beir_pairs(Path(a.beir), a.pairs)
    results: dict[str, dict] = {}

    # The peers first, alone: they copy the weights and export them their own way.
    # The peer's static int8 calibrates on single texts (its export tokenizes one column): the probe's passages.
    from reranker.models.export import read_probe
    calibration = [passage for _, passage in read_probe(a.probe_data, 300, 0)]
    peer = run_peer(a.peer_python, PEER, a.model, pairs, {"threads": a.threads, "batch_size": a.batch_size,
                                                         "max_length": a.max_length, "rounds": a.rounds},
                    calibration=calibration) if a.peer_python else {}

    from sentence_transformers import CrossEncoder

    systems = {"CrossEncoder torch-fp32": CrossEncoder(a.model, device="cpu", max_length=a.max_length),
               "CrossEncoder torch-bf16": CrossEncoder(a.model, device="cpu", max_length=a.max_length,
                                                       model_kwargs={"torch_dtype": torch.bfloat16})}
    models = {name: ours(a.model, name, a.max_length) for name in OURS}
    calls = {name: (lambda p, m=m: m.predict(p, batch_size=a.batch_size, show_progress_bar=False))
             for name, m in systems.items()}
    calls |= {f"ours {name}": (lambda p, m=m: m.compute_score(p, batch_size=a.batch_size))
              for name, m in models.items()}
    # Raced with the rest (so timed under the same conditions); each round runs all the pairs, as the others do.
    alone = {name: f"ours {name}, graph alone" for name in ("openvino", "openvino-int8")}
    calls |= {label: graph_alone(models[name], pairs, a.batch_size) for name, label in alone.items()}
    speed = race(calls, pairs, a.rounds)
    for name, value in peer.items():
        speed[f"CrossEncoder {name}"] = value

    dev = load_dev(a.dev_file)
    ndcg = {name: dev_ndcg(m, dev, a.batch_size) for name, m in models.items()}
    macs = count_macs(a.model, pairs, a.max_length)
    reference = speed["CrossEncoder torch-fp32"]
    fastest_peer = max((n for n in speed if n.startswith("CrossEncoder")), key=speed.get)
    print(f"\n{len(pairs)} pairs, batch {a.batch_size}, max_length {a.max_length}, {a.threads} threads; "
          f"{macs / len(pairs) / 1e9:.2f} GMAC a pair (real tokens)")
    print("| system | pairs/s | vs CrossEncoder torch fp32 | vs the fastest peer backend | dev nDCG@10 (diff vs fp32) "
          "| share of peak |")
    print("|---|---|---|---|---|---|")
    for name, value in sorted(speed.items(), key=lambda kv: -kv[1]):
        row = {"pairs_per_s": round(value, 1), "vs_crossencoder_fp32": round(value / reference, 2),
               "vs_fastest_peer": round(value / speed[fastest_peer], 2)}
        short = name.removeprefix("ours ")
        if short in ndcg:
            precision = "int8" if "int8" in short else "bf16" if short in ("torch-bf16", "openvino") else "fp32"
            peak, how = peak_macs(precision, a.threads)
            row |= {"dev_nDCG@10": round(ndcg[short], 4), "diff_vs_fp32": round(ndcg[short] - ndcg["torch-fp32"], 4),
                    "share_of_peak": round(macs * value / len(pairs) / peak, 3), "peak": how}
        results[name] = row
        cells = (f"{row['dev_nDCG@10']:.4f} ({row['diff_vs_fp32']:+.4f})" if "dev_nDCG@10" in row else "",
                 f"{row['share_of_peak']:.0%} of {row['peak']}" if "share_of_peak" in row else "")
        print(f"| {name} | {value:.1f} | {row['vs_crossencoder_fp32']:.2f}x | {row['vs_fastest_peer']:.2f}x | "
              f"{cells[0]} | {cells[1]} |")
    print(f"fastest peer: {fastest_peer}")
    need = 1.2 * speed[fastest_peer]
    for name, label in alone.items():
        print(f"{label} (tokenized beforehand, only the graph's calls timed): {speed[label]:.1f} pairs/s, "
              f"{speed[label] / speed[fastest_peer]:.2f}x the fastest peer (1.2x it is {need:.1f}); compute_score "
              f"reached {speed[f'ours {name}'] / speed[label]:.0%} of it")
    if a.output:
        Path(a.output).write_text(json.dumps({"args": vars(a), "fastest_peer": fastest_peer, "systems": results},
                                             indent=1))
    return results


if __name__ == "__main__":
    main()
