"""Networks: the U-Net family, EMA copies, and a registry of architectures."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .ema import ModelEMA
from .unet import PRESETS, UNet, UNetConfig

#: Architecture name -> factory ``(in_channels, n_classes, config) -> module``.
ARCHITECTURES: dict[str, Callable[[int, int, UNetConfig], nn.Module]] = {
    "unet": lambda in_channels, n_classes, config: UNet(in_channels, n_classes, config),
}


def build_model(
    in_channels: int, n_classes: int, config: UNetConfig | None = None, architecture: str = "unet"
) -> nn.Module:
    """Build a network by architecture name.

    Parameters
    ----------
    in_channels : int
        Image channels.
    n_classes : int
        Output channels.
    config : UNetConfig, optional
        Architecture settings.
    architecture : str
        Key of :data:`ARCHITECTURES`.

    Returns
    -------
    torch.nn.Module
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](in_channels, n_classes, config or UNetConfig())


__all__ = ["ARCHITECTURES", "PRESETS", "ModelEMA", "UNet", "UNetConfig", "build_model"]
