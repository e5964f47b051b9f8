"""Heads of the position-proposal model and the small auxiliary network (METHODS.md 6).

- :class:`PPNHead`: position-score logit and centre offsets on a coarse grid
  (DeepLearnPhysics' Point Proposal Network, 2D).
- :class:`MaskController`: per-cell parameters of a tiny dynamic mask head
  (CondInst-style), read at each proposal's grid cell.
- :func:`dynamic_mask_logits`: runs those dynamic heads on mask features
  concatenated with coordinates *relative to each proposal*, the deliberate
  break of translation invariance.
- :class:`AuxNet`: a shallow dilated fully-convolutional network (no pooling,
  no coordinates): a different architecture from the U-Net it regularises.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import init_he, norm_layer


def dynamic_head_size(in_channels: int, hidden: int) -> int:
    """Number of parameters of a dynamic head ``in -> hidden -> hidden -> 1`` (1x1 convs).

    Parameters
    ----------
    in_channels : int
        Mask features plus the 2 relative coordinates.
    hidden : int
        Width of the two hidden layers.

    Returns
    -------
    int

    Examples
    --------
    >>> dynamic_head_size(10, 8)  # METHODS.md section 6: 169 parameters
    169
    """
    return in_channels * hidden + hidden + hidden * hidden + hidden + hidden + 1


def dynamic_mask_logits(inputs: torch.Tensor, params: torch.Tensor, hidden: int) -> torch.Tensor:
    """Run one tiny MLP (1x1 convolutions) per proposal on its own window.

    Parameters
    ----------
    inputs : torch.Tensor
        ``(K, D, N)``: D input channels (mask features and relative
        coordinates) at N window pixels, per proposal.
    params : torch.Tensor
        ``(K, P)`` with ``P = dynamic_head_size(D, hidden)``, laid out as
        ``w1 (hidden, D), b1, w2 (hidden, hidden), b2, w3 (1, hidden), b3``.
    hidden : int
        Hidden width.

    Returns
    -------
    torch.Tensor
        ``(K, N)`` mask logits.
    """
    k, d, _ = inputs.shape
    sizes = [hidden * d, hidden, hidden * hidden, hidden, hidden, 1]
    w1, b1, w2, b2, w3, b3 = torch.split(params, sizes, dim=1)
    h = torch.relu(torch.bmm(w1.reshape(k, hidden, d), inputs) + b1[..., None])
    h = torch.relu(torch.bmm(w2.reshape(k, hidden, hidden), h) + b2[..., None])
    return (torch.bmm(w3.reshape(k, 1, hidden), h) + b3[..., None])[:, 0]


class PPNHead(nn.Module):
    """Position-proposal head: 3x3 conv, ReLU, 1x1 conv to (score, dy, dx).

    Parameters
    ----------
    in_channels : int
        Channels of the stride-``s`` feature map.
    hidden : int
        Width of the 3x3 convolution (64 in METHODS.md).
    prior : float
        Initial positive probability of the score (RetinaNet-style bias).
        Below the 0.5 threshold, so an untrained model proposes nothing, but
        not RetinaNet's 0.01: Adam moves a logit by about the learning rate
        per step, and short CPU budgets cannot wait the ~150 steps a
        -4.6 bias needs to reach 0.

    Notes
    -----
    ``forward`` maps ``(B, C, Gy, Gx)`` to ``(B, 3, Gy, Gx)``: channel 0 is the
    position-score logit, channels 1-2 the offsets ``(dy, dx)`` of the cell
    centre from the anchor in units of the stride.
    """

    def __init__(self, in_channels: int, hidden: int = 64, prior: float = 0.25) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 3, 1)
        init_he(self)
        nn.init.normal_(self.out.weight, std=0.01)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[0] = math.log(prior / (1.0 - prior))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score logits and offsets ``(B, 3, Gy, Gx)``."""
        return self.out(torch.relu(self.conv(x)))


class MaskController(nn.Module):
    """1x1 convolution generating the dynamic mask-head parameters at every grid cell.

    Parameters
    ----------
    in_channels : int
        Channels of the stride-``s`` feature map.
    mask_channels : int
        Mask-feature channels fed to the dynamic head (plus 2 coordinates).
    hidden : int
        Hidden width of the dynamic head.
    mask_bias : float
        Initial output bias of the dynamic head: with the Gaussian size prior
        the first masks are discs of radius ``sigma * sqrt(2 * mask_bias)``.

    Notes
    -----
    ``forward`` maps ``(B, C, Gy, Gx)`` to ``(B, P, Gy, Gx)``. The bias holds a
    He-initialised head so every cell starts from a sensible dynamic head; the
    weights start small so features modulate it gently (as in CondInst).
    """

    def __init__(
        self, in_channels: int, mask_channels: int, hidden: int = 8, mask_bias: float = 1.0
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.in_dynamic = mask_channels + 2
        self.n_params = dynamic_head_size(self.in_dynamic, hidden)
        self.conv = nn.Conv2d(in_channels, self.n_params, 1)
        nn.init.normal_(self.conv.weight, std=0.01)
        d, h = self.in_dynamic, hidden
        generator = torch.Generator().manual_seed(0)
        bias = [
            torch.randn(h * d, generator=generator) * math.sqrt(2.0 / d),
            torch.zeros(h),
            torch.randn(h * h, generator=generator) * math.sqrt(2.0 / h),
            torch.zeros(h),
            torch.randn(h, generator=generator) * math.sqrt(1.0 / h),
            torch.full((1,), float(mask_bias)),
        ]
        with torch.no_grad():
            self.conv.bias.copy_(torch.cat(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dynamic-head parameters ``(B, P, Gy, Gx)``."""
        return self.conv(x)


class AuxNet(nn.Module):
    """Small auxiliary network: dilated convolutions at half resolution, no pooling chain.

    A full-resolution stem, one stride-2 convolution, a stack of dilated 3x3
    convolutions at half resolution (large context for little cost), bilinear
    upsampling added to the stem features and one full-resolution 3x3
    convolution for sharp borders. No coordinates, no encoder-decoder: a
    different architecture from the U-Net it regularises.

    Parameters
    ----------
    in_channels : int
        Image channels C.
    channels : int
        Width of every layer.
    dilations : tuple of int
        Dilations of the half-resolution 3x3 convolutions; the receptive field
        is about ``2 * (1 + 2 * sum(dilations))`` pixels.
    norm : str
        Normalisation (see :func:`~napari_semiseg.models.blocks.norm_layer`).

    Notes
    -----
    ``forward`` maps ``(B, C, Y, X)`` to logits ``(B, 2, Y, X)``: channel 0 is
    the foreground, channel 1 the cell border. Sizes are kept for any Y, X.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 16,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 1),
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.stem = _conv(in_channels, channels, norm)
        body = [_conv(channels, channels, norm, stride=2)]
        body += [_conv(channels, channels, norm, dilation=d) for d in dilations]
        self.body = nn.Sequential(*body)
        self.refine = _conv(channels, channels, norm)
        self.head = nn.Conv2d(channels, 2, 1)
        self.receptive_field = 2 * (1 + 2 * (1 + sum(dilations))) + 4
        init_he(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground and border logits ``(B, 2, Y, X)``."""
        stem = self.stem(x)
        coarse = self.body(stem)
        up = F.interpolate(coarse, size=stem.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.refine(stem + up))


def _conv(
    in_channels: int, out_channels: int, norm: str, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """3x3 convolution (same padding), normalisation and ReLU."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=dilation,
            dilation=dilation, bias=norm == "none",
        ),
        norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )  # fmt: skip
