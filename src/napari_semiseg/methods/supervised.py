"""Supervised U-Net baseline (Ronneberger et al. 2015; METHODS.md section 2).

Weighted cross-entropy with the U-Net weight map plus masked Dice on the known
pixels of annotated patches; unknown pixels get weight 0. The unlabelled pool
is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..losses import supervised_loss
from ..models import UNet, UNetConfig
from .base import Batch, Method, MethodConfig, StepOutput


def crop_like(tensor: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Centre-crop ``tensor`` ``(B, ..., Y, X)`` to the spatial size of ``logits``.

    Valid-padding U-Nets predict a smaller window than their input; their
    targets are cropped to match. Same-padding outputs pass through unchanged.

    Parameters
    ----------
    tensor : torch.Tensor
        ``(B, Y, X)`` or ``(B, K, Y, X)``.
    logits : torch.Tensor
        ``(B, K, Y', X')``.

    Returns
    -------
    torch.Tensor
        ``(B, [K,] Y', X')``.
    """
    dy = (tensor.shape[-2] - logits.shape[-2]) // 2
    dx = (tensor.shape[-1] - logits.shape[-1]) // 2
    if dy == 0 and dx == 0:
        return tensor
    return tensor[..., dy : dy + logits.shape[-2], dx : dx + logits.shape[-1]]


@dataclass(frozen=True)
class SupervisedConfig(MethodConfig):
    """Hyper-parameters of the supervised U-Net.

    Parameters
    ----------
    dice_weight : float
        Weight of the masked Dice term next to the weighted cross-entropy.
    use_weight_map : bool
        Weight the cross-entropy by the U-Net weight map (else class balance only).
    """

    dice_weight: float = field(
        default=1.0, metadata={"min": 0.0, "max": 10.0, "step": 0.1, "help": "Dice term weight"}
    )
    use_weight_map: bool = field(
        default=True, metadata={"help": "weight the loss by the U-Net border weight map"}
    )


class SupervisedUNet(Method):
    """U-Net trained on the annotated pixels only."""

    name = "unet"
    label = "U-Net (supervised)"
    description = (
        "U-Net with the paper's border weight map, weighted cross-entropy and Dice on the "
        "annotated pixels only. Fast baseline; ignores unlabelled images."
    )
    Config = SupervisedConfig

    def __init__(self, config, model_config: UNetConfig, in_channels: int, device="cpu"):
        super().__init__(config, model_config, in_channels, device)
        self.model = UNet(in_channels, self.n_classes, model_config)

    def networks(self) -> dict[str, nn.Module]:
        """The single U-Net."""
        return {"model": self.model}

    def training_step(self, batch: Batch, step: int) -> StepOutput:
        """Weighted CE + Dice on the known pixels of the annotated patches."""
        logits = self.model(batch["image"])
        weight = batch["weight"] if self.config.use_weight_map else None
        weight = crop_like(weight, logits) if weight is not None else None
        loss, terms = supervised_loss(
            logits, crop_like(batch["target"], logits), weight, self.config.dice_weight
        )
        return StepOutput(loss, terms)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the U-Net."""
        return self.model(x)
