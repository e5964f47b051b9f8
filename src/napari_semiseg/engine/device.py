"""Device selection (mixed precision: :mod:`napari_semiseg.models.precision`)."""

from __future__ import annotations

import torch

from ..errors import SemisegInputError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device name into a torch device, checking it exists.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda", "mps"}
        ``auto`` takes CUDA, then Apple MPS, then the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    SemisegInputError
        If the requested accelerator is not available.
    """
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SemisegInputError(
            "CUDA was requested but no CUDA GPU is available to this torch build",
            "use --device auto or cpu, or install a CUDA build of torch",
        )
    if name == "mps" and not has_mps:
        raise SemisegInputError(
            "MPS was requested but Apple's Metal backend is not available",
            "use --device auto or cpu",
        )
    if name not in ("cpu", "cuda", "mps"):
        raise SemisegInputError(f"unknown device {name!r}", "use auto, cpu, cuda or mps")
    return torch.device(name)
