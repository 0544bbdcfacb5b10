"""Where and in what precision the model runs, and the error raised when a model cannot be had."""

from __future__ import annotations

import torch

from core.errors import UserError


class ModelLoadError(UserError, RuntimeError):
    """The model could not be loaded; the message is one sentence saying what to do, for
    whoever runs the command line or the server. `for_page` says it to the person in front of
    the web page, who can change the model box but not the server's settings."""

    def __init__(self, message: str, for_page: str | None = None) -> None:
        super().__init__(message)
        self.for_page = for_page or message


def resolve_device(preference: str = "auto") -> torch.device:
    """Pick cuda, then mps, then cpu for "auto"; refuse a named device that is not there."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(preference, False):
        raise ModelLoadError(
            f"Device {preference!r} was asked for (CLIPLAB_DEVICE) but is not available on this "
            "machine; set CLIPLAB_DEVICE=auto or cpu."
        )
    return torch.device(preference)


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype inference runs in (CLIPLAB_PRECISION): "auto" is half precision on CUDA and
    float32 elsewhere; bf16 is a choice for CPUs with AMX or AVX512-BF16, where it measured
    3x faster than float32 (README, Performance)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[precision]
