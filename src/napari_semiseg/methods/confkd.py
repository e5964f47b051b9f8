"""ConfKD: mixed supervision with confidence maximisation (METHODS.md section 4).

Liu, Desrosiers, Ben Ayed, Dolz, MedIA 2022 (arXiv 2109.10902).

One shared encoder, two decoders. The *strong* branch learns with weighted
CE + Dice on exhaustively known regions (:func:`~napari_semiseg.losses.exhaustive_mask`:
pixels covered by a fully known window, i.e. the exhaustive rectangles with
their cells); the *weak* branch learns with partial CE (plus Dice, since our
annotations are whole cells rather than the paper's few pixels) on every
annotated pixel. On unknown pixels (of annotated and unlabelled patches alike) the weak
branch follows the strong one through ``KL(sg[p_strong] || p_weak)`` and
minimises its own Shannon entropy; both terms are ramped in (S8). The weak
branch predicts, following the paper's finding that the student ends up
better than its teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.annotations import IGNORE
from ..losses import entropy_map, kl_map, masked_mean, soft_dice, weighted_cross_entropy
from ..losses.pseudo import class_disagreement, exhaustive_mask
from ..models import UNetConfig
from ..models.dual import DualDecoderUNet
from .base import Batch, Method, MethodConfig, StepOutput
from .supervised import crop_like


def _ramp(progress: float, length: float) -> float:
    # imported here: the engine package imports the method registry
    from ..engine.schedules import sigmoid_rampup

    return sigmoid_rampup(progress, length)


@dataclass(frozen=True)
class ConfKDConfig(MethodConfig):
    """Hyper-parameters of ConfKD (METHODS.md section 4 starting values)."""

    kl_weight: float = field(
        default=1.0,
        metadata={"min": 0.0, "max": 10.0, "step": 0.1, "help": "λ_KL: strong → weak KL"},
    )
    entropy_weight: float = field(
        default=0.1,
        metadata={"min": 0.0, "max": 2.0, "step": 0.01, "help": "λ_H: weak-branch entropy"},
    )
    rampup_fraction: float = field(
        default=0.2,
        metadata={
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
            "help": "share of the run over which KL and entropy ramp in",
        },
    )
    strong_radius: int = field(
        default=8,
        metadata={
            "min": 0,
            "max": 64,
            "step": 1,
            "help": "half side (px) of the fully known window defining strong regions",
        },
    )
    weak_dice_weight: float = field(
        default=1.0,
        metadata={
            "min": 0.0,
            "max": 10.0,
            "step": 0.1,
            "help": "Dice term of the weak branch on annotated pixels (0 = the paper's pCE only)",
        },
    )
    use_weight_map: bool = field(
        default=True, metadata={"help": "weight the cross-entropies by the U-Net weight map"}
    )


class ConfKD(Method):
    """Shared encoder, strong and weak decoders, KL + entropy on unknown pixels."""

    name = "confkd"
    label = "ConfKD (semi-supervised)"
    description = (
        "One encoder, two decoders: a strong branch trained on exhaustively annotated regions "
        "teaches a weak branch (trained on every annotation) on unannotated pixels through a "
        "KL term, while the weak branch minimises its entropy there. The weak branch predicts."
    )
    Config = ConfKDConfig
    uses_unlabelled = True

    def __init__(self, config, model_config: UNetConfig, in_channels: int, device="cpu"):
        super().__init__(config, model_config, in_channels, device)
        self.model = DualDecoderUNet(in_channels, self.n_classes, model_config)

    def networks(self) -> dict[str, nn.Module]:
        """The dual-decoder network."""
        return {"model": self.model}

    def training_step(self, batch: Batch, step: int) -> StepOutput:
        """Strong CE + Dice on strong regions, weak pCE, ramped KL and entropy on unknowns."""
        x = torch.cat([batch["image"], batch["unlabelled_image"]])
        strong, weak = (t.float() for t in self.model.forward_both(x))  # float32 under autocast
        target = crop_like(torch.cat([batch["target"], batch["unlabelled_target"]]), weak)
        weight = None
        if self.config.use_weight_map:
            weight = crop_like(torch.cat([batch["weight"], batch["unlabelled_weight"]]), weak)
        known = (target != IGNORE).float()
        region = exhaustive_mask(known, self.config.strong_radius)
        strong_target = torch.where(region > 0, target, torch.full_like(target, IGNORE))
        strong_loss = weighted_cross_entropy(strong, strong_target, weight) + soft_dice(
            torch.softmax(strong.float(), 1), strong_target
        )
        weak_loss = weighted_cross_entropy(weak, target, weight)
        if self.config.weak_dice_weight > 0:
            weak_dice = soft_dice(torch.softmax(weak.float(), 1), target)
            weak_loss = weak_loss + self.config.weak_dice_weight * weak_dice
        unknown = 1.0 - known
        kl = masked_mean(kl_map(strong, weak), unknown)
        entropy = masked_mean(entropy_map(torch.softmax(weak.float(), 1)), unknown)
        ramp = _ramp(self.progress, self.config.rampup_fraction)
        loss = strong_loss + weak_loss
        loss = loss + ramp * (self.config.kl_weight * kl + self.config.entropy_weight * entropy)
        self.batch_previews = {"strong_region": region[0].detach().cpu().numpy()}
        terms = {
            "strong": float(strong_loss.detach()),
            "weak": float(weak_loss.detach()),
            "kl": float(kl.detach()),
            "entropy": float(entropy.detach()),
            "ramp": ramp,
        }
        return StepOutput(loss, terms)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the weak (bottom) branch."""
        return self.model(x)

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The strong branch's argmax and confidence ``(B, Y, X)``: what the weak one is taught."""
        confidence, labels = torch.softmax(self.model.forward_strong(x).float(), 1).max(1)
        return labels, confidence

    def preview(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Weak-branch maps, strong pseudo-labels, entropy, KL and branch disagreement.

        Parameters
        ----------
        x : torch.Tensor
            ``(1, C, Y, X)`` image.

        Returns
        -------
        dict of str to numpy.ndarray
            ``probabilities`` ``(K, Y, X)`` of the weak branch; ``(Y, X)`` maps
            ``foreground``, ``strong_foreground``, ``pseudo_labels`` (strong
            argmax), ``confidence``, ``entropy`` (weak, normalised to [0, 1]),
            ``kl`` and ``disagreement`` (total variation between branches).
        """
        strong_logits, weak_logits = self.model.forward_both(x)
        strong = torch.softmax(strong_logits.float(), 1)
        weak = torch.softmax(weak_logits.float(), 1)
        confidence, labels = strong.max(1)
        maps = {
            "probabilities": weak[0],
            "foreground": 1.0 - weak[0, 0],
            "strong_foreground": 1.0 - strong[0, 0],
            "confidence": confidence[0],
            "entropy": entropy_map(weak, normalized=True)[0],
            "kl": kl_map(strong_logits, weak_logits)[0],
            "disagreement": class_disagreement(strong, weak)[0],
        }
        out = {key: value.cpu().numpy() for key, value in maps.items()}
        out["pseudo_labels"] = labels[0].cpu().numpy().astype(np.uint8)
        return out
