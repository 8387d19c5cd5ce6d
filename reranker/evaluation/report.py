"""Evaluation outputs: a markdown table, results.json and a bar chart of nDCG@10, each written atomically."""

from __future__ import annotations

import math
from pathlib import Path

from reranker.common.files import atomic_write, write_json

COLUMNS = ("nDCG@10", "MRR@10", "Recall@100", "MAP", "AUC", "precision", "recall", "F1", "dev_nDCG@10")


def markdown_table(rows: list[dict]) -> str:
    present = [c for c in COLUMNS if any(c in row for row in rows)]
    lines = ["| dataset | system | " + " | ".join(present) + " | ΔnDCG@10 |",
             "|---|---|" + "---|" * len(present) + "---|"]
    for row in rows:
        cells = []
        for column in present:
            value = row.get(column)
            cells.append("" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}")
        delta = row.get("delta_nDCG@10")
        lines.append(f"| {row['dataset']} | {row['system']} | " + " | ".join(cells) + " | "
                     + ("" if delta is None else f"{delta:+.4f}") + " |")
    return "\n".join(lines)


def write_results(output_dir: Path, rows: list[dict], settings: dict) -> Path:
    path = output_dir / "results.json"
    write_json(path, {"results": rows, "settings": settings})
    return path


def bar_chart(output_dir: Path, rows: list[dict], title: str = "nDCG@10") -> Path | None:
    """nDCG@10, one panel per dataset with a bar per system that was evaluated on it (a system missing from a
    dataset has no bar there, rather than a bar at 0), first stages included; not the --depth_curve rows."""
    rows = [r for r in rows if r.get("nDCG@10") is not None and "rerank_depth" not in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    colour = {s: f"C{i % 10}" for i, s in enumerate(dict.fromkeys(r["system"] for r in rows))}  # same in each panel
    widest = max(sum(r["dataset"] == d for r in rows) for d in datasets)
    fig, axes = plt.subplots(1, len(datasets), squeeze=False, sharey=True,
                             figsize=(max(5.0, (1.2 + 0.45 * widest) * len(datasets)), 4.8))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        present = [r for r in rows if r["dataset"] == dataset]
        bars = ax.bar(range(len(present)), [r["nDCG@10"] for r in present],
                      color=[colour[r["system"]] for r in present])
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.set_xticks(range(len(present)), [r["system"] for r in present], rotation=35, ha="right", fontsize=7)
        ax.set_title(dataset, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("nDCG@10")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = output_dir / "ndcg10.png"
    try:
        with atomic_write(path, mode="wb") as handle:
            fig.savefig(handle, format="png", dpi=120)
    finally:
        plt.close(fig)
    return path


def chart_title(split: str, top_k: int, has_beir: bool, has_pairs: bool) -> str:
    """What the bars measure: which candidates were reranked, at which depth."""
    parts = []
    if has_beir:
        parts.append(f"{split} split: each first stage's top {top_k} reranked")
    if has_pairs:
        parts.append("pair files: each query's own pos and neg reranked")
    return "nDCG@10, " + "; ".join(parts) if parts else "nDCG@10"
