"""Sparse annotations: instance labels, known-pixel masks and 3-class targets.

The sparse-annotation model (METHODS.md section 0.2):

- ``labels`` holds instance ids, 0 means *no annotated cell* (not background);
- ``known`` marks the pixels whose class is known: every annotated cell plus the
  pixels the user marked as background (scribbles, exhaustive rectangles);
- without a known mask the labels are exhaustive: every 0 is background.

The semantic target has three classes, background (0), cell interior (1) and
cell border (2), the border coming from the Sobel filter of the instance map.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import SemisegInputError

BACKGROUND, INTERIOR, BORDER = 0, 1, 2
N_CLASSES = 3
#: Target value for pixels whose class is unknown (ignored by every loss).
IGNORE = 255


def check_labels(
    labels: np.ndarray, shape: tuple[int, int], source: str | None = None
) -> np.ndarray:
    """Validate an instance-label image and return it as int32.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` integer instance ids, 0 = no annotated cell.
    shape : tuple of int
        ``(Y, X)`` of the image it belongs to.
    source : str, optional
        File or layer name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` int32.

    Raises
    ------
    SemisegInputError
        For non-integer dtypes, negative ids, more than 2D or a shape that
        differs from the image.
    """
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4):
        raise SemisegInputError(
            f"labels of shape {labels.shape} look like an RGB picture, not instance ids",
            "save the labels as a single-channel integer image (napari Labels layer, uint16)",
            source,
        )
    if labels.shape != tuple(shape):
        raise SemisegInputError(
            f"labels have shape {labels.shape} but the image is {tuple(shape)} (Y, X)",
            "give labels of the same height and width as the image",
            source,
        )
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise SemisegInputError(
            f"labels have dtype {labels.dtype}; they must be integer instance ids "
            "(0 = no cell, 1, 2, ... = one id per cell)",
            "save the labels as uint16 (e.g. from a napari Labels layer)",
            source,
        )
    if labels.size and labels.min() < 0:
        raise SemisegInputError(
            "labels contain negative ids", "use 0 for no cell and 1, 2, ... for cells", source
        )
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        raise SemisegInputError("labels have ids above 2**31", "relabel sequentially", source)
    return labels.astype(np.int32, copy=False)


def known_mask(
    labels: np.ndarray, mask: np.ndarray | None = None, source: str | None = None
) -> np.ndarray:
    """Return the known-pixel mask K.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.
    mask : numpy.ndarray, optional
        ``(Y, X)``, nonzero = known. None means the labels are exhaustive.
    source : str, optional
        File or layer name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` bool; annotated cells are always known.
    """
    if mask is None:
        return np.ones(labels.shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask.any(axis=-1)
    if mask.shape != labels.shape:
        raise SemisegInputError(
            f"known-pixel mask has shape {mask.shape} but the labels are {labels.shape}",
            "give a mask of the same height and width as the image",
            source,
        )
    return (mask != 0) | (labels > 0)


def instance_borders(labels: np.ndarray) -> np.ndarray:
    """Border pixels of every instance (METHODS.md S12 on integer labels).

    A pixel of a cell is a border pixel when the Sobel filter of the instance
    map is non-zero there, i.e. when its 3x3 neighbourhood holds another id.
    This separates touching cells, which a Sobel filter of the binary mask
    would not.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` bool.

    Examples
    --------
    >>> lab = np.zeros((5, 6), int); lab[1:4, 1:3] = 1; lab[1:4, 3:5] = 2
    >>> instance_borders(lab).astype(int)
    array([[0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 1, 0],
           [0, 1, 1, 1, 1, 0],
           [0, 1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0, 0]])
    """
    footprint = np.ones((3, 3), dtype=bool)
    high = ndi.maximum_filter(labels, footprint=footprint, mode="nearest")
    low = ndi.minimum_filter(labels, footprint=footprint, mode="nearest")
    return (labels > 0) & (high != low)


def relative_depth(labels: np.ndarray) -> np.ndarray:
    """Depth of every cell pixel relative to its cell's deepest pixel.

    The depth of a pixel is its distance to the nearest pixel outside its cell
    (background or another cell); dividing by the cell's largest depth gives 1
    at the cell's centre and ``1 / largest depth`` on its border, whatever the
    cell's size. The edges of the array count as inside (a cell cut by a patch
    edge is not given a border there).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` float32 in [0, 1], 0 outside cells.

    Examples
    --------
    >>> lab = np.zeros((9, 9), int); lab[1:8, 1:8] = 1
    >>> relative_depth(lab)[4].tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    labels = np.asarray(labels)
    depth = np.zeros(labels.shape, dtype=np.float32)
    cells = labels > 0
    if not cells.any():
        return depth
    pad = 8
    inner = np.pad(cells & ~instance_borders(labels), pad, mode="edge")
    distance = ndi.distance_transform_edt(inner)[pad:-pad, pad:-pad] + 1.0
    ids = np.unique(labels[cells])
    deepest = np.zeros(int(ids.max()) + 1, dtype=np.float64)
    deepest[ids] = ndi.maximum(distance, labels, ids)
    depth[cells] = (distance[cells] / deepest[labels[cells]]).astype(np.float32)
    return depth


def semantic_target(labels: np.ndarray, known: np.ndarray, core: float = 0.0) -> np.ndarray:
    """Build the 3-class target with unknown pixels set to :data:`IGNORE`.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.
    known : numpy.ndarray
        ``(Y, X)`` bool known-pixel mask.
    core : float
        0: the border class is the thin Sobel border of each cell (the U-Net
        paper). Above 0: the interior class is only the *core* of each cell,
        the pixels whose :func:`relative_depth` exceeds ``core``, and the rest
        of the cell is border. Cores of touching cells are far apart even where
        the cells meet along a faint line, so they make better watershed seeds;
        the post-processing grows them back to the whole cell
        (``PostprocessConfig.core_depth``).

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` uint8 with values 0 (background), 1 (interior), 2 (border)
        and 255 (unknown).

    Examples
    --------
    >>> lab = np.zeros((9, 9), int); lab[1:8, 1:8] = 1
    >>> semantic_target(lab, np.ones(lab.shape, bool))[4].tolist()
    [0, 2, 1, 1, 1, 1, 1, 2, 0]
    >>> semantic_target(lab, np.ones(lab.shape, bool), core=0.5)[4].tolist()
    [0, 2, 2, 1, 1, 1, 2, 2, 0]
    """
    target = np.full(labels.shape, IGNORE, dtype=np.uint8)
    target[known] = BACKGROUND
    target[labels > 0] = INTERIOR
    target[instance_borders(labels)] = BORDER
    if core > 0:
        target[(labels > 0) & (relative_depth(labels) <= core)] = BORDER
    return target


def cell_inradii(labels: np.ndarray) -> np.ndarray:
    """Inscribed radius of every instance: its largest distance from a pixel to its outside.

    Pixels of another instance count as outside, so touching cells keep their
    own radius.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.

    Returns
    -------
    numpy.ndarray
        1D float64 array, one entry per non-zero id present (ascending ids).

    Examples
    --------
    >>> cell_inradii(np.array([[1, 1, 1, 2], [1, 1, 1, 0], [1, 1, 1, 0]])).tolist()
    [2.0, 1.0]
    """
    labels = np.asarray(labels)
    radii = []
    for index, box in enumerate(ndi.find_objects(labels.astype(np.int64)), start=1):
        if box is None:
            continue
        own = np.pad(labels[box] == index, 1)
        radii.append(float(ndi.distance_transform_edt(own).max()))
    return np.asarray(radii, dtype=np.float64)


def cell_areas(labels: np.ndarray) -> np.ndarray:
    """Areas in pixels of the instances present in ``labels``.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.

    Returns
    -------
    numpy.ndarray
        1D int64 array, one entry per non-zero id present.
    """
    counts = np.bincount(labels.ravel().astype(np.int64))
    return counts[1:][counts[1:] > 0]


def ring_width(median_area: float) -> int:
    """Width in pixels of the surroundings of a cell for :func:`object_contrast`.

    Half the radius of a disc of the median cell area, at least 2 px (4 px when
    the area is unknown).

    Examples
    --------
    >>> ring_width(314.0), ring_width(0.0)
    (5, 4)
    """
    if median_area <= 0:
        return 4
    return max(2, round(0.5 * float(np.sqrt(median_area / np.pi))))


def object_contrast(
    image: np.ndarray, labels: np.ndarray, width: int, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean intensity of each object minus that of its surroundings, per channel.

    The surroundings of an object are the pixels outside every object within
    ``width`` pixels of it and nearer to it than to any other object (and,
    with ``valid``, only valid pixels: e.g. known background).

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, Y, X)`` normalised image.
    labels : numpy.ndarray
        ``(Y, X)`` instance ids, 0 = no object.
    width : int
        Width of the surroundings in pixels (:func:`ring_width`).
    valid : numpy.ndarray, optional
        ``(Y, X)`` bool: pixels that may count as surroundings.

    Returns
    -------
    ids : numpy.ndarray
        ``(N,)`` ids of the objects present.
    contrast : numpy.ndarray
        ``(N, C)`` float64; NaN rows for objects with fewer than 5 surrounding
        pixels.

    Examples
    --------
    >>> image = np.zeros((1, 9, 9)); image[0, 3:6, 3:6] = 1.0
    >>> labels = np.zeros((9, 9), int); labels[3:6, 3:6] = 7
    >>> ids, contrast = object_contrast(image, labels, 2)
    >>> ids.tolist(), contrast.round(2).tolist()
    ([7], [[1.0]])
    """
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return ids, np.zeros((0, image.shape[0]))
    outside = labels == 0
    distance, (iy, ix) = ndi.distance_transform_edt(outside, return_indices=True)
    ring = outside & (distance <= width)
    del distance
    if valid is not None:
        ring &= valid
    owner = labels[iy[ring], ix[ring]]  # nearest object of each surrounding pixel
    del iy, ix
    size = int(labels.max()) + 1
    inside_n = np.bincount(labels.ravel(), minlength=size)[ids]
    ring_n = np.bincount(owner, minlength=size)[ids]
    contrast = np.empty((ids.size, image.shape[0]))
    for c, channel in enumerate(image):
        inside = np.bincount(labels.ravel(), channel.ravel(), minlength=size)[ids]
        around = np.bincount(owner, channel[ring], minlength=size)[ids]
        with np.errstate(invalid="ignore", divide="ignore"):
            contrast[:, c] = inside / inside_n - around / ring_n
    contrast[ring_n < 5] = np.nan
    return ids, contrast
