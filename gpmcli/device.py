"""Which torch device to run on, and what to call it in ``run.json`` and training records (a leaf module)."""

from __future__ import annotations

import platform

import torch

from gpmcli.errors import UsageError


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"``: CUDA, else MPS, else CPU; otherwise the named device, checked to exist (exit 2 if not)."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown --device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA device is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError("--device mps was asked for, but no MPS (Apple GPU) device is available")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {device}: gpm runs on cpu, cuda or mps")
    return dev


def device_name(dev: torch.device) -> str:
    """The GPU's name on CUDA, else the processor's."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return platform.processor() or platform.machine()
