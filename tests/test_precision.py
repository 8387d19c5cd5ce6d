"""bf16 only where it is fast: the CPU's flags, "auto", and the warning for bf16 that the CPU would emulate."""

import logging

import pytest

from reranker.common import precision

X86_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\n"
X86_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(("text", "expected"), [(X86_AVX2, False), (X86_BF16, True), (ARM_BF16, True)])
def test_cpu_flags(tmp_path, text, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    flags = precision.cpu_flags(info)
    assert bool(flags & precision.BF16_FLAGS) is expected
    assert precision.cpu_flags(tmp_path / "missing") is None  # not Linux: cannot tell


@pytest.fixture
def cpu(monkeypatch):
    """Pretend the CPU has (True), lacks (False) or hides (None) bf16 instructions; warnings start afresh."""
    monkeypatch.setattr(precision, "_warned", set())
    monkeypatch.delenv(precision.AUTO_ENV, raising=False)  # conftest pins auto to fp32 for the other tests
    monkeypatch.setattr(precision, "default_device_type", lambda: "cpu")  # the same on a machine with a GPU

    def set_native(value):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda: value)

    return set_native


def test_auto_picks_bf16_only_where_native(cpu, caplog):
    caplog.set_level(logging.INFO, logger="reranker.common.precision")
    cpu(True)
    assert precision.resolve_dtype("auto", "--dtype", "cpu") == "bf16"
    cpu(False)
    assert precision.resolve_dtype("auto", "--dtype", "cpu") == "fp32"
    assert "--dtype: auto -> fp32 (the CPU has no bf16 instructions)" in caplog.text
    cpu(None)
    assert precision.resolve_dtype("auto", "--dtype", "cpu") == "fp32"
    assert "cannot tell whether the CPU has bf16 instructions" in caplog.text
    assert precision.resolve_dtype("fp32", "--dtype", "cpu") == "fp32"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_explicit_bf16_is_kept_and_warned_once(cpu, caplog):
    cpu(False)
    assert precision.resolve_dtype("bf16", "--dtype", "cpu") == "bf16"
    assert precision.resolve_dtype("bf16", "--embed_dtype", "cpu") == "bf16"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no bf16 instructions" in warnings[0].getMessage()
    cpu(True)
    precision._warned.clear()
    caplog.clear()
    assert precision.resolve_dtype("bf16", "--dtype", "cpu") == "bf16"
    assert not caplog.records


def test_arguments_resolve_auto(cpu, caplog):
    from reranker.evaluation.arguments import EvalArguments
    from reranker.mining.arguments import EmbedArguments
    from reranker.training.arguments import RerankerTrainingArguments

    cpu(False)
    assert EvalArguments(datasets=["x"], dtype="auto").dtype == "fp32"
    assert EmbedArguments(embed_dtype="auto").embed_dtype == "fp32"
    args = RerankerTrainingArguments(output_dir="unused", auto_bf16=True, use_cpu=True)
    assert args.bf16 is False
    cpu(True)
    assert EvalArguments(datasets=["x"], dtype="auto").dtype == "bf16"
    assert RerankerTrainingArguments(output_dir="unused", auto_bf16=True, use_cpu=True).bf16 is True
    # auto is the default; a precision asked for wins over it, and --auto_bf16 false is fp32.
    assert RerankerTrainingArguments(output_dir="unused", use_cpu=True).bf16 is True
    explicit = RerankerTrainingArguments(output_dir="unused", bf16=True, use_cpu=True)
    assert explicit.bf16 is True and explicit.auto_bf16 is False
    assert RerankerTrainingArguments(output_dir="unused", auto_bf16=False, use_cpu=True).bf16 is False
    cpu(False)
    caplog.clear()
    assert RerankerTrainingArguments(output_dir="unused", bf16=True, use_cpu=True).bf16 is True
    assert "--bf16: this CPU has no bf16 instructions" in caplog.text


def test_models_take_auto(cpu, tiny_model):
    import torch

    from reranker.models.embed import Embedder
    from reranker.models.inference import Reranker

    def weights(model):
        return {p.dtype for p in model.model.parameters()}

    cpu(False)
    assert weights(Reranker(str(tiny_model), dtype="auto", device="cpu")) == {torch.float32}
    assert weights(Embedder(str(tiny_model), dtype="auto", device="cpu")) == {torch.float32}
    cpu(True)  # bf16 for inference: the weights cast once, no autocast around the forward
    for model in (Reranker(str(tiny_model), dtype="auto", device="cpu"),
                  Embedder(str(tiny_model), dtype="auto", device="cpu")):
        assert weights(model) == {torch.bfloat16} and model.dtype is None
    with pytest.raises(ValueError, match="dtype must be one of"):
        Reranker(str(tiny_model), dtype="fp8")


def test_auto_can_be_pinned_for_a_process_tree(cpu, monkeypatch):
    cpu(True)
    monkeypatch.setenv(precision.AUTO_ENV, "fp32")
    assert precision.resolve_dtype("auto", "--dtype", "cpu") == "fp32"
    monkeypatch.setenv(precision.AUTO_ENV, "nonsense")  # not a precision: ignored, the hardware decides
    assert precision.resolve_dtype("auto", "--dtype", "cpu") == "bf16"


def test_bf16_weights_leave_buffers_and_integer_weights_alone():
    """cast_weights: floating parameters to bf16; a floating buffer (rotary inv_freq) and integer tensors stay."""
    import torch

    module = torch.nn.Linear(4, 2)
    module.register_buffer("inv_freq", torch.rand(3))
    module.codes = torch.nn.Parameter(torch.ones(2, dtype=torch.int8), requires_grad=False)
    precision.cast_weights(module, torch.bfloat16)
    assert module.weight.dtype == module.bias.dtype == torch.bfloat16
    assert module.inv_freq.dtype == torch.float32 and module.codes.dtype == torch.int8


def test_which_models_get_bf16_weights():
    """bf16 weights for encoder rerankers and embedders in bf16; autocast for the other families, remote code and
    every other precision."""
    import torch

    assert precision.casts_to_bf16(torch.bfloat16, "encoder") and precision.casts_to_bf16(torch.bfloat16, "embedder")
    assert not precision.casts_to_bf16(torch.bfloat16, "decoder") and not precision.casts_to_bf16(torch.bfloat16,
                                                                                                    "seq2seq")
    assert not precision.casts_to_bf16(torch.bfloat16, "embedder", trust_remote_code=True)
    assert not precision.casts_to_bf16(torch.float16, "encoder") and not precision.casts_to_bf16(None, "encoder")
