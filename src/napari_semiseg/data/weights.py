"""The U-Net loss weight map (Ronneberger et al. 2015, METHODS.md S2).

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))``

- ``w_c`` balances the class frequencies over the *known* pixels
  (``w_c(c) ∝ 1 / freq_K(c)``, normalised so that its mean over K is 1);
- ``d1`` and ``d2`` are the distances to the nearest and second-nearest
  annotated cell, computed for background pixels only;
- the weight is 0 on unknown pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .annotations import IGNORE, N_CLASSES


def class_balance(target: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Per-class weights inversely proportional to their frequency on known pixels.

    Parameters
    ----------
    target : numpy.ndarray
        ``(Y, X)`` class ids, :data:`IGNORE` for unknown pixels.
    n_classes : int
        Number of classes.

    Returns
    -------
    numpy.ndarray
        ``(n_classes,)`` float64 weights whose mean over the known pixels is 1;
        absent classes get 0.

    Examples
    --------
    >>> class_balance(np.array([[0, 0, 0, 1]]), 2)
    array([0.66666667, 2.        ])
    """
    known = target[target != IGNORE]
    counts = np.bincount(known.ravel(), minlength=n_classes)[:n_classes].astype(np.float64)
    weights = np.zeros(n_classes)
    present = counts > 0
    weights[present] = 1.0 / counts[present]
    total = (weights * counts).sum()
    if total > 0:
        weights *= counts.sum() / total
    return weights


def border_distances(labels: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest cell, within ``margin`` of each cell.

    Each cell's distance transform is computed in a window around its bounding
    box grown by ``margin``; farther pixels keep ``inf``. This is exact where
    it matters (the weight term vanishes beyond a few sigma) and costs time
    proportional to the cells' size, not the image's.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.
    margin : float
        Window growth in pixels.

    Returns
    -------
    d1, d2 : numpy.ndarray
        ``(Y, X)`` float32 distances; ``inf`` where fewer cells are near.
    """
    d1 = np.full(labels.shape, np.inf, dtype=np.float32)
    d2 = np.full(labels.shape, np.inf, dtype=np.float32)
    grow = int(np.ceil(margin))
    for idx, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        window = tuple(
            slice(max(s.start - grow, 0), min(s.stop + grow, n))
            for s, n in zip(box, labels.shape, strict=True)
        )
        dist = ndi.distance_transform_edt(labels[window] != idx).astype(np.float32)
        a, b = d1[window], d2[window]
        d2[window] = np.minimum(b, np.maximum(a, dist))
        d1[window] = np.minimum(a, dist)
    return d1, d2


def unet_weight_map(
    labels: np.ndarray,
    target: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    n_classes: int = N_CLASSES,
) -> np.ndarray:
    """Compute the U-Net weight map for a sparsely annotated image.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids of the annotated cells.
    target : numpy.ndarray
        ``(Y, X)`` class ids with :data:`IGNORE` on unknown pixels.
    w0 : float
        Weight of the separation term (10 in the paper).
    sigma : float
        Width of the separation term in pixels (5 in the paper).
    n_classes : int
        Number of classes in ``target``.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` float32; 0 on unknown pixels.
    """
    known = target != IGNORE
    balance = class_balance(target, n_classes)
    weights = np.zeros(labels.shape, dtype=np.float32)
    weights[known] = balance[target[known]]
    if w0 > 0 and labels.max() > 0:
        d1, d2 = border_distances(labels, margin=4.0 * sigma)
        separation = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
        background = known & (labels == 0)
        weights[background] += np.nan_to_num(separation[background], nan=0.0)
    return weights
