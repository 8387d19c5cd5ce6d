"""Whether bf16 is fast where we run: autocast to bf16 on a CPU without bf16 instructions is emulated.

On a CPU with AVX2 only, bf16 autocast is emulated and several times slower than fp32; on a CPU with
AVX512-BF16 (or AMX) it is faster than fp32 (docs/precision.md has the measurements). So "bf16" is a good
default only where the hardware has it, and "auto" picks it only there.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

# x86: AVX512-BF16 or AMX tiles; ARM: the BF16 extension (its /proc/cpuinfo "Features" line).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
CPUINFO = Path("/proc/cpuinfo")


# What "auto" resolves to can be pinned for a whole process tree (fp32 or bf16), e.g. to reproduce an fp32 run
# on a machine with bf16 instructions; the test suite pins fp32 so that its figures match on every CPU.
AUTO_ENV = "RERANKER_AUTO_DTYPE"

def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The first processor's instruction flags from /proc/cpuinfo; None where there is no such file (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return None


@functools.cache
def cpu_has_bf16() -> bool | None:
    """True or False from the CPU's flags; None when they cannot be read."""
    flags = cpu_flags()
    return None if flags is None else bool(flags & BF16_FLAGS)


def native_bf16(device_type: str) -> bool | None:
    """Whether `device_type` ("cpu" or "cuda") computes bf16 natively; None when it cannot be told."""
    if device_type == "cuda":
        import torch

        if not torch.cuda.is_available():
            return False
        try:  # by default torch also counts GPUs that only emulate bf16 (T4, V100)
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch before 2.3 has no such argument and counts native support only
            return bool(torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        return cpu_has_bf16()
    return None  # mps, xpu, ...: not known here


def default_device_type() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, option: str, device_type: str | None = None) -> str:
    """`dtype` as it will run: "auto" becomes bf16 where the device has it natively, else fp32 (the choice is
    logged); an explicit bf16 on a CPU without bf16 instructions is kept, with a warning."""
    if dtype not in ("auto", "bf16"):
        return dtype
    device_type = device_type or default_device_type()
    native = native_bf16(device_type)
    if dtype == "auto":
        forced = os.environ.get(AUTO_ENV)
        if forced in ("fp32", "bf16"):
            logger.info("%s: auto -> %s (%s=%s)", option, forced, AUTO_ENV, forced)
            return forced
        chosen = "bf16" if native else "fp32"
        logger.info("%s: auto -> %s (%s)", option, chosen, describe(device_type, native))
        return chosen
    if dtype == "bf16":
        warn_slow_bf16(option, device_type, native)
    return dtype


def describe(device_type: str, native: bool | None) -> str:
    where = "the GPU" if device_type == "cuda" else "the CPU"
    if native is None:
        return f"cannot tell whether {where} has bf16 instructions"
    return f"{where} {'has' if native else 'has no'} bf16 instructions"


_warned: set[str] = set()


def warn_slow_bf16(option: str, device_type: str, native: bool | None = None) -> None:
    """Once per process (a run asks for bf16 in several places): bf16 on a CPU that emulates it."""
    native = native_bf16(device_type) if native is None else native
    if device_type == "cpu" and native is False and not _warned:
        _warned.add(option)
        logger.warning("%s: this CPU has no bf16 instructions (no avx512_bf16, amx_bf16 or ARM bf16 in "
                       "/proc/cpuinfo), so bf16 is emulated and several times slower than fp32. Use fp32, or "
                       "'auto' to pick bf16 only where it is fast.", option)


PRECISIONS = ("fp32", "bf16", "fp16")


def autocast_dtype(name: str | None):
    """The torch dtype autocast runs in for a precision name (None and "fp32": no autocast)."""
    import torch

    if name not in (None, *PRECISIONS):
        raise ValueError(f"precision must be one of {[*PRECISIONS, 'auto']}, got {name!r}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)


def autocast(device_type: str, dtype):
    """A context that runs the forward in `dtype` (a torch dtype, or None: full precision)."""
    import contextlib

    import torch

    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


# Where bf16 inference means bf16 weights rather than autocast over fp32 ones: measured for MiniLM rerankers and
# embedders (results/backends.md); the seq2seq and decoder scorers keep autocast (the decoder reads its answer rows in
# fp32), and so does remote code, whose own fp32 buffers (ALiBi slopes, masks) may meet bf16 activations.
BF16_WEIGHT_FAMILIES = ("encoder", "embedder")


def casts_to_bf16(dtype, family: str, trust_remote_code: bool = False) -> bool:
    """Whether a model of `family` run in `dtype` (a torch dtype or None) for inference gets bf16 weights."""
    import torch

    return dtype == torch.bfloat16 and family in BF16_WEIGHT_FAMILIES and not trust_remote_code


def cast_weights(model, dtype) -> None:
    """The model's floating-point parameters in `dtype`, cast once for inference. Buffers keep their precision:
    rotary embeddings' inv_freq rounded to bf16 would shift every position's angle (a known transformers pitfall).
    Quantised (integer) weights are left alone."""
    for param in model.parameters():
        if param.is_floating_point():
            param.data = param.data.to(dtype)


def inference_dtype(name: str | None, device_type: str, what: str):
    """The torch dtype of a scoring or embedding model's precision: 'auto' resolved for the device, fp16 refused on a
    CPU."""
    if name not in (None, "auto", *PRECISIONS):
        raise ValueError(f"{what} must be one of {[*PRECISIONS, 'auto']}, got {name!r}")
    name = resolve_dtype(name, what, device_type)
    if name == "fp16" and device_type == "cpu":
        raise ValueError(f"{what}: fp16 on CPU is slow and imprecise; use fp32, or bf16 / auto on a CPU with bf16 "
                         "instructions")
    return autocast_dtype(name)
