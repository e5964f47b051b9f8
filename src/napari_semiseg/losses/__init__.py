"""Loss functions: masked/weighted supervised losses and consistency losses."""

from ._functional import (
    binary_cross_entropy,
    confidence_weight,
    entropy_map,
    focal_loss,
    kl_map,
    linear_soft_loss,
    masked_mean,
    soft_dice,
    supervised_loss,
    weighted_cross_entropy,
)

__all__ = [
    "binary_cross_entropy",
    "confidence_weight",
    "entropy_map",
    "focal_loss",
    "kl_map",
    "linear_soft_loss",
    "masked_mean",
    "soft_dice",
    "supervised_loss",
    "weighted_cross_entropy",
]
