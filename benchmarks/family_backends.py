"""Scoring speed of a seq2seq or decoder reranker on our backends, with FlagEmbedding's FlagLLMReranker beside a
decoder, and sentence-transformers' CrossEncoder where it loads the model (a decoder trained or merged here; it
loads no seq2seq model), in one run; and how each backend's scores agree with torch fp32's on dev queries.

    python benchmarks/family_backends.py --model outputs/smollm2_merged \\
        --dev_file outputs/smollm2_study/data/dev40.jsonl --probe_data outputs/smollm2_study/data/mined.jsonl

Every system scores the same dev pairs (the first --pairs candidates, in file order), batch --batch_size, after a
warm-up, in interleaved rounds (best kept):
  - ours: `Reranker` with backend torch (fp32, bf16) and the --graphs (default openvino, in bf16 where the CPU has
    it, and openvino-int8), exported by reranker-export (made here when missing, int8 calibrated on --probe_data);
  - decoders only: FlagEmbedding's `FlagLLMReranker` in fp32 (its CPU default), with the same query and passage
    budgets as ours (its own prompt: "A: query", "B: passage" and a yes/no question; ours the model's template);
    and, where the folder has the files reranker writes for it (a decoder trained or merged here),
    sentence-transformers' `CrossEncoder.predict` in torch fp32 (the reference of the ratios) and bf16, which
    reads our prompt and answer tokens from them.
Then each of ours scores the first --max_queries dev queries' candidates: nDCG@10, and the Pearson correlation and
largest difference of its scores against torch fp32's.
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

from common import race  # noqa: E402

TORCH = ["torch-fp32", "torch-bf16"]


def ours(model: str, name: str):
    from reranker import Reranker

    if name.startswith("torch"):
        return Reranker(model, device="cpu", dtype=name.split("-")[1])
    return Reranker(model, device="cpu", dtype="auto", backend=name)  # openvino: bf16 where the CPU has it


def main(argv: list[str] | None = None) -> dict:
    import numpy as np
    import torch

    from reranker.cli import common as cli
    from reranker.models import backends
    from reranker.models.export import ExportOptions, export
    from reranker.training.dev_eval import dev_metrics, load_dev

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a seq2seq or decoder reranker (a merged LoRA model too)")
    parser.add_argument("--dev_file", required=True, help="dev queries with candidates")
    parser.add_argument("--probe_data", required=True, help="training pairs to calibrate int8 on (not the dev file)")
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--max_queries", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--graphs", nargs="+", default=["openvino", "openvino-int8"],
                        choices=["onnx", "onnx-int8", "openvino", "openvino-int8"])
    parser.add_argument("--min_correlation", type=float, default=0.98,
                        help="the int8 export's gate (reranker-export's); the dev figures here are the ranking check")
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    a = parser.parse_args(argv)
    cli.setup_logging()
    torch.set_num_threads(a.threads)
    for backend in a.graphs:
        if not backends.graph_path(a.model, backend).is_file():
            export(a.model, ExportOptions(backend=backend, probe_data=a.probe_data, min_correlation=a.min_correlation))
    dev = load_dev(a.dev_file)
    pairs = [(q.query, text) for q in dev for text in q.texts][:a.pairs]
    models = {name: ours(a.model, name) for name in TORCH + a.graphs}
    family = models["torch-fp32"].scorer.family
    calls = {f"ours {name}": (lambda p, m=m: m.compute_score(p, batch_size=a.batch_size))
             for name, m in models.items()}
    if family == "decoder":
        from FlagEmbedding import FlagLLMReranker

        query_len, passage_len = models["torch-fp32"].budgets or (None, None)
        flag = FlagLLMReranker(a.model, use_fp16=False, devices="cpu", batch_size=a.batch_size,
                               query_max_length=query_len, max_length=passage_len or 512)
        calls["FlagLLMReranker torch-fp32"] = lambda p: flag.compute_score(p, batch_size=a.batch_size)
        if (Path(a.model) / "modules.json").is_file():  # the files reranker writes for sentence-transformers
            from sentence_transformers import CrossEncoder

            for dtype in ("fp32", "bf16"):
                kwargs = {"torch_dtype": torch.bfloat16} if dtype == "bf16" else {}
                cross = CrossEncoder(a.model, device="cpu", model_kwargs=kwargs)
                calls[f"CrossEncoder torch-{dtype}"] = lambda p, m=cross: m.predict(
                    p, batch_size=a.batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    speed = race(calls, pairs, a.rounds, warmup=a.batch_size)

    queries = dev[:a.max_queries]
    dev_pairs = [(q.query, text) for q in queries for text in q.texts]
    agreement, reference = {}, None
    for name, model in models.items():
        scores = np.asarray(model.compute_score(dev_pairs, batch_size=a.batch_size), dtype=np.float64)
        reference = scores if reference is None else reference  # torch-fp32 comes first
        flat = iter(scores)
        run = {q.qid: {d: float(next(flat)) for d in q.doc_ids} for q in queries}
        agreement[name] = {"dev_nDCG@10": round(dev_metrics(queries, run)["nDCG@10"], 4),
                           "correlation": round(float(np.corrcoef(reference, scores)[0, 1]), 5),
                           "max_abs_diff": round(float(np.abs(reference - scores).max()), 4)}
    peers = ("CrossEncoder torch-fp32", "FlagLLMReranker torch-fp32", "ours torch-fp32")
    peer = next(n for n in peers if n in speed)
    print(f"\n{family} family, {len(pairs)} pairs, batch {a.batch_size}, {a.threads} threads; agreement on "
          f"{len(queries)} dev queries ({len(dev_pairs)} pairs)")
    print(f"| system | pairs/s | vs {peer} | dev nDCG@10 | correlation with torch fp32 | largest difference |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, value in sorted(speed.items(), key=lambda kv: -kv[1]):
        row = {"pairs_per_s": round(value, 2), "vs_reference": round(value / speed[peer], 2),
               **agreement.get(name.removeprefix("ours "), {})}
        results[name] = row
        cells = ((f"{row['dev_nDCG@10']:.4f}", f"{row['correlation']:.5f}", f"{row['max_abs_diff']:.4f}")
                 if "correlation" in row else ("", "", ""))
        print(f"| {name} | {value:.2f} | {row['vs_reference']:.2f}x | {' | '.join(cells)} |")
    if a.output:
        Path(a.output).write_text(json.dumps({"args": vars(a), "family": family, "reference": peer,
                                              "systems": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
