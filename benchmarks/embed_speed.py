"""Embedding speed of our backends against sentence-transformers' SentenceTransformer.encode, in one run, with the
dense retrieval each of ours gives on a BEIR test split beside it.

    python benchmarks/embed_speed.py --beir ../shared/data/beir/scifact --peer_python /path/to/peer-venv/bin/python

The embedder (default: the bundled all-MiniLM-L6-v2) is copied into --workdir and exported there by
reranker-export (openvino-int8 and onnx-int8 calibrated on the BEIR folder's train queries). Every system encodes
the same corpus passages (seeded sample, in that order: each batches its own way), batch 64, the same max length
and threads, after a warm-up, in interleaved rounds (best kept):
  - sentence-transformers `SentenceTransformer.encode` in torch fp32 and bf16;
  - ours: `Embedder` with backend torch (fp32, bf16), onnx, onnx-int8, openvino (bf16 where the CPU has it) and
    openvino-int8, and openvino-int8 again without the copies compiled for recurring batch shapes;
  - with --peer_python: SentenceTransformer with backend onnx, onnx O3, onnx int8 (avx512_vnni), openvino and
    openvino static int8 (`export_static_quantized_openvino_model`, calibrated on 300 other corpus passages), each
    exported by sentence-transformers from a copy of the weights.
Then each of ours retrieves the test queries from the whole corpus: nDCG@10 and Recall@100 against torch fp32's
(the goal: Recall@100 within 0.005).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from common import ST_STATIC_OPENVINO, race, run_peer, without_shape_copies  # noqa: E402

# "-dynamic": the same graph run without the copies OpenVINO compiles for recurring batch shapes (what they add).
OURS = ["torch-fp32", "torch-bf16", "onnx", "onnx-int8", "openvino", "openvino-int8", "openvino-int8-dynamic"]

PEER = r'''
import json, sys, time
cfg = json.loads(sys.argv[1])
import torch
torch.set_num_threads(cfg["threads"])
from sentence_transformers import SentenceTransformer
from sentence_transformers.backend import export_dynamic_quantized_onnx_model, export_optimized_onnx_model
texts = json.load(open(cfg["payload"]))
path = cfg["model"]
def load(**kw):
    model = SentenceTransformer(path, device="cpu", **kw)
    model.max_seq_length = cfg["max_length"]
    return model
systems = {"onnx": load(backend="onnx")}
export_optimized_onnx_model(systems["onnx"], "O3", path)
systems["onnx-O3"] = load(backend="onnx", model_kwargs={"file_name": "onnx/model_O3.onnx"})
export_dynamic_quantized_onnx_model(systems["onnx"], "avx512_vnni", path)
systems["onnx-qint8"] = load(backend="onnx", model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"})
systems["openvino"] = load(backend="openvino")
''' + ST_STATIC_OPENVINO + r'''
best = {}
for model in systems.values():
    model.encode(texts[:64], batch_size=cfg["batch_size"])
for _ in range(cfg["rounds"]):
    for name, model in systems.items():
        start = time.perf_counter()
        model.encode(texts, batch_size=cfg["batch_size"])
        best[name] = max(best.get(name, 0.0), len(texts) / (time.perf_counter() - start))
print("PEER " + json.dumps(best))
'''


def main(argv: list[str] | None = None) -> dict:
    import torch

    from reranker.cli import common as cli
    from reranker.data.beir import load_beir
    from reranker.models import backends
    from reranker.models.embed import Embedder
    from reranker.models.export import ExportOptions, export
    from reranker.models.loading import bundled_minilm_path
    from reranker.retrieval.first_stage import dense_run
    from reranker.retrieval.metrics import ranking_metrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", required=True, help="BEIR folder: passages to encode, train queries to calibrate "
                                                      "int8 on, test queries to retrieve")
    parser.add_argument("--model", default=None, help="embedder folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peer_python", default=None)
    parser.add_argument("--workdir", default=str(ROOT / "outputs/embed_speed"))
    parser.add_argument("--output", default=None)
    a = parser.parse_args(argv)
    cli.setup_logging()
    torch.set_num_threads(a.threads)
    model = Path(a.workdir) / "model"
    if not model.is_dir():  # our exports go beside a copy, never into the installed package
        shutil.copytree(a.model or bundled_minilm_path(), model, ignore=shutil.ignore_patterns("onnx", "openvino"))
    for backend in ("onnx", "onnx-int8", "openvino", "openvino-int8"):
        if not backends.graph_path(model, backend).is_file():
            export(str(model), ExportOptions(backend=backend, probe_data=a.beir))
    data = load_beir(a.beir, "test")
    corpus = [data.corpus[d] for d in sorted(data.corpus)]
    texts = random.Random(0).sample(corpus, min(a.texts, len(corpus)))

    # The peer's static int8 calibrates on 300 other passages of the corpus (its default set would be downloaded).
    timed = set(texts)
    others = [t for t in corpus if t not in timed]
    calibration = random.Random(1).sample(others, min(300, len(others)))
    peer = run_peer(a.peer_python, PEER, model, texts, {"threads": a.threads, "batch_size": a.batch_size,
                                                        "max_length": a.max_length, "rounds": a.rounds},
                    calibration=calibration) if a.peer_python else {}

    from sentence_transformers import SentenceTransformer

    calls = {}
    for dtype in ("fp32", "bf16"):
        kwargs = {"torch_dtype": torch.bfloat16} if dtype == "bf16" else {}
        st = SentenceTransformer(str(model), device="cpu", model_kwargs=kwargs)
        st.max_seq_length = a.max_length
        calls[f"SentenceTransformer torch-{dtype}"] = lambda t, m=st: m.encode(t, batch_size=a.batch_size)
    for name in OURS:
        with without_shape_copies(name.endswith("-dynamic")):
            embedder = Embedder(str(model), dtype=name.split("-")[1] if name.startswith("torch") else "auto",
                                backend="torch" if name.startswith("torch") else name.removesuffix("-dynamic"))
        calls[f"ours {name}"] = lambda t, e=embedder: e.encode(t, a.max_length, a.batch_size, show_progress=False)
    speed = race(calls, texts, a.rounds)
    speed |= {f"SentenceTransformer {name}": value for name, value in peer.items()}

    quality = {}
    for name in OURS:
        dtype = name.split("-")[1] if name.startswith("torch") else "auto"
        with without_shape_copies(name.endswith("-dynamic")):
            run = dense_run(data, 100, str(model), None, "", 64, a.max_length, dtype, a.batch_size,
                            "torch" if name.startswith("torch") else name.removesuffix("-dynamic"))
        metrics = ranking_metrics(data.qrels, run)
        quality[name] = {"nDCG@10": metrics["nDCG@10"], "Recall@100": metrics["Recall@100"]}
    reference = speed["SentenceTransformer torch-fp32"]
    fastest_peer = max((n for n in speed if n.startswith("SentenceTransformer")), key=speed.get)
    print(f"\n{len(texts)} {data.name} passages, batch {a.batch_size}, max_length {a.max_length}, {a.threads} threads")
    print("| system | texts/s | vs SentenceTransformer torch fp32 | vs the fastest peer backend | test nDCG@10 | "
          "Recall@100 (diff vs fp32) |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, value in sorted(speed.items(), key=lambda kv: -kv[1]):
        row = {"texts_per_s": round(value, 1), "vs_st_fp32": round(value / reference, 2),
               "vs_fastest_peer": round(value / speed[fastest_peer], 2)}
        short = name.removeprefix("ours ")
        cells = ("", "")
        if short in quality:
            q = quality[short]
            diff = q["Recall@100"] - quality["torch-fp32"]["Recall@100"]
            row |= {**q, "recall_diff_vs_fp32": round(diff, 4)}
            cells = (f"{q['nDCG@10']:.4f}", f"{q['Recall@100']:.4f} ({diff:+.4f})")
        results[name] = row
        print(f"| {name} | {value:.1f} | {row['vs_st_fp32']:.2f}x | {row['vs_fastest_peer']:.2f}x | {cells[0]} | "
              f"{cells[1]} |")
    print(f"fastest peer: {fastest_peer}")
    if a.output:
        Path(a.output).write_text(json.dumps({"args": vars(a), "fastest_peer": fastest_peer, "systems": results},
                                             indent=1))
    return results


if __name__ == "__main__":
    main()
