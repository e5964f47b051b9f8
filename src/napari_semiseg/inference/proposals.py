"""Position proposals: anchors, decoding, non-maximum suppression and window pasting.

Pure tensor/array functions shared by the PPN-auxnet method's training step,
its ``predict`` and its tiled instance segmentation (METHODS.md section 6).

Coordinates are pixel indices ``(y, x)``: pixel ``(i, j)`` has its centre at
``(i, j)``. The anchor of grid cell ``(i, j)`` at stride ``s`` is the centre of
the ``s x s`` block it covers, ``(s i + (s - 1) / 2, s j + (s - 1) / 2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.ppn import anchor_grid


def decode_centres(offsets: torch.Tensor, stride: int) -> torch.Tensor:
    """Cell centres ``c = a + s o`` from offsets in units of the stride.

    Parameters
    ----------
    offsets : torch.Tensor
        ``(B, 2, Gy, Gx)`` offsets ``(dy, dx)``.
    stride : int
        Grid stride s.

    Returns
    -------
    torch.Tensor
        ``(B, 2, Gy, Gx)`` centres in pixels.
    """
    anchors = anchor_grid(tuple(offsets.shape[-2:]), stride, offsets.device)
    return anchors[None] + stride * offsets.float()


def merge_close(centres: np.ndarray, scores: np.ndarray, min_distance: float) -> np.ndarray:
    """Greedy non-maximum suppression of centres closer than ``min_distance``.

    Parameters
    ----------
    centres : numpy.ndarray
        ``(N, 2)`` pixel coordinates.
    scores : numpy.ndarray
        ``(N,)`` scores; the higher one of a close pair survives.
    min_distance : float
        Centres closer than this are merged.

    Returns
    -------
    numpy.ndarray
        Indices of the kept centres, highest score first.

    Examples
    --------
    >>> merge_close(np.array([[0, 0], [0, 1], [0, 9]]), np.array([0.6, 0.9, 0.7]), 3)
    array([1, 2])
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if order.size == 0 or min_distance <= 0:
        return order
    points = np.asarray(centres, dtype=np.float64)[order]
    suppressed = np.zeros(order.size, bool)
    keep = []
    limit = min_distance**2
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(order[i])
        d2 = ((points[i + 1 :] - points[i]) ** 2).sum(1)
        suppressed[i + 1 :] |= d2 < limit
    return np.asarray(keep, dtype=np.int64)


@dataclass
class Proposals:
    """Proposals of one image.

    Parameters
    ----------
    centres : torch.Tensor
        ``(N, 2)`` decoded centres in pixels.
    scores : torch.Tensor
        ``(N,)`` position scores in (0, 1).
    anchors : torch.Tensor
        ``(N, 2)`` anchors that fired (for offset vectors).
    """

    centres: torch.Tensor
    scores: torch.Tensor
    anchors: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@torch.no_grad()
def find_proposals(
    score_logits: torch.Tensor,
    offsets: torch.Tensor,
    stride: int,
    threshold: float = 0.5,
    min_distance: float = 0.0,
    max_proposals: int | None = None,
    peaks_only: bool = False,
    bounds: tuple[int, int] | None = None,
) -> Proposals:
    """Proposals from the score map: decoded centres above a threshold, merged.

    By default every anchor whose score exceeds the threshold casts a vote at
    its decoded centre ``a + s o`` and votes closer than ``min_distance`` are
    merged greedily by score (the clustering of point votes of the original
    PPN). Unlike 3x3 peaks of the score, this separates touching cells whose
    scores form one plateau, because each anchor points to its own cell.

    Parameters
    ----------
    score_logits : torch.Tensor
        ``(Gy, Gx)`` position-score logits.
    offsets : torch.Tensor
        ``(2, Gy, Gx)`` offsets in units of the stride.
    stride : int
        Grid stride.
    threshold : float
        Minimal score (probability).
    min_distance : float
        Decoded centres closer than this are merged (the higher score wins).
    max_proposals : int, optional
        Keep at most this many, highest scores first.
    peaks_only : bool
        Use only the 3x3 local maxima of the score (METHODS.md section 6).
    bounds : tuple of int, optional
        ``(Y, X)``: drop centres whose nearest pixel lies outside the image
        before merging.

    Returns
    -------
    Proposals
        Sorted by decreasing score.
    """
    scores = torch.sigmoid(score_logits.float())
    keep = scores > threshold
    if peaks_only:
        keep &= scores >= F.max_pool2d(scores[None, None], 3, stride=1, padding=1)[0, 0]
    values = scores[keep]
    anchors = anchor_grid(tuple(scores.shape), stride, scores.device)[:, keep].T
    centres = anchors + stride * offsets.float()[:, keep].T
    if bounds is not None:
        pixel = torch.round(centres)
        inside = (pixel[:, 0] >= 0) & (pixel[:, 0] < bounds[0])
        inside &= (pixel[:, 1] >= 0) & (pixel[:, 1] < bounds[1])
        values, anchors, centres = values[inside], anchors[inside], centres[inside]
    order = torch.from_numpy(
        merge_close(centres.cpu().numpy(), values.cpu().numpy(), min_distance)
    ).to(scores.device)
    if max_proposals is not None:
        order = order[:max_proposals]
    return Proposals(centres[order], values[order], anchors[order])


def window_coordinates(
    centres: torch.Tensor, radius: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel coordinates of the square window of each proposal.

    Parameters
    ----------
    centres : torch.Tensor
        ``(K, 2)`` float centres.
    radius : int
        Window radius R; windows are ``W = 2 R + 1`` pixels wide, centred on
        the pixel nearest to each centre.

    Returns
    -------
    origin : torch.Tensor
        ``(K, 2)`` int64 top-left pixel of each window.
    ys, xs : torch.Tensor
        ``(K, W)`` int64 row and column indices.
    """
    origin = torch.round(centres.detach()).long() - radius
    steps = torch.arange(2 * radius + 1, device=centres.device)
    return origin, origin[:, :1] + steps, origin[:, 1:] + steps


def window_radius(sigma: float, n_sigmas: float) -> int:
    """Radius in pixels of the window ``n_sigmas * sigma`` (at least 2).

    Parameters
    ----------
    sigma : float
        Standard deviation of the size prior in pixels.
    n_sigmas : float
        Window half-width in units of sigma (3 in METHODS.md).

    Returns
    -------
    int
    """
    return max(math.ceil(n_sigmas * sigma), 2)


def paste_windows(
    values: torch.Tensor,
    batch_index: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    shape: tuple[int, int, int],
    reduce: str,
    fill: float = 0.0,
) -> torch.Tensor:
    """Combine per-proposal windows into per-image maps (differentiable).

    Parameters
    ----------
    values : torch.Tensor
        ``(K, W, W)`` window values.
    batch_index : torch.Tensor
        ``(K,)`` image of each proposal.
    ys, xs : torch.Tensor
        ``(K, W)`` pixel rows and columns of the windows (from
        :func:`window_coordinates`); pixels outside the image are dropped.
    shape : tuple of int
        ``(B, Y, X)`` output shape.
    reduce : {"amax", "sum"}
        Maximum or sum over the proposals covering a pixel.
    fill : float
        Value of pixels no window covers (and the floor of ``amax``).

    Returns
    -------
    torch.Tensor
        ``(B, Y, X)``.
    """
    b, h, w = shape
    size = b * h * w
    if values.numel() == 0:
        return values.new_full(shape, fill)
    k = values.shape[0]
    inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    flat = batch_index.view(k, 1, 1) * (h * w) + ys.clamp(0, h - 1)[:, :, None] * w
    flat = flat + xs.clamp(0, w - 1)[:, None, :]
    flat = torch.where(inside, flat, torch.full_like(flat, size))  # outside -> spare slot
    out = values.new_full((size + 1,), fill)
    if reduce == "sum":
        out = out.index_add(0, flat.reshape(-1), values.reshape(-1))
    else:
        out = out.scatter_reduce(
            0, flat.reshape(-1), values.reshape(-1), "amax", include_self=True
        )
    return out[:size].view(shape)
