"""From class probabilities to instance masks (METHODS.md S13).

Seeds are the connected components of the confident cell interior; a seeded
watershed on the interior probability grows them over the foreground
(interior + border), at most a few pixels beyond the interior (the border
class is a thin ring); foreground that no seed reaches is dropped; objects
smaller than a fraction of the median annotated cell area are removed and
holes are filled. No largest-connected-component step: that
suits organs, not cells.

When the network was trained with the class-balanced loss, each object gets a
score: its mean foreground probability after undoing the class-balance prior
(see :func:`object_scores`). Objects scoring below ``min_object_score`` are
dropped: they are where the network has no evidence and only the up-weighted
cell classes speak (large empty areas unlike the annotated background). The
outlines themselves come from the probabilities as trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed

from ..data.annotations import BACKGROUND, INTERIOR


@dataclass(frozen=True)
class PostprocessConfig:
    """Post-processing settings.

    Parameters
    ----------
    foreground_threshold : float
        A pixel is a cell when ``1 - p_background`` exceeds this.
    interior_threshold : float
        Seeds are where ``p_interior`` exceeds this.
    min_size_fraction : float
        Objects smaller than this fraction of the median annotated cell area are
        removed (0.2 in METHODS.md).
    min_seed_fraction : float
        Seeds smaller than this fraction of the median area are dropped (they
        would over-split cells).
    max_growth : float
        How far (pixels) a seed may grow into border/foreground pixels. The
        border class is a thin ring around the interior, so real cells never
        need more; large "foreground" regions without interior (a network
        unsure about background far from any annotation) are not turned into
        giant objects. 0 = unlimited.
    keep_orphans : bool
        Keep foreground regions that contain no interior seed as objects.
    fill_holes : bool
        Fill holes inside objects.
    min_object_score : float
        Objects whose prior-corrected mean foreground probability (see
        :func:`object_scores`) is below this are removed; only applies when
        prior weights are given. 0 = keep all.
    """

    foreground_threshold: float = 0.5
    interior_threshold: float = 0.5
    min_size_fraction: float = 0.2
    min_seed_fraction: float = 0.05
    max_growth: float = 4.0
    keep_orphans: bool = False
    fill_holes: bool = True
    min_object_score: float = 0.5


def remove_small_objects(labels: np.ndarray, min_size: float) -> np.ndarray:
    """Set objects with fewer than ``min_size`` pixels to 0 (in place).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.
    min_size : float
        Minimal area in pixels.

    Returns
    -------
    numpy.ndarray
        The same array.

    Examples
    --------
    >>> lab = np.array([[1, 1, 0, 2]])
    >>> remove_small_objects(lab, 2)
    array([[1, 1, 0, 0]])
    """
    if min_size <= 1 or labels.max() == 0:
        return labels
    counts = np.bincount(labels.ravel())
    small = counts < min_size
    small[0] = False
    labels[small[labels]] = 0
    return labels


def fill_object_holes(labels: np.ndarray) -> np.ndarray:
    """Fill holes that lie inside a single object with that object's id.

    Background enclosed by several touching objects is not a hole of any one
    of them and stays background.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` with holes filled.

    Examples
    --------
    >>> lab = np.ones((5, 5), int); lab[2, 2] = 0
    >>> int(fill_object_holes(lab)[2, 2])
    1
    """
    foreground = labels > 0
    holes, n = ndi.label(ndi.binary_fill_holes(foreground) & ~foreground)
    if n == 0:
        return labels
    labels = labels.copy()
    for index, box in enumerate(ndi.find_objects(holes), start=1):
        window = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        hole = holes[window] == index
        ring = ndi.binary_dilation(hole) & ~hole
        ids = np.unique(labels[window][ring])
        if ids.size == 1 and ids[0] > 0:
            labels[window][hole] = ids[0]
    return labels


def object_scores(
    labels: np.ndarray, probabilities: np.ndarray, prior_weights: np.ndarray | None = None
) -> np.ndarray:
    """Mean prior-corrected foreground probability of every object.

    With the class-balanced loss, a network estimates ``p_w(c) ∝ w_c p(c)``.
    The corrected foreground probability is
    ``(p_fg / w_fg) / (p_fg / w_fg + p_bg / w_bg)`` with ``p_fg = 1 - p_bg``.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids 0..N.
    probabilities : numpy.ndarray
        ``(K, Y, X)`` softmax output, class 0 = background.
    prior_weights : numpy.ndarray, optional
        ``(2,)`` mean loss weights of background and cell pixels (see
        :func:`napari_semiseg.data.weights.prior_weights`); None = no correction.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` scores in [0, 1], for ids 1..N.

    Examples
    --------
    >>> p = np.zeros((3, 1, 2)); p[0] = 0.2; p[1] = 0.8
    >>> object_scores(np.array([[1, 1]]), p, np.array([0.5, 4.0])).round(3)
    array([0.333])
    """
    n = int(labels.max())
    if n == 0:
        return np.zeros(0)
    background = probabilities[BACKGROUND].astype(np.float64)
    foreground = 1.0 - background
    if prior_weights is not None:
        w_bg, w_fg = (float(w) for w in prior_weights)
        foreground = foreground / w_fg
        foreground = foreground / np.maximum(foreground + background / w_bg, 1e-12)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    sums = np.bincount(labels.ravel(), weights=foreground.ravel(), minlength=n + 1)[1:]
    return sums / np.maximum(counts, 1)  # ids without pixels score 0


def instances_from_probabilities(
    probabilities: np.ndarray,
    median_area: float = 0.0,
    config: PostprocessConfig | None = None,
    prior_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Instance masks from background/interior/border probabilities.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(3, Y, X)`` softmax output (background, interior, border).
    median_area : float
        Median area of the annotated cells; 0 disables size filtering.
    config : PostprocessConfig, optional
        Thresholds and size fractions.
    prior_weights : numpy.ndarray, optional
        ``(2,)`` mean loss weights of background and cell pixels the network
        was trained with; enables the object score filter.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` int32 instance ids 1..N, 0 = background.
    """
    config = config or PostprocessConfig()
    interior = probabilities[INTERIOR]
    foreground = (1.0 - probabilities[BACKGROUND]) > config.foreground_threshold
    seeds, _ = ndi.label((interior > config.interior_threshold) & foreground)
    seeds = remove_small_objects(seeds, config.min_seed_fraction * median_area)
    mask = foreground
    if config.max_growth > 0 and seeds.any():
        mask = foreground & (ndi.distance_transform_edt(seeds == 0) <= config.max_growth)
    labels = watershed(-interior, markers=seeds, mask=mask)
    if config.keep_orphans:
        orphans, n_orphans = ndi.label(foreground & (labels == 0))
        if n_orphans:
            labels = np.where(orphans > 0, orphans + labels.max(), labels)
    labels = remove_small_objects(labels.astype(np.int32), config.min_size_fraction * median_area)
    if prior_weights is not None and config.min_object_score > 0 and labels.max() > 0:
        weak = object_scores(labels, probabilities, prior_weights) < config.min_object_score
        labels[np.concatenate([[False], weak])[labels]] = 0
    if config.fill_holes:
        labels = fill_object_holes(labels)
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.int32)
