"""Which int8 recipe keeps an encoder reranker's ranking: each recipe's dev nDCG@10 against torch fp32 at several
pair budgets, and its scoring speed, so that the export's default is chosen on dev queries by a rule fixed first.

    python benchmarks/int8_recipes.py --model outputs/pipeline/scifact/model \\
        --dev_file outputs/pipeline/scifact/data/dev.jsonl --probe_data outputs/pipeline/scifact/data/train.jsonl

A recipe is which MatMul layers stay out of int8 (`--int8_keep`: auto keeps each block's output projection, none
quantises them all) and how NNCF's calibration batches the probe pairs (`--calibration_batch_size`: the probe
batches of 16, padded to their longest pair, or 1, each pair alone). Each recipe is exported by reranker-export into
its own copy of the model (under --workdir), calibrated on the same 256 probe pairs of --probe_data (training
pairs, never the dev file). Then, per budget, torch fp32 and every recipe's graph rank the dev file's candidates,
and every recipe scores --pairs scifact pairs (random, batch 32) at --speed_length in interleaved rounds, best kept.

The rule (fixed before the figures): a recipe passes when its dev nDCG@10 is within --tolerance of torch fp32's at
every budget; of those that pass, the fastest is chosen, unless another passing one is within 3% of its speed and
keeps fewer layers out of int8 (fewer kept: more of the model in int8, the same speed within noise).
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

RECIPES = {"kept-batches": ("auto", None), "kept-single": ("auto", 1), "all-batches": ("none", None),
           "all-single": ("none", 1)}


def choose(rows: dict[str, dict], tolerance: float) -> str | None:
    """The rule of the docstring over rows {recipe: {"diffs": [...], "pairs_per_s": x, "kept": n}}."""
    passing = {name: row for name, row in rows.items() if all(abs(d) <= tolerance for d in row["diffs"])}
    if not passing:
        return None
    fastest = max(passing, key=lambda n: passing[n]["pairs_per_s"])
    close = [n for n in passing if passing[n]["pairs_per_s"] >= 0.97 * passing[fastest]["pairs_per_s"]]
    return min(close, key=lambda n: (passing[n]["kept"], -passing[n]["pairs_per_s"]))


def main(argv: list[str] | None = None) -> dict:
    import torch

    from reranker import Reranker
    from reranker.cli import common as cli
    from reranker.models import backends
    from reranker.models.export import ExportOptions, export
    from reranker.training.dev_eval import load_dev

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an encoder-family reranker folder")
    parser.add_argument("--dev_file", required=True, help="dev queries with candidates (the pipeline's dev.jsonl)")
    parser.add_argument("--probe_data", required=True, help="training pairs to calibrate on (not the dev file)")
    parser.add_argument("--beir", default=str(ROOT.parent / "shared/data/beir/scifact"))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--lengths", type=int, nargs="+", default=[320, 256],
                        help="pair budgets to rank the dev file at (the trained one, the benchmarks' one)")
    parser.add_argument("--speed_length", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", default=str(ROOT / "outputs/int8_recipes"))
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    a = parser.parse_args(argv)
    cli.setup_logging()
    torch.set_num_threads(a.threads)

    rows: dict[str, dict] = {}
    for name in a.recipes:
        keep, calibration = RECIPES[name]
        copy = Path(a.workdir) / name
        if not backends.graph_path(copy, "openvino-int8").is_file():
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(a.model, copy, ignore=shutil.ignore_patterns("onnx", "openvino", "checkpoint-*"))
            export(str(copy), ExportOptions(backend="openvino-int8", probe_data=a.probe_data, int8_keep=keep,
                                            calibration_batch_size=calibration))
        record = json.loads((copy / "openvino" / backends.RECORD).read_text())["openvino_model_qint8.xml"]
        rows[name] = {"path": str(copy), "quantization": record["quantization"],
                      "probe_correlation": record["probe"]["agreement"]["f32"]["correlation"],
                      "kept": int(record["quantization"].split("the ")[1].split(" ")[0])
                      if "kept out of int8" in record["quantization"] else 0, "ndcg": [], "diffs": []}

    dev = load_dev(a.dev_file)
    reference = []
    for length in a.lengths:
        fp32 = dev_ndcg(Reranker(a.model, device="cpu", dtype="fp32", max_length=length), dev, a.batch_size)
        reference.append(fp32)
        for row in rows.values():
            value = dev_ndcg(Reranker(row["path"], device="cpu", dtype="auto", max_length=length,
                                      backend="openvino-int8"), dev, a.batch_size)
            row["ndcg"].append(round(value, 4))
            row["diffs"].append(round(value - fp32, 4))

    pairs = beir_pairs(Path(a.beir), a.pairs)
    models = {name: Reranker(row["path"], device="cpu", dtype="auto", max_length=a.speed_length,
                             backend="openvino-int8") for name, row in rows.items()}
    speed = race({name: (lambda p, m=m: m.compute_score(p, batch_size=a.batch_size)) for name, m in models.items()},
                 pairs, a.rounds)
    for name, row in rows.items():
        row["pairs_per_s"] = round(speed[name], 1)
    chosen = choose(rows, a.tolerance)

    budgets = " | ".join(f"dev nDCG@10 at {n} (vs fp32 {r:.4f})" for n, r in zip(a.lengths, reference, strict=True))
    print(f"\n| recipe | MatMul layers kept out of int8 | probe correlation | {budgets} | pairs/s at "
          f"{a.speed_length} |")
    print("|---|---|---|" + "---|" * len(a.lengths) + "---|")
    for name, row in rows.items():
        cells = " | ".join(f"{v:.4f} ({d:+.4f})" for v, d in zip(row["ndcg"], row["diffs"], strict=True))
        print(f"| {name} | {row['kept']} | {row['probe_correlation']:.4f} | {cells} | {row['pairs_per_s']:.1f} |")
    print(f"chosen by the rule (within {a.tolerance} at every budget, then speed): {chosen}")
    result = {"args": vars(a), "fp32": dict(zip(map(str, a.lengths), reference, strict=True)), "recipes": rows,
              "chosen": chosen}
    if a.output:
        Path(a.output).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
