"""From class probabilities to instance masks (METHODS.md S13).

Seeds are the connected components of the confident cell interior (a seed
must also reach a high peak: see ``min_seed_peak``); a seeded
watershed on the interior probability grows them over the foreground
(interior + border), at most a few pixels beyond the interior (the border
class is a thin ring); foreground that no seed reaches is dropped; objects
smaller than a fraction of the median annotated cell area are removed and
holes are filled. No largest-connected-component step: that
suits organs, not cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.morphology import reconstruction
from skimage.segmentation import relabel_sequential, watershed

from ..data.annotations import BACKGROUND, INTERIOR, object_contrast, ring_width

#: Channel of the predicted relative cell depth, when a model has one.
DEPTH = 3
#: Shortest annotated-cell contrast (normalised intensity) the contrast filter
#: measures against; below it the annotated cells look like their surroundings.
MIN_REFERENCE_CONTRAST = 0.05
#: Least solidity of the union of two touching objects joined as one cut cell.
JOIN_SOLIDITY = 0.9
#: Least solidity of such a union when a foreground map shows no gap between the two.
JOIN_SOLIDITY_NO_GAP = 0.8
#: Mean foreground probability along a shared border below which it is a gap.
JOIN_MIN_FOREGROUND = 0.5


@dataclass(frozen=True)
class PostprocessConfig:
    """Post-processing settings.

    Parameters
    ----------
    foreground_threshold : float
        A pixel is a cell when ``1 - p_background`` exceeds this.
    interior_threshold : float
        Seeds are where ``p_interior`` exceeds this. Above 1/2: where a network
        has no evidence (large empty areas far from any annotation, never
        supervised) it outputs about the class-balanced prior, roughly
        (0.2, 0.5, 0.3) for (background, interior, border), and a threshold of
        0.5 turns that plateau into thousands of false objects.
    min_seed_peak : float
        Seeds whose highest ``p_interior`` is below this are dropped: a cell the
        network recognises has a confident core, a plateau of doubt has not.
        0 = keep all seeds.
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
    core_depth : float
        The model's interior class is the cell core (``TrainConfig.core_depth``,
        the relative depth above which a pixel is interior); 0 = the whole
        cell inside a thin border. With cores each seed may grow, beyond
        ``max_growth``, by ``core_depth / (1 - core_depth)`` times its own
        radius (1.5 times that, for cells less round than a disc), and seeds
        are kept down to ``min_seed_fraction * (1 - core_depth)**2`` of the
        median area.
    depth_prominence : float
        Used when the probabilities carry a fourth channel, the predicted
        relative depth of each pixel in its cell (``SupervisedConfig.depth_head``):
        a seed is split where its depth has several peaks, each rising more
        than this above the saddle between them (touching cells whose
        interiors joined), and the watershed follows the depth. The objects'
        outer outline is the same as without the depth map.
    keep_orphans : bool
        Keep foreground regions that contain no interior seed as objects.
    fill_holes : bool
        Fill holes inside objects.
    min_contrast : float
        Objects whose intensity contrast to their surroundings, along the
        annotated cells' contrast, is below this fraction of the annotated
        cells' median contrast are removed (:func:`drop_faint_objects`): faint
        texture in an empty background is not a cell. Needs the image and
        ``reference_contrast``; 0 = keep every object.
    confident_foreground : float
        Objects whose mean foreground probability reaches this are held to
        ``confident_min_contrast`` instead: a dim cell the network is sure of
        (on the CTC nuclei, PPN-auxnet's faint background objects had a mean
        foreground of 0.59-0.85, the dim nucleus it found 0.94-0.96). Above 1:
        every object is held to ``min_contrast``.
    confident_min_contrast : float
        The contrast bar of those confident objects, as a fraction of the
        reference (never above ``min_contrast``).
    reference_contrast : tuple of float
        ``C`` values: the annotated cells' median contrast to the known
        background around them (``TrainingData.annotated_contrast``, saved
        with the model). Empty = unknown: no contrast filter.
    min_median_foreground : float
        Objects whose median foreground probability is below this are removed
        (:func:`drop_unsure_objects`): the network is unsure of most of their
        pixels. A true cell is foreground with near certainty inside its rim;
        on few-label brightfield images the false objects on cytoplasm folds
        were not (median 0.91 against 0.999 for the true nuclei). The median,
        not the mean, so that small cells, mostly rim, are not held to a
        higher bar. Scaled to the model (:meth:`for_confidence`). 0 = keep
        every object.
    """

    foreground_threshold: float = 0.5
    interior_threshold: float = 0.6
    min_seed_peak: float = 0.9
    min_size_fraction: float = 0.2
    min_seed_fraction: float = 0.05
    max_growth: float = 4.0
    core_depth: float = 0.0
    depth_prominence: float = 0.3
    keep_orphans: bool = False
    fill_holes: bool = True
    min_contrast: float = 0.1
    confident_foreground: float = 0.9
    confident_min_contrast: float = 0.05
    reference_contrast: tuple[float, ...] = ()
    min_median_foreground: float = 0.9

    def for_confidence(
        self, confidence: float | None, foreground: float | None = None
    ) -> PostprocessConfig:
        """These thresholds scaled to a model's confidence on its annotated cells.

        ``interior_threshold`` and ``min_seed_peak`` are set for a network that
        is sure of the cells it was taught (interior peak about 1). A model that
        is less sure everywhere (a few steps, an EMA teacher, a hard modality)
        would lose its true cells to them: both are multiplied by
        ``clip(confidence, 0.5, 1)``. ``min_median_foreground`` is multiplied by
        ``clip(foreground, 0.5, 1)``, the model's own median foreground on the
        cells it was taught (by ``confidence`` where that is unknown: model
        files written before it was measured).

        Parameters
        ----------
        confidence : float or None
            Median peak interior probability of the annotated cells (see
            :func:`annotated_confidence`); None = unchanged.
        foreground : float or None
            Median over the annotated cells of their median foreground
            probability (see :func:`annotated_foreground`).

        Returns
        -------
        PostprocessConfig

        Examples
        --------
        >>> PostprocessConfig().for_confidence(0.75).min_seed_peak
        0.675
        >>> round(PostprocessConfig().for_confidence(1.0, 0.8).min_median_foreground, 3)
        0.72
        """
        if confidence is None and foreground is None:
            return self
        config = self
        if confidence is not None:
            scale = _clip_confidence(confidence)
            config = replace(
                config,
                interior_threshold=self.interior_threshold * scale,
                min_seed_peak=self.min_seed_peak * scale,
            )
        sure = foreground if foreground is not None else confidence
        return replace(
            config, min_median_foreground=self.min_median_foreground * _clip_confidence(sure)
        )


def _clip_confidence(value: float) -> float:
    return min(max(float(value), 0.5), 1.0)


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


def annotated_confidence(interiors: list[np.ndarray], labels: list[np.ndarray]) -> float | None:
    """Median over annotated cells of the highest interior probability in each.

    Parameters
    ----------
    interiors : list of numpy.ndarray
        ``(Y, X)`` interior probabilities of annotated windows.
    labels : list of numpy.ndarray
        ``(Y, X)`` instance ids of the same windows (0 = no annotated cell).

    Returns
    -------
    float or None
        None when the windows hold no cell.

    Examples
    --------
    >>> annotated_confidence([np.array([[0.9, 0.6, 0.7]])], [np.array([[1, 1, 2]])])
    0.8
    """
    return _median_over_cells(
        lambda interior, lab: ndi.maximum(interior, lab, np.unique(lab[lab > 0])),
        interiors,
        labels,
    )


def annotated_foreground(foregrounds: list[np.ndarray], labels: list[np.ndarray]) -> float | None:
    """Median over annotated cells of the median foreground probability in each.

    Parameters
    ----------
    foregrounds : list of numpy.ndarray
        ``(Y, X)`` foreground probabilities of annotated windows.
    labels : list of numpy.ndarray
        ``(Y, X)`` instance ids of the same windows (0 = no annotated cell).

    Returns
    -------
    float or None
        None when the windows hold no cell.

    Examples
    --------
    >>> annotated_foreground([np.array([[0.9, 0.6, 0.7, 0.8]])], [np.array([[1, 1, 1, 2]])])
    0.75
    """
    # the same median as the one it scales (drop_unsure_objects)
    return _median_over_cells(lambda fg, lab: object_medians(lab, fg)[1], foregrounds, labels)


def _median_over_cells(
    per_cell: Callable[[np.ndarray, np.ndarray], np.ndarray],
    maps: list[np.ndarray],
    labels: list[np.ndarray],
) -> float | None:
    """Median over the cells of all windows of ``per_cell(map, labels)`` (one value per id)."""
    values = [
        np.atleast_1d(per_cell(values_map, lab))
        for values_map, lab in zip(maps, labels, strict=True)
        if lab.any()
    ]
    if not values:
        return None
    return float(np.median(np.concatenate(values)))


def remove_weak_seeds(seeds: np.ndarray, interior: np.ndarray, min_peak: float) -> np.ndarray:
    """Set seeds whose highest interior probability is below ``min_peak`` to 0 (in place).

    Parameters
    ----------
    seeds : numpy.ndarray
        ``(Y, X)`` int seed ids (0 = none).
    interior : numpy.ndarray
        ``(Y, X)`` interior probability.
    min_peak : float
        Lowest peak a seed must reach; 0 keeps all.

    Returns
    -------
    numpy.ndarray
        The same ``seeds`` array.

    Examples
    --------
    >>> seeds = np.array([[1, 1, 0, 2, 2]])
    >>> p = np.array([[0.7, 0.95, 0.0, 0.7, 0.8]])
    >>> remove_weak_seeds(seeds, p, 0.9)
    array([[1, 1, 0, 0, 0]])
    """
    n = int(seeds.max())
    if min_peak <= 0 or n == 0:
        return seeds
    inside = seeds > 0
    peaks = np.zeros(n + 1, dtype=np.float64)
    np.maximum.at(peaks, seeds[inside], interior[inside])
    weak = peaks < min_peak
    weak[0] = False
    seeds[weak[seeds]] = 0
    return seeds


def contact_lengths(labels: np.ndarray) -> dict[tuple[int, int], int]:
    """How many pixels of each object touch each neighbour (4-connectivity).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids, 0 = background.

    Returns
    -------
    dict
        ``(a, b) -> n``: ``n`` pixels of object ``a`` have a 4-neighbour in
        object ``b`` (both orders are present).

    Examples
    --------
    >>> contact_lengths(np.array([[1, 1, 2], [1, 2, 2]]))
    {(1, 2): 2, (2, 1): 2}
    """
    labels = np.asarray(labels)
    flat = np.arange(labels.size).reshape(labels.shape)
    rows = []
    for axis in (0, 1):
        ahead = [slice(None), slice(None)]
        behind = [slice(None), slice(None)]
        ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
        a, b = labels[tuple(behind)], labels[tuple(ahead)]
        touching = (a > 0) & (b > 0) & (a != b)
        fa, fb = flat[tuple(behind)][touching], flat[tuple(ahead)][touching]
        la, lb = a[touching], b[touching]
        rows += [np.stack([fa, la, lb], 1), np.stack([fb, lb, la], 1)]
    table = np.unique(np.concatenate(rows), axis=0) if rows else np.zeros((0, 3), int)
    pairs, counts = np.unique(table[:, 1:], axis=0, return_counts=True)
    return {(int(a), int(b)): int(n) for (a, b), n in zip(pairs, counts, strict=True)}


def join_cut_objects(
    labels: np.ndarray,
    min_contact: float = 1.0,
    min_solidity: float = JOIN_SOLIDITY,
    foreground: np.ndarray | None = None,
    min_foreground: float = JOIN_MIN_FOREGROUND,
    no_gap_solidity: float = JOIN_SOLIDITY_NO_GAP,
    convex_contact: float | None = None,
) -> np.ndarray:
    """Join touching objects that look like one convex cell cut in pieces.

    Two cells that touch share a border shorter than either is wide, and
    their union has a waist. A cell cut in two by its segmentation shares a
    border about as long as the smaller piece is wide, and the union is
    convex. Two touching objects are joined when the smaller one touches the
    other along at least ``min_contact`` times its equivalent diameter
    (``2 sqrt(area / pi)``) and the solidity of their union (area over
    convex-hull area, holes filled: the pixels between two pieces that
    neither claimed belong to the cell) is at least ``min_solidity``. Joined objects are
    tested again against their neighbours, so a cell cut in three joins too.

    With a ``foreground`` map, the pixels along the shared border decide too:
    where their mean probability is below ``min_foreground`` the two objects
    are separated by a gap of background (two cells pressed together with a
    dark seam) and are never joined; where it is at least that, the union
    needs a solidity of only ``no_gap_solidity`` (a lobed nucleus cut along
    its lobes is less convex than ``min_solidity`` but has no seam).

    With ``convex_contact`` (below ``min_contact``), a shorter shared border
    of at least ``convex_contact`` diameters joins too when the union is at
    least ``min_solidity`` convex (the lower ``no_gap_solidity`` is not
    enough there): an elongated nucleus cut across its short axis shares a
    border about as long as it is wide, less than the equivalent diameter of
    either half.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids, 0 = background.
    min_contact : float
        Shared border over the smaller object's equivalent diameter
        (0 = join nothing).
    min_solidity : float
        Least solidity of the union (without a foreground map, or where it
        is not used).
    foreground : numpy.ndarray, optional
        ``(Y, X)`` foreground probabilities in [0, 1] of the same image.
    min_foreground : float
        Least mean foreground probability along the shared border (the
        pixels of either object next to the other).
    no_gap_solidity : float
        Least solidity of the union of two objects with no gap between them
        (used only with ``foreground``; values above ``min_solidity`` have
        no effect).
    convex_contact : float, optional
        Shortest shared border (in diameters of the smaller object) of a
        pair whose union is at least ``min_solidity`` convex; None, 0 or a
        value of at least ``min_contact``: no shorter border joins.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` instance ids (joined objects take the lower id); the input
        itself when nothing is joined.

    Examples
    --------
    >>> lab = np.zeros((8, 9), int); lab[1:7, 1:4] = 1; lab[1:7, 4:8] = 2
    >>> np.unique(join_cut_objects(lab)).tolist()  # a rectangle cut in two
    [0, 1]
    >>> seam = np.ones(lab.shape); seam[:, 3:5] = 0.1  # ... along a dark seam
    >>> np.unique(join_cut_objects(lab, foreground=seam)).tolist()
    [0, 1, 2]
    >>> lab[1, 1] = lab[6, 1] = lab[1, 7] = lab[6, 7] = 0  # rounded corners
    >>> lab[1:3, 3:5] = lab[5:7, 3:5] = 0  # a waist: two cells touching
    >>> np.unique(join_cut_objects(lab)).tolist()
    [0, 1, 2]
    >>> long = np.zeros((8, 20), int); long[1:7, 1:10] = 1; long[1:7, 10:19] = 2
    >>> np.unique(join_cut_objects(long)).tolist()  # cut across: contact 0.72 diameters
    [0, 1, 2]
    >>> np.unique(join_cut_objects(long, convex_contact=0.5)).tolist()
    [0, 1]
    """
    if min_contact <= 0:
        return labels
    if foreground is not None and foreground.shape != labels.shape:
        raise ValueError(f"foreground {foreground.shape} and labels {labels.shape} differ")
    for _ in range(8):  # a piece may join only the union of pieces joined before
        joined = _join_once(
            labels, min_contact, min_solidity, foreground, min_foreground, no_gap_solidity,
            convex_contact,
        )  # fmt: skip
        if joined is labels:
            break
        labels = joined
    return labels


def _join_once(
    labels: np.ndarray,
    min_contact: float,
    min_solidity: float,
    foreground: np.ndarray | None = None,
    min_foreground: float = JOIN_MIN_FOREGROUND,
    no_gap_solidity: float = JOIN_SOLIDITY_NO_GAP,
    convex_contact: float | None = None,
) -> np.ndarray:
    """One pass of :func:`join_cut_objects` over the current pairs (input if none)."""
    from skimage.morphology import convex_hull_image

    areas = np.bincount(labels.ravel())
    boxes = ndi.find_objects(labels)
    parent = np.arange(areas.size)

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    shortest = min(min_contact, convex_contact) if (convex_contact or 0) > 0 else min_contact
    contacts = contact_lengths(labels)
    for a, b in contacts:
        if a >= b:
            continue
        small, other = (a, b) if areas[a] <= areas[b] else (b, a)
        contact = contacts[small, other] / (2.0 * np.sqrt(areas[small] / np.pi))
        if contact < shortest:
            continue
        box = tuple(
            slice(min(p.start, q.start), max(p.stop, q.stop))
            for p, q in zip(boxes[a - 1], boxes[b - 1], strict=True)
        )
        in_a, in_b = labels[box] == a, labels[box] == b
        least = min_solidity
        if foreground is not None:
            seam = (ndi.binary_dilation(in_a) & in_b) | (ndi.binary_dilation(in_b) & in_a)
            if foreground[box][seam].mean() < min_foreground:
                continue  # a gap of background between them: two cells
            least = min(min_solidity, no_gap_solidity)
        if contact < min_contact:  # a short border: only a convex union
            least = min_solidity
        # holes filled: pixels between the pieces that no mask claimed are the cell's
        union = ndi.binary_fill_holes(in_a | in_b)
        if union.sum() < least * convex_hull_image(union).sum():
            continue
        ra, rb = root(a), root(b)
        parent[max(ra, rb)] = min(ra, rb)
    if (parent == np.arange(areas.size)).all():
        return labels
    roots = np.array([root(i) for i in range(areas.size)])
    return roots[labels].astype(labels.dtype)


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


def growth_limit(seeds: np.ndarray, max_growth: float, core_depth: float = 0.0) -> np.ndarray:
    """Pixels close enough to a seed for it to grow there.

    Parameters
    ----------
    seeds : numpy.ndarray
        ``(Y, X)`` int seed ids (0 = none).
    max_growth : float
        Distance in pixels every seed may grow.
    core_depth : float
        Seeds are cell cores of this relative depth: each may grow further by
        ``1.5 * core_depth / (1 - core_depth)`` times its equivalent radius
        ``sqrt(area / pi)``. 0 = ``max_growth`` only.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` bool.

    Examples
    --------
    >>> seeds = np.zeros((1, 12), int); seeds[0, :4] = 1
    >>> growth_limit(seeds, 2).astype(int).tolist()
    [[1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]]
    >>> growth_limit(seeds, 2, core_depth=0.5).astype(int).tolist()
    [[1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]]
    """
    if core_depth <= 0:
        return ndi.distance_transform_edt(seeds == 0) <= max_growth
    distance, nearest = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    owner = seeds[nearest[0], nearest[1]]
    radius = np.sqrt(np.bincount(seeds.ravel()) / np.pi)
    reach = max_growth + 1.5 * core_depth / (1.0 - core_depth) * radius
    return distance <= reach[owner]


def drop_unsure_objects(labels: np.ndarray, foreground: np.ndarray, bar: float) -> np.ndarray:
    """Remove objects whose median foreground probability is below ``bar``.

    The medians come from one sort of the objects' pixels keyed by id and
    value (:func:`object_medians`; under a second for a 4096 x 4096 image
    half covered by cells, on one core, where ``scipy.ndimage.median`` takes 8 s).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.
    foreground : numpy.ndarray
        ``(Y, X)`` foreground probability.
    bar : float
        Smallest kept median (0 = keep all).

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` int32 instance ids (the removed ones set to 0).

    Examples
    --------
    >>> labels = np.zeros((6, 6), np.int32); labels[:, :3] = 1; labels[:, 3:] = 2
    >>> foreground = np.where(labels == 1, 0.99, 0.7)
    >>> np.unique(drop_unsure_objects(labels, foreground, 0.9)).tolist()
    [0, 1]
    """
    if bar <= 0:
        return labels
    ids, median = object_medians(labels, foreground)
    unsure = ids[median < bar]
    if unsure.size == 0:
        return labels
    return np.where(np.isin(labels, unsure), 0, labels).astype(np.int32)


def object_medians(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``values`` over each object (the mean of the two middle values for an even count).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` non-negative instance ids (0 = no object).
    values : numpy.ndarray
        ``(Y, X)`` values in [0, 1] (probabilities).

    Returns
    -------
    ids : numpy.ndarray
        ``(N,)`` the ids present, ascending.
    medians : numpy.ndarray
        ``(N,)`` float64 median of each.

    Examples
    --------
    >>> labels = np.array([[1, 1, 1, 2, 2, 0]])
    >>> values = np.array([[0.9, 0.1, 0.5, 0.2, 0.4, 1.0]])
    >>> ids, medians = object_medians(labels, values)
    >>> ids.tolist(), np.round(medians, 6).tolist()
    ([1, 2], [0.5, 0.3])
    """
    flat = labels.ravel()
    inside = np.flatnonzero(flat)
    ids_of_pixels = flat[inside].astype(np.float64)
    # id + value / 2 sorts by id, then by value (values in [0, 1] stay below the next id)
    key = ids_of_pixels + 0.5 * np.clip(values.ravel()[inside], 0.0, 1.0)
    key.sort()
    ordered = 2.0 * (key - np.floor(key))
    counts = np.bincount(flat[inside].astype(np.int64))
    ids = np.flatnonzero(counts)
    counts = counts[ids]
    start = np.cumsum(counts) - counts
    medians = 0.5 * (ordered[start + (counts - 1) // 2] + ordered[start + counts // 2])
    return ids, medians


def drop_faint_objects(
    labels: np.ndarray,
    image: np.ndarray,
    reference: tuple[float, ...] | list[float],
    fraction: float,
    median_area: float = 0.0,
    foreground: np.ndarray | None = None,
    confident: float = 1.0,
    confident_fraction: float = 0.0,
) -> np.ndarray:
    """Remove objects that barely stand out from their surroundings.

    Each object's contrast to the background around it
    (:func:`~napari_semiseg.data.annotations.object_contrast`) is projected on
    the direction of ``reference``, the annotated cells' median contrast; an
    object below ``fraction`` of the reference's length is removed, or below
    ``confident_fraction`` of it when its mean ``foreground`` probability is
    at least ``confident``. Objects without enough surroundings to measure
    are kept. Nothing is removed when the reference is shorter than
    :data:`MIN_REFERENCE_CONTRAST` (annotated cells that do not differ from
    their surroundings in intensity) or does not match the image's channels.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.
    image : numpy.ndarray
        ``(C, Y, X)`` normalised image.
    reference : sequence of float
        ``C`` values, the annotated cells' median contrast.
    fraction : float
        Smallest kept contrast as a fraction of the reference (0 = keep all).
    median_area : float
        Median annotated cell area (sets the width of the surroundings).
    foreground : numpy.ndarray, optional
        ``(Y, X)`` foreground probability; without it every object is held
        to ``fraction``.
    confident : float
        Mean foreground probability from which an object counts as confident
        (above 1: none does).
    confident_fraction : float
        Smallest kept contrast of a confident object, as a fraction of the
        reference (``fraction`` when larger than it).

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` int32 instance ids (the removed ones set to 0).

    Examples
    --------
    >>> image = np.zeros((1, 12, 12)); image[0, 2:5, 2:5] = 1.0; image[0, 7:10, 7:10] = 0.06
    >>> labels = np.zeros((12, 12), np.int32); labels[2:5, 2:5] = 1; labels[7:10, 7:10] = 2
    >>> np.unique(drop_faint_objects(labels, image, [0.8], 0.1, 9.0)).tolist()
    [0, 1]
    >>> sure = np.full((12, 12), 0.95)
    >>> np.unique(drop_faint_objects(labels, image, [0.8], 0.1, 9.0, sure, 0.9, 0.05)).tolist()
    [0, 1, 2]
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    length = float(np.linalg.norm(ref))
    if fraction <= 0 or length < MIN_REFERENCE_CONTRAST or ref.size != image.shape[0]:
        return labels
    ids, contrast = object_contrast(image, labels, ring_width(median_area))
    along = contrast @ (ref / length)
    bar = np.full(len(ids), fraction * length)
    if foreground is not None and confident <= 1.0 and len(ids):
        sure = np.asarray(ndi.mean(foreground, labels, ids)) >= confident
        bar[sure] = min(fraction, confident_fraction) * length
    faint = ids[np.isfinite(along) & (along < bar)]
    if faint.size == 0:
        return labels
    return np.where(np.isin(labels, faint), 0, labels).astype(np.int32)


def instances_from_probabilities(
    probabilities: np.ndarray,
    median_area: float = 0.0,
    config: PostprocessConfig | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """Instance masks from background/interior/border probabilities.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(3, Y, X)`` softmax output (background, interior, border), or
        ``(4, Y, X)`` with the predicted relative cell depth after them
        (seeds are split and the watershed follows the depth, see
        ``depth_prominence``).
    median_area : float
        Median area of the annotated cells; 0 disables size filtering.
    config : PostprocessConfig, optional
        Thresholds and size fractions.
    image : numpy.ndarray, optional
        ``(C, Y, X)`` normalised image, for the contrast filter
        (``min_contrast``; skipped without it).

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` int32 instance ids 1..N, 0 = background.
    """
    config = config or PostprocessConfig()
    interior = probabilities[INTERIOR]
    foreground = (1.0 - probabilities[BACKGROUND]) > config.foreground_threshold
    seeds, _ = ndi.label((interior > config.interior_threshold) & foreground)
    core_area = (1.0 - config.core_depth) ** 2
    seeds = remove_small_objects(seeds, config.min_seed_fraction * core_area * median_area)
    seeds = remove_weak_seeds(seeds, interior, config.min_seed_peak)
    mask = foreground
    if config.max_growth > 0 and seeds.any():
        mask = foreground & growth_limit(seeds, config.max_growth, config.core_depth)
    if probabilities.shape[0] > DEPTH:
        depth = probabilities[DEPTH]
        seeds = split_by_depth(seeds, depth, config.depth_prominence)
        labels = watershed(-depth, markers=seeds, mask=mask)
    else:
        labels = watershed(-interior, markers=seeds, mask=mask)
    probability = 1.0 - probabilities[BACKGROUND]
    return _finish(labels, foreground, median_area, config, image, probability)


def split_by_depth(seeds: np.ndarray, depth: np.ndarray, prominence: float) -> np.ndarray:
    """Split seeds whose predicted depth has several clearly separated peaks.

    A peak of the depth map inside a seed counts when it rises at least
    ``prominence`` above the saddle that joins it to a higher peak of the same
    seed (an h-maximum). A seed with two or more such peaks becomes one seed per
    peak (the tops, down to ``prominence`` below each peak); its other pixels
    are shared out by the watershed that follows. Other seeds stay whole.

    Parameters
    ----------
    seeds : numpy.ndarray
        ``(Y, X)`` int seed ids (0 = none).
    depth : numpy.ndarray
        ``(Y, X)`` predicted relative depth of each pixel in its cell (about 1
        at a cell's centre, near 0 at its edge).
    prominence : float
        Smallest rise of a peak above its saddle, in units of relative depth.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` int seed ids.

    Examples
    --------
    >>> seeds = np.ones((1, 9), int)
    >>> depth = np.array([[0.2, 0.8, 0.9, 0.3, 0.7, 0.9, 0.3, 0.85, 0.8]])
    >>> split_by_depth(seeds, depth, 0.3).tolist()
    [[0, 2, 2, 0, 3, 3, 0, 4, 4]]
    >>> split_by_depth(seeds, depth, 0.7).tolist()
    [[1, 1, 1, 1, 1, 1, 1, 1, 1]]
    """
    n = int(seeds.max())
    if n == 0 or prominence <= 0:
        return seeds
    inside = seeds > 0
    height = np.where(inside, depth, 0.0).astype(np.float64)
    domes = _domes(seeds, height, prominence, n)
    # 8-connected like the reconstruction (one top is not cut at a diagonal step), and
    # never across two seeds that touch at a corner
    caps, n_caps = ndi.label(inside & (domes > 1e-6), structure=np.ones((3, 3), bool))
    if n_caps == 0:
        return seeds
    on = caps > 0  # few pixels: the per-cap measures below look at these only
    on_seeds = seeds[on].astype(np.int64)
    pairs, which = np.unique(caps[on].astype(np.int64) * (n + 1) + on_seeds, return_inverse=True)
    which = which.ravel() + 1
    caps[on], n_caps = which, len(pairs)
    index = np.arange(1, n_caps + 1)
    high = ndi.maximum(domes[on], which, index) >= prominence - 1e-6
    tops = np.where(np.concatenate([[False], high])[caps], caps, 0)
    owner = pairs % (n + 1)  # seed of each cap
    per_seed = np.bincount(owner[high], minlength=n + 1)  # qualifying peaks per seed
    split = (per_seed >= 2)[seeds]
    return np.where(split, np.where(tops > 0, tops + n, 0), seeds)


def _domes(seeds: np.ndarray, height: np.ndarray, prominence: float, n: int) -> np.ndarray:
    """``height`` minus its grey reconstruction from ``height - prominence``, seed by seed.

    Each seed is reconstructed on its own (over the whole image at once, the
    8-connected reconstruction would carry values between seeds that touch at
    a corner), in its bounding box, and only where the seed has two or more
    local maxima at least ``prominence`` high (a seed with one cannot split):
    on a 4096 x 4096 image the whole-image reconstruction sorted every pixel
    and took half of the prediction time.

    Parameters
    ----------
    seeds : numpy.ndarray
        ``(Y, X)`` int seed ids, 1..n (0 = none).
    height : numpy.ndarray
        ``(Y, X)`` float64 depth inside the seeds, 0 outside.
    prominence : float
        Depth of the reconstruction.
    n : int
        Largest seed id.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` float64 domes (0 in seeds that cannot split and outside seeds).
    """
    domes = np.zeros_like(height)
    # pixels that no 8-neighbour of the same seed exceeds; two such neighbours are equal,
    # so each connected set of them in one seed is one flat top, and distinct regional
    # maxima of a seed never share one
    tops = (seeds > 0) & (height >= prominence)
    padded_height, padded_seeds = np.pad(height, 1), np.pad(seeds, 1)
    h, w = height.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                near = (slice(1 + dy, 1 + dy + h), slice(1 + dx, 1 + dx + w))
                tops &= (padded_seeds[near] != seeds) | (padded_height[near] <= height)
    flat = label(np.where(tops, seeds, 0), connectivity=2)  # never across two seeds
    n_flat = int(flat.max())
    if n_flat < 2:
        return domes
    owner = np.zeros(n_flat + 1, np.int64)
    owner[flat[tops]] = seeds[tops]
    candidates = np.flatnonzero(np.bincount(owner[1:], minlength=n + 1) >= 2)
    boxes = ndi.find_objects(seeds, max_label=n)
    for seed in candidates:
        box = boxes[seed - 1]
        local = np.where(seeds[box] == seed, height[box], 0.0)
        domes[box] += local - reconstruction(np.maximum(local - prominence, 0.0), local)
    return domes


def _finish(
    labels: np.ndarray,
    foreground: np.ndarray,
    median_area: float,
    config: PostprocessConfig,
    image: np.ndarray | None = None,
    probability: np.ndarray | None = None,
) -> np.ndarray:
    """Orphans, small, unsure and faint objects, holes and sequential ids after the watershed.

    ``probability``: ``(Y, X)`` foreground probability (objects the network is
    unsure of; the contrast filter's confident objects).
    """
    if config.keep_orphans:
        orphans, n_orphans = ndi.label(foreground & (labels == 0))
        if n_orphans:
            labels = np.where(orphans > 0, orphans + labels.max(), labels)
    labels = remove_small_objects(labels.astype(np.int32), config.min_size_fraction * median_area)
    if probability is not None:
        labels = drop_unsure_objects(labels, probability, config.min_median_foreground)
    if config.fill_holes:
        labels = fill_object_holes(labels)
    if image is not None:
        labels = drop_faint_objects(
            labels, image, config.reference_contrast, config.min_contrast, median_area,
            probability, config.confident_foreground, config.confident_min_contrast,
        )  # fmt: skip
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.int32)
