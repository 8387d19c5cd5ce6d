"""The commands' manners: other spellings of our options (FlagEmbedding's, our deprecated ones), unknown options
(one line, exit code 2), --help everywhere, progress bars off, and --encoding."""

import json
import logging
import sys

import pytest
import tqdm.std
import yaml
from conftest import write_jsonl
from test_mining import mine
from test_train import args as train_args

from reranker.cli import common as cli
from reranker.cli import eval as eval_cli
from reranker.cli import export as export_cli
from reranker.cli import iterate as iterate_cli
from reranker.cli import merge as merge_cli
from reranker.cli import mine as mine_cli
from reranker.cli import pipeline as pipeline_cli
from reranker.cli import synth as synth_cli
from reranker.cli import train as train_cli
from reranker.cli import train_embedder as train_embedder_cli
from reranker.common import files
from reranker.common.errors import ConfigError
from reranker.evaluation.arguments import EvalArguments
from reranker.mining.arguments import EmbedArguments, MineArguments
from reranker.training.arguments import DataArguments, ModelArguments, RerankerTrainingArguments
from reranker.workflows.iterate import IterateConfig
from reranker.workflows.pipeline import PipelineConfig

COMMANDS = {"reranker-train": train_cli, "reranker-mine": mine_cli, "reranker-eval": eval_cli,
            "reranker-synth": synth_cli, "reranker-pipeline": pipeline_cli, "reranker-iterate": iterate_cli,
            "reranker-merge": merge_cli, "reranker-train-embedder": train_embedder_cli,
            "reranker-export": export_cli}


@pytest.fixture
def restore_progress(monkeypatch):
    """Whatever a test turns off, the next test's progress bars and environment are as before."""
    monkeypatch.setattr(tqdm.std.tqdm, "__init__", tqdm.std.tqdm.__dict__["__init__"])
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


def parse_train(model, *extra):
    return cli.parse((ModelArguments, DataArguments, RerankerTrainingArguments),
                     ["--model_name_or_path", str(model), "--train_data", "t.jsonl", "--output_dir", "o",
                      "--use_cpu", *extra])


def parse_mine(model, *extra):
    return cli.parse((EmbedArguments, MineArguments), ["--input_file", "i.jsonl", "--output_file", "o.jsonl",
                                                       *(["--model_name_or_path", str(model)] if model else []),
                                                       *extra], "reranker-mine")


def parse_eval(model, *extra):
    return cli.parse((EvalArguments,), ["--datasets", "d", "--dense_model", str(model), *extra], "reranker-eval")


# --- FlagEmbedding's option names ------------------------------------------------------------------------------


@pytest.mark.parametrize("alias, ours, value, expected", [
    ("embedder_name_or_path", "model_name_or_path", None, None),
    ("pooling_method", "pooling", "cls", "cls"),
    ("query_instruction_for_retrieval", "query_instruction", "Represent: ", "Represent: "),
    ("embedder_query_max_length", "query_max_len", "32", 32),
    ("embedder_passage_max_length", "passage_max_len", "128", 128),
    ("embedder_batch_size", "embed_batch_size", "16", 16),
])
def test_flagembedding_miner_options(tiny_model, alias, ours, value, expected):
    value = str(tiny_model) if value is None else value
    embed, _ = parse_mine(None, f"--{alias}", value, *([] if alias == "pooling_method" else ["--pooling", "mean"]))
    assert getattr(embed, ours) == (str(tiny_model) if expected is None else expected)
    with pytest.raises(cli.UsageError, match=f"--{alias} and --{ours} set the same option|--{ours} and --{alias}"):
        parse_mine(tiny_model, f"--{ours}", value, f"--{alias}", value, "--pooling", "mean")


def test_flagembedding_use_fp16(tiny_model):
    embed, _ = parse_mine(tiny_model, "--use_fp16", "--pooling", "mean")
    assert embed.embed_dtype == "fp16"
    embed, _ = parse_mine(tiny_model, "--use_fp16", "False", "--pooling", "mean")
    assert embed.embed_dtype == "fp32"
    (args,) = parse_eval(tiny_model, "--use_fp16", "true", "--dense_pooling", "mean")
    assert args.dtype == "fp16"


@pytest.mark.parametrize("alias, ours, value, expected", [
    ("embedder_name_or_path", "dense_model", None, None),
    ("pooling_method", "dense_pooling", "cls", "cls"),
    ("query_instruction_for_retrieval", "query_instruction", "Represent: ", "Represent: "),
    ("embedder_query_max_length", "dense_query_max_len", "32", 32),
    ("embedder_passage_max_length", "dense_passage_max_len", "128", 128),
    ("reranker_max_length", "rerank_max_length", "320", 320),
])
def test_flagembedding_eval_options(tiny_model, alias, ours, value, expected):
    value = str(tiny_model) if value is None else value
    pooling = [] if alias == "pooling_method" else ["--dense_pooling", "mean"]
    argv = ["--datasets", "d", f"--{alias}", value, *pooling]
    if alias != "embedder_name_or_path":
        argv += ["--dense_model", str(tiny_model)]
    (args,) = cli.parse((EvalArguments,), argv, "reranker-eval")
    assert getattr(args, ours) == (str(tiny_model) if expected is None else expected)


def test_the_miner_and_eval_read_a_saved_query_prompt(tiny_model):
    # A folder reranker-train-embedder saved names its query prompt: without --query_instruction, the miner and
    # the eval's dense first stage use it; an explicit one (even empty) wins.
    embed, _ = parse_mine(tiny_model, "--pooling", "mean")
    (args,) = parse_eval(tiny_model, "--dense_pooling", "mean")
    assert embed.query_instruction == args.query_instruction == ""
    (tiny_model / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: "}}))
    embed, _ = parse_mine(tiny_model, "--pooling", "mean")
    (args,) = parse_eval(tiny_model, "--dense_pooling", "mean")
    assert embed.query_instruction == args.query_instruction == "query: "
    embed, _ = parse_mine(tiny_model, "--pooling", "mean", "--query_instruction", "")
    (args,) = parse_eval(tiny_model, "--dense_pooling", "mean", "--query_instruction", "find: ")
    assert (embed.query_instruction, args.query_instruction) == ("", "find: ")


def test_knowledge_distillation_is_the_distill_loss(tiny_model):
    assert parse_train(tiny_model, "--knowledge_distillation")[2].loss == "distill"
    assert parse_train(tiny_model, "--knowledge_distillation", "True")[2].loss == "distill"
    assert parse_train(tiny_model, "--knowledge_distillation", "false")[2].loss == "softmax_ce"
    with pytest.raises(cli.UsageError, match="--knowledge_distillation and --loss set the same option"):
        parse_train(tiny_model, "--knowledge_distillation", "--loss", "distill")
    with pytest.raises(cli.UsageError, match="takes true or false"):
        cli.rewrite_config({"knowledge_distillation": "maybe"}, "reranker-train", "c.yaml")


@pytest.mark.parametrize("option", ["query_instruction_for_rerank", "passage_instruction_for_rerank"])
def test_rerank_instructions_are_refused_with_the_reason(tiny_model, option):
    with pytest.raises(cli.UsageError, match=f"--{option} \\(FlagEmbedding\\) has no equivalent here: a model "
                                             "trained with an instruction must be scored with it"):
        parse_train(tiny_model, f"--{option}", "Instruct: ")


def test_alias_spellings_and_config_files(tiny_model, tmp_path):
    embed, _ = parse_mine(None, f"--embedder-name-or-path={tiny_model}", "--pooling-method", "mean")
    assert embed.model_name_or_path == str(tiny_model) and embed.pooling == "mean"
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"input_file": "i", "output_file": "o", "embedder_name_or_path": str(tiny_model),
                                      "pooling_method": "mean", "use_fp16": True}))
    embed, mine_args = cli.parse((EmbedArguments, MineArguments), [str(config)], "reranker-mine")
    assert (embed.model_name_or_path, embed.pooling, embed.embed_dtype) == (str(tiny_model), "mean", "fp16")
    config.write_text(yaml.safe_dump({"input_file": "i", "output_file": "o", "pooling": "cls",
                                      "pooling_method": "mean"}))
    with pytest.raises(cli.UsageError, match="--pooling and --pooling_method set the same option"):
        cli.parse((EmbedArguments, MineArguments), [str(config)], "reranker-mine")
    config.write_text(yaml.safe_dump({"input_file": "i", "output_file": "o", "negative_numbr": 3}))
    with pytest.raises(cli.UsageError, match=r"unknown option --negative_numbr in .*mine\.yaml \(did you mean "
                                             r"--negative_number\?\)"):
        cli.parse((EmbedArguments, MineArguments), [str(config)], "reranker-mine")


# --- one spelling per concept ------------------------------------------------------------------------------------


def test_split_is_spelt_split_in_train_as_in_eval(tiny_model, caplog):
    assert parse_train(tiny_model, "--split", "dev")[1].split == "dev"
    with caplog.at_level(logging.WARNING):
        data = parse_train(tiny_model, "--data_split", "dev")[1]
    assert data.split == "dev" and data.data_split == "dev"
    assert "reranker-train: --data_split is deprecated; use --split" in caplog.text
    with pytest.raises(cli.UsageError, match="--split and --data_split set the same option"):
        parse_train(tiny_model, "--split", "a", "--data_split", "b")


def test_no_cache_is_spelt_no_cache_in_mine_and_eval(tiny_model, caplog):
    (args,) = parse_eval(tiny_model, "--no_cache", "--dense_pooling", "mean")
    assert args.cache_dir is None
    (args,) = parse_eval(tiny_model, "--no_cache", "false", "--dense_pooling", "mean")
    assert args.cache_dir == "~/.cache/reranker/runs"
    with caplog.at_level(logging.WARNING):
        (args,) = parse_eval(tiny_model, "--cache_dir", "none", "--dense_pooling", "mean")
    assert args.cache_dir is None and "--cache_dir none is deprecated; use --no_cache" in caplog.text
    with pytest.raises(cli.UsageError, match="--no_cache and --cache_dir set the same option"):
        parse_eval(tiny_model, "--no_cache", "--cache_dir", "x", "--dense_pooling", "mean")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _, mine_args = parse_mine(tiny_model, "--pooling", "mean", "--cache_dir", "None")
    assert mine_args.no_cache and "--cache_dir None is deprecated; use --no_cache" in caplog.text
    _, mine_args = parse_mine(tiny_model, "--pooling", "mean", "--cache_dir", "somewhere")
    assert mine_args.cache_dir == "somewhere" and not mine_args.no_cache


# --- unknown options, --help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command, argv, message", [
    ("reranker-train", ["--max_step", "3"], "unknown option --max_step (did you mean --max_steps?)"),
    ("reranker-train", ["stray", "--max_steps", "1"], "unexpected argument 'stray'"),
    ("reranker-train", ["--max_steps", "x"], "argument --max_steps/--max-steps: invalid int value: 'x'"),
    ("reranker-mine", ["--negative_numbr", "3"], "unknown option --negative_numbr (did you mean --negative_number?)"),
    ("reranker-mine", ["--negative"], "unknown option --negative (did you mean --negative_number?)"),  # no prefixes
    ("reranker-eval", ["--datasets", "d", "--frist_stage", "bm25"],
     "unknown option --frist_stage (did you mean --first_stage?)"),
    ("reranker-synth", ["--methd", "crop"], "unknown option --methd (did you mean --method?)"),
    ("reranker-train-embedder", ["--train_data", "t.jsonl", "--poolin", "cls"],
     "unknown option --poolin (did you mean --pooling?)"),
    ("reranker-pipeline", ["c.yaml", "--overwrite"], "unknown option --overwrite"),
    ("reranker-iterate", [], "expected one config file: reranker-iterate CONFIG (see reranker-iterate --help)"),
])
def test_usage_errors_are_one_line_and_exit_2(monkeypatch, capsys, command, argv, message):
    monkeypatch.setattr(sys, "argv", [command, *argv])
    assert COMMANDS[command].entry() == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"{command}: error: {message}"
    assert "Traceback" not in err and "usage:" not in err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        COMMANDS[command].main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {command}") and "--encoding" in out


@pytest.mark.parametrize("module, config", [(pipeline_cli, PipelineConfig), (iterate_cli, IterateConfig)])
def test_driver_help_describes_every_config_key(capsys, module, config):
    from dataclasses import fields

    assert set(module.KEYS) == {f.name for f in fields(config)}
    with pytest.raises(SystemExit):
        module.main(["-h"])
    out = capsys.readouterr().out
    assert all(f"\n  {f.name} (" in out for f in fields(config))


def test_alias_list_in_help(capsys):
    with pytest.raises(SystemExit):
        mine_cli.main(["--help"])
    out = capsys.readouterr().out
    assert "--embedder_name_or_path" in out and "--cache_dir none" in out and "use --no_cache" in out


# --- progress bars -------------------------------------------------------------------------------------------------


def test_tqdm_disable_silences_the_trainer(tiny_model, train_file, tmp_path, capfd, monkeypatch, restore_progress):
    train_cli.main(train_args(tiny_model, train_file, tmp_path / "a", "--max_steps", "2"))
    assert "\r" in capfd.readouterr().err  # the bars this switch turns off
    monkeypatch.setenv("TQDM_DISABLE", "1")
    train_cli.main(train_args(tiny_model, train_file, tmp_path / "b", "--max_steps", "2"))
    assert "\r" not in capfd.readouterr().err


def test_disable_tqdm_silences_every_command(tiny_model_master, tmp_path, capfd, restore_progress):
    # The embedder's bars are created with disable=False, which wins over TQDM_DISABLE alone.
    dense = ("--model_name_or_path", tiny_model_master, "--pooling", "mean", "--no_cache", "--retriever", "dense",
             "--range_for_sampling", "0-5")
    mine(tmp_path, *dense)
    assert "\r" in capfd.readouterr().err
    mine(tmp_path, *dense, "--overwrite", "--disable_tqdm")
    assert "\r" not in capfd.readouterr().err


# --- --encoding --------------------------------------------------------------------------------------------------


def test_encoding_is_taken_out_and_passed_on(tiny_model, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(files, "set_encoding", calls.append, raising=False)
    parse_mine(tiny_model, "--encoding", "latin-1", "--pooling", "mean")
    parse_mine(tiny_model, "--pooling", "mean", "--encoding=cp1252")
    config = tmp_path / "c.json"
    config.write_text('{"input_file": "i", "output_file": "o", "pooling": "mean", "encoding": "utf-16"}')
    cli.parse((EmbedArguments, MineArguments), [str(config), "--encoding", "latin-1"], "reranker-mine")
    pipeline = write_jsonl(tmp_path / "p.yaml", [])
    assert cli.config_argument([str(pipeline), "--encoding", "koi8-r"], "reranker-pipeline") == str(pipeline)
    assert calls == ["latin-1", "cp1252", "latin-1", "utf-16", "koi8-r"]
    with pytest.raises(cli.UsageError, match="--encoding needs a value"):
        parse_mine(tiny_model, "--pooling", "mean", "--encoding")


def test_encoding_without_support_is_a_clear_error(tiny_model, monkeypatch):
    monkeypatch.delattr(files, "set_encoding", raising=False)
    with pytest.raises(ConfigError, match="--encoding is not supported by this version: reranker.common.files has "
                                          "no set_encoding"):
        parse_mine(tiny_model, "--encoding", "latin-1", "--pooling", "mean")
