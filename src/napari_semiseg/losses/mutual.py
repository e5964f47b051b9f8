"""Mutual-learning losses between two networks: transfer, borders, agreement (METHODS.md 6).

Used by the PPN-auxnet method: Sobel borders of soft masks, the
confidence-weighted BCE that transfers the auxiliary network's semantics to
the main model, and the instance-level agreement and overlap penalties
against over-segmentation. The linear soft-label loss (S7) lives in
:mod:`._functional`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._functional import binary_cross_entropy, confidence_weight, masked_mean

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_border(masks: torch.Tensor) -> torch.Tensor:
    """Border strength ``min(1, |Sobel(m)| / 4)`` of soft masks (S12).

    The factor 1/4 maps a sharp 0 -> 1 step to 1. Edges are replicated, so a
    mask that fills the whole array has no border at the array's edge.

    Parameters
    ----------
    masks : torch.Tensor
        ``(N, Y, X)`` values in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(N, Y, X)`` in [0, 1].

    Examples
    --------
    >>> m = torch.zeros(1, 3, 4); m[:, :, 2:] = 1
    >>> [round(v, 3) for v in sobel_border(m)[0, 1].tolist()]
    [0.0, 1.0, 1.0, 0.0]
    """
    kernel_x = _SOBEL_X.to(masks.device, masks.dtype)
    kernels = torch.stack([kernel_x, kernel_x.T])[:, None]
    padded = F.pad(masks[:, None], (1, 1, 1, 1), mode="replicate")
    grad = F.conv2d(padded, kernels)
    magnitude = torch.sqrt((grad**2).sum(1) + 1e-12) / 4.0
    return magnitude.clamp(max=1.0)


def inner_border(masks: torch.Tensor) -> torch.Tensor:
    """Sobel border restricted to the inside of each mask: ``m * sobel_border(m)``.

    The Sobel filter marks both sides of an edge; the 3-class targets mark
    only the cell's own outermost pixels. Weighting by ``m`` keeps the inner
    side so soft borders of instance masks match those targets.

    Parameters
    ----------
    masks : torch.Tensor
        ``(N, Y, X)`` soft masks in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(N, Y, X)`` in [0, 1].

    Examples
    --------
    >>> m = torch.zeros(1, 3, 4); m[:, :, 2:] = 1
    >>> [round(v, 3) for v in inner_border(m)[0, 1].tolist()]
    [0.0, 0.0, 1.0, 0.0]
    """
    return masks * sobel_border(masks)


def confident_bce(
    s: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None, gamma: float = 1.0
) -> torch.Tensor:
    """BCE of ``s`` against soft targets ``q`` weighted by their confidence ``|2q - 1|**gamma``.

    ``mean_P w(q) BCE(s; q)`` (the mean is over the pixels of ``mask``).

    The aux -> main transfer of METHODS.md 6: confident auxiliary predictions
    pull hard, uncertain ones (near 0.5) barely at all. ``q`` is detached.

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
    s = s.float().clamp(1e-6, 1.0 - 1e-6)
    loss = -(q * torch.log(s) + (1.0 - q) * torch.log(1.0 - s))
    # averaged over the pixels, not the weights: an uncertain teacher pulls weakly overall
    return masked_mean(confidence_weight(q, gamma) * loss, mask)


def agreement_loss(
    mask_sum: torch.Tensor, semantic: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared gap between the sum of instance masks and a semantic target.

    ``mean_p (sum_k m_k(p) - sg[a(p)])**2``: gaps (sum < a) and double
    coverage (sum > a) are both penalised.

    Parameters
    ----------
    mask_sum : torch.Tensor
        ``(B, Y, X)`` sum of the instance probabilities covering each pixel.
    semantic : torch.Tensor
        ``(B, Y, X)`` foreground target in [0, 1] (detached).
    mask : torch.Tensor, optional
        ``(B, Y, X)`` pixels that count.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    return masked_mean((mask_sum.float() - semantic.detach().float()) ** 2, mask)


def overlap_loss(
    mask_sum: torch.Tensor, mask_square_sum: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Pairwise overlap of instance masks ``mean_p sum_{k<l} m_k m_l``.

    Computed without pairs as ``((sum m)^2 - sum m^2) / 2``.

    Parameters
    ----------
    mask_sum : torch.Tensor
        ``(B, Y, X)`` sum of instance probabilities per pixel.
    mask_square_sum : torch.Tensor
        ``(B, Y, X)`` sum of their squares.
    mask : torch.Tensor, optional
        ``(B, Y, X)`` pixels that count.

    Returns
    -------
    torch.Tensor
        Scalar, 0 when no pixel is covered twice.

    Examples
    --------
    >>> s = torch.tensor([[[1.5]]]); s2 = torch.tensor([[[1.25]]])  # masks 1.0 and 0.5
    >>> float(overlap_loss(s, s2))
    0.5
    """
    pairs = 0.5 * (mask_sum.float() ** 2 - mask_square_sum.float())
    return masked_mean(pairs.clamp_min(0.0), mask)


__all__ = [
    "agreement_loss",
    "binary_cross_entropy",
    "confident_bce",
    "inner_border",
    "overlap_loss",
    "sobel_border",
]
