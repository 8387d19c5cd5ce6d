"""Evaluation outputs: a markdown table, results.json and a bar chart of nDCG@10, each written atomically."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from reranker.common.files import write_json

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


def bar_chart(output_dir: Path, rows: list[dict]) -> Path | None:
    """nDCG@10 per dataset (groups) and system (bars), first stages included; not the --depth_curve rows."""
    rows = [r for r in rows if "nDCG@10" in r and "rerank_depth" not in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets) * max(1, len(systems)) ** 0.5), 4.5))
    for i, system in enumerate(systems):
        values = [next((r["nDCG@10"] for r in rows if r["dataset"] == d and r["system"] == system), 0.0)
                  for d in datasets]
        bars = ax.bar([x + i * width for x in range(len(datasets))], values, width, label=system)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(datasets))], datasets)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = output_dir / "ndcg10.png"
    fd, tmp = tempfile.mkstemp(prefix=".ndcg10.", suffix=".png", dir=output_dir)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
