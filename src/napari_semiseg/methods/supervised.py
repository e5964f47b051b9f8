"""Supervised U-Net baseline (Ronneberger et al. 2015; METHODS.md section 2).

Weighted cross-entropy with the U-Net weight map plus masked Dice on the known
pixels of annotated patches; unknown pixels get weight 0. The unlabelled pool
is ignored.

With ``depth_head`` the network has a fourth output channel that regresses each
pixel's relative depth in its cell (:func:`~napari_semiseg.data.annotations.relative_depth`:
1 at a cell's centre, near 0 on its edge and outside cells). The classes keep
their thin-border meaning; the post-processing takes its seeds from the depth
map, which falls between touching cells even where the border class is unsure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.annotations import BORDER, INTERIOR, relative_depth
from ..inference.postprocess import PostprocessConfig
from ..losses import binary_cross_entropy, supervised_loss
from ..models import UNet, UNetConfig
from .base import Batch, Method, MethodConfig, StepOutput, dim_contrast_field, setting


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


def depth_target(labels: torch.Tensor) -> torch.Tensor:
    """Relative cell depth of a batch of instance maps.

    Parameters
    ----------
    labels : torch.Tensor
        ``(B, Y, X)`` instance ids.

    Returns
    -------
    torch.Tensor
        ``(B, Y, X)`` float32 in [0, 1] on the device of ``labels`` (0 outside
        cells, 1 at each cell's deepest pixel).
    """
    arrays = labels.detach().cpu().numpy()
    depth = np.stack([relative_depth(lab) for lab in arrays])
    return torch.from_numpy(depth).to(labels.device)


def depth_head_field(default: bool = False) -> Any:
    """Dataclass field ``depth_head`` for the configs of methods with :class:`DepthOutput`."""
    return field(
        default=default,
        metadata={
            "help": "also learn each pixel's depth in its cell; touching cells the "
            "classes join are split where the depth falls between them"
        },
    )


def depth_weight_field() -> Any:
    """Dataclass field ``depth_weight`` (weight of the depth term)."""
    return field(default=1.0, metadata=setting(0.0, 10.0, 0.1, "depth term weight"))


def depth_prominence_field(default: float = PostprocessConfig.depth_prominence) -> Any:
    """Dataclass field ``depth_prominence`` (when the depth map splits a seed)."""
    return field(
        default=default,
        metadata=setting(
            0.0,
            1.0,
            0.05,
            "split a cell where its predicted depth has two peaks this far above "
            "the saddle between them (0 = never split; the depth still guides the outline)",
        ),
    )


class DepthOutput:
    """Mixin for U-Net methods: an optional relative-depth output after the classes.

    With ``config.depth_head`` the network has ``n_classes + 1`` output channels;
    the last is the logit of each pixel's relative depth in its cell
    (:func:`~napari_semiseg.data.annotations.relative_depth`), learnt with a
    binary cross-entropy against the soft target on known cell pixels. Put it
    before :class:`Method` in the bases.
    """

    @property
    def n_outputs(self) -> int:
        """The classes, plus the depth map with ``depth_head``."""
        return self.n_classes + int(self._depth_head)

    @property
    def _depth_head(self) -> bool:
        # subclasses may bring a config without the field
        return bool(getattr(self.config, "depth_head", False))

    def postprocess_settings(self) -> dict[str, Any]:
        """``depth_prominence`` from the settings (with ``depth_head``)."""
        if not self._depth_head:
            return {}
        default = PostprocessConfig.depth_prominence
        return {"depth_prominence": float(getattr(self.config, "depth_prominence", default))}

    def output_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes; with ``depth_head`` the sigmoid depth after them."""
        logits = logits.float()
        probs = torch.softmax(logits[:, : self.n_classes], 1)
        if not self._depth_head:
            return probs
        return torch.cat([probs, torch.sigmoid(logits[:, self.n_classes :])], 1)

    def depth_term(
        self,
        outputs: torch.Tensor,
        depth: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        """Depth loss on the known cell pixels.

        Parameters
        ----------
        outputs : torch.Tensor
            ``(B, n_outputs, Y, X)`` network output.
        depth : torch.Tensor
            ``(B, Y, X)`` target relative depth (:func:`depth_target`), cropped like
            ``outputs``.
        target : torch.Tensor
            ``(B, Y, X)`` class target (255 = unknown), cropped like ``outputs``;
            its cell classes (interior, border) select the pixels.
        weight : torch.Tensor, optional
            ``(B, Y, X)`` U-Net weight map.

        Returns
        -------
        torch.Tensor
            Scalar (0 when the batch holds no known cell pixel).
        """
        # cell pixels only: where a pixel is background is the classes' job
        cells = ((target == INTERIOR) | (target == BORDER)).float()
        mask = cells * weight if weight is not None else cells
        return binary_cross_entropy(torch.sigmoid(outputs[:, self.n_classes].float()), depth, mask)

    def preview(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """The default maps, plus the predicted ``cell_depth`` with ``depth_head``."""
        out = super().preview(x)
        if self._depth_head:
            out["cell_depth"] = out["probabilities"][self.n_classes].copy()
        return out


@dataclass(frozen=True)
class SupervisedConfig(MethodConfig):
    """Hyper-parameters of the supervised U-Net.

    Parameters
    ----------
    dice_weight : float
        Weight of the masked Dice term next to the weighted cross-entropy.
    use_weight_map : bool
        Weight the cross-entropy by the U-Net weight map (else class balance only).
    depth_head : bool
        Also learn each pixel's relative depth in its cell (a fourth output);
        touching cells the classes join are split where it falls between them.
    depth_weight : float
        Weight of the depth term.
    depth_prominence : float
        Split a seed where its predicted depth has two peaks this far above the
        saddle between them (0 = never split).
    dim_contrast : float
        On fluorescence-like images also train on patches dimmed down to this
        contrast (:meth:`.base.Method.augment_for_data`; 1 = off).
    """

    dice_weight: float = field(
        default=1.0, metadata={"min": 0.0, "max": 10.0, "step": 0.1, "help": "Dice term weight"}
    )
    use_weight_map: bool = field(
        default=True, metadata={"help": "weight the loss by the U-Net border weight map"}
    )
    # on by default since 2026-12-07: with code version 5 it gained CTC +0.060 and
    # DSB fluorescence +0.012 AP50 and cost no set more than EM's 0.014 (three seeds
    # each, docs/benchmarks.md)
    depth_head: bool = depth_head_field(True)
    depth_weight: float = depth_weight_field()
    depth_prominence: float = depth_prominence_field()
    # on (0.2) since 2026-12-07, fourteenth session, where the annotated cells are all of
    # about one brightness (Method.augment_for_data): DSB fluorescence 0.628 -> 0.685 AP50,
    # every seed; off by that rule on CTC, where forcing it cost 0.973 -> 0.946 (three
    # seeds each, one day, docs/benchmarks.md)
    dim_contrast: float = dim_contrast_field(0.2)


class SupervisedUNet(DepthOutput, Method):
    """U-Net trained on the annotated pixels only."""

    name = "unet"
    label = "U-Net (supervised)"
    description = (
        "U-Net with the paper's border weight map, weighted cross-entropy and Dice on the "
        "annotated pixels only. Fast baseline; ignores unlabelled images."
    )
    Config = SupervisedConfig
    # model files from before the depth head and the dimmed patches were on by default
    former_defaults: ClassVar[dict[str, Any]] = {"depth_head": False, "dim_contrast": 1.0}

    def __init__(self, config, model_config: UNetConfig, in_channels: int, device="cpu"):
        super().__init__(config, model_config, in_channels, device)
        self.model = UNet(in_channels, self.n_outputs, model_config)

    def networks(self) -> dict[str, nn.Module]:
        """The single U-Net."""
        return {"model": self.model}

    def training_step(self, batch: Batch, step: int) -> StepOutput:
        """Weighted CE + Dice on the known pixels of the annotated patches."""
        outputs = self.model(batch["image"])
        logits = outputs[:, : self.n_classes]
        weight = batch["weight"] if self.config.use_weight_map else None
        weight = crop_like(weight, logits) if weight is not None else None
        loss, terms = supervised_loss(
            logits, crop_like(batch["target"], logits), weight, self.config.dice_weight
        )
        if self._depth_head:
            depth = self.depth_term(
                outputs,
                crop_like(depth_target(batch["labels"]), logits),
                crop_like(batch["target"], logits),
                weight,
            )
            loss = loss + self.config.depth_weight * depth
            terms["depth"] = float(depth.detach())
        return StepOutput(loss, terms)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the U-Net (with ``depth_head``, the depth logit after the classes)."""
        return self.model(x)
