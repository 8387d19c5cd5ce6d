"""The three model families behind one scorer seam: detection, prompts, answer tokens, padding, training, inference."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import group_rows, write_jsonl
from tiny import build_tiny_family_model

import eval as eval_cli
import run
from reranker import Reranker
from reranker.common.errors import ConfigError
from reranker.data.collator import GroupCollator
from reranker.data.groups import Group
from reranker.models.scorers import ScorerOptions, detect_family, scorer_for
from reranker.training.health import TrainingDiverged

PAIRS = [("what is the capital of france", "paris is the capital of france and a big city"),
         ("why is the sky blue", "light from the sun"), ("a", "the cat and the dog in the tree by the river"),
         ("how does bread bake", "bread bakes in an oven")]


@pytest.fixture(scope="module")
def masters(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {"seq2seq": build_tiny_family_model(root / "t5", "seq2seq"),
            "decoder": build_tiny_family_model(root / "llama", "decoder")}


@pytest.fixture
def family_model(masters, tmp_path):
    """A private copy of the tiny model of a family."""
    return lambda family: shutil.copytree(masters[family], tmp_path / family)


def train_args(model, data, out, *extra):
    return ["--model_name_or_path", str(model), "--train_data", str(data), "--output_dir", str(out),
            "--train_group_size", "4", "--per_device_train_batch_size", "3", "--query_max_len", "16",
            "--passage_max_len", "24", "--use_cpu", "--logging_steps", "1", "--save_strategy", "no", "--seed", "7",
            *extra]


def test_family_is_read_from_the_config_and_can_be_forced(masters):
    from transformers import AutoTokenizer, BertConfig, GPT2Config, LlamaConfig, T5Config, ViTConfig, WhisperConfig

    assert detect_family(BertConfig(architectures=["BertForSequenceClassification"])) == "encoder"
    assert detect_family(BertConfig(architectures=["BertModel"])) == "encoder"  # an embedding checkpoint
    assert detect_family(BertConfig()) == "encoder"
    assert detect_family(T5Config(architectures=["T5ForConditionalGeneration"])) == "seq2seq"
    assert detect_family(LlamaConfig(architectures=["LlamaForCausalLM"])) == "decoder"
    assert detect_family(GPT2Config(architectures=["GPT2LMHeadModel"])) == "decoder"
    assert detect_family(LlamaConfig()) == "decoder"
    assert detect_family(LlamaConfig(architectures=["LlamaForSequenceClassification"])) == "encoder"
    for config in (WhisperConfig(), ViTConfig(architectures=["ViTForImageClassification"])):
        with pytest.raises(ConfigError, match="is not an architecture this toolkit can rerank with"):
            detect_family(config)
    tokenizer = AutoTokenizer.from_pretrained(masters["decoder"])
    llama = LlamaConfig(architectures=["LlamaForCausalLM"])
    assert scorer_for(llama, tokenizer).family == "decoder"
    assert scorer_for(llama, tokenizer, family="encoder").family == "encoder"
    with pytest.raises(ConfigError, match="no AutoModelForSeq2SeqLM class for 'llama'"):
        scorer_for(llama, tokenizer, family="seq2seq")
    with pytest.raises(ConfigError, match="prompt options apply to the seq2seq and decoder"):
        scorer_for(llama, tokenizer, family="encoder", options=ScorerOptions(template="qwen3"))
    # Forced at load time: the same causal checkpoint as a cross-encoder with a fresh one-logit head.
    reranker = Reranker(str(masters["decoder"]), device="cpu", model_family="encoder")
    assert type(reranker.model).__name__ == "LlamaForSequenceClassification" and reranker.family == "encoder"


def test_prompts_answer_tokens_and_their_errors(masters):
    from transformers import AutoTokenizer, T5Config

    t5 = T5Config(architectures=["T5ForConditionalGeneration"], decoder_start_token_id=0)
    tokenizer = AutoTokenizer.from_pretrained(masters["seq2seq"])
    scorer = scorer_for(t5, tokenizer)
    assert scorer.describe() == "seq2seq, template monot5, score logit('true') - logit('false')"
    assert scorer.token_ids == [tokenizer.convert_tokens_to_ids("true"), tokenizer.convert_tokens_to_ids("false")]
    inputs = scorer.encode(["the sky"], ["blue sky"], 8, 8)
    # monoT5's input, closed by T5's </s>; one decoder step from the start token.
    assert tokenizer.convert_ids_to_tokens(inputs["input_ids"][0]) == [
        "query", ":", "the", "sky", "document", ":", "blue", "sky", "relevant", ":", "</s>"]
    assert inputs["decoder_input_ids"].tolist() == [[0]]
    assert scorer.pair_length(8, 8) == 8 + 8 + 7  # the template's 6 tokens and </s>
    mt5 = scorer_for(t5, tokenizer, options=ScorerOptions(true_token="yes", false_token="no", score_mode="single"))
    assert mt5.token_ids == [tokenizer.convert_tokens_to_ids("yes")] and mt5.false_token is None
    with pytest.raises(ConfigError, match=r"--true_token 'yes please' is 2 tokens for this tokenizer"):
        scorer_for(t5, tokenizer, options=ScorerOptions(true_token="yes please"))
    with pytest.raises(ConfigError, match="'qwen3' is not a seq2seq template"):
        scorer_for(t5, tokenizer, options=ScorerOptions(template="qwen3"))
    # A prompt of one's own: any order of the slots, braces of its own, texts holding slot names left alone.
    custom = scorer_for(t5, tokenizer, options=ScorerOptions(body="{passage} ? {query} {x}", suffix=" {instruction}",
                                                             instruction="rank"))
    assert custom.template == "custom" and custom.prompt.render("{passage} q", "p") == "p ? {passage} q {x} rank"
    with pytest.raises(ConfigError, match="must hold {query} and {passage}"):
        scorer_for(t5, tokenizer, options=ScorerOptions(body="Query: {query}"))
    with pytest.raises(ConfigError, match="no {instruction} to put it in"):
        scorer_for(t5, tokenizer, options=ScorerOptions(instruction="rank"))
    # The decoder's named templates: nothing after the prompt (no </s>), the answer read after it.
    from transformers import LlamaConfig

    llama, decoder_tokenizer = LlamaConfig(architectures=["LlamaForCausalLM"]), AutoTokenizer.from_pretrained(
        masters["decoder"])
    gemma = scorer_for(llama, decoder_tokenizer, options=ScorerOptions(template="bge-gemma"))
    assert gemma.describe() == "decoder, template bge-gemma, score logit('Yes')"
    ids = gemma.encode(["q"], ["p"], 4, 4)["input_ids"][0].tolist()
    tokens = decoder_tokenizer.convert_ids_to_tokens(ids)
    # "A: q\nB: p\n" + the instruction, ending "... either 'Yes' or 'No'." ("'." is not in the tiny vocabulary)
    assert tokens[:7] == ["<s>", "a", ":", "q", "b", ":", "p"] and tokens[-4:] == ["or", "'", "no", "<unk>"]
    assert len(ids) == gemma.pair_length(1, 1) and "</s>" not in tokens


def naive_scores(model, inputs, token_ids):
    """The full-vocabulary reading of the same scores: what the scorers avoid computing."""
    if "decoder_input_ids" in inputs:
        logits = model(**inputs).logits[:, 0]
    else:
        mask = inputs["attention_mask"]
        last = (torch.arange(mask.shape[1]) * mask).argmax(-1)
        logits = model(**inputs).logits[torch.arange(mask.shape[0]), last]
    return logits[:, token_ids[0]] - (logits[:, token_ids[1]] if len(token_ids) > 1 else 0)


@pytest.mark.parametrize("family", ["seq2seq", "decoder"])
def test_scores_match_the_full_logits_alone_batched_and_padded_either_side(masters, family):
    reranker = Reranker(str(masters[family]), device="cpu")
    for options in ({}, {"score_mode": "single"}):
        reranker.scorer = scorer_for(reranker.model.config, reranker.tokenizer, options=ScorerOptions(**options))
        batched = reranker.compute_score(PAIRS, batch_size=4)
        alone = [reranker.compute_score(pair) for pair in PAIRS]
        assert batched == pytest.approx(alone, abs=1e-5)
        inputs = reranker.scorer.encode([q for q, _ in PAIRS], [p for _, p in PAIRS], max_length=512)
        with torch.no_grad():
            naive = naive_scores(reranker.model, inputs, reranker.scorer.token_ids)
        assert batched == pytest.approx(naive.tolist(), abs=1e-4)
        for side in ("left", "right"):
            reranker.tokenizer.padding_side = side
            assert reranker.compute_score(PAIRS, batch_size=4) == pytest.approx(batched, abs=1e-5)
    assert reranker.compute_score(PAIRS[0], normalize=True) == pytest.approx(
        1 / (1 + torch.exp(-torch.tensor(alone[0]))).item(), abs=1e-6)


def test_decoder_never_projects_the_vocabulary(tmp_path):
    # A 50k vocabulary: [pairs, length, vocab] would be the largest tensor by far; the scorer reads two rows.
    folder = build_tiny_family_model(tmp_path / "big", "decoder", vocab_size=50_000)
    reranker = Reranker(str(folder), device="cpu")
    shapes = []
    reranker.model.lm_head.register_forward_hook(lambda _m, _i, output: shapes.append(tuple(output.shape)))
    reranker.compute_score(PAIRS * 4, batch_size=16)
    # Training too: gradients reach the two answer rows and the body.
    model = reranker.model.train()
    inputs = reranker.scorer.encode([q for q, _ in PAIRS], [p for _, p in PAIRS], 16, 24, pad_to_multiple_of=8)
    reranker.scorer.scores(model, inputs).sum().backward()
    assert shapes and all(shape[1] == 0 for shape in shapes), shapes  # the LM's own projection: no position
    grad = model.lm_head.weight.grad
    rows = torch.nonzero(grad.abs().sum(-1)).flatten().tolist()
    assert rows == sorted(reranker.scorer.token_ids)
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["seq2seq", "decoder"])
@pytest.mark.parametrize("loss", ["softmax_ce", "bce", "distill"])
def test_each_family_learns_with_each_loss_and_scores_as_trained(family_model, tmp_path, family, loss):
    rows = group_rows()
    if loss == "distill":  # a teacher sure of the positive: the student's distribution moves towards it
        rows = [{**r, "pos_scores": [4.0] * len(r["pos"]), "neg_scores": [0.0] * len(r["neg"])} for r in rows]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    trainer = run.main(train_args(family_model(family), data, out, "--max_steps", "40", "--learning_rate", "3e-3",
                                  "--loss", loss))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:3]) / 3, losses
    saved = json.loads((out / "config.json").read_text())["reranker"]
    assert saved["family"] == family and saved["query_max_len"] == 16 and saved["score_mode"] == "pair"
    assert saved["base_model"] == str((tmp_path / family).resolve())
    # Reranker(path) reads the family, prompt, tokens and budgets back: the training scorer's scores.
    reranker = Reranker(str(out), device="cpu")
    assert reranker.scorer.metadata(saved["base_model"]).items() <= saved.items()
    collator = GroupCollator(trainer.processing_class, 16, 24, scorer=trainer.scorer)
    query, passages = PAIRS[0][0], tuple(p for _, p in PAIRS)
    with torch.no_grad():
        trained = trainer.scorer.scores(trainer.model.eval(), collator([Group(query, passages)]))
    assert reranker.compute_score([(query, p) for p in passages]) == pytest.approx(trained.tolist(), abs=1e-5)
    ranked = reranker.rerank("why is the sky blue", ["the cat and the dog",
                                                     "the sky is blue because light from the sun is scattered"])
    assert ranked[0]["index"] == 1


def test_dev_ranking_eval_report_and_card_name_the_family(family_model, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", group_rows())
    dev = write_jsonl(tmp_path / "dev.jsonl", [
        {"query": "what is the capital of france", "candidates": [{"id": "a", "text": "berlin is in germany"},
                                                                 {"id": "b", "text": "paris is the capital"}],
         "relevance": {"b": 1}}])
    out = tmp_path / "ranker"
    run.main(train_args(family_model("decoder"), data, out, "--max_steps", "4", "--learning_rate", "3e-3",
                        "--template", "bge-gemma", "--dev_file", str(dev), "--save_strategy", "steps",
                        "--save_steps", "2"))
    assert json.loads((out / "dev_metrics.json").read_text())["saved"]["nDCG@10"] > 0
    assert "| Model family | decoder, template bge-gemma, score logit('Yes') |" in (out / "README.md").read_text()
    eval_cli.main(["--models", str(out), "--datasets", str(data), "--output_dir", str(tmp_path / "eval"),
                   "--cache_dir", "none"])
    settings = json.loads((tmp_path / "eval" / "results.json").read_text())["settings"]
    assert settings["scoring"]["ranker"] == {"family": "decoder", "template": "bge-gemma", "true_token": "Yes",
                                             "false_token": None, "score_mode": "single"}
    card = (out / "README.md").read_text()
    evaluation = card[card.index("## Evaluation"):card.index("## How to load")]
    assert "Scored as: decoder, template bge-gemma, score logit('Yes')." in evaluation
    assert "AutoModelForCausalLM" in card[card.index("## How to load"):]


def test_fp16_is_refused_for_t5(family_model, tmp_path):
    model = family_model("seq2seq")
    data = write_jsonl(tmp_path / "train.jsonl", group_rows())
    with pytest.raises(ConfigError, match="--fp16: fp16 overflows in the seq2seq family .* use bf16 or fp32"):
        run.main(train_args(model, data, tmp_path / "out", "--max_steps", "1", "--fp16"))
    with pytest.raises(ConfigError, match="reranker dtype: fp16 overflows in the seq2seq family"):
        Reranker(str(model), device="cpu", dtype="fp16")


def test_a_non_finite_score_stops_training(family_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = family_model("decoder")
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.lm_head.weight[AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids("yes")] = float("inf")
    model.save_pretrained(folder)
    data = write_jsonl(tmp_path / "train.jsonl", group_rows())
    # The scores themselves are checked, whatever the loss makes of them (BCE of -inf against 0 is finite).
    with pytest.raises(TrainingDiverged, match=r"scores are not finite .* at step 0"):
        run.main(train_args(folder, data, tmp_path / "out", "--max_steps", "2", "--loss", "bce"))
