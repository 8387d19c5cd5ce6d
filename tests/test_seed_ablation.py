"""benchmarks/seed_ablation.py: variants x seeds of run.py, judged on dev queries, one table."""

import json

import pytest
import yaml
from conftest import load_benchmark, write_jsonl
from test_fusion import dev_rows

from reranker.common.errors import ConfigError


def load_tool():
    return load_benchmark("seed_ablation")


def write_spec(tmp_path, tiny_model, train_file, variants):
    dev = write_jsonl(tmp_path / "dev.jsonl", dev_rows())
    spec = {"dev_file": str(dev),
            "train": {"model_name_or_path": str(tiny_model), "train_group_size": 4, "per_device_train_batch_size": 3,
                      "query_max_len": 16, "passage_max_len": 24, "use_cpu": True, "max_steps": 2,
                      "eval_steps": 1, "save_steps": 1, "learning_rate": 1e-4},
            "variants": variants}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.slow
def test_seed_ablation_runs_variants_and_seeds(tiny_model, train_file, tmp_path, capsys):
    tool = load_tool()
    spec = write_spec(tmp_path, tiny_model, train_file, {
        "plain": {"train_data": str(train_file)},
        "fast": {"train_data": [str(train_file)], "options": {"learning_rate": 1e-3}}})
    out = tmp_path / "out"
    rows = tool.main(["--spec", str(spec), "--seeds", "1", "2", "--parallel", "2", "--output_dir", str(out)])
    assert [r["variant"] for r in rows] == ["plain", "fast"] and all(r["seeds"] == [1, 2] for r in rows)
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == 4
    for run in saved["runs"]:
        metrics = json.loads((out / f"{run['variant']}_s{run['seed']}" / "dev_metrics.json").read_text())
        assert run["history"] == [[h["step"], h["nDCG@10"]] for h in metrics["history"]]
        assert [step for step, _ in run["history"]] == [1, 2]
        assert not (out / f"{run['variant']}_s{run['seed']}" / "model").exists()
    for row in rows:
        best = [max(v for _, v in r["history"]) for r in saved["runs"] if r["variant"] == row["variant"]]
        assert row["mean_best"] == pytest.approx(sum(best) / len(best))
    assert "| plain | 2 |" in capsys.readouterr().out and (out / "results.md").exists()
    # Finished runs are read back, not run again: a changed log would show a rerun.
    marker = out / "plain_s1" / "train.log"
    marker.write_text("kept")
    tool.main(["--spec", str(spec), "--seeds", "1", "1", "--variants", "plain", "--output_dir", str(out)])
    assert marker.read_text() == "kept"
    # An edited variant is run again.
    edited = yaml.safe_load(spec.read_text())
    edited["variants"]["plain"]["options"] = {"learning_rate": 5e-4}
    spec.write_text(yaml.safe_dump(edited, sort_keys=False))
    tool.main(["--spec", str(spec), "--seeds", "1", "--variants", "plain", "--output_dir", str(out)])
    assert marker.read_text() != "kept"
    assert "5e-4" in " ".join(json.loads((out / "plain_s1" / "command.json").read_text())).replace("0.0005", "5e-4")


def test_seed_ablation_spec_errors(tiny_model, train_file, tmp_path):
    tool = load_tool()
    bad = write_spec(tmp_path, tiny_model, train_file,
                     {"typo": {"train_data": str(train_file), "options": {"learing_rate": 1e-3}}})
    with pytest.raises(ConfigError, match="learing_rate is not an option of reranker-train"):
        tool.main(["--spec", str(bad)])
    spec = write_spec(tmp_path, tiny_model, train_file, {"plain": {"train_data": str(train_file)}})
    with pytest.raises(ConfigError, match="--variants nope: not in"):
        tool.main(["--spec", str(spec), "--variants", "nope"])
    failing = write_spec(tmp_path, tiny_model, tmp_path / "missing.jsonl",
                         {"gone": {"train_data": str(tmp_path / "missing.jsonl")}})
    with pytest.raises(RuntimeError, match=r"gone seed 42 failed \(exit 1\); see .*gone_s42/train.log"):
        tool.main(["--spec", str(failing), "--seeds", "42", "--output_dir", str(tmp_path / "o2")])
