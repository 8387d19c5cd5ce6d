"""The model card of a trained reranker: README.md in the Hugging Face format (YAML front matter, then Markdown).

Pure functions build the text from plain dicts (what training used, dev_metrics.json, evaluation results); one
writer puts it beside the weights atomically. reranker-train writes the card; reranker-eval adds its results
(a table and the `model-index` metadata the Hub reads) to cards that carry our tag, never to others.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from reranker.common.files import atomic_write

logger = logging.getLogger(__name__)

TAG = "rerank-toolkit"  # marks a card written here: reranker-eval updates only those
TAGS = [TAG, "cross-encoder", "reranker", "text-ranking"]
EVALUATION = "## Evaluation"
# Metrics as the Hub's model-index names them, in table order; first_stage_* is the candidates' own ranking.
METRICS = {"nDCG@10": "ndcg_at_10", "first_stage_nDCG@10": "first_stage_ndcg_at_10", "MRR@10": "mrr_at_10",
           "Recall@100": "recall_at_100", "MAP": "map", "AUC": "auc"}
OWN_CANDIDATES = "own candidates"  # the first stage of {query, pos, neg} data: each query's pos and neg


def front_matter(info: dict) -> dict:
    """The metadata block. library_name is transformers: the folder is a plain AutoModelForSequenceClassification
    checkpoint, so the Hub's loading snippet works; our tag says who trained it."""
    meta = {"library_name": "peft" if info.get("lora") else "transformers", "pipeline_tag": "text-ranking",
            "tags": list(TAGS)}
    if info.get("base_model"):  # a Hub id only; a local folder means nothing on the Hub
        meta["base_model"] = info["base_model"]
    if info.get("license"):
        meta["license"] = info["license"]
    return meta


def training_section(info: dict) -> str:
    data = ", ".join(f"`{d['name']}` ({d['queries']:,} queries)" for d in info["train_data"])
    devices = info.get("world_size", 1)
    batch = info["batch_size"] * devices * info.get("gradient_accumulation_steps", 1)
    rows = [
        ("Base model", info.get("base_model") or f"`{info['base_model_name']}` (a local checkpoint)"),
        *([("Model family", info["scoring"])] if info.get("scoring") else []),
        *([("LoRA", info["lora"])] if info.get("lora") else []),
        ("Training data", data),
        ("Group size", f"{info['group_size']} passages per query ({info['positives']} positive)"),
        ("Max lengths", f"query {info['query_max_len']}, passage {info['passage_max_len']} tokens "
                        f"({info['max_length']} for the pair, special tokens included)"),
        ("Steps", f"{info['steps']:,}"),
        ("Learning rate", f"{info['learning_rate']:g}"),
        ("Batch size", f"{batch} queries per step ({info['batch_size']} per device x {devices} device(s) x "
                       f"{info.get('gradient_accumulation_steps', 1)} accumulation)"),
        ("Loss", info["loss"]),
        ("Precision", info["precision"]),
        ("Seed", str(info["seed"])),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"## Training\n\n| | |\n|---|---|\n{table}\n"


def dev_section(dev: dict) -> str:
    """From dev_metrics.json: the dev ranking of the saved model, against the first stage it reranks."""
    saved = dev["saved"]
    lines = [f"Ranked during training on `{Path(dev['dev_file']).name}` ({dev['queries']} queries); the saved model "
             f"is the one of step {dev['saved_step']}.", "", "| | nDCG@10 | MRR@10 |", "|---|---|---|",
             f"| This model | {saved['nDCG@10']:.4f} | {saved['MRR@10']:.4f} |"]
    if "first_stage_nDCG@10" in saved:
        lines.append(f"| First stage | {saved['first_stage_nDCG@10']:.4f} | {saved['first_stage_MRR@10']:.4f} |")
    return "## Dev metrics\n\n" + "\n".join(lines) + "\n"


def evaluation_section(results: list[dict], scoring: str | None = None) -> str:
    if not results:
        return (f"{EVALUATION}\n\nNot evaluated yet: `reranker-eval --models <this folder> --datasets ... "
                "--output_dir ...` adds its results here.\n")
    shown = [label for label in METRICS if any(label in r["metrics"] for r in results)]
    head = "| Dataset | Split | First stage | Top k | " + " | ".join(m.replace("_", " ") for m in shown) + " |"
    lines = [head, "|" + "---|" * (4 + len(shown))]
    for r in results:
        values = [f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "" for m in shown]
        lines.append(f"| {r['dataset']} | {r['split']} | {r['first_stage']} | {r.get('top_k') or ''} | "
                     + " | ".join(values) + " |")
    scored = f" Scored as: {scoring}." if scoring else ""
    return (f"{EVALUATION}\n\nFrom reranker-eval: the top k candidates of each first stage reranked by this "
            f"model; 'first stage nDCG@10' is their ranking before reranking.{scored}\n\n" + "\n".join(lines) + "\n")


def adapter_usage_section(repo: str) -> str:
    return f'''## How to load

A LoRA adapter: reranker_config.json records the base model it was trained on (and a fingerprint of its weights),
the prompt, answer tokens and budgets. With this toolkit, which loads that base (refusing other weights) and
applies the adapter:

```python
from reranker import Reranker

reranker = Reranker("{repo}")  # base_model=... where the base has moved
scores = reranker.compute_score([("what is a cross-encoder", "A cross-encoder reads query and passage together.")])
```

A plain checkpoint for other tools, merged and checked on a probe batch: `reranker-merge {repo} --output_dir merged`.
'''


def usage_section(repo: str, max_length: int, model_class: str = "AutoModelForSequenceClassification") -> str:
    if model_class != "AutoModelForSequenceClassification":
        return f'''## How to load

With this toolkit (the prompt, answer tokens and budgets are read from config.json):

```python
from reranker import Reranker

reranker = Reranker("{repo}")
scores = reranker.compute_score([("what is a cross-encoder", "A cross-encoder reads query and passage together.")])
```

With plain transformers it is an `{model_class}` checkpoint: fill the prompt saved in config.json under
"reranker" (`prefix` + `body` + `suffix`) and read the answer tokens' logits (`token_ids`) at the answer position,
as rerank-toolkit's docs/models.md describes.
'''
    return f'''## How to load

With this toolkit (pairs are cut to the training budgets above):

```python
from reranker import Reranker

reranker = Reranker("{repo}")
scores = reranker.compute_score([("what is a cross-encoder", "A cross-encoder reads query and passage together.")])
```

With plain transformers (one logit per pair; higher is more relevant):

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{repo}")
model = AutoModelForSequenceClassification.from_pretrained("{repo}").eval()
batch = tokenizer(["what is a cross-encoder"], ["A cross-encoder reads query and passage together."],
                  truncation=True, max_length={max_length}, padding=True, return_tensors="pt")
with torch.no_grad():
    scores = model(**batch).logits.squeeze(-1)
```
'''


def build_card(info: dict, dev: dict | None = None) -> str:
    """The card of a freshly trained model: metadata, what it was trained on and how, dev metrics, loading."""
    repo = info.get("repo") or info["name"]
    body = [f"# {info['name']}\n\nA cross-encoder reranker: it reads a query and a passage together and gives one "
            "relevance score. Fine-tuned with rerank-toolkit's group-wise ranking loss.\n",
            training_section(info)]
    if dev:
        body.append(dev_section(dev))
    usage = adapter_usage_section(repo) if info.get("lora") else \
        usage_section(repo, info["max_length"], info.get("model_class", "AutoModelForSequenceClassification"))
    body += [evaluation_section([]), usage]
    return render(front_matter(info), "\n".join(body))


def render(meta: dict, body: str) -> str:
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def parse(text: str) -> tuple[dict, str]:
    """(metadata, body) of a card; ({}, text) when it has no front matter."""
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---\n", 4)
    if end < 0:
        return {}, text
    meta = yaml.safe_load(text[4:end]) or {}
    return (meta if isinstance(meta, dict) else {}), text[end + 5:].lstrip("\n")


def is_ours(text: str) -> bool:
    return TAG in (parse(text)[0].get("tags") or [])


def results_from_rows(rows: list[dict], model: str, split: str, top_k: int) -> list[dict]:
    """reranker-eval's rows for one model, as card results: its plain reranking of each first stage (fusions
    and depth curves stay in results.json)."""
    results = []
    for row in rows:
        if "first_stage" in row and row.get("system") == f"{row['first_stage']} > {model}":
            metrics = {m: row[m] for m in METRICS if row.get(m) is not None}
            if row.get("delta_nDCG@10") is not None:
                metrics["first_stage_nDCG@10"] = row["nDCG@10"] - row["delta_nDCG@10"]
            results.append({"dataset": row["dataset"], "split": split, "first_stage": row["first_stage"],
                            "top_k": top_k, "metrics": metrics})
        elif "first_stage" not in row and row.get("system") == model:
            results.append({"dataset": row["dataset"], "split": split, "first_stage": OWN_CANDIDATES,
                            "top_k": None, "metrics": {m: row[m] for m in METRICS if row.get(m) is not None}})
    return results


def to_model_index(name: str, results: list[dict]) -> list[dict]:
    """Results in the Hub's model-index format (one entry per dataset, split and first stage)."""
    entries = []
    for r in results:
        args = {"first_stage": r["first_stage"], **({"top_k": r["top_k"]} if r.get("top_k") else {})}
        entries.append({
            "task": {"type": "text-ranking", "name": "Reranking"},
            "dataset": {"name": r["dataset"], "type": r["dataset"], "split": r["split"], "args": args},
            "metrics": [{"type": METRICS[m], "value": round(float(v), 6), "name": m}
                        for m, v in r["metrics"].items() if m in METRICS],
        })
    return [{"name": name, "results": entries}]


def from_model_index(index: list[dict]) -> list[dict]:
    """The results a card's model-index holds (only the entries written by to_model_index are read back)."""
    names = {v: k for k, v in METRICS.items()}
    results = []
    for model in index or []:
        for entry in model.get("results", []):
            dataset, args = entry.get("dataset", {}), entry.get("dataset", {}).get("args") or {}
            if "first_stage" not in args:
                continue
            results.append({"dataset": dataset.get("name"), "split": dataset.get("split"),
                            "first_stage": args["first_stage"], "top_k": args.get("top_k"),
                            "metrics": {names[m["type"]]: m["value"] for m in entry.get("metrics", [])
                                        if m.get("type") in names}})
    return results


def with_evaluation(text: str, name: str, new: list[dict], scoring: str | None = None) -> str:
    """The card with `new` results merged in (a result for the same dataset, split, first stage and depth is
    replaced), in the table and the model-index, with how the model scored (`scoring`: its family and template).
    The rest of the card is kept as it is."""
    meta, body = parse(text)
    key = ("dataset", "split", "first_stage", "top_k")
    merged = {tuple(r.get(k) for k in key): r for r in from_model_index(meta.get("model-index"))}
    merged.update({tuple(r.get(k) for k in key): r for r in new})
    results = list(merged.values())
    meta["model-index"] = to_model_index(name, results)
    section = evaluation_section(results, scoring)
    start = body.find(EVALUATION)
    if start < 0:
        usage = body.find("## How to load")
        start = usage if usage >= 0 else len(body)
        body = body[:start] + section + "\n" + body[start:]
    else:
        end = body.find("\n## ", start + len(EVALUATION))
        body = body[:start] + section + (body[end:] if end >= 0 else "")
    return render(meta, body)


def write(path: Path, text: str) -> None:
    """The one writer: atomically, so a reader never sees half a card."""
    with atomic_write(path) as handle:
        handle.write(text)


def record_evaluation(model_path: str, rows: list[dict], split: str, top_k: int, scoring: str | None = None) -> bool:
    """Add reranker-eval's results for `model_path` to its card, when it is a local folder with a card we wrote
    (never a Hub id, never someone else's card). Returns whether the card was updated."""
    card = Path(model_path) / "README.md"
    if not card.is_file() or not is_ours(card.read_text(encoding="utf-8")):
        return False
    name = Path(model_path.rstrip("/")).name
    results = results_from_rows(rows, name, split, top_k)
    if not results:
        return False
    write(card, with_evaluation(card.read_text(encoding="utf-8"), name, results, scoring))
    logger.info("Added %d evaluation result(s) to the model card %s", len(results), card)
    return True
