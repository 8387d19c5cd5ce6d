"""Which int8 recipe keeps an encoder's ranking: each recipe's quality against torch fp32 and its speed, so that the
export's default is chosen on dev queries by a rule fixed first. A reranker (dev nDCG@10 at several pair budgets):

    python benchmarks/int8_recipes.py --model outputs/pipeline/scifact/model \\
        --dev_file outputs/pipeline/scifact/data/dev.jsonl --probe_data outputs/pipeline/scifact/data/mined.jsonl

an embedder (Recall@100 of a dense retrieval of each query set's whole corpus; the default model is the bundled
all-MiniLM-L6-v2):

    python benchmarks/int8_recipes.py --embedder --probe_data ../shared/data/beir/scifact \\
        --queries ../shared/data/beir/nfcorpus:dev ../shared/data/beir/scifact:train

A recipe is which MatMul layers stay out of int8 (kept: each block's output projections, BERT's output.dense; all:
none kept) and how NNCF's calibration batches the probe (`--calibration_batch_size`: the probe batches of 16, padded
to their longest input, or 1, each alone). Each recipe is exported by reranker-export into its own copy of the model
(under --workdir), calibrated on the same 256 probe pairs (training pairs, never the dev or test queries). Then
torch fp32 and every recipe's graph rank the queries, and every recipe scores --pairs scifact pairs (a reranker,
batch 32) or encodes as many scifact passages (an embedder, batch 64) at --speed_length in interleaved rounds, best
kept.

The rule (fixed before the figures): a recipe passes when its quality figure (a reranker's dev nDCG@10 at every
budget, an embedder's Recall@100 on every query set) is within --tolerance of torch fp32's; of those that pass, the
fastest is chosen, unless another passing one is within 3% of its speed and keeps fewer layers out of int8 (fewer
kept: more of the model in int8, the same speed within noise).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from backend_speed import dev_ndcg  # noqa: E402
from common import race  # noqa: E402
from rerank_throughput import beir_pairs  # noqa: E402

# (layers kept out of int8, calibration batch size): the probe batches are reranker-export's batches of 16.
RECIPES = {"kept-batches": ("kept", 16), "kept-single": ("kept", 1), "all-batches": ("none", 16),
           "all-single": ("none", 1)}


def choose(rows: dict[str, dict], tolerance: float) -> str | None:
    """The rule of the docstring over rows {recipe: {"diffs": [...], "per_s": x, "kept": n}}."""
    passing = {name: row for name, row in rows.items() if all(abs(d) <= tolerance for d in row["diffs"])}
    if not passing:
        return None
    fastest = max(passing, key=lambda n: passing[n]["per_s"])
    close = [n for n in passing if passing[n]["per_s"] >= 0.97 * passing[fastest]["per_s"]]
    return min(close, key=lambda n: (passing[n]["kept"], -passing[n]["per_s"]))


def main(argv: list[str] | None = None) -> dict:
    import torch

    from reranker.cli import common as cli
    from reranker.models import backends
    from reranker.models.export import INT8_KEEP, ExportOptions, export
    from reranker.models.loading import bundled_minilm_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="an encoder-family reranker folder, or with --embedder an "
                                                      "embedder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--embedder", action="store_true", help="the model is an embedder: Recall@100 on --queries")
    parser.add_argument("--dev_file", default=None, help="a reranker's dev queries with candidates (dev.jsonl)")
    parser.add_argument("--queries", nargs="+", default=[], help="an embedder's query sets, BEIR_FOLDER:SPLIT")
    parser.add_argument("--probe_data", required=True, help="training pairs to calibrate on (not the dev queries)")
    parser.add_argument("--beir", default=str(ROOT.parent / "shared/data/beir/scifact"), help="texts timed")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--lengths", type=int, nargs="+", default=[320, 256],
                        help="a reranker's pair budgets to rank the dev file at (trained, and the benchmarks')")
    parser.add_argument("--speed_length", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=None, help="default: 32 for a reranker, 64 an embedder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", default=str(ROOT / "outputs/int8_recipes"))
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    a = parser.parse_args(argv)
    if a.embedder == bool(a.dev_file) or a.embedder != bool(a.queries) or not (a.embedder or a.model):
        parser.error("a reranker needs --model and --dev_file, an embedder (--embedder) --queries")
    if any(":" not in q for q in a.queries):
        parser.error("--queries takes BEIR_FOLDER:SPLIT")
    a.model = a.model or str(bundled_minilm_path())
    a.batch_size = a.batch_size or (64 if a.embedder else 32)
    cli.setup_logging()
    torch.set_num_threads(a.threads)

    rows: dict[str, dict] = {}
    digest = backends.weights_digest(a.model)
    for name in a.recipes:
        keep, calibration = RECIPES[name]
        pattern = INT8_KEEP if keep == "kept" else None
        copy = Path(a.workdir) / f"{'embedder-' if a.embedder else ''}{name}"
        made = backends.read_record(copy, "openvino-int8") if backends.graph_path(copy, "openvino-int8").is_file() \
            else {}
        # An earlier export is reused only when it is this model's, on this probe, made as the recipe says.
        int8 = made.get("int8", {})
        if (made.get("weights_sha256") != digest or made.get("probe", {}).get("data") != a.probe_data
                or int8.get("calibration_batch_size") != calibration or int8.get("keep") != pattern):
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(a.model, copy, ignore=shutil.ignore_patterns("onnx", "openvino", "checkpoint-*"))
            export(str(copy), ExportOptions(backend="openvino-int8", probe_data=a.probe_data,
                                            int8_keep=pattern or "none", calibration_batch_size=calibration))
            made = backends.read_record(copy, "openvino-int8")
        rows[name] = {"path": str(copy), "quantization": made["quantization"],
                      "probe_correlation": made["probe"]["agreement"]["f32"]["correlation"],
                      "kept": made["int8"]["layers_kept"], "quality": [], "diffs": []}

    measure = embedder_quality(a) if a.embedder else reranker_quality(a)
    reference = measure(a.model, "torch")
    for row in rows.values():
        row["quality"] = measure(row["path"], "openvino-int8")
        row["diffs"] = [v - r for v, r in zip(row["quality"], reference, strict=True)]  # unrounded: the rule's

    if a.embedder:
        from reranker.models.embed import Embedder

        texts = [p for _, p in beir_pairs(Path(a.beir), a.pairs)]
        models = {name: Embedder(row["path"], dtype="auto", backend="openvino-int8") for name, row in rows.items()}
        calls = {name: (lambda t, e=e: e.encode(t, a.speed_length, a.batch_size, show_progress=False))
                 for name, e in models.items()}
    else:
        from reranker import Reranker

        texts = beir_pairs(Path(a.beir), a.pairs)
        models = {name: Reranker(row["path"], device="cpu", dtype="auto", max_length=a.speed_length,
                                 backend="openvino-int8") for name, row in rows.items()}
        calls = {name: (lambda p, m=m: m.compute_score(p, batch_size=a.batch_size)) for name, m in models.items()}
    speed = race(calls, texts, a.rounds)
    for name, row in rows.items():
        row["per_s"] = round(speed[name], 1)
    chosen = choose(rows, a.tolerance)

    labels = ([f"Recall@100, {q}" for q in a.queries] if a.embedder
              else [f"dev nDCG@10 at {n}" for n in a.lengths])
    heads = " | ".join(f"{label} (fp32 {r:.4f})" for label, r in zip(labels, reference, strict=True))
    unit = "texts/s" if a.embedder else "pairs/s"
    print(f"\n| recipe | MatMul layers kept out of int8 | probe correlation | {heads} | {unit} at {a.speed_length} |")
    print("|---|---|---|" + "---|" * len(labels) + "---|")
    for name, row in rows.items():
        cells = " | ".join(f"{v:.4f} ({d:+.4f})" for v, d in zip(row["quality"], row["diffs"], strict=True))
        print(f"| {name} | {row['kept']} | {row['probe_correlation']:.4f} | {cells} | {row['per_s']:.1f} |")
    print(f"chosen by the rule (within {a.tolerance} everywhere, then speed): {chosen}")
    result = {"args": vars(a), "fp32": dict(zip(labels, reference, strict=True)), "recipes": rows, "chosen": chosen}
    if a.output:
        Path(a.output).write_text(json.dumps(result, indent=1))
    return result


def reranker_quality(a):
    """`measure(model, backend) -> [dev nDCG@10 at each budget]`."""
    from reranker import Reranker
    from reranker.training.dev_eval import load_dev

    dev = load_dev(a.dev_file)
    return lambda model, backend: [
        dev_ndcg(Reranker(model, device="cpu", dtype="fp32" if backend == "torch" else "auto", max_length=length,
                          backend=backend), dev, a.batch_size) for length in a.lengths]


def embedder_quality(a):
    """`measure(model, backend) -> [Recall@100 on each query set]`: each set's whole corpus, passages at 256
    tokens, queries at 64, as the embedding benchmark retrieves."""
    from reranker.data.beir import load_beir
    from reranker.retrieval.first_stage import dense_run
    from reranker.retrieval.metrics import ranking_metrics

    sets = [load_beir(Path(folder), split) for folder, split in (q.rsplit(":", 1) for q in a.queries)]
    return lambda model, backend: [
        ranking_metrics(data.qrels, dense_run(data, 100, model, None, "", 64, 256,
                                              "fp32" if backend == "torch" else "auto", a.batch_size,
                                              backend))["Recall@100"] for data in sets]


if __name__ == "__main__":
    main()
