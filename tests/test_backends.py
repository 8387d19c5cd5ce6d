"""Exported graphs (reranker-export) against the torch model: equal scores in fp32, close in int8, refused when they
drift, tied to the weights they came from, and a clear error without the runtime."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from conftest import TOPICS, group_rows, write_jsonl

from reranker.common.errors import ConfigError
from reranker.models import backends
from reranker.models.embed import Embedder
from reranker.models.export import ExportOptions, export
from reranker.models.inference import Reranker

PAIRS = [(q, p) for q, pos, negs in TOPICS for p in [pos, *negs]]


@pytest.fixture
def probe(tmp_path):
    return write_jsonl(tmp_path / "probe.jsonl", group_rows(3))


@pytest.fixture
def tiny_model(tiny_model):
    """The tiny reranker re-drawn with weights of std 0.2 instead of 0.02: its scores then spread (std about 0.2, not
    5e-5), so a correlation with them means something."""
    from transformers import AutoConfig, BertForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_model)
    config.initializer_range = 0.2
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tiny_model)
    return tiny_model


@pytest.fixture
def tiny_embedder(tiny_model, tmp_path):
    """A bare encoder (BertModel) with mean pooling: what reranker-export reads as an embedder."""
    from transformers import AutoModel

    folder = tmp_path / "embedder"
    AutoModel.from_pretrained(tiny_model).save_pretrained(folder)
    for name in ("tokenizer_config.json", "vocab.txt", "tokenizer.json", "special_tokens_map.json"):
        if (tiny_model / name).is_file():
            shutil.copy(tiny_model / name, folder / name)
    return folder


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_fp32_graph_scores_as_torch_and_records_how_it_was_made(tiny_model, backend):
    graph = export(str(tiny_model), ExportOptions(backend=backend))
    record = backends.read_record(tiny_model, backend)
    assert graph == backends.graph_path(tiny_model, backend) and graph.is_file()
    assert record["kind"] == "reranker" and record["backend"] == backend and record["output"] == "logits"
    assert record["weights_sha256"] == backends.weights_digest(tiny_model)
    assert record["probe"]["agreement"]["f32"]["correlation"] > 0.9999
    torch_scores = Reranker(str(tiny_model), dtype="fp32").compute_score(PAIRS, batch_size=5)
    graph_scores = Reranker(str(tiny_model), dtype="fp32", backend=backend).compute_score(PAIRS, batch_size=5)
    np.testing.assert_allclose(graph_scores, torch_scores, atol=1e-4)
    assert not [p for p in graph.parent.iterdir() if p.name.startswith(".export-")]  # no temporary left


def test_int8_graphs_stay_close_and_sit_beside_the_fp32_one(tiny_model, probe):
    export(str(tiny_model), ExportOptions(backend="openvino"))
    for backend in ("onnx-int8", "openvino-int8"):
        export(str(tiny_model), ExportOptions(backend=backend, probe_data=str(probe), min_correlation=0.9))
        record = backends.read_record(tiny_model, backend)
        assert record["quantization"] and record["probe"]["pairs"] > 0
        reference = np.array(Reranker(str(tiny_model), dtype="fp32").compute_score(PAIRS))
        scores = np.array(Reranker(str(tiny_model), dtype="fp32", backend=backend).compute_score(PAIRS))
        assert np.corrcoef(reference, scores)[0, 1] > 0.9
    # Both openvino graphs are recorded in the one export.json.
    records = json.loads((tiny_model / "openvino" / backends.RECORD).read_text())
    assert set(records) == {"openvino_model.xml", "openvino_model_qint8.xml"}


def test_a_graph_that_drifts_is_refused_and_nothing_is_written(tiny_model, probe):
    with pytest.raises(ConfigError, match="below the 1.0 required"):
        export(str(tiny_model), ExportOptions(backend="onnx-int8", probe_data=str(probe), min_correlation=1.0))
    assert not (tiny_model / "onnx" / "model_qint8.onnx").exists()
    assert not [p for p in (tiny_model / "onnx").iterdir()]


def test_int8_needs_probe_data_and_torch_is_not_exported(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="--probe_data"):
        export(str(tiny_model), ExportOptions(backend="openvino-int8"))
    with pytest.raises(ConfigError, match="nothing to export"):
        export(str(tiny_model), ExportOptions(backend="torch"))
    with pytest.raises(ConfigError, match="backend must be one of"):
        Reranker(str(tiny_model), backend="tensorrt")


def test_missing_graph_and_changed_weights_are_refused(tiny_model):
    with pytest.raises(ConfigError, match="reranker-export"):
        Reranker(str(tiny_model), backend="onnx")
    export(str(tiny_model), ExportOptions(backend="onnx"))
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    with torch.no_grad():
        model.classifier.bias += 1.0
    model.save_pretrained(tiny_model)  # trained on since the export
    with pytest.raises(ConfigError, match="other weights"):
        Reranker(str(tiny_model), backend="onnx")


def test_a_missing_runtime_is_a_clear_error(tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'rerank-toolkit\[onnx\]'"):
        export(str(tiny_model), ExportOptions(backend="onnx"))
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ConfigError, match=r"rerank-toolkit\[openvino\]"):
        Reranker(str(tiny_model), backend="openvino")


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_embedder_graph_embeds_as_torch(tiny_embedder, backend):
    export(str(tiny_embedder), ExportOptions(backend=backend))
    assert backends.read_record(tiny_embedder, backend)["output"] == "last_hidden_state"
    texts = [p for _, p in PAIRS]
    reference = Embedder(str(tiny_embedder), pooling="mean").encode(texts, batch_size=4, show_progress=False)
    vectors = Embedder(str(tiny_embedder), pooling="mean", backend=backend).encode(texts, batch_size=4,
                                                                                   show_progress=False)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_int8_keeps_a_rerankers_output_projections_and_none_of_an_embedders(tiny_model, tiny_embedder, probe):
    """openvino-int8's default (--int8_keep auto): a reranker's output projections stay out of int8, an embedder is
    quantised whole; --int8_keep none quantises a reranker whole too."""
    from reranker.cli import export as export_cli

    export(str(tiny_embedder), ExportOptions(backend="openvino-int8", probe_data=str(probe), min_correlation=0.5))
    embedder = backends.read_record(tiny_embedder, "openvino-int8")["quantization"]
    assert embedder.endswith("every layer in int8") and "in batches of 1," in embedder
    export(str(tiny_model), ExportOptions(backend="openvino-int8", probe_data=str(probe), min_correlation=0.5))
    kept = backends.read_record(tiny_model, "openvino-int8")["quantization"]
    # 2 layers x (attention output + feed-forward down-projection), counted in the graph
    assert "the 4 MatMul layers matching" in kept and "dense" in kept and kept.endswith("kept out of int8")
    assert backends.read_record(tiny_model, "openvino-int8")["int8"]["layers_kept"] == 4
    export_cli.main([str(tiny_model), "--backend", "openvino-int8", "--probe_data", str(probe), "--int8_keep", "none",
                     "--min_correlation", "0.5"])
    assert backends.read_record(tiny_model, "openvino-int8")["quantization"].endswith("every layer in int8")


def test_int8_calibration_takes_each_probe_pair_alone_or_the_probe_batches(tiny_model, probe, monkeypatch):
    """An encoder reranker's int8 ranges come from each probe pair alone by default (no padding position among
    them); --calibration_batch_size 16 takes the padded probe batches. The record says which."""
    from reranker.cli import export as export_cli
    from reranker.models import export as export_module

    seen = []
    original = export_module._quantize_openvino

    def spy(model, target, calibration, keep):
        seen.append(calibration)
        return original(model, target, calibration, keep)

    monkeypatch.setattr(export_module, "_quantize_openvino", spy)
    export(str(tiny_model), ExportOptions(backend="openvino-int8", probe_data=str(probe), min_correlation=0.5))
    record = backends.read_record(tiny_model, "openvino-int8")
    assert "in batches of 1," in record["quantization"] and record["int8"]["calibration_batch_size"] == 1
    export_cli.main([str(tiny_model), "--backend", "openvino-int8", "--probe_data", str(probe),
                     "--calibration_batch_size", "16", "--min_correlation", "0.5"])
    assert "in batches of 16," in backends.read_record(tiny_model, "openvino-int8")["quantization"]
    single, batched = seen
    assert len(single) == sum(len(b["input_ids"]) for b in batched) > len(batched)
    assert all(len(b["input_ids"]) == 1 and bool(b["attention_mask"].all()) for b in single)
    assert not all(bool(b["attention_mask"].all()) for b in batched)  # the probe batches pad
    for wrong in (0, -1):
        with pytest.raises(ConfigError, match="calibration_batch_size must be at least 1"):
            export(str(tiny_model), ExportOptions(backend="openvino-int8", probe_data=str(probe),
                                                  calibration_batch_size=wrong))


def test_an_openvino_graph_keeps_batches_in_flight_and_in_order(tiny_embedder):
    """GraphModel.map (several batches queued on OpenVINO's throughput streams) gives each batch's output in the
    order given, equal to one call per batch."""
    from transformers import AutoConfig, AutoTokenizer

    export(str(tiny_embedder), ExportOptions(backend="openvino"))
    graph = backends.GraphModel(tiny_embedder, "openvino", AutoConfig.from_pretrained(tiny_embedder))
    tokenizer = AutoTokenizer.from_pretrained(tiny_embedder)
    texts = [p for _, p in PAIRS]
    batches = [tokenizer(texts[i:i + 3], padding=True, return_tensors="pt") for i in range(0, len(texts), 3)]
    mapped = list(graph.map(iter(batches)))
    assert len(mapped) == len(batches) > 4
    for batch, out in zip(batches, mapped, strict=True):
        torch.testing.assert_close(out, graph(**batch).last_hidden_state)


def test_an_embedders_own_work_runs_on_one_thread_while_the_graphs_streams_hold_the_cores(tiny_embedder,
                                                                                         monkeypatch):
    """Pooling between batches in flight runs with torch on one thread (its pool would wait on the streams' cores),
    every graph compile (streams and one-shape copies, made inside that block) keeps the caller's threads, and the
    caller's thread count comes back after, also when encoding fails; ONNX Runtime (one batch at a time) and torch
    keep the caller's threads."""
    from reranker.models import embed

    export(str(tiny_embedder), ExportOptions(backend="openvino"))
    export(str(tiny_embedder), ExportOptions(backend="onnx"))
    texts = [p for _, p in PAIRS]
    seen, compiled = [], []
    original_pool, original_compile = embed.pool, backends._compile_openvino

    def spy_pool(hidden, mask, mode):
        seen.append(torch.get_num_threads())
        return original_pool(hidden, mask, mode)

    def spy_compile(core, model, hint, threads, mode):
        compiled.append((mode, threads))
        return original_compile(core, model, hint, threads, mode)

    monkeypatch.setattr(embed, "pool", spy_pool)
    monkeypatch.setattr(backends, "_compile_openvino", spy_compile)
    monkeypatch.setattr(backends, "STATIC_AFTER", 1)  # a copy for the first shape, compiled inside the block
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        streaming = Embedder(str(tiny_embedder), pooling="mean", backend="openvino")
        assert streaming.model.streams
        streaming.encode(texts, batch_size=4, show_progress=False)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        assert [mode for mode, _ in compiled].count("THROUGHPUT") == 3  # the streams and their two copies
        assert {threads for _, threads in compiled} == {2}
        seen.clear()
        for backend in ("onnx", "torch"):
            Embedder(str(tiny_embedder), pooling="mean", backend=backend).encode(texts, batch_size=4,
                                                                                 show_progress=False)
        assert seen and set(seen) == {2}

        def broken(hidden, mask, mode):
            raise RuntimeError("pooling failed")

        monkeypatch.setattr(embed, "pool", broken)
        with pytest.raises(RuntimeError, match="pooling failed"):
            streaming.encode(texts, batch_size=4, show_progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_overlapping_callers_share_one_torch_thread_and_the_last_restores():
    """Entries that overlap (Python threads encoding at once) keep torch at one thread until the last leaves, which
    restores the first's count; a graph loaded meanwhile takes that count, not one."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = backends.one_torch_thread(), backends.one_torch_thread()
        first.__enter__()
        second.__enter__()
        assert torch.get_num_threads() == 1 and backends.default_threads() == 2
        first.__exit__(None, None, None)  # the first leaves while the second is still inside
        assert torch.get_num_threads() == 1
        second.__exit__(None, None, None)
        assert torch.get_num_threads() == 2 and backends.default_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_batch_shape_that_recurs_gets_a_graph_compiled_for_it(tiny_embedder, monkeypatch):
    """OpenVINO compiles a copy of the graph for a batch shape on its STATIC_AFTER-th batch, at most STATIC_COPIES
    shapes, for the call and for map; a copy gives what the dynamic graph gives, and other shapes still run."""
    from transformers import AutoConfig, AutoTokenizer

    export(str(tiny_embedder), ExportOptions(backend="openvino"))
    monkeypatch.setattr(backends, "STATIC_COPIES", 1)
    config = AutoConfig.from_pretrained(tiny_embedder)
    graph = backends.GraphModel(tiny_embedder, "openvino", config, dtype="fp32", resolved=torch.float32)
    assert graph.static_copies == 1
    tokenizer = AutoTokenizer.from_pretrained(tiny_embedder)
    texts = [p for _, p in PAIRS]

    def batch(rows, length):
        return tokenizer(rows, padding="max_length", truncation=True, max_length=length, return_tensors="pt")

    same, other = [batch(texts[:4], 24) for _ in range(4)], [batch(texts[4:6], 20) for _ in range(4)]
    reference = backends.GraphModel(tiny_embedder, "openvino", config, dtype="fp32", resolved=torch.float32,
                                    shape_copies=False)
    assert reference.static_copies == 0
    expected = [reference(**batch).last_hidden_state for batch in same + other]
    assert all(torch.equal(expected[0], out) for out in expected[1:4])  # one compile: the same batch, the same output

    outputs = [graph(**batch).last_hidden_state for batch in same + other]
    assert list(graph._run.shapes.static) == [(("attention_mask", (4, 24)), ("input_ids", (4, 24)),
                                                ("token_type_ids", (4, 24)))]
    assert len(graph._run.requests) == 2  # the later batches of that shape ran on the copy
    mapped = list(graph.map(iter(same + other)))
    assert len(graph._stream.shapes.static) == 1 and not reference._run.shapes.static
    for out, map_out, want in zip(outputs, mapped, expected, strict=True):
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(map_out, want, atol=1e-5, rtol=1e-5)


def test_only_small_encoder_and_embedder_graphs_get_one_shape_copies(tmp_path):
    graph = tmp_path / "openvino_model.xml"
    graph.write_text("<net/>")
    graph.with_suffix(".bin").write_bytes(b"\0" * 1024)
    assert backends.static_copies_for({"family": "encoder"}, graph) == backends.STATIC_COPIES > 0
    assert backends.static_copies_for({"family": "embedder"}, graph) == backends.STATIC_COPIES
    assert backends.static_copies_for({"family": "decoder"}, graph) == 0
    assert backends.static_copies_for({"family": "seq2seq"}, graph) == 0
    with open(graph.with_suffix(".bin"), "r+b") as handle:  # sparse: past the size gate without writing it
        handle.truncate(backends.STATIC_MAX_BYTES + 1)
    assert backends.static_copies_for({"family": "encoder"}, graph) == 0


def test_export_command(tiny_model, probe):
    """reranker-export MODEL_DIR: the options reach the export (the probe's size is recorded); torch and unknown
    backends are refused by the parser before any work."""
    from reranker.cli import export as export_cli
    from reranker.cli.common import UsageError

    graph = export_cli.main([str(tiny_model), "--backend", "onnx", "--probe_data", str(probe), "--probe_pairs", "16"])
    assert backends.read_record(tiny_model, "onnx")["probe"]["pairs"] == 16 and graph.is_file()
    for backend in ("torch", "tensorrt"):
        with pytest.raises(UsageError, match="invalid choice"):
            export_cli.main([str(tiny_model), "--backend", backend])
    assert not (tiny_model / "openvino").exists()


def test_the_miner_embeds_with_a_graph_as_with_the_weights(tiny_embedder, tmp_path, monkeypatch):
    """reranker-mine --embed_backend openvino mines what the torch embedder mines, and caches apart from it."""
    from test_mining import mine

    export(str(tiny_embedder), ExportOptions(backend="openvino"))
    args = ["--model_name_or_path", tiny_embedder, "--pooling", "mean", "--range_for_sampling", "0-6",
            "--negative_number", "3", "--embed_dtype", "fp32", "--retriever", "dense"]
    weights, _ = mine(tmp_path, *args, name="torch.jsonl")
    graph, summary = mine(tmp_path, *args, "--embed_backend", "openvino", name="graph.jsonl")
    assert [r["neg"] for r in graph] == [r["neg"] for r in weights]
    assert summary["embedding_cache"] == "miss"  # not the torch run's cached pool
    # Nor a pool cached before OpenVINO's one-shape copies, which embed a little differently.
    assert backends.static_copies_of(tiny_embedder, "openvino") == backends.STATIC_COPIES
    assert backends.static_copies_of(tiny_embedder, "onnx") == 0
    from reranker.models import embed_cache

    seen = []
    original = embed_cache.cache_key
    monkeypatch.setattr(embed_cache, "cache_key", lambda path, settings, pool: seen.append(dict(settings)) or
                        original(path, settings, pool))
    mine(tmp_path, *args, "--embed_backend", "openvino", name="again.jsonl")
    assert seen[0]["shape_copies"] == backends.STATIC_COPIES


def test_auto_takes_the_graph_measured_faster_on_this_cpu(tiny_model):
    """backend auto reads the speeds the export measured: the graph where it was faster on this CPU model, torch
    where it was slower, measured on another CPU, stale or absent."""
    assert backends.choose_backend(tiny_model, "auto") == "torch"  # nothing exported
    export(str(tiny_model), ExportOptions(backend="onnx"))
    speed = backends.read_record(tiny_model, "onnx")["speed"]
    assert speed["cpu"] == backends.this_cpu() and speed["torch_pairs_per_s"] > 0 and speed["graph_pairs_per_s"] > 0
    records_file = tiny_model / "onnx" / backends.RECORD

    def measured(**changes):
        records = json.loads(records_file.read_text())
        records["model.onnx"]["speed"].update(changes)
        records_file.write_text(json.dumps(records))

    measured(torch_pairs_per_s=10.0, graph_pairs_per_s=20.0)
    assert backends.choose_backend(tiny_model, "auto") == "onnx"
    assert Reranker(str(tiny_model), backend="auto").backend == "onnx"
    assert backends.choose_backend(tiny_model, "auto", "cuda") == "torch"
    measured(graph_pairs_per_s=5.0)
    assert backends.choose_backend(tiny_model, "auto") == "torch"
    measured(graph_pairs_per_s=20.0, cpu="another processor")
    assert backends.choose_backend(tiny_model, "auto") == "torch"


@pytest.fixture(scope="module")
def family_masters(tmp_path_factory):
    from tiny import build_tiny_family_model

    root = tmp_path_factory.mktemp("families")
    return {family: build_tiny_family_model(root / family, family) for family in ("seq2seq", "decoder")}


@pytest.fixture
def family_model(family_masters, tmp_path, request):
    """A fresh copy of the tiny T5 (seq2seq) or Llama-style (decoder) model: exports write beside the weights."""
    folder = tmp_path / request.param
    shutil.copytree(family_masters[request.param], folder)
    return folder


@pytest.mark.parametrize("family_model", ["seq2seq", "decoder"], indirect=True)
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_seq2seq_and_decoder_graphs_score_as_torch(family_model, backend):
    """A prompt family's graph returns its answer tokens' logits: the same scores and (false, true) logits as the
    torch scorer, on batches that pad (left for the decoder's tokenizer, right for T5's)."""
    export(str(family_model), ExportOptions(backend=backend))
    torch_reranker = Reranker(str(family_model), dtype="fp32")
    record = backends.read_record(family_model, backend)
    assert record["output"] == "answer_logits" and record["family"] == torch_reranker.scorer.family
    assert record["token_ids"] == torch_reranker.scorer.token_ids and len(record["token_ids"]) == 2
    graph_reranker = Reranker(str(family_model), dtype="fp32", backend=backend)
    reference, scores = (np.array(r.compute_score(PAIRS, batch_size=5)) for r in (torch_reranker, graph_reranker))
    assert reference.std() > 1e-3  # scores that differ between pairs, so agreeing on them means something
    np.testing.assert_allclose(scores, reference, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(graph_reranker.compute_logits(PAIRS, batch_size=4),
                               torch_reranker.compute_logits(PAIRS, batch_size=4), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family_model", ["seq2seq", "decoder"], indirect=True)
def test_seq2seq_and_decoder_rerankers_keep_fp32_weights_under_bf16(family_model):
    """bf16 weights are for the encoder family (measured there); the others run bf16 as autocast over fp32."""
    reranker = Reranker(str(family_model), dtype="bf16")
    assert {p.dtype for p in reranker.model.parameters()} == {torch.float32} and reranker.dtype is torch.bfloat16


@pytest.mark.parametrize("family_model", ["decoder"], indirect=True)
def test_a_prompt_family_graph_is_refused_for_other_answer_tokens(family_model, probe):
    """The graph holds the logits of the answer tokens it was traced with: a scorer told other tokens is refused,
    not handed the wrong logits. int8 keeps the family's output projections (o_proj, down_proj) out of int8."""
    export(str(family_model), ExportOptions(backend="openvino-int8", probe_data=str(probe), min_correlation=0.5))
    kept = backends.read_record(family_model, "openvino-int8")["quantization"]
    assert "the 4 MatMul layers matching" in kept and r"o_proj|down_proj" in kept  # 2 layers x (o_proj, down_proj)
    scores = Reranker(str(family_model), backend="openvino-int8").compute_score(PAIRS[:3])
    assert len(scores) == 3 and np.isfinite(scores).all()
    with pytest.raises(ConfigError, match="answer tokens"):
        Reranker(str(family_model), backend="openvino-int8", true_token="no", false_token="yes")
    with pytest.raises(ConfigError, match="score mode|answer tokens"):
        Reranker(str(family_model), backend="openvino-int8", score_mode="single")


@pytest.mark.parametrize("family_model", ["decoder"], indirect=True)
def test_a_single_mode_graph_is_exported_with_the_scorer_options(family_model):
    """reranker-export --score_mode single: the graph returns the one answer logit, and scores for a Reranker told
    the same, as torch does; a Reranker left in the saved pair mode is refused."""
    from reranker.cli import export as export_cli

    export_cli.main([str(family_model), "--backend", "openvino", "--score_mode", "single"])
    assert len(backends.read_record(family_model, "openvino")["token_ids"]) == 1
    reference = Reranker(str(family_model), dtype="fp32", score_mode="single").compute_score(PAIRS, batch_size=5)
    scores = Reranker(str(family_model), dtype="fp32", score_mode="single", backend="openvino").compute_score(
        PAIRS, batch_size=5)
    np.testing.assert_allclose(scores, reference, atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="answer tokens"):
        Reranker(str(family_model), backend="openvino")


@pytest.mark.parametrize("family_model", ["decoder"], indirect=True)
def test_auto_passes_over_a_graph_traced_for_other_answer_tokens(family_model):
    export(str(family_model), ExportOptions(backend="openvino"))
    records_file = family_model / "openvino" / backends.RECORD
    records = json.loads(records_file.read_text())
    records["openvino_model.xml"]["speed"].update(torch_pairs_per_s=1.0, graph_pairs_per_s=100.0)
    records_file.write_text(json.dumps(records))
    assert Reranker(str(family_model), backend="auto").backend == "openvino"
    assert Reranker(str(family_model), backend="auto", true_token="no", false_token="yes").backend == "torch"


def test_graphs_of_older_exports_and_of_another_kind(tiny_model, tiny_embedder):
    """An encoder record written before the family was recorded still loads; a graph serves only as the kind and
    family it was exported as."""
    export(str(tiny_model), ExportOptions(backend="onnx"))
    records_file = tiny_model / "onnx" / backends.RECORD
    records = json.loads(records_file.read_text())
    for key in ("family", "token_ids"):
        del records["model.onnx"][key]
    records_file.write_text(json.dumps(records))
    np.testing.assert_allclose(Reranker(str(tiny_model), backend="onnx", dtype="fp32").compute_score(PAIRS),
                               Reranker(str(tiny_model), dtype="fp32").compute_score(PAIRS), atol=1e-4)
    records["model.onnx"]["family"] = "decoder"
    records_file.write_text(json.dumps(records))
    with pytest.raises(ConfigError, match="exported for the decoder family"):
        Reranker(str(tiny_model), backend="onnx")
    export(str(tiny_embedder), ExportOptions(backend="onnx"))
    shutil.copy(tiny_embedder / "onnx" / "model.onnx", tiny_model / "onnx" / "model.onnx")
    records["model.onnx"]["kind"] = "embedder"
    records_file.write_text(json.dumps(records))
    with pytest.raises(ConfigError, match="kind 'embedder'; it cannot serve as kind 'reranker'"):
        Reranker(str(tiny_model), backend="onnx")
    records["model.onnx"]["kind"] = "reranker"
    records_file.write_text(json.dumps(records))
    with pytest.raises(ConfigError, match="cannot serve as kind 'embedder'"):
        Embedder(str(tiny_model), pooling="mean", backend="onnx")
    with pytest.raises(ConfigError, match="are for a seq2seq or decoder reranker"):
        export(str(tiny_embedder), ExportOptions(backend="onnx", scorer_options={"score_mode": "single"}))


def test_what_is_exported_as_an_embedder(tmp_path):
    """A sentence-transformers folder that pools is an embedder even with a causal-LM body (decoder embedders); a
    causal LM without pooling is a decoder reranker; a bare encoder is an embedder."""
    from reranker.models.export import model_kind

    def folder(name, architectures, modules=None):
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"architectures": architectures}))
        if modules is not None:
            (path / "modules.json").write_text(json.dumps(modules))
        return path

    pooled = [{"idx": 0, "type": "sentence_transformers.models.Transformer"},
              {"idx": 1, "type": "sentence_transformers.models.Pooling"}]
    assert model_kind(folder("qwen_embedder", ["Qwen3ForCausalLM"], pooled)) == "embedder"
    assert model_kind(folder("llm", ["LlamaForCausalLM"])) == "reranker"
    assert model_kind(folder("gpt2", ["GPT2LMHeadModel"])) == "reranker"
    assert model_kind(folder("bert", ["BertModel"])) == "embedder"


def test_an_int8_pattern_that_keeps_nothing_is_refused(tiny_model, probe):
    with pytest.raises(ConfigError, match="matches no MatMul layer"):
        export(str(tiny_model), ExportOptions(backend="openvino-int8", probe_data=str(probe), int8_keep="nothing"))
    assert not (tiny_model / "openvino" / "openvino_model_qint8.xml").exists()


def test_a_lora_adapter_is_merged_before_export(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="merge it into its base first"):
        export(str(adapter), ExportOptions(backend="onnx"))


def test_a_decoder_graph_is_not_compiled_in_bf16_where_openvino_would_crash(monkeypatch):
    """OpenVINO 2026.4 kills the process compiling a decoder graph in bf16 for a one-thread stream on an AMX CPU:
    that case (and only that one) is named, so the caller runs the graph in f32 and says why."""
    from reranker.common import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
    assert "crashes" in backends.bf16_crash("decoder", 1)
    assert backends.bf16_crash("decoder", 2) is None
    assert backends.bf16_crash("encoder", 1) is None and backends.bf16_crash("seq2seq", 1) is None
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert backends.bf16_crash("decoder", 1) is None


@pytest.mark.parametrize("family_model", ["decoder"], indirect=True)
def test_a_decoder_graph_runs_in_f32_where_its_bf16_compile_would_crash(family_model, monkeypatch, caplog):
    """On an AMX CPU, one thread: the export leaves bf16 unchecked and says so in the record, GraphModel runs the
    graph in f32 with a warning, and map runs the batches one by one rather than on one-thread streams. (On a CPU
    with AMX this compiles for real: without the guard the process would die here.)"""
    from transformers import AutoConfig

    from reranker.common import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        export(str(family_model), ExportOptions(backend="openvino"))
        assert backends.read_record(family_model, "openvino")["probe"]["bf16"].startswith("not checked: OpenVINO")
        with caplog.at_level("WARNING", logger="reranker.models.backends"):
            graph = backends.GraphModel(family_model, "openvino", AutoConfig.from_pretrained(family_model), "bf16",
                                        torch.bfloat16, threads=1)
        assert graph.hint == "f32" and "runs in f32 here" in caplog.text
        graph.hint = "bf16"  # as a graph compiled for bf16 on more threads: map must not open one-thread streams
        ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
        outputs = list(graph.map(iter([{"input_ids": ids, "attention_mask": (ids > 0).long()}])))
        assert len(outputs) == 1 and outputs[0].shape == (2, 2) and graph._stream is None
    finally:
        torch.set_num_threads(threads)
