"""LoRA: options, the layers adapted per family, adapter-only saves, resume, loading on the recorded base, merging."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from conftest import group_rows, write_jsonl
from crash import Crash, CrashAfterSave
from safetensors.torch import load_file
from tiny import build_tiny_family_model

import eval as eval_cli
import run
from reranker import Reranker
from reranker.cli import merge as merge_cli
from reranker.common.errors import ConfigError
from reranker.models import lora
from reranker.models import merge as merge_module
from reranker.training.arguments import ModelArguments

pytest.importorskip("peft")

PAIRS = [("what is the capital of france", "paris is the capital of france"), ("why is the sky blue", "a red star"),
         ("how does bread bake", "bread bakes in an oven with yeast and flour")]
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "reranker_config.json"}




@pytest.fixture(scope="module")
def decoder_master(tmp_path_factory):
    return build_tiny_family_model(tmp_path_factory.mktemp("lora") / "llama", "decoder")


@pytest.fixture
def decoder(decoder_master, tmp_path):
    return shutil.copytree(decoder_master, tmp_path / "llama")


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", group_rows(1))


def lora_args(model, data, out, *extra):
    return ["--model_name_or_path", str(model), "--train_data", str(data), "--output_dir", str(out), "--use_lora",
            "--train_group_size", "3", "--per_device_train_batch_size", "2", "--query_max_len", "16",
            "--passage_max_len", "24", "--use_cpu", "--logging_steps", "1", "--seed", "5", "--learning_rate", "5e-3",
            "--max_steps", "2", "--save_steps", "1", *extra]


def test_lora_options_need_use_lora_and_peft(tiny_model, monkeypatch):
    with pytest.raises(ConfigError, match="--lora_rank apply to LoRA training: add --use_lora"):
        ModelArguments(model_name_or_path=str(tiny_model), lora_rank=8)
    args = ModelArguments(model_name_or_path=str(tiny_model), use_lora=True, lora_target_modules=["query,value"])
    assert (args.lora_rank, args.lora_alpha, args.lora_dropout) == (16, 32.0, 0.05)
    assert args.lora_target_modules == ["query", "value"]
    with pytest.raises(ConfigError, match="--lora_dropout must be in"):
        ModelArguments(model_name_or_path=str(tiny_model), use_lora=True, lora_dropout=1.0)
    monkeypatch.setitem(sys.modules, "peft", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'rerank-toolkit\[lora\]'"):
        ModelArguments(model_name_or_path=str(tiny_model), use_lora=True)


def adapted(model, family, names=None):
    wrapped = lora.add_adapter(model, family, 4, 8, 0.0, names)
    config = wrapped.peft_config["default"]
    return wrapped, sorted(config.target_modules), sorted(config.modules_to_save or [])


def test_default_targets_per_family(decoder, tmp_path):
    from transformers import (
        AutoModelForCausalLM,
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    _, targets, whole = adapted(AutoModelForCausalLM.from_pretrained(decoder), "decoder")
    assert targets == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert whole == []  # lm_head: neither adapted nor trained whole
    for gating, ffn in (("relu", ["wi", "wo"]), ("gated-gelu", ["wi_0", "wi_1", "wo"])):
        t5 = T5ForConditionalGeneration(T5Config(vocab_size=40, d_model=8, d_kv=4, d_ff=8, num_layers=1,
                                                 num_heads=2, feed_forward_proj=gating))
        assert adapted(t5, "seq2seq")[1:] == (sorted(["q", "k", "v", "o", *ffn]), [])
    # An embedding checkpoint: the head is fresh, trained whole and at its own learning rate.
    bert = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    BertModel(bert).save_pretrained(tmp_path / "embedder")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "embedder", num_labels=1)
    model.fresh_parameter_names = ["classifier.bias", "classifier.weight"]
    wrapped, targets, whole = adapted(model, "encoder")
    assert (targets, whole) == (["dense", "key", "query", "value"], ["classifier"])
    assert wrapped.fresh_parameter_names == ["base_model.model.classifier.modules_to_save.default.bias",
                                             "base_model.model.classifier.modules_to_save.default.weight"]
    # A name shared with a layer trained whole is narrowed to the body's layers of that name.
    model = BertForSequenceClassification(bert)
    model.fresh_parameter_names = ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    _, targets, whole = adapted(model, "encoder", ["dense"])
    assert whole == ["bert.pooler.dense", "classifier"] and "bert.pooler.dense" not in targets
    assert targets == ["bert.encoder.layer.0.attention.output.dense", "bert.encoder.layer.0.intermediate.dense",
                       "bert.encoder.layer.0.output.dense"]
    with pytest.raises(ConfigError, match="--lora_target_modules qkv: the model has no layer of that name"):
        adapted(BertForSequenceClassification(bert), "encoder", ["qkv"])


def pair_scores(trainer, pairs):
    """The training scorer's scores of `pairs` with the trained (unmerged) model, at the training budgets."""
    queries, passages = zip(*pairs, strict=True)
    inputs = trainer.scorer.encode(list(queries), list(passages), 16, 24)
    with torch.no_grad():
        return trainer.scorer.scores(trainer.model.eval(), inputs).tolist()


@pytest.mark.parametrize("family", ["decoder", "encoder"])
def test_lora_with_gradient_checkpointing_saves_adapters_only(family, decoder, tiny_model, data, tmp_path):
    model = decoder if family == "decoder" else tiny_model
    out = tmp_path / "out"
    trainer = run.main(lora_args(model, data, out, "--gradient_checkpointing"))
    assert trainer.model.get_base_model().is_activation_checkpointing
    for folder in (out, out / "checkpoint-1", out / "checkpoint-2"):
        files = {p.name for p in folder.iterdir()}
        assert ADAPTER_FILES <= files and "tokenizer.json" in files, folder
        assert not {"config.json", "model.safetensors"} & files, folder
    adapter = load_file(out / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # every adapter got gradients through the checkpoints
    if family == "encoder":
        assert any("classifier" in k for k in adapter)  # the head is saved whole
    metadata = json.loads((out / "reranker_config.json").read_text())
    assert metadata["family"] == family and metadata["base_model"] == str(model.resolve())
    assert metadata["dtype"] == "fp32" and len(metadata["base_fingerprint"]) == 64
    assert metadata["query_max_len"] == 16 and metadata["passage_max_len"] == 24
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and "| LoRA | rank 16, alpha 32, dropout 0.05 on " in card
    # Reranker(path) loads the recorded base, applies the adapter, and scores as training did.
    reranker = Reranker(str(out))
    assert reranker.family == family
    assert reranker.compute_score(PAIRS) == pytest.approx(pair_scores(trainer, PAIRS), abs=1e-5)
    if family == "decoder":  # and reranker-eval, which loads through Reranker
        eval_cli.main(["--models", str(out), "--datasets", str(data), "--output_dir", str(tmp_path / "eval"),
                       "--cache_dir", "none"])
        settings = json.loads((tmp_path / "eval" / "results.json").read_text())["settings"]
        assert settings["scoring"]["out"]["family"] == "decoder"
    with pytest.raises(FileExistsError, match="already holds adapter_config.json"):
        run.main(lora_args(model, data, out))
    with pytest.raises(ConfigError, match="is a LoRA adapter: train from its base model"):
        run.main(lora_args(out, data, tmp_path / "again"))


def test_resume_from_an_adapter_checkpoint_matches_uninterrupted(decoder, data, tmp_path):
    argv = lora_args(decoder, data, tmp_path / "a", "--max_steps", "3")
    run.main(argv)
    with pytest.raises(Crash):
        run.main(lora_args(decoder, data, tmp_path / "b", "--max_steps", "3"), callbacks=[CrashAfterSave(1)])
    assert {p.name for p in (tmp_path / "b").glob("checkpoint-*")} == {"checkpoint-1"}
    run.main(lora_args(decoder, data, tmp_path / "b", "--max_steps", "3", "--resume_from_checkpoint", "true"))
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("family", ["decoder", "encoder"])
def test_merge_equals_unmerged_and_loads_in_reranker(family, decoder, tiny_model, data, tmp_path):
    model = decoder if family == "decoder" else tiny_model
    adapter = tmp_path / "adapter"
    run.main(lora_args(model, data, adapter, "--save_strategy", "no"))
    reranker = Reranker(str(adapter))
    unmerged = reranker.compute_score(PAIRS)
    with reranker.model.disable_adapter():
        base = reranker.compute_score(PAIRS)
    assert max(abs(u - b) for u, b in zip(unmerged, base, strict=True)) > 1e-3  # the adapter changes the scores
    out = merge_cli.main([str(adapter), "--output_dir", str(tmp_path / "merged")])
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files and not ADAPTER_FILES & files
    saved = json.loads((out / "config.json").read_text())["reranker"]
    assert saved["family"] == family and saved["query_max_len"] == 16 and "base_fingerprint" not in saved
    merged = Reranker(str(out))
    assert merged.family == family and not hasattr(merged.model, "peft_config")
    assert merged.compute_score(PAIRS) == pytest.approx(unmerged, abs=1e-4)
    # A merged decoder carries the files sentence-transformers' CrossEncoder reads our prompt and answer tokens from.
    assert ("modules.json" in files) == (family == "decoder")
    if family == "decoder":
        from sentence_transformers import CrossEncoder

        scores = CrossEncoder(str(out), device="cpu").predict(PAIRS, activation_fn=torch.nn.Identity())
        assert list(scores) == pytest.approx(merged.compute_score(PAIRS), abs=1e-4)


def test_merge_reloads_the_base_in_the_training_dtype(decoder, data, tmp_path):
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(decoder, dtype=torch.bfloat16).save_pretrained(decoder)  # a bf16 base
    adapter = tmp_path / "adapter"
    run.main(lora_args(decoder, data, adapter, "--save_strategy", "no"))
    assert json.loads((adapter / "reranker_config.json").read_text())["dtype"] == "bf16"
    out = merge_cli.main([str(adapter), "--output_dir", str(tmp_path / "merged")])
    assert {v.dtype for v in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert Reranker(str(out)).compute_score(PAIRS) == pytest.approx(Reranker(str(adapter)).compute_score(PAIRS),
                                                                    abs=merge_module.TOLERANCE["bf16"])


def test_merge_refuses_another_base_and_leaves_nothing(decoder, data, tmp_path):
    adapter = tmp_path / "adapter"
    run.main(lora_args(decoder, data, adapter, "--save_strategy", "no", "--max_steps", "1"))
    other = build_tiny_family_model(tmp_path / "other", "decoder", seed=1)  # same architecture, other weights
    out = tmp_path / "merged"
    with pytest.raises(ConfigError, match="is not the base model the LoRA adapter .* was trained on"):
        merge_cli.main([str(adapter), "--output_dir", str(out), "--base_model", str(other)])
    with pytest.raises(ConfigError, match="is not the base model"):
        Reranker(str(adapter), base_model=str(other))
    # A base moved elsewhere: refused at its recorded place, accepted where it is now (same fingerprint).
    moved = str(shutil.move(decoder, tmp_path / "moved"))
    with pytest.raises(ConfigError, match="which is not on this machine.*base_model=COPY"):
        Reranker(str(adapter))
    assert merge_cli.main(["--adapter_dir", str(adapter), "--output_dir", str(out), "--base_model", moved]) == out
    assert Reranker(str(out)).compute_score(PAIRS) == pytest.approx(
        Reranker(str(adapter), base_model=moved).compute_score(PAIRS), abs=1e-4)


def test_merge_that_disagrees_on_the_probe_writes_nothing(decoder, data, tmp_path, monkeypatch):
    adapter = tmp_path / "adapter"
    run.main(lora_args(decoder, data, adapter, "--save_strategy", "no", "--max_steps", "1"))
    real = merge_module.probe_scores
    calls = []

    def probe(model, scorer, metadata):  # the second call scores the merged model: make it disagree
        calls.append(1)
        return real(model, scorer, metadata) + (0.1 if len(calls) == 2 else 0.0)

    monkeypatch.setattr(merge_module, "probe_scores", probe)
    out = tmp_path / "merged"
    with pytest.raises(ConfigError, match="merged model scores the probe pairs up to 0.1 away"):
        merge_module.merge_adapter(str(adapter), str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "llama", "train.jsonl"]

