"""Ground-truth tensors and losses of the Position Proposal Network (METHODS.md 6).

The PPN predicts, on a grid of stride ``s``, a position-score logit and the
offset from each anchor to the nearest cell centre. Its targets come from the
centroids of the annotated cells: anchors within ``r_pos`` of a centroid are
positives, known anchors farther away are negatives, the rest is ignored (a
CenterNet-style Gaussian soft target was tried and learnt slower on the DSB
few-label task). Scores use the class-balanced BCE of DeepLearnPhysics'
``ppnplus.py`` (positives weighted by the negative fraction and vice versa);
offsets a smooth-L1 regression on the positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.ppn import anchor_grid

_EPS = 1e-8


@dataclass
class Centroids:
    """Annotated cells of one patch.

    Parameters
    ----------
    ids : torch.Tensor
        ``(N,)`` int64 instance ids (> 0).
    centres : torch.Tensor
        ``(N, 2)`` float centroids ``(y, x)`` of the visible pixels.
    areas : torch.Tensor
        ``(N,)`` visible areas in pixels.
    cut : torch.Tensor
        ``(N,)`` bool: the cell touches the patch edge (its centroid is
        that of the visible part only).
    """

    ids: torch.Tensor
    centres: torch.Tensor
    areas: torch.Tensor
    cut: torch.Tensor


def instance_centroids(labels: torch.Tensor) -> Centroids:
    """Centroids, areas and edge contact of the instances of one label patch.

    Parameters
    ----------
    labels : torch.Tensor
        ``(Y, X)`` int64 instance ids, 0 = no annotated cell.

    Returns
    -------
    Centroids

    Examples
    --------
    >>> lab = torch.zeros(6, 6, dtype=torch.long); lab[1:4, 1:4] = 7; lab[4:, 5] = 2
    >>> c = instance_centroids(lab)
    >>> c.ids.tolist(), c.centres.tolist(), c.cut.tolist()
    ([2, 7], [[4.5, 5.0], [2.0, 2.0]], [True, False])
    """
    flat = labels.reshape(-1)
    h, w = labels.shape
    device = labels.device
    n = int(flat.max()) + 1 if flat.numel() else 1
    counts = torch.bincount(flat, minlength=n)
    ys = torch.arange(h, device=device, dtype=torch.float64).repeat_interleave(w)
    xs = torch.arange(w, device=device, dtype=torch.float64).repeat(h)
    sums = torch.stack(
        [torch.bincount(flat, ys, minlength=n), torch.bincount(flat, xs, minlength=n)], 1
    )
    cell = counts > 0
    cell[0] = False
    ids = torch.nonzero(cell)[:, 0]
    centres = (sums[ids] / counts[ids, None]).float()
    edge = torch.cat([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    cut = torch.zeros(n, dtype=torch.bool, device=device)
    cut[edge] = True
    return Centroids(ids, centres, counts[ids].float(), cut[ids])


@dataclass
class PPNTargets:
    """Ground-truth tensors of the PPN for a batch.

    Parameters
    ----------
    score : torch.Tensor
        ``(B, Gy, Gx)`` float, 1 = positive anchor, 0 = negative.
    valid : torch.Tensor
        ``(B, Gy, Gx)`` bool, False where the anchor is ignored.
    positive : torch.Tensor
        ``(B, Gy, Gx)`` bool, anchors within ``r_pos`` of a complete cell's
        centroid.
    regress : torch.Tensor
        ``(B, Gy, Gx)`` bool, anchors whose offsets are regressed: positives
        and every anchor inside a complete annotated cell.
    offsets : torch.Tensor
        ``(B, 2, Gy, Gx)`` offsets ``(mu - a) / s`` to the centroid of the cell
        the anchor lies in, else of the nearest complete cell (meaningful
        where ``regress``).
    """

    score: torch.Tensor
    valid: torch.Tensor
    positive: torch.Tensor
    regress: torch.Tensor
    offsets: torch.Tensor


def ppn_targets(
    labels: torch.Tensor,
    known: torch.Tensor,
    grid: tuple[int, int],
    stride: int,
    radius_pos: float,
    centroids: list[Centroids] | None = None,
    whole_cells: bool = False,
) -> PPNTargets:
    """Score and offset targets of the PPN from annotated instances.

    An anchor is positive when a *complete* annotated cell's centroid lies
    within ``radius_pos``; negative when its pixel is known and no centroid is
    that close; ignored otherwise, and also when its pixel belongs to a cell
    cut by the patch edge (whose true centre is unknown). Offsets are
    regressed on the positives and, with ``whole_cells``, on every anchor
    inside a complete cell (towards that cell's centroid), so that every
    anchor of a cell votes for its centre, as in the PPN's point clustering.

    Parameters
    ----------
    labels : torch.Tensor
        ``(B, Y, X)`` int64 instance ids.
    known : torch.Tensor
        ``(B, Y, X)`` known-pixel mask (bool or float).
    grid : tuple of int
        ``(Gy, Gx)`` PPN grid, ``Gy * stride >= Y``.
    stride : int
        Grid stride s.
    radius_pos : float
        Positive radius in pixels (``max(s, 0.3 r)`` in METHODS.md).
    centroids : list of Centroids, optional
        Precomputed :func:`instance_centroids` per image.
    whole_cells : bool
        Also regress offsets on all anchors inside complete cells.

    Returns
    -------
    PPNTargets
    """
    b, h, w = labels.shape
    device = labels.device
    anchors = anchor_grid(grid, stride, device).reshape(2, -1).T  # (G, 2)
    ay = (torch.arange(grid[0], device=device) * stride + stride // 2)[:, None].expand(grid)
    ax = (torch.arange(grid[1], device=device) * stride + stride // 2)[None, :].expand(grid)
    inside = ((ay < h) & (ax < w)).reshape(-1)
    ay, ax = ay.clamp(max=h - 1).reshape(-1), ax.clamp(max=w - 1).reshape(-1)
    score = torch.zeros(b, anchors.shape[0], device=device)
    valid = torch.zeros(b, anchors.shape[0], dtype=torch.bool, device=device)
    positive = torch.zeros(b, anchors.shape[0], dtype=torch.bool, device=device)
    regress = torch.zeros(b, anchors.shape[0], dtype=torch.bool, device=device)
    offsets = torch.zeros(b, anchors.shape[0], 2, device=device)
    for i in range(b):
        cells = centroids[i] if centroids is not None else instance_centroids(labels[i])
        at_anchor = labels[i, ay, ax]
        on_cut = torch.isin(at_anchor, cells.ids[cells.cut])
        negative = (known[i, ay, ax] > 0) & ~on_cut & inside
        complete = cells.centres[~cells.cut]
        if complete.shape[0]:
            distance, nearest = torch.cdist(anchors, complete).min(1)
            complete_ids = cells.ids[~cells.cut]  # sorted
            slot = torch.searchsorted(complete_ids, at_anchor).clamp(max=len(complete_ids) - 1)
            in_cell = (complete_ids[slot] == at_anchor) & (at_anchor > 0) & inside
            nearest = torch.where(in_cell, slot, nearest)
            positive[i] = distance <= radius_pos
            regress[i] = positive[i] | (in_cell & whole_cells)
            offsets[i] = (complete[nearest] - anchors) / stride
            score[i] = positive[i].float()
            valid[i] = positive[i] | negative
        else:
            valid[i] = negative
    return PPNTargets(
        score.view(b, *grid),
        valid.view(b, *grid),
        positive.view(b, *grid),
        regress.view(b, *grid),
        offsets.permute(0, 2, 1).reshape(b, 2, *grid),
    )


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy over valid entries (ppnplus.py).

    With ``w`` the positive fraction among valid entries, positives are
    weighted ``1 - w`` and negatives ``w``, so both classes count equally;
    when one class is absent every valid entry has weight 1. Soft targets
    ``t`` count as ``t`` positive and ``1 - t`` negative.

    Parameters
    ----------
    logits : torch.Tensor
        Score logits, any shape.
    target : torch.Tensor
        Targets in [0, 1], same shape.
    valid : torch.Tensor
        Bool mask of the entries that count, same shape.

    Returns
    -------
    torch.Tensor
        Scalar (0 when nothing is valid).
    """
    valid = valid.float()
    target = target.float()
    n = valid.sum()
    w = (target * valid).sum() / (n + _EPS)
    if 0 < float(w) < 1:
        weight = valid * (target * (1.0 - w) + (1.0 - target) * w)
    else:
        weight = valid
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return (bce * weight).sum() / (weight.sum() + _EPS)


def offset_loss(offsets: torch.Tensor, target: PPNTargets) -> torch.Tensor:
    """Smooth-L1 offset regression averaged over the anchors of ``target.regress``.

    Parameters
    ----------
    offsets : torch.Tensor
        ``(B, 2, Gy, Gx)`` predicted offsets (units of the stride).
    target : PPNTargets
        From :func:`ppn_targets`.

    Returns
    -------
    torch.Tensor
        Scalar (0 without such anchors).
    """
    positive = target.regress
    loss = F.smooth_l1_loss(offsets.float(), target.offsets, reduction="none").sum(1)
    return (loss * positive).sum() / (positive.sum() + _EPS)
