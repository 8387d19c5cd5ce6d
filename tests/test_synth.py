"""synth.py: cropping, titles, InPars with tiny causal and seq2seq models, both filters, resume and errors."""

import json
import logging
import math

import pytest
from conftest import write_jsonl
from tiny import build_tiny_lm

import synth
from reranker import Reranker
from reranker.common.errors import ConfigError, DataError
from reranker.synth import synthesize as lib

DOCS = [
    {"_id": "d0", "title": "Paris", "text": "paris is the capital of france"},
    {"_id": "d1", "title": "", "text": "water freezes at zero degrees"},
    {"_id": "d2", "title": "Bread", "text": "bread is baked in an oven"},
    {"_id": "d3", "title": "Sky", "text": "the sky is blue because light scatters"},
    {"_id": "d4", "title": "", "text": "short"},
]


# The tiny language models learned these three documents' queries (tests/tiny.py LM_TEXTS).
UNTITLED = [{**d, "title": ""} for d in DOCS[:3]]


@pytest.fixture(scope="module")
def causal_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("lm") / "causal", "causal")


@pytest.fixture(scope="module")
def seq2seq_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("lm") / "t5", "seq2seq")


def run_synth(tmp_path, *extra, docs=DOCS, name="out.jsonl"):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    out = tmp_path / name
    summary = synth.main(["--corpus", str(corpus), "--output_file", str(out), *map(str, extra)])
    return [json.loads(line) for line in out.read_text().splitlines()], summary


def test_crop_spans_are_seeded_and_within_bounds(tmp_path):
    long_doc = {"_id": "long", "title": "", "text": " ".join(f"w{i}" for i in range(300))}
    rows, summary = run_synth(tmp_path, "--method", "crop", "--query_words", "4-9", "--passage_words", "20-50",
                              docs=[*DOCS, long_doc])
    again, _ = run_synth(tmp_path, "--method", "crop", "--query_words", "4-9", "--passage_words", "20-50",
                         docs=[*DOCS, long_doc], name="again.jsonl")
    assert rows == again  # seeded: the same spans
    other, _ = run_synth(tmp_path, "--method", "crop", "--query_words", "4-9", "--passage_words", "20-50",
                         "--seed", "7", docs=[*DOCS, long_doc], name="other.jsonl")
    assert other != rows
    (crop,) = [r for r in rows if r["pos_id"] == "long"]
    words = long_doc["text"].split()
    q, p = crop["query"].split(), crop["pos"][0].split()
    assert 4 <= len(q) <= 9 and 20 <= len(p) <= 50
    assert crop["neg_crop"] == [20, 50]  # the miner cuts this pair's negatives to spans of the same lengths
    for span in (q, p):  # contiguous spans of the document
        start = words.index(span[0])
        assert words[start:start + len(span)] == span
    # "short" (1 word) cannot give a 4-word query and a positive: skipped and counted. Short documents give
    # spans as long as they are.
    assert summary["skipped_documents"] == 1 and summary["pairs"] == 5
    assert {r["pos_id"] for r in rows} == {"d0", "d1", "d2", "d3", "long"}
    assert all(r["score"] is None for r in rows)


def test_title_mode(tmp_path):
    rows, summary = run_synth(tmp_path, "--method", "title")
    assert [(r["query"], r["pos"], r["pos_id"]) for r in rows] == [
        ("Paris", ["paris is the capital of france"], "d0"), ("Bread", ["bread is baked in an oven"], "d2"),
        ("Sky", ["the sky is blue because light scatters"], "d3")]
    assert summary["skipped_documents"] == 2


def test_prompt_template(tmp_path):
    template = lib.read_template(None)
    prompt = lib.build_prompt(template, "a {braced} document")
    assert prompt.endswith("Document: a {braced} document\nRelevant Query:")
    assert prompt.count("Relevant Query:") == 4  # three examples, then the target
    bad = tmp_path / "t.txt"
    bad.write_text("no placeholder")
    with pytest.raises(ConfigError, match="exactly once"):
        lib.read_template(str(bad))


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_inpars_queries_and_log_probabilities(tmp_path, causal_lm, seq2seq_lm, kind):
    import torch

    model = causal_lm if kind == "causal" else seq2seq_lm
    template = tmp_path / "template.txt"
    template.write_text("Document: {document}\nRelevant Query:")
    rows, summary = run_synth(tmp_path, "--method", "inpars", "--generator", model, "--prompt_template", template,
                              "--batch_size", "2", "--max_new_tokens", "30", docs=UNTITLED)
    assert [r["query"] for r in rows] == ["capital of france", "when does water freeze", "how is bread baked"]
    assert summary["pairs"] == 3 and (tmp_path / "out.all.jsonl").is_file()
    # The score is the mean log-probability of the query's tokens, computed again here by teacher forcing.
    generator = lib.QueryGenerator(str(model))
    tok = generator.tokenizer
    for row, doc in zip(rows, UNTITLED, strict=True):
        prompt = f"Document: {doc['text']}\nRelevant Query:"
        if kind == "causal":
            prompt_ids = tok(prompt)["input_ids"]
            query_ids = tok(prompt + " " + row["query"])["input_ids"][len(prompt_ids):]
            ids = torch.tensor([prompt_ids + query_ids])
            logits = generator.model(ids).logits[0, len(prompt_ids) - 1:-1]
        else:
            query_ids = tok(row["query"])["input_ids"]  # trained without the space a causal prompt has before it
            decoder = torch.tensor([[0] + query_ids[:-1]])
            logits = generator.model(**tok(prompt, return_tensors="pt"), decoder_input_ids=decoder).logits[0]
        logprobs = logits.log_softmax(-1).gather(-1, torch.tensor(query_ids)[:, None]).squeeze(-1)
        assert row["score"] == pytest.approx(float(logprobs.mean().detach()), abs=1e-4)


def short_template(tmp_path):
    path = tmp_path / "template.txt"
    path.write_text("Document: {document}\nRelevant Query:")
    return path


def test_inpars_filters(tmp_path, causal_lm, tiny_model_master):
    common = ["--method", "inpars", "--generator", causal_lm, "--batch_size", "3", "--max_new_tokens", "8",
              "--prompt_template", short_template(tmp_path)]
    everything, _ = run_synth(tmp_path, *common, name="all.jsonl")
    by_logprob = sorted(everything, key=lambda r: -r["score"])
    rows, summary = run_synth(tmp_path, *common, "--filter", "logprob", "--keep_fraction", "0.5", name="v1.jsonl")
    assert len(rows) == math.ceil(0.5 * len(everything)) == summary["kept"]
    assert {r["pos_id"] for r in rows} == {r["pos_id"] for r in by_logprob[: len(rows)]}
    rows, summary = run_synth(tmp_path, *common, "--filter", "reranker", "--filter_model", tiny_model_master,
                              "--keep_top", "2", name="v2.jsonl")
    scores = Reranker(str(tiny_model_master)).compute_score([(r["query"], r["pos"][0]) for r in everything])
    best = sorted(range(len(everything)), key=lambda i: -scores[i])[:2]
    assert {r["pos_id"] for r in rows} == {everything[i]["pos_id"] for i in best}
    assert summary["filtered_out"] == len(everything) - 2
    assert all("reranker_score" in r for r in rows)


def test_resume_after_interruption(tmp_path, causal_lm, monkeypatch, caplog):
    common = ["--method", "inpars", "--generator", causal_lm, "--batch_size", "2", "--max_new_tokens", "8",
              "--prompt_template", short_template(tmp_path)]
    expected, _ = run_synth(tmp_path, *common, name="straight.jsonl")
    calls = {"n": 0}
    real = lib.QueryGenerator.generate

    def dies_on_second_batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(lib.QueryGenerator, "generate", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run_synth(tmp_path, *common)
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.partial.jsonl"
    assert not out.exists() and len(partial.read_text().splitlines()) == 3  # settings + the first batch of 2
    with open(partial, "a") as handle:
        handle.write('{"query": "cut of')  # a line the kill left half-written
    monkeypatch.setattr(lib.QueryGenerator, "generate", real)
    caplog.set_level(logging.INFO)
    rows, summary = run_synth(tmp_path, *common)
    assert rows == expected
    assert summary["resumed_documents"] == 2
    assert any("2 of 5 documents already done (1 cut-off line dropped)" in m for m in caplog.messages)
    assert not partial.exists()
    # Every generated record is kept, each line whole: the cut-off fragment is gone, not left before the new lines.
    kept = [json.loads(line) for line in (tmp_path / "out.all.jsonl").read_text().splitlines()]
    assert kept[0]["_settings"] and sorted(r["pos_id"] for r in kept[1:]) == sorted(d["_id"] for d in DOCS)
    # Resuming with other settings would mix two kinds of records: refused.
    partial.write_text(json.dumps({"_settings": {"method": "crop"}}) + "\n")
    with pytest.raises(ConfigError, match="other settings"):
        run_synth(tmp_path, *common, "--overwrite")


def test_errors(tmp_path, causal_lm):
    with pytest.raises(FileExistsError):
        run_synth(tmp_path, "--method", "title")
        run_synth(tmp_path, "--method", "title")
    with pytest.raises(DataError, match=r"corpus.jsonl:2 field 'text'"):
        run_synth(tmp_path, "--method", "crop", docs=[DOCS[0], {"_id": "x", "text": 3}], name="bad.jsonl")
    with pytest.raises(ConfigError, match="needs --generator"):
        run_synth(tmp_path, "--method", "inpars", name="x.jsonl")
    with pytest.raises(ConfigError, match="one of --keep_fraction or --keep_top"):
        run_synth(tmp_path, "--method", "title", "--filter", "reranker", "--filter_model", "m", name="y.jsonl")
    with pytest.raises(ConfigError, match="does not fit the generator's 512 positions"):
        run_synth(tmp_path, "--method", "inpars", "--generator", causal_lm, "--max_doc_tokens", "600",
                  docs=[{"_id": "x", "text": "word " * 700}], name="long.jsonl")
    with pytest.raises(ConfigError, match="query_words must look like"):
        run_synth(tmp_path, "--method", "crop", "--query_words", "five", name="z.jsonl")


@pytest.mark.slow
def test_two_process_inpars_matches_one(tmp_path, causal_lm):
    # Two gloo processes under torchrun (scripts/synth.sh, NPROC=2) generate whole batches in turn, with each
    # batch's own seed: the same records as one process, written once, by rank 0.
    from conftest import run_launcher

    corpus = write_jsonl(tmp_path / "corpus.jsonl", [*UNTITLED, *DOCS[3:], *({**d, "_id": f"{d['_id']}b"}
                                                                           for d in UNTITLED)])
    common = ["--method", "inpars", "--generator", str(causal_lm), "--prompt_template", str(short_template(tmp_path)),
              "--corpus", str(corpus), "--batch_size", "2", "--max_new_tokens", "12", "--do_sample",
              "--filter", "logprob", "--keep_top", "4"]
    for nproc, name in ((2, "two"), (1, "one")):
        run_launcher("synth.sh", [*common, "--output_file", tmp_path / f"{name}.jsonl"], nproc)
    for suffix in (".jsonl", ".all.jsonl"):
        one, two = ((tmp_path / f"{n}{suffix}").read_text() for n in ("one", "two"))
        assert two == one and len(one.splitlines()) >= 4
