"""A decoder reranker trained here loads in sentence-transformers' CrossEncoder and scores as Reranker does."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import group_rows, write_jsonl
from tiny import build_tiny_family_model

from reranker import Reranker
from reranker.cli import train as train_cli

# sentence-transformers reads a causal LM's yes/no logits through its LogitScore module (6.x).
pytest.importorskip("sentence_transformers.cross_encoder.modules.logit_score",
                    reason="this sentence-transformers has no LogitScore: it cannot load causal LMs as CrossEncoders")

PAIRS = [("what is the capital of france", "paris is the capital of france and a big city"),
         ("why is the sky blue", "light from the sun"), ("a", "the cat and the dog in the tree by the river"),
         ("how does bread bake {query}", "bread bakes in an oven {passage} {{ x }}")]
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def train(tmp_path, name, *extra):
    base = build_tiny_family_model(tmp_path / f"{name}-base", "decoder")
    if "--template" in extra:  # a chat model: its own template stays the tokenizer's
        (base / "chat_template.jinja").write_text(CHATML)
    data = write_jsonl(tmp_path / "train.jsonl", group_rows())
    out = tmp_path / name
    train_cli.main(["--model_name_or_path", str(base), "--train_data", str(data), "--output_dir", str(out),
                    "--train_group_size", "4", "--per_device_train_batch_size", "3", "--query_max_len", "16",
                    "--passage_max_len", "24", "--use_cpu", "--save_strategy", "no", "--max_steps", "2",
                    "--learning_rate", "3e-3", *extra])
    return out


@pytest.mark.parametrize("extra", [(), ("--template", "bge-gemma")], ids=["qwen3-pair", "bge-gemma-single"])
def test_a_decoder_scores_the_same_in_sentence_transformers(tmp_path, extra):
    from sentence_transformers import CrossEncoder

    out = train(tmp_path, "ranker", *extra)
    ours = Reranker(str(out), device="cpu").compute_score(PAIRS, batch_size=4)
    model = CrossEncoder(str(out), device="cpu")
    # One batch of four lengths: sentence-transformers pads on the left, our scorer on the tokenizer's side.
    theirs = model.predict(PAIRS, batch_size=4, activation_fn=torch.nn.Identity())
    assert theirs.tolist() == pytest.approx(ours, abs=1e-5)
    # By default predict() gives the probability, as for any one-score CrossEncoder: our normalize=True.
    assert model.predict(PAIRS).tolist() == pytest.approx(torch.sigmoid(torch.tensor(ours)).tolist(), abs=1e-6)
    saved = json.loads((out / "config.json").read_text())["reranker"]
    logit_score = json.loads((out / "1_LogitScore" / "config.json").read_text())
    assert logit_score["true_token_id"] == saved["token_ids"][0]
    assert logit_score["false_token_id"] == (saved["token_ids"][1] if saved["score_mode"] == "pair" else None)
    template = (out / "chat_template.jinja").read_text()
    assert (template == CHATML) == bool(extra)  # a chat model's own template is kept; none gets ours

