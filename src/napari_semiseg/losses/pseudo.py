"""Pseudo-labels, region masks and region losses for semi-supervised methods.

Used by mean teacher + BCP, ConfKD and co-training (METHODS.md S1, S3, S13,
sections 3-5). Pseudo-labels are class maps ``(B, Y, X)`` int64 with
:data:`IGNORE` (255) where there is no usable label, the same convention as
annotated targets, so the masked losses of :mod:`._functional` apply to both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from ..data.annotations import BACKGROUND, IGNORE
from ._functional import soft_dice, weighted_cross_entropy


def confident_pseudo_labels(
    probs: torch.Tensor, threshold: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels (argmax) and their confidence, gated by a threshold.

    Parameters
    ----------
    probs : torch.Tensor
        ``(B, K, Y, X)`` probabilities.
    threshold : float
        Pixels whose largest probability is not above it get :data:`IGNORE`;
        0 keeps every pixel.

    Returns
    -------
    labels : torch.Tensor
        ``(B, Y, X)`` int64 class ids, 255 where not confident.
    confidence : torch.Tensor
        ``(B, Y, X)`` largest probability per pixel.

    Examples
    --------
    >>> p = torch.tensor([[[[0.95, 0.5]], [[0.05, 0.3]], [[0.0, 0.2]]]])
    >>> confident_pseudo_labels(p, 0.9)[0].tolist()
    [[[0, 255]]]
    """
    confidence, labels = probs.detach().max(1)
    if threshold > 0:
        labels = torch.where(confidence > threshold, labels, torch.full_like(labels, IGNORE))
    return labels.long(), confidence


def remove_small_regions(classes: torch.Tensor, min_area: float) -> torch.Tensor:
    """Turn connected cell regions smaller than ``min_area`` into background (S13).

    Replaces BCP's largest-connected-component step, which suits one organ
    per image but would keep a single cell out of many.

    Parameters
    ----------
    classes : torch.Tensor
        ``(B, Y, X)`` int64 class maps (0 background, >0 cell classes,
        255 ignored; ignored pixels are not cell pixels).
    min_area : float
        Smallest area in pixels kept; at most 1 disables the step.

    Returns
    -------
    torch.Tensor
        A cleaned copy on the same device.

    Examples
    --------
    >>> c = torch.tensor([[[1, 1, 0, 2, 0, 255]]])
    >>> remove_small_regions(c, 2).tolist()
    [[[1, 1, 0, 0, 0, 255]]]
    """
    if min_area <= 1:
        return classes.clone()
    array = classes.detach().cpu().numpy().copy()
    for plane in array:  # 4-connectivity (ndi.label's default structure)
        cells = (plane != BACKGROUND) & (plane != IGNORE)
        regions, n = ndi.label(cells)
        if n == 0:
            continue
        small = np.bincount(regions.ravel()) < min_area
        small[0] = False
        plane[small[regions]] = BACKGROUND
    return torch.from_numpy(array).to(classes.device)


def pseudo_target(target: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
    """Pseudo-labels on the unknown pixels only (annotations win).

    Parameters
    ----------
    target : torch.Tensor
        ``(B, Y, X)`` annotated classes, 255 = unknown.
    pseudo : torch.Tensor
        ``(B, Y, X)`` pseudo-labels, 255 = none.

    Returns
    -------
    torch.Tensor
        ``(B, Y, X)``: ``pseudo`` where ``target`` is unknown, 255 elsewhere.

    Examples
    --------
    >>> pseudo_target(torch.tensor([[0, 255, 255]]), torch.tensor([[1, 2, 255]])).tolist()
    [[255, 2, 255]]
    """
    return torch.where(target == IGNORE, pseudo, torch.full_like(pseudo, IGNORE))


def region_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCP's per-region segmentation loss ``(CE + Dice) / 2`` over the labelled pixels.

    Both terms are normalised over the pixels of ``target`` that are not 255
    (BCP ``mix_loss``: masked sums divided by the mask sum), so each region
    counts on its own whatever its size. Dice is the squared form (S3).

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, K, Y, X)``.
    target : torch.Tensor
        ``(B, Y, X)`` classes, 255 outside the region.
    weight : torch.Tensor, optional
        ``(B, Y, X)`` per-pixel CE weights (the U-Net weight map).

    Returns
    -------
    torch.Tensor
        Scalar; 0 (with a graph) when the region is empty.
    """
    if not bool((target != IGNORE).any()):
        return logits.float().sum() * 0.0
    ce = weighted_cross_entropy(logits, target, weight)
    dice = soft_dice(torch.softmax(logits.float(), 1), target, squared=True)
    return 0.5 * (ce + dice)


def exhaustive_mask(known: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels covered by a fully known ``(2r+1) x (2r+1)`` window (opening of K).

    ConfKD's strong branch learns from exhaustively labelled regions; in our
    data model these are the morphological opening of the known mask: the
    exhaustive rectangles with their cells stay, thin scribbles and the
    unknown-bordered rim of isolated annotations go. Pixels beyond the patch
    edge count as known (the patch edge says nothing about the annotation).

    Parameters
    ----------
    known : torch.Tensor
        ``(B, Y, X)`` float or bool known mask.
    radius : int
        Half side ``r`` of the window; 0 returns ``known``.

    Returns
    -------
    torch.Tensor
        ``(B, Y, X)`` float mask, a subset of ``known``.
    """
    known = known.float()
    if radius <= 0:
        return known
    size = 2 * radius + 1
    # max_pool pads with -inf, so beyond the edge neither erodes nor dilates.
    eroded = 1.0 - F.max_pool2d((1.0 - known)[:, None], size, 1, radius)
    return F.max_pool2d(eroded, size, 1, radius)[:, 0] * known


def median_instance_area(labels: torch.Tensor) -> float:
    """Median area in pixels of the instances in a batch of label patches.

    Parameters
    ----------
    labels : torch.Tensor
        ``(B, Y, X)`` instance ids, 0 = none; ids are per patch.

    Returns
    -------
    float
        0 when there is no instance. Cells cut by the patch edge count with
        their visible part.

    Examples
    --------
    >>> median_instance_area(torch.tensor([[[1, 1, 0, 2]], [[3, 3, 3, 0]]]))
    2.0
    """
    areas = torch.cat([torch.bincount(plane.reshape(-1).long())[1:] for plane in labels])
    areas = areas[areas > 0]
    return float(areas.float().median()) if areas.numel() else 0.0


def class_disagreement(probs_a: torch.Tensor, probs_b: torch.Tensor) -> torch.Tensor:
    """Total-variation distance ``½ Σ_c |p_a − p_b|`` between two predictions.

    Parameters
    ----------
    probs_a, probs_b : torch.Tensor
        ``(B, K, Y, X)`` probabilities.

    Returns
    -------
    torch.Tensor
        ``(B, Y, X)`` in [0, 1]: 0 where they agree, 1 where they put their
        mass on different classes.
    """
    return 0.5 * (probs_a.float() - probs_b.float()).abs().sum(1)


def certainty(probs: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Confidence weight of a soft target: ``((max_c p_c − 1/K) / (1 − 1/K))**gamma``.

    The multi-class form of S7's ``|2q − 1|**gamma`` (equal to it for K = 2):
    0 for a uniform prediction, 1 for a one-hot one. Weighting a soft loss by it
    lets confident peers pull and keeps uninformative (near-uniform) ones from
    dragging the student towards uniform predictions.

    Parameters
    ----------
    probs : torch.Tensor
        ``(B, K, Y, X)`` probabilities (detached inside).
    gamma : float
        Exponent.

    Returns
    -------
    torch.Tensor
        ``(B, Y, X)`` in [0, 1].

    Examples
    --------
    >>> certainty(torch.tensor([0.5, 0.5]).reshape(1, 2, 1, 1)).item()
    0.0
    >>> round(certainty(torch.tensor([0.9, 0.1]).reshape(1, 2, 1, 1)).item(), 6)
    0.8
    """
    k = probs.shape[1]
    top = probs.detach().float().max(1).values
    return ((top - 1.0 / k) / (1.0 - 1.0 / k)).clamp(0.0, 1.0) ** gamma
