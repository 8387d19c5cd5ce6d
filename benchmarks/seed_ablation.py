"""Training choices compared on dev queries over several seeds: one run.py per (variant, seed), one table.

On 80 dev queries one seed's dev nDCG@10 moves by 0.02 or more from seed to seed (how long a run sits on the
chance plateau varies), so a choice is judged by its mean over seeds. Made for a GPU, where a 300-step MiniLM run
takes about a minute and several share the card (`--parallel`); it runs anywhere.

    python benchmarks/seed_ablation.py --spec benchmarks/ablations/scifact_dev.yaml --seeds 42 1 2 --parallel 4

The spec (YAML): `dev_file`, `train` (run.py options every variant shares, by their command-line names, as in a
pipeline config), and `variants`: name -> {train_data: a file or a list, options: run.py options changed}.
Each run's folder keeps its log, command and dev_metrics.json; a finished run is not run again unless its
command changed. The first failed run stops the queue. Writes results.json and
results.md in --output_dir and prints the table: the best dev nDCG@10 of each seed (the checkpoint the run keeps),
its mean, and the mean at step 100 (how soon the run leaves chance).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reranker.cli import common as cli  # noqa: E402
from reranker.common.errors import ConfigError  # noqa: E402
from reranker.common.files import atomic_write, write_json  # noqa: E402
from reranker.workflows.pipeline import check_option_names, to_argv  # noqa: E402

logger = logging.getLogger("seed_ablation")


def load_spec(path: str) -> dict:
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict) or not spec.get("dev_file") or not isinstance(spec.get("variants"), dict):
        raise ConfigError(f"{path}: needs dev_file and a mapping of variants")
    spec.setdefault("train", {})
    for name, variant in spec["variants"].items():
        if not isinstance(variant, dict) or not variant.get("train_data"):
            raise ConfigError(f"{path}: variant {name!r} needs train_data")
        variant.setdefault("options", {})
        check_option_names({"train": {**spec["train"], **variant["options"]}}, f"{path} (variant {name})")
    check_option_names({"train": spec["train"]}, path)
    return spec


def run_one(name: str, seed: int, spec: dict, out: Path, env: dict) -> dict:
    folder = out / f"{name}_s{seed}"
    metrics = folder / "dev_metrics.json"
    variant = spec["variants"][name]
    data = variant["train_data"] if isinstance(variant["train_data"], list) else [variant["train_data"]]
    options = {**spec["train"], **variant["options"], "seed": seed}
    cmd = [sys.executable, str(ROOT / "run.py"), "--train_data", *data, "--output_dir", str(folder / "model"),
           "--overwrite_output_dir", "true", "--dev_file", spec["dev_file"], *to_argv(options)]
    recorded = folder / "command.json"
    # A finished run is reused only for the same command: an edited spec must not mix old figures in.
    if metrics.exists() and (not recorded.exists() or json.loads(recorded.read_text()) != cmd[1:]):
        logger.info("%s seed %d: the spec changed since its run; running it again", name, seed)
        metrics.unlink()
    if not metrics.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_json(recorded, cmd[1:])
        with open(folder / "train.log", "w") as log:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            raise RuntimeError(f"{name} seed {seed} failed (exit {code}); see {folder / 'train.log'}")
        (folder / "model" / "dev_metrics.json").replace(metrics)
        # Only the figures are kept: a model per run would fill the disk, and the chosen recipe is rerun anyway.
        subprocess.run(["rm", "-rf", str(folder / "model")], check=True)
    history = json.loads(metrics.read_text())["history"]
    logger.info("%s seed %d: best dev nDCG@10 %.4f", name, seed, max(h["nDCG@10"] for h in history))
    return {"variant": name, "seed": seed, "history": [(h["step"], h["nDCG@10"]) for h in history],
            "first_stage": history[0]["first_stage_nDCG@10"]}


def summarise(runs: list[dict], variants: list[str]) -> list[dict]:
    rows = []
    for name in variants:
        mine = [r for r in runs if r["variant"] == name]
        best = [max(v for _, v in r["history"]) for r in mine]
        at100 = [v for r in mine for step, v in r["history"] if step == 100]
        rows.append({"variant": name, "seeds": [r["seed"] for r in mine], "best": best,
                     "mean_best": statistics.mean(best), "min_best": min(best), "max_best": max(best),
                     "mean_at_100": statistics.mean(at100) if at100 else None})
    return rows


def table(rows: list[dict], first_stage: float) -> str:
    lines = [f"First stage on these dev queries: nDCG@10 {first_stage:.4f}", "",
             "| variant | seeds | mean best dev nDCG@10 | min | max | mean at step 100 |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["mean_best"]):
        at100 = f"{r['mean_at_100']:.4f}" if r["mean_at_100"] is not None else "-"
        lines.append(f"| {r['variant']} | {len(r['seeds'])} | {r['mean_best']:.4f} | {r['min_best']:.4f} | "
                     f"{r['max_best']:.4f} | {at100} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    cli.setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--variants", nargs="*", help="Run only these variants of the spec.")
    parser.add_argument("--parallel", type=int, default=1, help="Runs at once (several share one GPU well).")
    parser.add_argument("--output_dir", default="outputs/seed_ablation")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    names = args.variants or list(spec["variants"])
    unknown = sorted(set(names) - set(spec["variants"]))
    if unknown:
        raise ConfigError(f"--variants {', '.join(unknown)}: not in {args.spec}")
    out = Path(args.output_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    jobs = list(dict.fromkeys((name, seed) for seed in args.seeds for name in names))  # a repeat would share a folder
    pool = ThreadPoolExecutor(max_workers=max(1, args.parallel))
    futures = {pool.submit(run_one, name, seed, spec, out, env): (name, seed) for name, seed in jobs}
    try:
        for future in as_completed(futures):
            future.result()  # the first failure stops the queue at once, not after every other run
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    runs = [future.result() for future in futures]
    rows = summarise(runs, names)
    text = table(rows, runs[0]["first_stage"])
    write_json(out / "results.json", {"spec": args.spec, "seeds": args.seeds, "rows": rows, "runs": runs})
    with atomic_write(out / "results.md") as f:
        f.write(text)
    sys.stdout.write(text)
    return rows


if __name__ == "__main__":
    sys.exit(cli.run(main, logger))
