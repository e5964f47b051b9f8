"""Mixed precision: which reduced precision a device runs in, and float32 outputs.

Forward passes run under :func:`autocast` (float16 on CUDA, bfloat16 on CPUs
with bfloat16 hardware); :func:`float32_outputs` makes a network hand float32
back, so losses, softmax and post-processing stay in full precision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import torch


@functools.lru_cache(maxsize=1)
def cpu_bfloat16_supported() -> bool:
    """Whether this CPU does bfloat16 maths in hardware (AMX or AVX512-BF16).

    Returns
    -------
    bool
        False where torch cannot tell (older builds, other architectures).
    """
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        probe = getattr(cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails means "cannot tell"
            continue
    return False


def mixed_precision_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The reduced precision a forward pass on ``device`` runs in, or None.

    float16 on CUDA; bfloat16 on a CPU that has it in hardware (there a
    training step of the ``small`` U-Net takes about 0.18 s instead of 0.41 s,
    one thread, 4 x 192 x 192); None (float32) elsewhere, where bfloat16 would
    be emulated and slower.

    Parameters
    ----------
    device : torch.device
        Device the forward pass runs on.
    enabled : bool
        Whether mixed precision is wanted at all.

    Returns
    -------
    torch.dtype or None
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_bfloat16_supported():
        return torch.bfloat16
    return None


def precision_name(device: torch.device, enabled: bool) -> str:
    """``"float32"``, ``"bfloat16"`` or ``"float16"``: what :func:`autocast` runs in.

    Examples
    --------
    >>> precision_name(torch.device("cpu"), False)
    'float32'
    """
    return str(mixed_precision_dtype(device, enabled) or torch.float32).removeprefix("torch.")


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """Mixed precision when ``enabled`` (see :func:`mixed_precision_dtype`).

    Parameters
    ----------
    device : torch.device
        Device the forward pass runs on.
    enabled : bool
        Whether mixed precision is wanted.
    """
    dtype = mixed_precision_dtype(device, enabled)
    if dtype is None:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


def as_float32(value: Any) -> Any:
    """Cast the reduced-precision tensors in a network output to float32.

    Tensors, and tensors inside tuples, lists, dicts and dataclasses, that are
    float16 or bfloat16 become float32; everything else is returned as is.
    Losses and probabilities are then computed in full precision even when
    the network ran under :func:`autocast`.

    Parameters
    ----------
    value : object
        A network output.

    Returns
    -------
    object
        The same structure.

    Examples
    --------
    >>> as_float32(torch.ones(2, dtype=torch.bfloat16)).dtype
    torch.float32
    >>> as_float32((torch.ones(1, dtype=torch.float16), 3))[0].dtype
    torch.float32
    """
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(as_float32(v) for v in value)
    if isinstance(value, list):
        return [as_float32(v) for v in value]
    if isinstance(value, dict):
        return {k: as_float32(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: as_float32(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


def float32_outputs(net: torch.nn.Module) -> torch.nn.Module:
    """Make ``net`` return float32 outputs under :func:`autocast` (idempotent).

    Parameters
    ----------
    net : torch.nn.Module
        Network whose ``forward`` result should be cast (in place, by a hook).

    Returns
    -------
    torch.nn.Module
        ``net``.
    """
    if not getattr(net, "_semiseg_float32_outputs", False):
        net.register_forward_hook(lambda _module, _inputs, output: as_float32(output))
        net._semiseg_float32_outputs = True
    return net
