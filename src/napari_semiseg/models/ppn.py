"""U-Net with a Position Proposal Network head and a full-resolution dynamic mask head.

The main model of the PPN-auxnet method (METHODS.md section 6): a U-Net
backbone; at stride ``s`` a PPN head (position score + centre offsets) and a
controller that generates one tiny mask head per proposal; at full resolution
mask features that each proposal's head reads together with the pixel
coordinates *relative to the proposal* (translation invariance broken on
purpose), plus the log of a 2D Gaussian size prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .aux_heads import MaskController, PPNHead, dynamic_mask_logits
from .blocks import init_he
from .unet import UNetConfig, UNetDecoder, UNetEncoder


def anchor_grid(
    shape: tuple[int, int], stride: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Anchor coordinates of a stride-``s`` grid.

    Parameters
    ----------
    shape : tuple of int
        ``(Gy, Gx)`` grid size.
    stride : int
        Pixels per grid cell.
    device : torch.device or str
        Where to build the tensor.

    Returns
    -------
    torch.Tensor
        ``(2, Gy, Gx)`` float: ``(y, x)`` of every anchor.

    Examples
    --------
    >>> anchor_grid((1, 2), 4)[:, 0, 1].tolist()
    [1.5, 5.5]
    """
    half = (stride - 1) / 2.0
    ys = torch.arange(shape[0], device=device, dtype=torch.float32) * stride + half
    xs = torch.arange(shape[1], device=device, dtype=torch.float32) * stride + half
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


@dataclass
class PPNOutput:
    """Raw outputs of :class:`PPNNet` for a padded batch.

    Parameters
    ----------
    score : torch.Tensor
        ``(B, Gy, Gx)`` position-score logits.
    offsets : torch.Tensor
        ``(B, 2, Gy, Gx)`` centre offsets in units of the stride.
    params : torch.Tensor
        ``(B, P, Gy, Gx)`` dynamic mask-head parameters.
    mask_features : torch.Tensor
        ``(B, M, Y', X')`` full-resolution mask features (``Y' >= Y``: the
        input is padded at the bottom and right to a multiple of the grid).
    dense : torch.Tensor
        ``(B, Y', X')`` dense foreground logits of a 1x1 head on the last
        decoder map (deep supervision of the backbone only).
    """

    score: torch.Tensor
    offsets: torch.Tensor
    params: torch.Tensor
    mask_features: torch.Tensor
    dense: torch.Tensor


class PPNNet(nn.Module):
    """U-Net backbone with PPN and dynamic-mask heads.

    Parameters
    ----------
    in_channels : int
        Image channels C.
    config : UNetConfig
        Backbone (same padding only).
    stride : int
        Initial grid stride s of the PPN (a power of 2; 4 in METHODS.md). The
        heads read the decoder map of this stride (or the coarsest one); a
        larger stride can be set later with :meth:`set_stride` (the features
        are then average-pooled), e.g. once the cell size is known.
    mask_channels : int
        Full-resolution mask features M (8).
    dynamic_hidden : int
        Hidden width of the dynamic heads (8).
    ppn_hidden : int
        Width of the PPN head's 3x3 convolution (64).

    Notes
    -----
    The buffers ``cell_area`` (median area of the annotated cells, 0 until
    known), ``cell_inradius`` (their median inscribed radius, the reference
    of the per-image rescaling) and ``grid_stride`` are saved with the
    weights, so prediction uses the size prior and grid the model was trained
    with.
    """

    def __init__(
        self,
        in_channels: int,
        config: UNetConfig,
        stride: int = 4,
        mask_channels: int = 8,
        dynamic_hidden: int = 8,
        ppn_hidden: int = 64,
    ) -> None:
        super().__init__()
        if config.padding != "same":
            raise ValueError("the PPN model needs a same-padding backbone")
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"the PPN stride must be a power of 2, not {stride}")
        self.config = config
        self.encoder = UNetEncoder(in_channels, config)
        self.decoder = UNetDecoder(self.encoder.widths, config)
        level = min(int(math.log2(stride)), config.depth - 1)
        self._coarse_index = config.depth - 1 - level  # decoder maps are coarsest first
        self.feature_stride = 2**level
        widths = self.encoder.widths
        base = widths[0]
        self.mask_branch = nn.Sequential(
            nn.Conv2d(base, base, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(base, mask_channels, 1),
        )
        self.dense = nn.Conv2d(base, 1, 1)
        init_he(self)
        self.ppn = PPNHead(widths[level], ppn_hidden)
        self.controller = MaskController(widths[level], mask_channels, dynamic_hidden)
        self.dynamic_hidden = dynamic_hidden
        self.register_buffer("cell_area", torch.zeros(()))
        self.register_buffer("cell_inradius", torch.zeros(()))
        self.register_buffer("grid_stride", torch.tensor(stride, dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # model files written before ``cell_inradius`` existed: 0 = unknown
        # (prediction then keeps every image at its own scale, as it did)
        state_dict.setdefault(prefix + "cell_inradius", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def stride(self) -> int:
        """Grid stride s of the PPN in pixels."""
        return int(self.grid_stride)

    def set_stride(self, stride: int) -> None:
        """Change the grid stride (a power of 2, at least the feature stride).

        Parameters
        ----------
        stride : int
            New stride in pixels.
        """
        if stride < self.feature_stride or stride & (stride - 1):
            raise ValueError(
                f"the PPN stride must be a power of 2 of at least {self.feature_stride}, "
                f"not {stride}"
            )
        self.grid_stride.fill_(stride)

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this (pooling factor and grid stride)."""
        return max(2**self.config.depth, self.stride)

    def forward(self, x: torch.Tensor) -> PPNOutput:
        """Raw outputs for images ``(B, C, Y, X)`` (see :class:`PPNOutput`)."""
        m = self.multiple
        py, px = (-x.shape[-2]) % m, (-x.shape[-1]) % m
        if py or px:
            mode = "reflect" if min(x.shape[-2:]) > max(py, px) else "replicate"
            x = F.pad(x, (0, px, 0, py), mode=mode)
        maps = self.decoder(self.encoder(x))
        coarse = maps[self._coarse_index]
        pool = self.stride // self.feature_stride
        if pool > 1:
            coarse = F.avg_pool2d(coarse, pool)
        ppn = self.ppn(coarse)
        return PPNOutput(
            score=ppn[:, 0],
            offsets=ppn[:, 1:3],
            params=self.controller(coarse),
            mask_features=self.mask_branch(maps[-1]),
            dense=self.dense(maps[-1])[:, 0],
        )

    def instance_logits(
        self,
        out: PPNOutput,
        batch_index: torch.Tensor,
        centres: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        radius: float,
        sigma: float,
        kappa: float = 1.0,
    ) -> torch.Tensor:
        """Mask logits with the Gaussian size prior inside each proposal's window.

        ``z~_k(p) = z_k(p) - kappa |p - c_k|^2 / (2 sigma^2)``, where ``z_k`` is
        the proposal's dynamic head applied to the mask features and the
        relative coordinates ``(p - c_k) / radius``.

        Parameters
        ----------
        out : PPNOutput
            Forward outputs.
        batch_index : torch.Tensor
            ``(K,)`` int64 image of each proposal.
        centres : torch.Tensor
            ``(K, 2)`` float centres in pixels.
        ys, xs : torch.Tensor
            ``(K, W)`` int64 window rows and columns (pixels outside the
            image read the nearest edge pixel; callers mask them).
        radius : float
            Typical cell radius (unit of the relative coordinates).
        sigma : float
            Standard deviation of the size prior in pixels.
        kappa : float
            Strength of the prior.

        Returns
        -------
        torch.Tensor
            ``(K, W, W)`` logits.
        """
        k, w = ys.shape
        features = out.mask_features
        h_max, w_max = features.shape[-2] - 1, features.shape[-1] - 1
        rows = ys.clamp(0, h_max)[:, :, None]
        cols = xs.clamp(0, w_max)[:, None, :]
        windows = features.permute(0, 2, 3, 1)[batch_index.view(k, 1, 1), rows, cols]
        dy = (ys.float() - centres[:, :1]) / radius  # (K, W)
        dx = (xs.float() - centres[:, 1:]) / radius
        rel = torch.stack(torch.broadcast_tensors(dy[:, :, None], dx[:, None, :]), dim=-1).to(
            windows.dtype
        )
        inputs = torch.cat([windows, rel], dim=-1).reshape(k, w * w, features.shape[1] + 2)
        inputs = inputs.transpose(1, 2)
        grid = out.params.shape[-2:]
        stride = self.stride
        cy = torch.div(centres[:, 0].detach(), stride, rounding_mode="floor").long()
        cx = torch.div(centres[:, 1].detach(), stride, rounding_mode="floor").long()
        params = out.params[batch_index, :, cy.clamp(0, grid[0] - 1), cx.clamp(0, grid[1] - 1)]
        logits = dynamic_mask_logits(inputs, params, self.dynamic_hidden).view(k, w, w)
        d2 = (dy[:, :, None] ** 2 + dx[:, None, :] ** 2) * radius**2
        return logits - kappa * d2 / (2.0 * sigma**2)
