"""Pure loss functions on tensors (METHODS.md S1-S7).

Conventions: ``logits`` are raw network outputs ``(B, K, Y, X)``; ``probs``
are softmax/sigmoid probabilities of the same layout; ``target`` holds class
ids ``(B, Y, X)`` with :data:`IGNORE` (255) on unknown pixels; ``mask`` is a
float ``(B, Y, X)`` in [0, 1] selecting the pixels that count. Every function
returns a scalar and stays finite when the mask is empty.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.annotations import IGNORE

_EPS = 1e-8


def known_mask(target: torch.Tensor) -> torch.Tensor:
    """Float mask ``(B, Y, X)`` of pixels whose target is not :data:`IGNORE`."""
    return (target != IGNORE).float()


def safe_target(target: torch.Tensor) -> torch.Tensor:
    """Target ``(B, Y, X)`` int64 with unknown pixels mapped to class 0 (mask them!)."""
    return torch.where(target == IGNORE, torch.zeros_like(target), target).long()


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted, masked cross-entropy (S1).

    ``sum_p w K log p_g / sum_p w K``: unknown pixels and zero weights drop out.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, K, Y, X)``.
    target : torch.Tensor
        ``(B, Y, X)`` class ids, 255 = unknown.
    weight : torch.Tensor, optional
        ``(B, Y, X)`` per-pixel weights (the U-Net weight map); 1 when None.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    mask = known_mask(target)
    if weight is not None:
        mask = mask * weight
    ce = F.cross_entropy(logits.float(), safe_target(target), reduction="none")
    return (ce * mask).sum() / (mask.sum() + _EPS)


def soft_dice(
    probs: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    squared: bool = True,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Masked soft Dice loss averaged over classes (S3).

    Parameters
    ----------
    probs : torch.Tensor
        ``(B, K, Y, X)`` probabilities.
    target : torch.Tensor
        ``(B, Y, X)`` class ids (255 = unknown, masked out) or one-hot /
        soft targets ``(B, K, Y, X)``.
    mask : torch.Tensor, optional
        ``(B, Y, X)`` pixel weights, multiplied with the known mask.
    squared : bool
        Squared denominator (BCP ``DiceLoss``) or linear (``mask_DiceLoss``).
    eps : float
        Smoothing.

    Returns
    -------
    torch.Tensor
        Scalar in [0, 1]; classes absent from both prediction and target
        under the mask contribute 0.
    """
    probs = probs.float()
    if target.dim() == probs.dim():
        onehot = target.float()
        region = torch.ones_like(probs[:, 0])
    else:
        region = known_mask(target)
        onehot = F.one_hot(safe_target(target), probs.shape[1]).permute(0, 3, 1, 2).float()
    if mask is not None:
        region = region * mask
    region = region.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (region * probs * onehot).sum(dims)
    if squared:
        denominator = (region * probs**2).sum(dims) + (region * onehot**2).sum(dims)
    else:
        denominator = (region * (probs + onehot)).sum(dims)
    dice = (2.0 * intersection + eps) / (denominator + eps)
    return 1.0 - dice.mean()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Masked multi-class focal loss (S4): ``-(1 - p_t)**gamma log p_t``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, K, Y, X)``.
    target : torch.Tensor
        ``(B, Y, X)`` class ids, 255 = unknown.
    mask : torch.Tensor, optional
        ``(B, Y, X)`` extra pixel weights.
    gamma : float
        Focusing parameter.

    Returns
    -------
    torch.Tensor
        Scalar, averaged over the weighted pixels.
    """
    region = known_mask(target)
    if mask is not None:
        region = region * mask
    log_p = F.log_softmax(logits.float(), dim=1)
    log_pt = log_p.gather(1, safe_target(target).unsqueeze(1)).squeeze(1)
    loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
    return (loss * region).sum() / (region.sum() + _EPS)


def entropy_map(probs: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """Shannon entropy per pixel (S5).

    Parameters
    ----------
    probs : torch.Tensor
        ``(B, K, Y, X)`` probabilities.
    normalized : bool
        Divide by ``log K`` so the result lies in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(B, Y, X)``.
    """
    h = -(probs * torch.log(probs.clamp_min(_EPS))).sum(1)
    return h / math.log(probs.shape[1]) if normalized else h


def kl_map(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Per-pixel ``KL(q || p)`` with ``q`` from the teacher, scaled by ``tau**2`` (S6).

    The teacher side is detached: gradients reach the student only.

    Parameters
    ----------
    teacher_logits, student_logits : torch.Tensor
        ``(B, K, Y, X)``.
    tau : float
        Temperature.

    Returns
    -------
    torch.Tensor
        ``(B, Y, X)``, non-negative.
    """
    log_q = F.log_softmax(teacher_logits.detach().float() / tau, dim=1)
    log_p = F.log_softmax(student_logits.float() / tau, dim=1)
    return (log_q.exp() * (log_q - log_p)).sum(1) * tau**2


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values`` ``(B, Y, X)`` over ``mask`` (all pixels when None)."""
    if mask is None:
        return values.mean()
    return (values * mask).sum() / (mask.sum() + _EPS)


def confidence_weight(q: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Confidence weight ``|2q - 1|**gamma`` of a soft binary target (S7)."""
    return (2.0 * q - 1.0).abs() ** gamma


def linear_soft_loss(
    s: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None, gamma: float = 1.0
) -> torch.Tensor:
    """Linear soft-label loss with confidence weighting (S7).

    ``mean_P ω(q) [q (1 − s) + (1 − q) s]``: the expected disagreement of two
    Bernoulli variables, linear in ``s`` and bounded, so robust to noisy soft
    targets. ``q`` is detached.

    Parameters
    ----------
    s : torch.Tensor
        Predicted probabilities, any shape.
    q : torch.Tensor
        Soft targets in [0, 1], same shape.
    mask : torch.Tensor, optional
        Pixels to average over, same shape.
    gamma : float
        Exponent of the confidence weight.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    q = q.detach().float()
    s = s.float()
    loss = confidence_weight(q, gamma) * (q * (1.0 - s) + (1.0 - q) * s)
    return masked_mean(loss, mask)


def binary_cross_entropy(
    s: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Masked BCE of probabilities ``s`` against (soft) targets ``q`` (both any shape)."""
    s = s.float().clamp(1e-6, 1.0 - 1e-6)
    q = q.detach().float()
    loss = -(q * torch.log(s) + (1.0 - q) * torch.log(1.0 - s))
    return masked_mean(loss, mask)


def supervised_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    dice_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The U-Net training loss: weighted CE (S1 + S2) plus masked Dice (S3).

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, K, Y, X)``.
    target : torch.Tensor
        ``(B, Y, X)`` class ids, 255 = unknown.
    weight : torch.Tensor, optional
        ``(B, Y, X)`` U-Net weight map.
    dice_weight : float
        Factor of the Dice term.

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    terms : dict of str to float
        ``{"ce": ..., "dice": ...}`` for logging.
    """
    ce = weighted_cross_entropy(logits, target, weight)
    dice = soft_dice(torch.softmax(logits.float(), 1), target)
    return ce + dice_weight * dice, {"ce": float(ce.detach()), "dice": float(dice.detach())}
