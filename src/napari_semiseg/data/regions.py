"""Exhaustively annotated square regions: the few-label task of the benchmarks.

A biologist who annotates "every cell inside this rectangle" gives: the full
masks of the cells that touch the rectangle, and the knowledge that every
other pixel of the rectangle is background. These helpers build that
annotation from a complete ground truth, for the bundled sample, tests and
``benchmarks/fewlabels.py``.
"""

from __future__ import annotations

import numpy as np


def region_annotation(
    truth: np.ndarray, top: int, left: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse annotation of one exhaustively labelled square.

    Parameters
    ----------
    truth : numpy.ndarray
        ``(Y, X)`` complete instance ids.
    top, left : int
        Corner of the square.
    size : int
        Side of the square.

    Returns
    -------
    labels : numpy.ndarray
        ``(Y, X)`` int32: the cells touching the square, whole.
    known : numpy.ndarray
        ``(Y, X)`` bool: the square plus those cells.
    """
    square = np.zeros(truth.shape, bool)
    square[top : top + size, left : left + size] = True
    ids = np.unique(truth[square])
    ids = ids[ids > 0]
    labels = np.where(np.isin(truth, ids), truth, 0).astype(np.int32)
    return labels, square | (labels > 0)


def find_region(truth: np.ndarray, n_cells: int = 10) -> tuple[int, int, int]:
    """Smallest centred-first square holding about ``n_cells`` cells.

    The square grows from the image centre (moving away from sparse areas)
    until it touches at least ``n_cells`` cells, so the result is
    deterministic and does not depend on any model.

    Parameters
    ----------
    truth : numpy.ndarray
        ``(Y, X)`` complete instance ids.
    n_cells : int
        Wanted number of annotated cells.

    Returns
    -------
    top, left, size : int
    """
    h, w = truth.shape
    step = max(4, min(h, w) // 64)
    for size in range(16, min(h, w) + 1, step):
        best = None
        for top in range(0, h - size + 1, max(step, size // 4)):
            for left in range(0, w - size + 1, max(step, size // 4)):
                ids = np.unique(truth[top : top + size, left : left + size])
                n = int((ids > 0).sum())
                distance = abs(top + size / 2 - h / 2) + abs(left + size / 2 - w / 2)
                if n >= n_cells and (best is None or (n, distance) < best[0]):
                    best = ((n, distance), top, left)
        if best is not None:
            return best[1], best[2], size
    return 0, 0, min(h, w)
