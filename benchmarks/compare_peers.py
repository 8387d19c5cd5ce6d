"""Our pipeline's reranker against FlagEmbedding's and sentence-transformers' on the same data and budget, in one run.

The training file is our pipeline's (its data and mine stages, from the same config); each system then trains the
same backbone for the same number of steps of the same groups (one positive + group_size - 1 negatives, the same
batch, learning rate, warm-up, token budgets and bf16), and all three rerank the same BM25 candidates of the test
queries. Ours trains with its default recipe (fresh-head learning rate, dev ranking and best checkpoint); the
peers with theirs. One table: nDCG@10, MRR@10, training pairs/s and wall time.

    python benchmarks/compare_peers.py --config configs/scifact.yaml   # the full comparison (results/peers.md)
    python benchmarks/compare_peers.py --config configs/scifact.yaml --quick    # under 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from common import ST_TRAIN, run_measured  # noqa: E402

from reranker.cli import common as cli  # noqa: E402
from reranker.workflows.pipeline import PipelineConfig, run_pipeline, to_argv  # noqa: E402

logger = logging.getLogger("compare_peers")



def shared_options(train: dict, steps: int) -> dict:
    """The budget every system gets: the pipeline config's group, batch, lengths, lr, warm-up, precision."""
    return {"train_group_size": train.get("train_group_size", 8), "query_max_len": train.get("query_max_len", 64),
            "passage_max_len": train.get("passage_max_len", 256),
            "per_device_train_batch_size": train.get("per_device_train_batch_size", 4),
            "learning_rate": train.get("learning_rate", 1e-4), "warmup_steps": train.get("warmup_steps", 0.1),
            "max_steps": steps, "bf16": config_bf16(train), "seed": train.get("seed", 42)}


def config_bf16(train: dict) -> bool:
    """The config's precision as run.py reads it: auto_bf16 is bf16 where the device has it natively."""
    if train.get("auto_bf16"):
        from reranker.common.precision import resolve_dtype

        return resolve_dtype("auto", "train.auto_bf16") == "bf16"
    return bool(train.get("bf16", False))


def trainable_file(mined: str, out: Path) -> tuple[str, int, int]:
    """The mined records that have at least one negative, the rule run.py applies, written for all three systems.

    FlagEmbedding divides by the number of negatives and our sentence-transformers driver samples from them, so a
    record without any crashes both (BM25 mining leaves some queries with none: every candidate it ranks in the
    range scores within the false-negative margin of the positive). Returns (path, kept, left out).
    """
    from reranker.common.files import atomic_write

    kept = skipped = 0
    with open(mined, encoding="utf-8") as source, atomic_write(out) as handle:
        for line in source:
            if not line.strip():
                continue
            if json.loads(line).get("neg"):
                handle.write(line if line.endswith("\n") else line + "\n")
                kept += 1
            else:
                skipped += 1
    return str(out), kept, skipped


def main(argv: list[str] | None = None) -> list[dict]:
    cli.setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs/scifact.yaml"), help="a pipeline config")
    parser.add_argument("--quick", action="store_true",
                        help="20 steps, the top 20 of BM25, the first 50 test queries: a check, not a result")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's max_steps)")
    parser.add_argument("--top_k", type=int, default=None, help="BM25 candidates reranked (default 100)")
    parser.add_argument("--max_queries", type=int, default=None, help="test queries evaluated (default: all)")
    parser.add_argument("--peer_learning_rate", type=float, default=None,
                        help="the peers' learning rate (default: the same as ours)")
    parser.add_argument("--workdir", default=str(ROOT / "outputs/compare_peers"))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", default=None, help="also write the table to this file")
    a = parser.parse_args(argv)
    # 50 queries: with the probe and 100 queries it took 15 min 12 s once, over the 15-minute limit.
    quick = {"steps": 20, "top_k": 20, "max_queries": 50} if a.quick else {"top_k": 100, "max_queries": 0}
    config = PipelineConfig.load(a.config)
    steps = a.steps or quick.get("steps") or int(config.train.get("max_steps", 300))
    top_k = a.top_k or quick["top_k"]
    max_queries = a.max_queries if a.max_queries is not None else quick["max_queries"]
    work = Path(a.workdir)
    config.output_dir = str(work / "pipeline")
    prepared = run_pipeline(config, a.config, until="mine")  # skipped when done before with the same options
    train_file, kept, skipped = trainable_file(prepared["train_file"], work / "train.jsonl")
    if skipped:
        logger.warning("%s: %d of %d records have no negatives; all three systems train on the other %d (%s)",
                       prepared["train_file"], skipped, kept + skipped, kept, train_file)
    from reranker.models.loading import bundled_minilm_path

    model = config.train.get("model_name_or_path") or bundled_minilm_path()
    shared = shared_options(config.train, steps)
    peer = {**shared, "learning_rate": a.peer_learning_rate or shared["learning_rate"]}
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    # auto_bf16 is resolved into shared["bf16"] (the same for all three); passing both would be a conflict.
    ours_options = {**{k: v for k, v in config.train.items() if k != "auto_bf16"}, **shared,
                    "model_name_or_path": model}
    if prepared["dev_file"] and not a.quick:
        # The quick check has too few steps for a best checkpoint; its dev ranking would only cost time.
        ours_options["dev_file"] = prepared["dev_file"]
    cpu = {"use_cpu": True} if not _has_cuda() else {}
    systems = {
        "ours": [*torchrun, str(ROOT / "run.py"), "--train_data", train_file, "--output_dir",
                 str(work / "ours"), *to_argv({**ours_options, **cpu})],
        "flagembedding": [*torchrun, "-m", "FlagEmbedding.finetune.reranker.encoder_only.base", "--model_name_or_path",
                          model, "--train_data", train_file, "--output_dir", str(work / "flagembedding"),
                          *to_argv({**peer, **cpu, "save_strategy": "no", "logging_steps": 10,
                                    "report_to": "none"})],
        "sentence-transformers": [sys.executable, "-c", ST_TRAIN, json.dumps({
            "model": model, "train_file": train_file, "output_dir": str(work / "sentence-transformers"),
            "group_size": peer["train_group_size"], "batch_size": peer["per_device_train_batch_size"],
            "query_max_len": peer["query_max_len"], "passage_max_len": peer["passage_max_len"],
            "learning_rate": peer["learning_rate"], "warmup_steps": peer["warmup_steps"], "steps": steps,
            "bf16": peer["bf16"], "use_cpu": bool(cpu), "seed": peer["seed"]})],
    }
    pairs = steps * shared["per_device_train_batch_size"] * shared["train_group_size"]
    trained = {}
    for name, command in systems.items():
        out = work / name
        # Scratch folders of this benchmark under --workdir (FlagEmbedding refuses a non-empty one).
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work / f"{name}_trainer", ignore_errors=True)
        logger.info("Training %s: %d steps, %d pairs", name, steps, pairs)
        result, wall, rss = run_measured(command, env)
        (work / f"{name}.log").write_text(result.stdout + result.stderr)
        # Our recipe ranks the dev queries during training; that time is reported apart, and the speed is
        # measured on the training alone, as for the peers (which rank nothing).
        state = out / "trainer_state.json"
        dev_s = sum(e.get("eval_runtime", 0.0) for e in json.loads(state.read_text())["log_history"]) \
            if state.is_file() else 0.0
        trained[name] = {"train_wall_s": round(wall, 1), "dev_ranking_s": round(dev_s, 1),
                         "train_pairs_per_s": round(pairs / (wall - dev_s), 2), "peak_rss_mb": round(rss)}
        logger.info("%s: %.0f s (%.0f s of it ranking dev queries), %.2f pairs/s", name, wall, dev_s,
                    pairs / (wall - dev_s))

    import eval as eval_cli

    t = time.perf_counter()
    rows = eval_cli.main(["--models", *(str(work / n) for n in systems), "--datasets", config.beir, "--split",
                          config.test_split, "--first_stage", "bm25", "--top_k", str(top_k), "--max_queries",
                          str(max_queries), "--dtype", "bf16" if shared["bf16"] else "fp32",
                          "--rerank_max_length", str(shared["query_max_len"] + shared["passage_max_len"]),
                          "--batch_size", "32", "--output_dir", str(work / "eval"),
                          # With document expansion all three trained on the expanded file, so all three read it.
                          *(["--expand_from", prepared["expand_from"], "--expand_per_pair",
                             str(config.expand_documents),
                             # the embedder that picked the training texts' questions picks these too
                             *to_argv({k: config.eval.get(k) for k in ("dense_model", "dense_pooling")})]
                            if prepared["expand_from"] else [])])
    logger.info("Evaluation: %.0f s", time.perf_counter() - t)
    table = []
    for row in rows:
        name = row["system"].split(" > ")[-1]
        table.append({"system": "BM25, no reranking" if name == "bm25" else name,
                      "nDCG@10": row["nDCG@10"], "MRR@10": row["MRR@10"], **trained.get(name, {})})
    print(f"\n{config.beir}: {steps} steps x {shared['per_device_train_batch_size']} groups x "
          f"{shared['train_group_size']} = {pairs} pairs, lr ours {shared['learning_rate']} / peers "
          f"{peer['learning_rate']}, BM25 top-{top_k}, {rows[0]['queries']} test queries, {a.threads} threads\n")
    print("| system | nDCG@10 | MRR@10 | train pairs/s | train wall s | of which dev ranking s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['system']} | {r['nDCG@10']:.4f} | {r['MRR@10']:.4f} | {r.get('train_pairs_per_s', '—')} | "
              f"{r.get('train_wall_s', '—')} | {r.get('dev_ranking_s', '—')} | {r.get('peak_rss_mb', '—')} |")
    by_name = {r["system"]: r for r in table}
    for peer_name in ("flagembedding", "sentence-transformers"):
        print(f"ours / {peer_name}: nDCG@10 {by_name['ours']['nDCG@10'] - by_name[peer_name]['nDCG@10']:+.4f}, "
              f"speed {by_name['ours']['train_pairs_per_s'] / by_name[peer_name]['train_pairs_per_s']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"steps": steps, "pairs": pairs, "top_k": top_k, "table": table},
                                           indent=2))
    return table


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
