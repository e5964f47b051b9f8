"""U-Net with one encoder and two decoders (ConfKD's ``UNet_Mixed``, METHODS.md section 4).

The *strong* (top, teacher) decoder learns from exhaustively labelled
regions, the *weak* (bottom, student) decoder from every annotation; both share
the encoder. ``forward`` returns the weak branch, the one that predicts, so the
network drops in wherever a :class:`~napari_semiseg.models.unet.UNet` does.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import init_he
from .unet import UNet, UNetConfig, UNetDecoder


class DualDecoderUNet(UNet):
    """Shared U-Net encoder with a strong and a weak decoder.

    Parameters
    ----------
    in_channels : int
        Image channels C.
    n_classes : int
        Output channels K of each branch.
    config : UNetConfig, optional
        Architecture of the encoder and of both decoders.

    Notes
    -----
    ``forward(x)`` maps ``(B, C, Y, X)`` to the weak branch's logits
    ``(B, K, Y', X')``; :meth:`forward_both` gives ``(strong, weak)``.
    """

    def __init__(self, in_channels: int, n_classes: int, config: UNetConfig | None = None):
        super().__init__(in_channels, n_classes, config)
        self.strong_decoder = UNetDecoder(self.encoder.widths, self.config)
        self.strong_head = nn.Conv2d(self.encoder.widths[0], n_classes, 1)
        init_he(self.strong_decoder)
        init_he(self.strong_head)

    def _crop(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.config.padding == "same":
            return logits[..., : size[0], : size[1]]
        return logits

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of both branches from one encoder pass.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, Y, X)`` images.

        Returns
        -------
        strong, weak : torch.Tensor
            ``(B, K, Y', X')`` logits of the strong and the weak branch.
        """
        x, size = self.pad_input(x)
        features = self.encoder(x)
        strong = self.strong_head(self.strong_decoder(features)[-1])
        weak = self.head(self.decoder(features)[-1])
        return self._crop(strong, size), self._crop(weak, size)

    def forward_strong(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, Y', X')`` of the strong branch only."""
        x, size = self.pad_input(x)
        return self._crop(self.strong_head(self.strong_decoder(self.encoder(x))[-1]), size)
