"""Mixed precision for the GPU path: bfloat16 autocast where the device supports it.

``amp`` (a config field): ``auto`` — bfloat16 autocast on a CUDA device that supports it, full
float32 on CPU (CPU autocast is slower than float32 for these networks on most machines);
``bf16`` — bfloat16 autocast on any device (on CPU too, e.g. to check it); ``off`` — float32.
Losses and metrics are always computed in float32 from the autocast outputs.
"""

from __future__ import annotations

import contextlib

import torch

AMP_CHOICES = ("auto", "off", "bf16")


def amp_dtype(amp: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None (float32).

    Raises:
        ValueError: ``amp`` is not one of :data:`AMP_CHOICES`.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"config field 'amp': must be one of {', '.join(AMP_CHOICES)} (got {amp!r})")
    dev = torch.device(device)
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(amp: str, device: torch.device | str):
    """A context: ``torch.autocast`` with :func:`amp_dtype`'s dtype, or a no-op for float32."""
    dtype = amp_dtype(amp, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def amp_name(amp: str, device: torch.device | str) -> str:
    """What ``amp`` resolves to on ``device``, for the record: ``bfloat16`` or ``float32``."""
    dtype = amp_dtype(amp, device)
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


def async_to(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Move a small CPU tensor to ``device`` without a host-device synchronisation.

    On CUDA the tensor goes through pinned memory with ``non_blocking=True`` (a copy from pageable
    memory would make the host wait for the GPU's queue); elsewhere it is ``t.to(device)``. The
    values are the same either way.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(dev, non_blocking=True)
    return t.to(dev)
