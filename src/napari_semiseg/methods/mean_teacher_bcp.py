"""Mean teacher with bidirectional copy-paste (BCP; Bai et al., CVPR 2023; METHODS.md section 3).

Phase 1 (the first ``pretrain_fraction`` of the run): copy-paste between
annotated patches, ``(CE + Dice) / 2`` on the known pixels. Phase 2: an EMA
teacher labels the unknown pixels; an annotated patch and an unlabelled patch
are mixed both ways with one rectangle ``R`` of 2/3 of the side per step
(labelled inside ``R`` / unlabelled outside, and the reverse), targets and
weights with the same mask. Annotations count with weight 1 (U-Net weight map),
teacher pseudo-labels with weight α. Unknown pixels of annotated patches are
unlabelled pixels: they get the teacher's pseudo-label with weight α, never
"background". Pseudo-labels lose cell regions smaller than a fraction of the
median annotated cell (S13) instead of BCP's largest-connected-component step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.annotations import IGNORE, INTERIOR
from ..data.mixing import box_mask, copy_paste_box, mix
from ..losses.pseudo import (
    class_disagreement,
    confident_pseudo_labels,
    median_instance_area,
    pseudo_target,
    region_loss,
    remove_small_regions,
)
from ..models import ModelEMA, UNet, UNetConfig
from .base import Batch, Method, MethodConfig, StepOutput, looks_like_fluorescence, setting
from .supervised import (
    DepthOutput,
    crop_like,
    depth_head_field,
    depth_prominence_field,
    depth_target,
    depth_weight_field,
)

#: ``strong_view`` settings: decide from the images, always, never.
STRONG_VIEW_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class MeanTeacherConfig(MethodConfig):
    """Hyper-parameters of mean teacher + BCP (defaults from the BCP code)."""

    pretrain_fraction: float = field(
        default=0.2,
        metadata=setting(
            0.0, 0.9, 0.05, "share of the run spent on copy-paste pre-training on annotations only"
        ),
    )
    ema_decay: float = field(
        default=0.99, metadata=setting(0.9, 0.9999, 0.001, "teacher EMA decay λ", (0.0, 1.0))
    )
    unlabelled_weight: float = field(
        default=0.5, metadata=setting(0.0, 2.0, 0.05, "weight α of teacher pseudo-labels")
    )
    mask_ratio: float = field(
        default=2.0 / 3.0, metadata=setting(0.1, 1.0, 0.05, "side of the pasted rectangle / patch")
    )
    confidence_threshold: float = field(
        default=0.0,
        metadata=setting(
            0.0, 0.99, 0.05, "ignore pseudo-labels less confident than this (0 = keep all, as BCP)"
        ),
    )
    min_area_fraction: float = field(
        default=0.2,
        metadata=setting(
            0.0,
            1.0,
            0.05,
            "pseudo-label cells smaller than this "
            "fraction of the median annotated cell become background",
        ),
    )
    pseudo_label_unknown: bool = field(
        default=True,
        metadata={
            "help": "unknown pixels of annotated patches get teacher "
            "pseudo-labels (weight α) instead of weight 0"
        },
    )
    strong_view: str = field(
        default="auto",
        metadata={
            "choices": STRONG_VIEW_CHOICES,
            "help": "the student sees each mixed patch with a lower contrast than the "
            "teacher: 'auto' = on for dark-background images whose cells are brighter "
            "(fluorescence), off otherwise (brightfield, H&E, EM)",
        },
    )
    student_min_contrast: float = field(
        default=0.2,
        metadata=setting(
            0.05,
            1.0,
            0.05,
            "strong view: the student's contrast is scaled by a random factor in "
            "[this, 1], the teacher labels the unscaled patch (1 = no change)",
        ),
    )
    contrast_about_median: bool = field(
        default=False,
        metadata={
            "help": "strong view: scale the contrast about each patch's median (its "
            "background level, bright in brightfield) instead of about 0"
        },
    )
    use_weight_map: bool = field(
        default=True, metadata={"help": "weight annotated pixels by the U-Net weight map"}
    )
    predict_with_teacher: bool = field(
        default=True, metadata={"help": "predict with the EMA teacher (else the student)"}
    )
    # on by default, never splitting: at or above plain mean teacher on every set
    # of benchmarks/fewlabels.py (docs/benchmarks.md), except where most pixels look
    # like nothing annotated (brightfield), where settings_for_data leaves it out
    depth_head: bool = depth_head_field(True)
    depth_head_on_unseen: bool = field(
        default=False,
        metadata={
            "help": "keep the depth head when most pixels of the images look like neither "
            "the marked background nor the cells (there it made the teacher call them "
            "cells: off by default for such data)"
        },
    )
    depth_weight: float = depth_weight_field()
    depth_prominence: float = depth_prominence_field(0.0)


def interior_share(classes: torch.Tensor) -> float | None:
    """Share of the labelled pixels that are cell interior.

    Parameters
    ----------
    classes : torch.Tensor
        ``(B, Y, X)`` class maps (targets or pseudo-labels), :data:`IGNORE`
        where there is no label.

    Returns
    -------
    float or None
        None when no pixel is labelled.

    Examples
    --------
    >>> interior_share(torch.tensor([[0, 1, 1, 2, 255]]))
    0.5
    """
    labelled = classes != IGNORE
    if not bool(labelled.any()):
        return None
    return float((classes[labelled] == INTERIOR).float().mean())


def _pad_like(labels: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Centre ``(B, y, x)`` labels in ``(B, Y, X)`` filled with IGNORE (valid padding)."""
    dy, dx = shape[-2] - labels.shape[-2], shape[-1] - labels.shape[-1]
    if dy == 0 and dx == 0:
        return labels
    return F.pad(labels, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2), value=IGNORE)


class MeanTeacherBCP(DepthOutput, Method):
    """EMA teacher whose pseudo-labels are mixed with annotations by copy-paste."""

    name = "mean-teacher"
    label = "Mean teacher + BCP (semi-supervised)"
    description = (
        "Bidirectional copy-paste: an EMA teacher labels unannotated pixels; annotated and "
        "unannotated patches are pasted into each other and the student learns from the mix. "
        "Starts with a short copy-paste pre-training on the annotations. Also learns each "
        "cell's depth, which guides the outlines of touching cells."
    )
    Config = MeanTeacherConfig
    uses_unlabelled = True
    # model files from before the depth head was on by default
    former_defaults: ClassVar[dict[str, Any]] = {"depth_head": False, "depth_prominence": 0.3}

    def __init__(self, config, model_config: UNetConfig, in_channels: int, device="cpu"):
        super().__init__(config, model_config, in_channels, device)
        self.model = UNet(in_channels, self.n_outputs, model_config)
        self.teacher_ema = ModelEMA(self.model, config.ema_decay)
        self._area = 0.0
        self._self_training: bool | None = None
        #: Whether the student gets the strong view (``strong_view``; auto: from the data).
        self.uses_strong_view = config.strong_view == "on"

    #: No depth head where most pixels look like nothing annotated
    #: (``depth_head_on_unseen`` keeps it): there its "deep inside a cell" (far
    #: from any edge) fits the uniform unseen background too. On the DSB
    #: brightfield set, whose empty background is brighter than any marked
    #: background pixel, the teacher left pre-training calling 28-47 % of the
    #: unlabelled pixels cell interior on two seeds of four, and self-training
    #: locked it in (AP50 0.07-0.12); without the depth head, none of four did
    #: (docs/benchmarks.md).
    off_where_unseen = ("depth_head",)

    def on_training_data(self, summary: dict[str, Any]) -> None:
        """Decide ``strong_view = 'auto'`` from the images' intensity levels."""
        if self.config.strong_view == "auto":
            self.uses_strong_view = looks_like_fluorescence(summary)

    def networks(self) -> dict[str, nn.Module]:
        """Student and EMA teacher (the teacher stays in eval mode: no dropout, averaged BN)."""
        return {"model": self.model, "teacher_ema": self.teacher_ema}

    def _update_area(self, labels: torch.Tensor) -> None:
        area = median_instance_area(labels)
        if area > 0:
            self._area = area if self._area == 0 else 0.9 * self._area + 0.1 * area

    def _pseudo(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher pseudo-labels ``(B, Y, X)`` (255 = none) and confidence for images."""
        probs = self.output_probabilities(self.teacher_ema(x))[:, : self.n_classes]
        labels, confidence = confident_pseudo_labels(probs, self.config.confidence_threshold)
        labels = remove_small_regions(labels, self.config.min_area_fraction * self._area)
        return _pad_like(labels, x.shape), confidence

    def training_step(self, batch: Batch, step: int) -> StepOutput:
        """Copy-paste pre-training, then bidirectional copy-paste self-training."""
        self._update_area(batch["labels"])
        if self._self_training is None:  # a resumed run skips pre-training
            self._self_training = int(self.teacher_ema.updates) > 0
        if not self._self_training and self.progress < self.config.pretrain_fraction:
            return self._pretrain_step(batch)
        self._self_training = True
        return self._bcp_step(batch)

    def _weight(self, batch: Batch, prefix: str = "") -> torch.Tensor | None:
        return batch[prefix + "weight"] if self.config.use_weight_map else None

    def _pretrain_step(self, batch: Batch) -> StepOutput:
        image, target = batch["image"], batch["target"]
        mask = box_mask(image.shape[-2:], self._box(image), image.device)
        rolled = [t.roll(1, 0) for t in (image, target)]
        x, gt = mix(image, rolled[0], mask), mix(target, rolled[1], mask)
        weight = self._weight(batch)
        weight = None if weight is None else mix(weight, weight.roll(1, 0), mask)
        outputs = self.model(x)
        logits = outputs[:, : self.n_classes]
        loss = region_loss(logits, crop_like(gt, logits), self._crop(weight, logits))
        terms = {"supervised": float(loss.detach()), "pseudo": 0.0}
        if self._depth_head:
            depth = depth_target(batch["labels"])
            depth = mix(depth, depth.roll(1, 0), mask)
            loss = loss + self._depth_loss(outputs, depth, gt, weight, terms)
        self._record(x, gt, torch.full_like(gt, IGNORE))
        return StepOutput(loss, terms)

    def _depth_loss(
        self,
        outputs: torch.Tensor,
        depth: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        terms: dict[str, float],
    ) -> torch.Tensor:
        """Weighted depth term on the annotated cell pixels (logged in ``terms``)."""
        term = self.depth_term(
            outputs,
            crop_like(depth, outputs),
            crop_like(target, outputs),
            self._crop(weight, outputs),
        )
        terms["depth"] = float(term.detach())
        return self.config.depth_weight * term

    def _bcp_step(self, batch: Batch) -> StepOutput:
        n = min(len(batch["image"]), len(batch["unlabelled_image"]))
        half = (n + 1) // 2
        a, b = slice(0, half), slice(n - half, n)  # pairs for X_A and X_B
        source = {k: batch[k][:n] for k in ("image", "target")}
        unlab = {k: batch["unlabelled_" + k][:n] for k in ("image", "target")}
        if self._depth_head:  # depth of each cell in its own patch, mixed like the targets
            source["depth"] = depth_target(batch["labels"][:n])
            unlab["depth"] = depth_target(batch["unlabelled_labels"][:n])
        with torch.no_grad():
            if self.config.pseudo_label_unknown:
                pseudo, _ = self._pseudo(torch.cat([source["image"], unlab["image"]]))
                source["pseudo"] = pseudo_target(source["target"], pseudo[:n])
                unlab["pseudo"] = pseudo_target(unlab["target"], pseudo[n:])
            else:
                unlab["pseudo"] = pseudo_target(unlab["target"], self._pseudo(unlab["image"])[0])
                source["pseudo"] = torch.full_like(source["target"], IGNORE)
        weights = (self._weight(batch), self._weight(batch, "unlabelled_"))
        if weights[0] is not None:
            source["weight"], unlab["weight"] = weights[0][:n], weights[1][:n]
        mask = box_mask(source["image"].shape[-2:], self._box(source["image"]), self.device)
        # X_A: annotated inside R, unlabelled outside; X_B: the reverse.
        mixed = {
            key: torch.cat(
                [
                    mix(source[key][a], unlab[key][a], mask),
                    mix(unlab[key][b], source[key][b], mask),
                ]
            )
            for key in source
        }
        student_input = self._strong_view(mixed["image"])
        outputs = self.model(student_input)
        logits = outputs[:, : self.n_classes]
        supervised = region_loss(
            logits, crop_like(mixed["target"], logits), self._crop(mixed.get("weight"), logits)
        )
        pseudo = region_loss(logits, crop_like(mixed["pseudo"], logits))
        # Weighted mean of the two region losses: the same scale as pre-training, so the
        # loss curve stays comparable across the switch (Adam ignores the constant).
        alpha = self.config.unlabelled_weight
        loss = (supervised + alpha * pseudo) / (1.0 + alpha)
        self._record(student_input, mixed["target"], mixed["pseudo"])
        terms = {
            "supervised": float(supervised.detach()),
            "pseudo": float(pseudo.detach()),
            # watch: a teacher that calls far more of the unlabelled pixels cell
            # interior than the annotation has sees cells everywhere
            "pseudo_cells": float(interior_share(unlab["pseudo"]) or 0.0),
        }
        if self._depth_head:
            depth = self._depth_loss(
                outputs, mixed["depth"], mixed["target"], mixed.get("weight"), terms
            )
            loss = loss + depth
        return StepOutput(loss, terms)

    def _strong_view(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, Y, X)`` patches with contrast scaled by log-uniform factors in [c, 1].

        About 0, or about each patch's per-channel median (``contrast_about_median``).

        The teacher's pseudo-labels come from the unscaled patches, so the student
        learns from every unlabelled cell what a dim one looks like (FixMatch's
        weak/strong asymmetry, with contrast as the strong change).
        """
        low = self.config.student_min_contrast
        if not self.uses_strong_view or low >= 1.0:
            return x
        u = torch.rand(len(x), 1, 1, 1, device=x.device, dtype=x.dtype)
        factor = torch.exp(u * float(np.log(low)))
        if not self.config.contrast_about_median:
            return x * factor
        centre = x.flatten(2).median(-1).values[..., None, None]  # (B, C, 1, 1)
        return centre + factor * (x - centre)

    @staticmethod
    def _crop(weight: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
        return None if weight is None else crop_like(weight, logits)

    def _box(self, image: torch.Tensor) -> tuple[int, int, int, int]:
        self._last_box = copy_paste_box(tuple(image.shape[-2:]), self.config.mask_ratio)
        return self._last_box

    def _record(self, x: torch.Tensor, target: torch.Tensor, pseudo: torch.Tensor) -> None:
        """Keep the first mixed patch, its target, weights and R for the live view."""
        known = target[0] != IGNORE
        combined = torch.where(known, target[0], pseudo[0])
        weight = known.float() + self.config.unlabelled_weight * (pseudo[0] != IGNORE).float()
        self.batch_previews = {
            "mixed_image": x[0].detach().float().cpu().numpy(),
            "mixed_target": combined.cpu().numpy().astype(np.uint8),
            "mixed_weight": weight.cpu().numpy(),
            "mix_boxes": np.asarray([self._last_box], dtype=np.float32),
        }

    def after_optimizer_step(self, step: int) -> None:
        """Move the teacher towards the student (EMA, λ = ``ema_decay``)."""
        self.teacher_ema.update(self.model)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the teacher (default) or of the student."""
        return self.teacher_ema(x) if self.config.predict_with_teacher else self.model(x)

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cleaned teacher pseudo-labels and their confidence, ``(B, Y, X)`` each."""
        labels, confidence = self._pseudo(x)
        return crop_like(labels, confidence), confidence

    def preview(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Default maps plus the student-teacher disagreement ``(Y, X)``."""
        out = super().preview(x)
        student = self.output_probabilities(self.model(x))[:, : self.n_classes]
        teacher = self.output_probabilities(self.teacher_ema(x))[:, : self.n_classes]
        out["disagreement"] = class_disagreement(student, teacher)[0].cpu().numpy()
        return out
