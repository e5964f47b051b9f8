"""Co-training of weight-averaged models (Huang et al., MICCAI 2020; METHODS.md 5.1).

Paper: arXiv 2008.07149; this is its cell adaptation (METHODS.md section 5.1).

Two U-Nets with different initialisations see different views of each batch:
the second view is flipped and noisier. Each keeps a weight-averaged (EMA /
TWA) copy. Network ``k`` learns from a hard target, focal + Dice on the
annotated pixels and on the peer's confident pseudo-labels (averaged model,
max probability above 0.9) elsewhere, and from a soft target, the peer's
averaged prediction on the unknown pixels (region mask ``R = U``) through
``KL(q_peer || p_k)``, weighted per pixel by the peer's confidence (see
:func:`~napari_semiseg.losses.pseudo.certainty`). Pseudo-label terms are ramped
in (S8). The averaged copy of the first network predicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.annotations import IGNORE
from ..losses import focal_loss, kl_map, masked_mean, soft_dice
from ..losses.pseudo import certainty, class_disagreement, confident_pseudo_labels
from ..models import ModelEMA, UNet, UNetConfig
from .base import Batch, Method, MethodConfig, StepOutput, setting
from .supervised import crop_like


def _ramp(progress: float, length: float) -> float:
    # imported here: the engine package imports the method registry
    from ..engine.schedules import sigmoid_rampup

    return sigmoid_rampup(progress, length)


@dataclass(frozen=True)
class CoTrainingConfig(MethodConfig):
    """Hyper-parameters of co-training (METHODS.md section 5.1 suggested values)."""

    ema_decay: float = field(
        default=0.999,
        metadata=setting(0.9, 0.9999, 0.001, "decay of the weight-averaged copies", (0.0, 1.0)),
    )
    confidence_threshold: float = field(
        default=0.9,
        metadata=setting(0.5, 0.999, 0.01, "peer confidence for a hard pseudo-label", (0.0, 1.0)),
    )
    soft_weight: float = field(
        default=1.0, metadata=setting(0.0, 10.0, 0.1, "λ_s: weight of the soft (KL) term")
    )
    rampup_fraction: float = field(
        default=0.2,
        metadata=setting(
            0.0, 1.0, 0.05, "share of the run over which the pseudo-label terms ramp in"
        ),
    )
    focal_gamma: float = field(
        default=2.0, metadata=setting(0.0, 5.0, 0.5, "focusing parameter γ of the focal loss")
    )
    dice_weight: float = field(default=1.0, metadata=setting(0.0, 10.0, 0.1, "Dice term weight"))
    weight_soft_by_confidence: bool = field(
        default=True,
        metadata={"help": "weight the soft loss by the peer's confidence (0 where uniform)"},
    )
    view_noise: float = field(
        default=0.05, metadata=setting(0.0, 0.5, 0.01, "noise std added to the second view")
    )


class CoTraining(Method):
    """Two networks teaching each other through their weight-averaged copies."""

    name = "co-training"
    label = "Co-training (semi-supervised)"
    description = (
        "Two U-Nets, differently initialised and fed different views, learn from the "
        "annotations and from each other's weight-averaged predictions on unannotated pixels "
        "(confident hard labels + soft labels). The averaged first network predicts."
    )
    Config = CoTrainingConfig
    uses_unlabelled = True

    def __init__(self, config, model_config: UNetConfig, in_channels: int, device="cpu"):
        super().__init__(config, model_config, in_channels, device)
        # Built one after the other: each draws its own random initialisation.
        self.model_1 = UNet(in_channels, self.n_classes, model_config)
        self.model_2 = UNet(in_channels, self.n_classes, model_config)
        self.model_1_ema = ModelEMA(self.model_1, config.ema_decay)
        self.model_2_ema = ModelEMA(self.model_2, config.ema_decay)

    def networks(self) -> dict[str, nn.Module]:
        """Both networks and their weight-averaged copies (kept in eval mode)."""
        return {
            "model_1": self.model_1,
            "model_2": self.model_2,
            "model_1_ema": self.model_1_ema,
            "model_2_ema": self.model_2_ema,
        }

    def _view(self, x: torch.Tensor) -> tuple[tuple[int, ...], torch.Tensor]:
        """Second view: a random flip (shared over the batch) plus Gaussian noise."""
        dims = [(-1,), (-2,), (-2, -1)][int(torch.randint(3, (1,)))]
        return dims, torch.flip(x, dims) + self.config.view_noise * torch.randn_like(x)

    def _loss(
        self, logits: torch.Tensor, target: torch.Tensor, peer_logits: torch.Tensor, ramp: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Hard (focal + Dice) and soft (KL on unknown pixels) loss of one network."""
        target = crop_like(target, logits)
        known = target != IGNORE
        peer = torch.softmax(peer_logits.float(), 1)
        pseudo, _ = confident_pseudo_labels(peer, self.config.confidence_threshold)
        hard = torch.where(known, target, pseudo)
        weight = known.float() + ramp * (~known & (pseudo != IGNORE)).float()
        focal = focal_loss(logits, hard, weight, self.config.focal_gamma)
        dice = soft_dice(torch.softmax(logits.float(), 1), hard, weight)
        soft_map = kl_map(peer_logits, logits)
        if self.config.weight_soft_by_confidence:
            soft_map = certainty(peer) * soft_map
        soft = masked_mean(soft_map, (~known).float())
        loss = focal + self.config.dice_weight * dice + ramp * self.config.soft_weight * soft
        share = float((pseudo[~known] != IGNORE).float().mean()) if bool((~known).any()) else 0.0
        terms = {"focal": focal, "dice": dice, "soft": soft}
        return loss, {**{k: float(v.detach()) for k, v in terms.items()}, "confident": share}

    def training_step(self, batch: Batch, step: int) -> StepOutput:
        """Each network learns from the annotations and its peer's averaged model."""
        x = torch.cat([batch["image"], batch["unlabelled_image"]])
        target = torch.cat([batch["target"], batch["unlabelled_target"]])
        dims, x2 = self._view(x)
        with torch.no_grad():  # peers' averaged predictions, each on its own view
            peer_for_1 = torch.flip(self.model_2_ema(x2), dims)
            peer_for_2 = torch.flip(self.model_1_ema(x), dims)
        ramp = _ramp(self.progress, self.config.rampup_fraction)
        loss_1, terms_1 = self._loss(self.model_1(x), target, peer_for_1, ramp)
        loss_2, terms_2 = self._loss(self.model_2(x2), torch.flip(target, dims), peer_for_2, ramp)
        terms = {f"{k}_1": v for k, v in terms_1.items()}
        terms.update({f"{k}_2": v for k, v in terms_2.items()})
        self.batch_previews = {
            "view_1": x[0].detach().float().cpu().numpy(),
            "view_2": x2[0].detach().float().cpu().numpy(),
        }
        return StepOutput(loss_1 + loss_2, {**terms, "ramp": ramp})

    def after_optimizer_step(self, step: int) -> None:
        """Update both weight-averaged copies."""
        self.model_1_ema.update(self.model_1)
        self.model_2_ema.update(self.model_2)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the first network's averaged copy."""
        return self.model_1_ema(x)

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard pseudo-labels the second averaged model gives the first (255 = not confident)."""
        probs = torch.softmax(self.model_2_ema(x).float(), 1)
        return confident_pseudo_labels(probs, self.config.confidence_threshold)

    def preview(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Default maps plus ``disagreement`` ``(Y, X)`` between the two averaged models."""
        out = super().preview(x)
        p1 = torch.softmax(self.model_1_ema(x).float(), 1)
        p2 = torch.softmax(self.model_2_ema(x).float(), 1)
        out["disagreement"] = class_disagreement(p1, p2)[0].cpu().numpy()
        out["peer_foreground"] = (1.0 - p2[0, 0]).cpu().numpy()
        return out
