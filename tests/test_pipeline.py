"""scripts/pipeline.sh: every stage on a tiny BEIR folder with a tiny model, skipping when done, resuming, and
config errors."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, load_benchmark, write_jsonl

from reranker.cli import pipeline as pipeline_cli
from reranker.common.errors import ConfigError, DataError
from reranker.data.expansion import PREFIX
from reranker.retrieval import first_stage as fs
from reranker.retrieval import fusion
from reranker.workflows import beir_train, pipeline

# Twelve topics: a query, its answer, and a near miss sharing words with it.
TOPICS = [
    ("capital of france", "paris is the capital city of france", "france has many cities and a long coast"),
    ("how is bread baked", "bread is baked in a hot oven from flour and yeast", "bread shops sell cakes too"),
    ("why is the sky blue", "the sky looks blue because air scatters blue light", "the sea is blue and deep"),
    ("when does water freeze", "water freezes into ice at zero degrees", "water is used to cook rice"),
    ("what do bees make", "bees make honey and wax in their hives", "bees are insects with wings"),
    ("how fast is light", "light travels at about three hundred thousand km per second", "light bulbs use power"),
    ("what is an atom", "an atom is a nucleus with electrons around it", "atoms are in every thing"),
    ("who wrote hamlet", "hamlet was written by william shakespeare", "hamlet is a small village name too"),
    ("where do penguins live", "penguins live in the southern hemisphere near antarctica", "penguins cannot fly"),
    ("what causes rain", "rain falls when water vapour in clouds condenses", "rain coats keep you dry"),
    ("how do magnets work", "magnets attract iron through a magnetic field", "magnets stick to fridges"),
    ("what is photosynthesis", "photosynthesis turns light water and carbon dioxide into sugar",
     "plants need photosynthesis and soil"),
]
FILLER = ["a story about a cat", "numbers and letters", "the train left at noon", "a song for the road",
          "the market opens early", "a red car in the street"]


def make_beir(folder):
    corpus, queries, train, test = [], [], [], []
    for i, (query, answer, near) in enumerate(TOPICS):
        corpus += [{"_id": f"a{i}", "title": "", "text": answer}, {"_id": f"n{i}", "title": "", "text": near}]
        queries.append({"_id": f"q{i}", "text": query})
        (test if i >= 9 else train).append(f"q{i}\ta{i}\t{1 + (i % 2)}")
    corpus += [{"_id": f"f{i}", "title": "filler", "text": t} for i, t in enumerate(FILLER)]
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels").mkdir()
    header = "query-id\tcorpus-id\tscore\n"
    (folder / "qrels" / "train.tsv").write_text(header + "\n".join(train) + "\n")
    (folder / "qrels" / "test.tsv").write_text(header + "\n".join(test) + "\n")
    return folder


def make_config(tmp_path, model, **changes):
    config = {
        "beir": str(make_beir(tmp_path / "beir") if not (tmp_path / "beir").exists() else tmp_path / "beir"),
        "output_dir": str(tmp_path / "out"), "dev_queries": 3, "dev_depth": 6,
        "mine": {"retriever": "both", "model_name_or_path": str(model), "pooling": "mean",
                 "range_for_sampling": "0-8", "negative_number": 4, "cache_dir": str(tmp_path / "cache")},
        "train": {"model_name_or_path": str(model), "train_group_size": 4, "per_device_train_batch_size": 2,
                  "query_max_len": 16, "passage_max_len": 24, "max_steps": 4, "save_steps": 2, "eval_steps": 2,
                  "learning_rate": 1e-3, "use_cpu": True, "logging_steps": 1},
        "eval": {"first_stage": ["bm25", "dense", "hybrid"], "dense_model": str(model), "dense_pooling": "mean",
                 "top_k": 6, "cache_dir": "none", "tune_hybrid": True},
    }
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ran(caplog, stages=("data", "mine", "train", "eval")) -> list[str]:
    """The stages that ran (not skipped) in the captured log; "expand" runs only when a config asks for it."""
    skipped = {m.split(":")[0] for m in caplog.messages if "done before, skipped" in m}
    return [s for s in stages if s not in skipped]


def test_beir_training_records_and_dev_split(tmp_path):
    folder = make_beir(tmp_path / "beir")
    summary = beir_train.build(folder, tmp_path / "data", dev_queries=3, seed=1, dev_depth=5)
    train = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    dev = [json.loads(line) for line in (tmp_path / "data" / "dev.jsonl").read_text().splitlines()]
    assert (summary["train_queries"], summary["dev_queries"], summary["graded_relevance"]) == (6, 3, True)
    assert not {r["query_id"] for r in train} & {r["query_id"] for r in dev}
    first = next(r for r in train if r["query_id"] == "q1")
    assert first["pos"] == [TOPICS[1][1]] and first["pos_ids"] == ["a1"] and first["pos_relevance"] == [2]
    assert all(len(r["candidates"]) == 5 for r in dev)
    qrels = (tmp_path / "data" / "dev_qrels.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore" and len(qrels) == 4
    # Seeded: the same seed carves the same dev queries.
    beir_train.build(folder, tmp_path / "again", dev_queries=3, seed=1, dev_depth=5)
    assert (tmp_path / "again" / "dev.jsonl").read_text() == (tmp_path / "data" / "dev.jsonl").read_text()


def test_pipeline_end_to_end_skips_and_resumes(tiny_model_master, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    config = make_config(tmp_path, tiny_model_master)
    out = tmp_path / "out"
    result = pipeline_cli.main([str(config)])
    assert ran(caplog) == ["data", "mine", "train", "eval"]
    report = out / "report"
    for name in ("config.json", "data_summary.json", "mining_summary.json", "mine.log", "train.log",
                 "dev_metrics.json", "eval.log", "results.json", "ndcg10.png", "stages.json"):
        assert (report / name).is_file(), name
    systems = [r["system"] for r in result["results"]["results"]]
    assert systems == [f"{s}{m}" for s in ("bm25", "dense", "hybrid")
                       for m in ("", " > model", " > model + fusion (default)", " > model + fusion")]
    fused = result["results"]["results"][3]
    assert 0.0 <= fused["fusion_reranker_weight"] <= 1.0 and fused["dev_queries"] == 3
    # The hybrid's fusion uses BM25's and the embedder's scores, with three dev-tuned weights: the written fused
    # run is those weights applied to the written BM25, dense and reranked runs.
    hybrid = result["results"]["results"][11]
    weights = (hybrid["fusion_reranker_weight"], hybrid["fusion_bm25_weight"])
    assert weights[0] + weights[1] + hybrid["fusion_dense_weight"] == pytest.approx(1.0)
    runs = {p.name.split(".", 1)[1]: fs.read_run(p) for p in (report / "runs").glob("*.trec")}
    again = fusion.fuse_with_stages([runs["bm25.trec"], runs["dense.trec"]], runs["hybrid.model.trec"], weights)
    written = runs["hybrid.model.fusion.trec"]
    assert set(again) == set(written)
    for qid, docs in written.items():  # run files keep 6 decimals; the tiny embedder's scores are close together
        assert again[qid] == pytest.approx(docs, abs=5e-3)
    assert {"data", "mine", "train", "eval"} == set(json.loads((report / "stages.json").read_text()))
    dev = json.loads((report / "dev_metrics.json").read_text())
    assert [h["step"] for h in dev["history"]] == [2, 4] and dev["queries"] == 3
    # The 12 test runs (3 first stages, each reranked, fused at the default weight and at the tuned weights), and in
    # runs/dev/ the 6 dev runs the weights were tuned on (3 first stages, each reranked), which
    # benchmarks/fusion_tuning.py reads to compare the tuning rules without scoring anything again.
    assert sorted(runs) == sorted(f"{s}{m}.trec" for s in ("bm25", "dense", "hybrid")
                                  for m in ("", ".model", ".model.fusion_default", ".model.fusion"))
    for stage in ("bm25", "hybrid"):  # the default fusion: the stage's own scores and the reranker's
        again = fusion.fuse_scores(runs[f"{stage}.trec"], runs[f"{stage}.model.trec"], fusion.DEFAULT_WEIGHT)
        for qid, docs in runs[f"{stage}.model.fusion_default.trec"].items():
            assert again[qid] == pytest.approx(docs, abs=5e-3)
    dev_runs = {p.name.split(".", 1)[1]: fs.read_run(p) for p in (report / "runs" / "dev").glob("*.trec")}
    assert sorted(dev_runs) == sorted(f"{s}{m}.trec" for s in ("bm25", "dense", "hybrid") for m in ("", ".model"))
    assert all(len(run_) == 3 for run_ in dev_runs.values())
    study = load_benchmark("fusion_tuning").main(["--runs", str(report / "runs"), "--splits", "4",
                                                  "--dev_qrels", str(out / "data" / "dev_qrels.tsv")])
    assert len(study) == 4 and all(r["queries"] == 3 for r in study.values())
    # On all the dev queries, the study's bagged rule picks what eval.py picked from the same runs.
    rows = {r["system"]: r for r in result["results"]["results"]}
    for stage in ("bm25", "dense"):
        assert (study[f"{stage} > model + fusion (reranker weight)"]["bagged_weight_all_dev"]
                == rows[f"{stage} > model + fusion"]["fusion_reranker_weight"])
    # The paired difference is taken split by split, on the same held-out halves: its mean is the means' difference.
    for r in study.values():
        assert r["bagged_minus_argmax"] == pytest.approx(r["bagged_held_out"] - r["argmax_held_out"], abs=1e-9)
    mined = [json.loads(line) for line in (out / "data" / "mined.jsonl").read_text().splitlines()]
    assert len(mined) == 6 and all(len(r["neg"]) == 4 for r in mined)

    # Nothing changed: every stage is skipped and nothing is rewritten.
    caplog.clear()
    model_mtime = (out / "model" / "model.safetensors").stat().st_mtime_ns
    pipeline_cli.main([str(config)])
    assert ran(caplog) == []
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == model_mtime

    # Killed during training: the stamp and final model are missing, a checkpoint is there. The re-run continues
    # from the checkpoint, then evaluates; data and mining are not redone.
    caplog.clear()
    (out / ".stages" / "train.json").unlink()
    (out / "model" / "model.safetensors").unlink()
    shutil.rmtree(out / "model" / "checkpoint-4")
    pipeline_cli.main([str(config)])
    assert ran(caplog) == ["train", "eval"]
    assert "continuing the interrupted run from" in (report / "train.log").read_text() or any(
        "continuing the interrupted run" in m for m in caplog.messages)
    assert (out / "model" / "model.safetensors").is_file()

    # A changed training option retrains from scratch and re-evaluates; the mined data is kept.
    caplog.clear()
    pipeline_cli.main([str(make_config(tmp_path, tiny_model_master, train={"learning_rate": 5e-4}))])
    assert ran(caplog) == ["train", "eval"]
    assert not any("continuing the interrupted run" in m for m in caplog.messages)


EXPANSION_STAGES = ("data", "mine", "expand", "train", "eval")  # the stages without an embedder section


@pytest.mark.slow
def test_pipeline_document_expansion(tiny_model_master, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    beir = make_beir(tmp_path / "beir")
    with open(beir / "qrels" / "train.tsv", "a") as handle:  # each answer judged by two training queries
        handle.write("".join(f"q{i}\ta{(i + 1) % 9}\t1\n" for i in range(9)))
    changes = {"train": {"max_steps": 2}, "eval": {"first_stage": ["bm25", "bm25_expanded"], "tune_hybrid": False}}
    config = make_config(tmp_path, tiny_model_master, expand_documents=2, **changes)
    out = tmp_path / "out"
    result = pipeline_cli.main([str(config)])
    assert ran(caplog, EXPANSION_STAGES) == list(EXPANSION_STAGES)
    summary = json.loads((out / "report" / "expansion_summary.json").read_text())
    assert summary["train"]["expanded"] > 0 and summary["train"]["not_in_corpus"] == 0
    assert summary["dev"]["queries"] == 3
    queries = {r["_id"]: r["text"] for r in map(json.loads, (beir / "queries.jsonl").read_text().splitlines())}
    dev = [json.loads(line) for line in (out / "data" / "dev_expanded.jsonl").read_text().splitlines()]
    dev_texts = {queries[r["query_id"]] for r in dev}
    mined = [json.loads(line) for line in (out / "data" / "mined_expanded.jsonl").read_text().splitlines()]

    def asked(text):
        return text.split(". ", 1)[0].removeprefix(PREFIX).split(" | ") if text.startswith(
            PREFIX) else []

    for row in mined:  # no query reads itself, and no dev query is anyone's question
        for text in row["pos"] + row["neg"]:
            assert row["query"] not in asked(text) and not dev_texts & set(asked(text))
    assert any(asked(text) for row in mined for text in row["pos"])
    assert not any(dev_texts & set(asked(c["text"])) for r in dev for c in r["candidates"])
    log = (out / "report" / "train.log").read_text()
    assert "mined_expanded.jsonl" in log and "dev_expanded.jsonl" in log
    systems = [r["system"] for r in result["results"]["results"]]
    assert systems == [f"{s}{m}" for s in ("bm25", "bm25_expanded")
                       for m in ("", " > model", " > model + fusion (default)", " > model + fusion")]
    assert "--expand_from" in (out / "report" / "eval.log").read_text()

    caplog.clear()
    pipeline_cli.main([str(config)])
    assert ran(caplog, EXPANSION_STAGES) == []
    # Another dev depth: the dev candidates are expanded again (never stale), the training data is not retrained.
    caplog.clear()
    pipeline_cli.main([str(make_config(tmp_path, tiny_model_master, expand_documents=2, dev_depth=4, **changes))])
    assert ran(caplog, EXPANSION_STAGES) == ["data", "expand"]
    dev = [json.loads(line) for line in (out / "data" / "dev_expanded.jsonl").read_text().splitlines()]
    assert all(len(r["candidates"]) == 4 for r in dev)
    # Another number of questions: expanded, trained and evaluated again; the data and the mining are kept.
    caplog.clear()
    config = make_config(tmp_path, tiny_model_master, expand_documents=1, dev_depth=4, **changes)
    pipeline_cli.main([str(config)])
    assert ran(caplog, EXPANSION_STAGES) == ["expand", "train", "eval"]
    # benchmarks/compare_peers.py trains every system on what our training reads: the expanded files.
    prepared = pipeline.run_pipeline(pipeline.PipelineConfig.load(str(config)), str(config), until="mine")
    assert prepared["train_file"] == str(out / "data" / "mined_expanded.jsonl")
    assert prepared["dev_file"] == str(out / "data" / "dev_expanded.jsonl")
    assert prepared["expand_from"] == str(out / "data" / "train.jsonl")


def test_failed_stage_exits_1_and_is_not_stamped(tiny_model_master, tmp_path):
    config = make_config(tmp_path, tiny_model_master, mine={"range_for_sampling": "9-3"},
                         train={"max_steps": 1}, eval={"first_stage": ["bm25"]})
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "pipeline.sh"), str(config)], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "exited with code 1" in done.stderr and "mine.log" in done.stderr
    assert (tmp_path / "out" / ".stages" / "data.json").is_file()
    assert not (tmp_path / "out" / ".stages" / "mine.json").exists()


@pytest.mark.parametrize("change, message", [
    ({"surprise": 1}, "unknown option"),
    ({"beir": ""}, "'beir' is required"),
    ({"train": {"output_dir": "x"}}, "train.output_dir is set by the pipeline"),
    ({"mine": {"input_file": "x"}}, "mine.input_file is set by the pipeline"),
    ({"dev_queries": -1}, "dev_queries must be a non-negative integer"),
    ({"test_split": "nope"}, "qrels/nope.tsv does not exist"),
    ({"eval": ["bm25"]}, "'eval' must be a mapping"),
    ({"train": {"learing_rate": 1e-4}}, r"learing_rate is not an option of reranker-train \(did you mean learning_"),
    ({"eval": {"first_stages": ["bm25"]}}, "eval.first_stages is not an option of reranker-eval"),
    ({"train": {"auto_bf16": True, "bf16": True}}, "train.auto_bf16 chooses the precision itself"),
    ({"eval": {"depth_curve": [10, 100]}}, r"eval.depth_curve depths must be integers from 1 to top_k - 1 \(99\), "
                                           r"got \[100\]"),
    ({"eval": {"top_k": 20, "depth_curve": [30]}}, r"from 1 to top_k - 1 \(19\)"),
    ({"expand_documents": -1}, "expand_documents must be 0 \\(off\\) or a positive integer, got -1"),
    ({"expand_documents": True}, "expand_documents must be 0 \\(off\\) or a positive integer, got True"),
    ({"expand_documents": 2, "dev_queries": 0}, "expand_documents needs dev_queries > 0"),
    ({"eval": {"expand_from": "x"}}, "eval.expand_from is set by the pipeline"),
    ({"eval": {"first_stage": ["bm25_expanded"]}}, "eval.first_stage bm25_expanded .* set expand_documents"),
    ({"embedder": ["x"]}, "'embedder' must be a mapping"),
    ({"embedder": {"output_dir": "x"}}, "embedder.output_dir is set by the pipeline"),
    ({"embedder": {"dev_corpus": "x"}}, "embedder.dev_corpus is set by the pipeline"),
    ({"embedder": {"learnig_rate": 1e-4}}, "embedder.learnig_rate is not an option of reranker-train-embedder"),
    ({"embedder": {}}, "eval.dense_model is set by the pipeline when there is an embedder section"),
    ({"embedder": {"loss": "kl"}, "eval": {}}, "embedder.loss kl distils .*embedder_mine.teacher_model"),
    ({"embedder": {"train_group_size": 1}, "embedder_mine": {"negative_number": 3}, "eval": {}},
     "embedder.train_group_size 1 trains on in-batch negatives alone"),
    ({"embedder": {"passage_instruction": "passage: "}, "eval": {}}, "embedder.passage_instruction"),
    ({"embedder": {"normalize": False}, "eval": {}}, "embedder.normalize false"),
    ({"embedder_mine": {"negative_number": 3}}, "embedder_mine mines .* there is no embedder section"),
    ({"embedder_mine": {"input_file": "x"}, "embedder": {}, "eval": {}}, "embedder_mine.input_file is set by"),
])
def test_config_errors(tmp_path, tiny_model_master, change, message):
    path = make_config(tmp_path, tiny_model_master)
    config = yaml.safe_load(path.read_text())
    config.update(change)
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=message):
        pipeline_cli.main([str(path)])


def test_shipped_configs_name_only_real_options():
    # Their BEIR folders are not in a fresh clone, so only the option names are checked here: a misspelling in a
    # shipped config would otherwise surface when its stage starts, after the stages before it have run.
    shipped = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))
    assert len(shipped) >= 3
    for path in shipped:
        raw = yaml.safe_load(path.read_text())
        pipeline.check_option_names({stage: raw.get(stage) or {} for stage in ("mine", "train", "eval", "embedder",
                                                                             "embedder_mine")}, str(path))
    with pytest.raises(ConfigError, match="mine.retriver is not an option of reranker-mine"):
        pipeline.check_option_names({"mine": {"retriver": "bm25"}}, "c.yaml")
    # The parser's --no_<flag> exists only for booleans that default to True.
    pipeline.check_option_names({"train": {"no_dataloader_pin_memory": True}}, "c.yaml")
    with pytest.raises(ConfigError, match="train.no_learning_rate is not an option"):
        pipeline.check_option_names({"train": {"no_learning_rate": True}}, "c.yaml")


def test_bad_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("beir: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        pipeline_cli.main([str(path)])
    with pytest.raises(FileNotFoundError):
        pipeline_cli.main([str(tmp_path / "missing.yaml")])


@pytest.mark.slow
def test_relative_paths_from_another_folder_and_user_model_kept(tiny_model_master, tmp_path, monkeypatch):
    """Run from a folder other than the checkout, with relative paths: every stage reads and writes under it."""
    make_beir(tmp_path / "beir")
    config = {"beir": "beir", "output_dir": "out", "dev_queries": 0,
              "mine": {"retriever": "bm25", "range_for_sampling": "0-8", "negative_number": 3},
              "train": {"model_name_or_path": str(tiny_model_master), "train_group_size": 4, "max_steps": 2,
                        "per_device_train_batch_size": 2, "use_cpu": True, "save_strategy": "no"},
              "eval": {"first_stage": ["bm25"], "top_k": 5, "cache_dir": "none"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    result = pipeline_cli.main(["c.yaml"])
    assert (tmp_path / "out" / "model" / "config.json").is_file()
    assert [r["system"] for r in result["results"]["results"]] == ["bm25", "bm25 > model",
                                                                  "bm25 > model + fusion (default)"]
    # A model the pipeline did not train is never replaced.
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "out" / "model", other / "model")
    config["output_dir"] = "other"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(FileExistsError, match="holds a model this pipeline did not train"):
        pipeline_cli.main(["c.yaml"])


def test_checkpoint_cut_by_a_kill_is_passed_over(tmp_path):
    # The pipeline resumes from the trainer's own notion of a finished checkpoint: state and whole weights.
    for step, files in ((2, ("trainer_state.json", "config.json", "model.safetensors")),
                        (4, ("config.json", "model.safetensors")), (6, ("trainer_state.json", "config.json"))):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
    assert pipeline.last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"


def test_train_and_test_splits_must_differ(tiny_model_master, tmp_path):
    path = make_config(tmp_path, tiny_model_master, test_split="train")
    with pytest.raises(ConfigError, match="both 'train'"):
        pipeline_cli.main([str(path)])
    (tmp_path / "beir" / "qrels" / "other.tsv").write_text("query-id\tcorpus-id\tscore\nq0\ta0\t1\n")
    path = make_config(tmp_path, tiny_model_master, test_split="other")
    with pytest.raises(DataError, match="shares 1 query ids with the other split"):
        pipeline_cli.main([str(path)])


@pytest.mark.slow
def test_pipeline_trains_a_lora_adapter_and_skips_it_when_done(tmp_path, tiny_model_master, caplog):
    caplog.set_level(logging.INFO)
    config = make_config(tmp_path, tiny_model_master, mine={"retriever": "bm25"},
                         eval={"first_stage": ["bm25"], "tune_hybrid": False},
                         train={"use_lora": True, "lora_rank": 4, "max_steps": 2, "save_steps": 2, "eval_steps": 2})
    result = pipeline_cli.main([str(config)])
    model = tmp_path / "out" / "model"
    assert (model / "adapter_config.json").is_file() and not (model / "config.json").exists()
    assert [r["system"] for r in result["results"]["results"]][:2] == ["bm25", "bm25 > model"]
    caplog.clear()
    pipeline_cli.main([str(config)])
    assert ran(caplog) == []


def embedder_config(tmp_path, model, **changes):
    """The tiny pipeline with an embedder section: fine-tuned first (on BM25 negatives mined for it), then it mines
    the reranker's negatives and is eval's dense first stage."""
    sections = {name: changes.pop(name, {}) for name in ("mine", "eval", "embedder", "embedder_mine")}
    path = make_config(tmp_path, model, train={"max_steps": 2}, **changes)
    config = yaml.safe_load(path.read_text())
    config["mine"] = {"range_for_sampling": "0-8", "negative_number": 4, "cache_dir": str(tmp_path / "cache"),
                      **sections["mine"]}
    config["eval"] = {"first_stage": ["dense"], "top_k": 6, "cache_dir": "none", **sections["eval"]}
    config["embedder"] = {"model_name_or_path": str(model), "pooling": "mean", "query_instruction": "query: ",
                          "max_steps": 2, "per_device_train_batch_size": 2, "query_max_len": 16,
                          "passage_max_len": 24, "learning_rate": 1e-3, "use_cpu": True, "logging_steps": 1,
                          **sections["embedder"]}
    config["embedder_mine"] = {"range_for_sampling": "0-8", "negative_number": 3, **sections["embedder_mine"]}
    path.write_text(yaml.safe_dump(config))
    return path


EMBEDDER_STAGES = ("data", "embedder_mine", "embedder", "mine", "train", "eval", "embedder_eval")


@pytest.fixture(scope="module")
def embedder_pipeline(tiny_model_master, tmp_path_factory):
    """One run of the pipeline with an embedder section, shared by the tests that read it and then re-run it (each
    stage is a subprocess of a few seconds)."""
    tmp_path = tmp_path_factory.mktemp("embedder_pipeline")
    config = embedder_config(tmp_path, tiny_model_master)
    return tmp_path, config, pipeline_cli.main([str(config)])


@pytest.mark.slow
def test_pipeline_fine_tunes_the_embedder_first_and_mines_and_retrieves_with_it(tiny_model_master,
                                                                                embedder_pipeline):
    tmp_path, _, result = embedder_pipeline
    out, report = tmp_path / "out", tmp_path / "out" / "report"
    embedder = out / "embedder"
    assert sorted(p.stem for p in (out / ".stages").glob("*.json") if "." not in p.stem) == sorted(EMBEDDER_STAGES)
    assert list(result["seconds"]) == list(EMBEDDER_STAGES)
    # Its records: the data stage's, with BM25 negatives; its dev check: the dev queries over the whole corpus.
    records = [json.loads(line) for line in (out / "data" / "embedder_mined.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["neg"]) == 3 for r in records)
    assert json.loads((report / "embedder_mining_summary.json").read_text())["settings"]["retriever"] == "bm25"
    log = (report / "embedder.log").read_text()
    assert f"--train_data {out / 'data' / 'embedder_mined.jsonl'}" in log
    assert f"--dev_file {out / 'data' / 'dev.jsonl'} --dev_corpus {tmp_path / 'beir'}" in log
    dev = json.loads((report / "embedder_dev_metrics.json").read_text())
    assert dev["queries"] == 3 and dev["pool"] == str(tmp_path / "beir")
    assert json.loads((embedder / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
    # The reranker's negatives are mined by the fine-tuned embedder (dense), read with its saved query prompt...
    settings = json.loads((report / "mining_summary.json").read_text())["settings"]
    assert (settings["retriever"], settings["embedder"], settings["pooling"]) == ("dense", str(embedder), "mean")
    assert "Query instruction: 'query: ' (from the checkpoint)" in (report / "mine.log").read_text()
    # ... and it is eval's dense first stage, its pooling and prompt read from its folder.
    used = result["results"]["settings"]
    assert (used["dense_model"], used["dense_pooling"], used["query_instruction"]) == (str(embedder), "mean",
                                                                                      "query: ")
    # The base beside the fine-tuned one: the base evaluated apart, the fine-tuned one's row is eval's own.
    comparison = json.loads((report / "embedder_comparison.json").read_text())["rows"]
    assert [(r["embedder"], r["model"]) for r in comparison] == [("base", str(tiny_model_master)),
                                                                 ("fine-tuned", str(embedder))]
    dense = next(r for r in result["results"]["results"] if r["system"] == "dense")
    assert comparison[1]["nDCG@10"] == dense["nDCG@10"]
    assert (comparison[0]["dev_nDCG@10"], comparison[1]["dev_nDCG@10"]) == (dev["base"]["nDCG@10"],
                                                                          dev["saved"]["nDCG@10"])
    base_used = json.loads((report / "embedder_base" / "results.json").read_text())["settings"]
    assert (base_used["dense_model"], base_used["dense_pooling"], base_used["query_instruction"]) == (
        str(tiny_model_master), "mean", "query: ")
    assert "| fine-tuned |" in (report / "embedder_comparison.md").read_text()


@pytest.mark.slow
def test_pipeline_embedder_stage_is_skipped_when_done_and_redone_with_what_used_it(tiny_model_master,
                                                                                  embedder_pipeline, caplog):
    tmp_path, config, _ = embedder_pipeline
    caplog.set_level(logging.INFO)
    pipeline_cli.main([str(config)])
    assert ran(caplog, EMBEDDER_STAGES) == []
    # Another embedder option: the embedder is trained again, and what used it (mining, so training, and eval)
    # runs again; its records and the base's evaluation are kept.
    caplog.clear()
    pipeline_cli.main([str(embedder_config(tmp_path, tiny_model_master, embedder={"learning_rate": 5e-4}))])
    assert ran(caplog, EMBEDDER_STAGES) == ["embedder", "mine", "train", "eval"]


@pytest.mark.slow
def test_pipeline_eval_exports_the_trained_model_for_a_graph_backend(tiny_model_master, tmp_path, caplog):
    """eval.backend onnx: the eval stage exports the model it trained (checked on the mined training file, not on
    test queries) and scores with the graph; its figures are the torch run's."""
    caplog.set_level(logging.INFO)
    config = make_config(tmp_path, tiny_model_master,
                         eval={"first_stage": ["bm25"], "tune_hybrid": False, "backend": "onnx"})
    graph = pipeline_cli.main([str(config)])["results"]
    record = json.loads((tmp_path / "out" / "model" / "onnx" / "export.json").read_text())["model.onnx"]
    assert record["probe"]["data"] == str(tmp_path / "out" / "data" / "mined.jsonl")
    assert graph["settings"]["backend"] == "onnx"
    config = make_config(tmp_path, tiny_model_master,
                         eval={"first_stage": ["bm25"], "tune_hybrid": False, "backend": "torch"})
    weights = pipeline_cli.main([str(config)])["results"]
    assert ran(caplog)[-1] == "eval"  # the backend is part of eval's key: evaluated again, not trained again
    for ours, theirs in zip(graph["results"], weights["results"], strict=True):
        assert ours["system"] == theirs["system"]
        assert ours["nDCG@10"] == pytest.approx(theirs["nDCG@10"], abs=1e-6)
