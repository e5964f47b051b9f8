"""Small named building blocks of the U-Net family."""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Normalisation layer by name.

    Parameters
    ----------
    kind : {"batch", "group", "instance", "none"}
        Normalisation type. Group norm uses up to 8 groups.
    channels : int
        Number of channels.

    Returns
    -------
    torch.nn.Module
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}; use batch, group, instance or none")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    padding : {"same", "valid"}
        Zero padding of 1 (same size) or none (shrinks by 4 pixels).
    norm : str
        Normalisation (see :func:`norm_layer`).
    dropout : float
        Dropout probability after the block (0 = none).

    Notes
    -----
    Input ``(B, in_channels, Y, X)``, output ``(B, out_channels, Y', X')`` with
    ``Y' = Y`` for same padding and ``Y - 4`` for valid padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        padding: str = "same",
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        pad = 1 if padding == "same" else 0
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, padding=pad, bias=bias),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=pad, bias=bias),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UpBlock(nn.Module):
    """2x2 up-convolution halving the channels, skip concatenation, ConvBlock.

    Parameters
    ----------
    in_channels : int
        Channels of the coarser input.
    skip_channels : int
        Channels of the skip connection.
    out_channels : int
        Output channels.
    padding, norm : str
        As in :class:`ConvBlock`.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        padding: str = "same",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.conv = ConvBlock(in_channels // 2 + skip_channels, out_channels, padding, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` ``(B, C, y, x)`` and merge the centre-cropped ``skip``."""
        x = self.up(x)
        dy = (skip.shape[-2] - x.shape[-2]) // 2
        dx = (skip.shape[-1] - x.shape[-1]) // 2
        skip = skip[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
        return self.conv(torch.cat([skip, x], dim=1))


def init_he(module: nn.Module) -> None:
    """He-normal initialisation of convolutions (U-Net paper: N(0, sqrt(2/N))).

    Parameters
    ----------
    module : torch.nn.Module
        Module whose convolutions are re-initialised in place.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
