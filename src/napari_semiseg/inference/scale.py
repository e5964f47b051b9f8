"""Per-image cell scale: estimate it from a foreground map and resize to the trained size.

A model whose masks come from a fixed size prior (``ppn-auxnet``) only finds
cells of about the annotated size. Data sets such as the DSB 2018 nuclei mix
sources whose nuclei differ 20-fold in area, so each image is resized until its
cells look like the annotated ones, segmented, and the masks resized back
(Cellpose does the same with its diameter).

The cell size of an image is measured on a confident foreground map
(:func:`agreed_foreground` where a model gives two) as the
*inscribed radius*: for every connected foreground piece, the largest distance
from a pixel to the background; the median over pieces, weighted by their
area. Touching cells that merge into one piece keep the radius of one cell,
and small fragments weigh little. The same measure on the annotated cells
(:func:`napari_semiseg.data.annotations.cell_inradii`) is the reference.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

#: Dense foreground probability above which a pixel counts for the size estimate.
FOREGROUND_LEVEL = 0.8
#: Factors within this ratio of 1 are not worth an interpolation.
DEAD_ZONE = 1.25
#: Smallest and largest factor applied (upsampling costs pixels quadratically).
LIMITS = (0.5, 8.0)
#: A piece of less than this many disks of its inscribed radius is one object.
ONE_OBJECT_CELLS = 2.0
#: Images of more pixels are measured on :func:`sample_windows` (4 MPix, e.g. 2048²).
SAMPLE_PIXELS = 4 * 1024 * 1024
#: Side of those windows in pixels.
SAMPLE_WINDOW = 1024


def sample_windows(
    shape: tuple[int, int], max_pixels: int = SAMPLE_PIXELS, window: int = SAMPLE_WINDOW
) -> list[tuple[slice, slice]]:
    """Windows spread evenly over an image, enough to measure its cell size.

    The size estimate is a median over the cells of an image; on a large image
    a few windows of it give the same median at a fraction of the cost (the
    estimate needs a dense pass of the networks of its own).

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` image shape.
    max_pixels : int
        Up to this many pixels the whole image is one window.
    window : int
        Side of the windows of a larger image (clipped to the image).

    Returns
    -------
    list of tuple of slice
        ``(rows, cols)`` windows, about ``max_pixels`` in all, centred on an
        even grid over the image.

    Examples
    --------
    >>> sample_windows((512, 512))
    [(slice(0, 512, None), slice(0, 512, None))]
    >>> [(r.start, c.start) for r, c in sample_windows((4096, 4096))]
    [(768, 768), (768, 2304), (2304, 768), (2304, 2304)]
    """
    height, width = int(shape[0]), int(shape[1])
    if height * width <= max_pixels:
        return [(slice(0, height), slice(0, width))]
    wy, wx = min(height, window), min(width, window)
    count = max(1, max_pixels // (wy * wx))
    ny = int(np.clip(round(np.sqrt(count * height * wx / (width * wy))), 1, -(-height // wy)))
    nx = int(np.clip(count // ny, 1, -(-width // wx)))
    rows = [round((height - wy) * (i + 0.5) / ny) for i in range(ny)]
    cols = [round((width - wx) * (j + 0.5) / nx) for j in range(nx)]
    return [(slice(y, y + wy), slice(x, x + wx)) for y in rows for x in cols]


def mosaic(pieces: list[np.ndarray]) -> np.ndarray:
    """Bool maps side by side, one background column between neighbours.

    Parameters
    ----------
    pieces : list of numpy.ndarray
        ``(Y_i, X_i)`` bool maps (e.g. the foreground of :func:`sample_windows`).

    Returns
    -------
    numpy.ndarray
        ``(max Y_i, sum X_i + len - 1)`` bool; no connected piece spans two maps.
    """
    height = max(p.shape[0] for p in pieces)
    out = np.zeros((height, sum(p.shape[1] for p in pieces) + len(pieces) - 1), bool)
    x = 0
    for piece in pieces:
        out[: piece.shape[0], x : x + piece.shape[1]] = piece
        x += piece.shape[1] + 1
    return out


def _pieces(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inscribed radius and area ``(n,)`` of each connected piece of ``(Y, X)`` bool."""
    pieces, n = ndi.label(foreground)
    index = np.arange(1, n + 1)
    distance = ndi.distance_transform_edt(foreground)
    radii = np.asarray(ndi.maximum(distance, pieces, index), dtype=np.float64).reshape(-1)
    areas = np.asarray(ndi.sum(foreground, pieces, index), dtype=np.float64).reshape(-1)
    return radii, areas


def inscribed_radius(
    foreground: np.ndarray, min_area: float = 0.0, max_object_share: float | None = None
) -> float:
    """Area-weighted median of the inscribed radii of the foreground pieces.

    Parameters
    ----------
    foreground : numpy.ndarray
        ``(Y, X)`` bool.
    min_area : float
        Below this much foreground in total the estimate is not trusted (0 is
        returned).
    max_object_share : float, optional
        When the largest piece is one object (:func:`largest_piece`: fewer
        than :data:`ONE_OBJECT_CELLS` disks of its radius) and holds at least
        this share of the foreground, the median would be that one object's
        radius: 0 is returned. None: never.

    Returns
    -------
    float
        Radius in pixels; 0 when there is too little foreground.

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> disk = (yy - 32) ** 2 + (xx - 32) ** 2 <= 10**2
    >>> round(inscribed_radius(disk))
    10
    >>> inscribed_radius(disk, max_object_share=0.5)
    0.0
    """
    foreground = np.asarray(foreground, dtype=bool)
    total = int(foreground.sum())
    if total == 0 or total < min_area:
        return 0.0
    radii, areas = _pieces(foreground)
    if max_object_share is not None:
        share, cells = _largest(radii, areas)
        if share >= max_object_share and cells < ONE_OBJECT_CELLS:
            return 0.0
    order = np.argsort(radii)
    cumulative = np.cumsum(areas[order])
    return float(radii[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def _largest(radii: np.ndarray, areas: np.ndarray) -> tuple[float, float]:
    """Share and cell count of the piece of largest area (see :func:`largest_piece`)."""
    if len(areas) == 0:
        return 0.0, 0.0
    big = int(np.argmax(areas))
    return float(areas[big] / areas.sum()), float(areas[big] / (np.pi * radii[big] ** 2))


def largest_piece(foreground: np.ndarray) -> tuple[float, float]:
    """The largest connected piece of the foreground: its share, and how many cells it holds.

    Parameters
    ----------
    foreground : numpy.ndarray
        ``(Y, X)`` bool.

    Returns
    -------
    share : float
        Its share of the foreground, in ``[0, 1]`` (0 without foreground).
    cells : float
        Its area over that of the disk of its inscribed radius: about 1 for
        one round object, about n for a clump of n touching cells.

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> fg = (yy - 20) ** 2 + (xx - 20) ** 2 <= 10**2
    >>> fg[60, 60] = True
    >>> share, cells = largest_piece(fg)
    >>> round(share, 2), round(cells, 1)
    (1.0, 1.0)
    """
    return _largest(*_pieces(np.asarray(foreground, dtype=bool)))


def agreed_foreground(
    image: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    level: float = FOREGROUND_LEVEL,
    tolerance: float = DEAD_ZONE,
) -> np.ndarray:
    """Confident foreground of two probability maps, disputes settled by the image.

    Where both maps exceed ``level`` a pixel is foreground, where neither does
    it is background. When the two maps give cell sizes (inscribed radii)
    within ``tolerance`` of each other, that agreed foreground is returned.
    Otherwise each pixel only one map calls foreground joins the class whose
    agreed pixels it looks like (the nearer of the two mean intensities over
    the channels). Either map alone can fail in its own way after a short
    run: one misses the dim rims of large cells (its estimate too small), the
    other floods a dim background (its estimate too large); the intensity
    tells those two apart. Without agreed pixels of both classes the agreed
    foreground alone is returned.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, Y, X)`` normalised image.
    first, second : numpy.ndarray
        ``(Y, X)`` foreground probabilities.
    level : float
        Probability above which a map calls a pixel foreground.
    tolerance : float
        Ratio of the two maps' radii up to which they count as agreeing
        (the default dead zone of :func:`scale_factor`; a method may use a
        wider one, e.g. PPN-auxnet's ``rescale_dead_zone``).

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` bool.

    Examples
    --------
    >>> image = np.array([[[0.0, 0.1, 0.9, 1.0]]])
    >>> first = np.array([[0.0, 0.9, 0.9, 0.9]])   # floods the dim pixel 1
    >>> second = np.array([[0.0, 0.0, 0.9, 0.0]])  # misses the bright pixel 3
    >>> agreed_foreground(image, first, second, tolerance=1.0)
    array([[False, False,  True,  True]])
    """
    a, b = np.asarray(first) > level, np.asarray(second) > level
    foreground, background, disputed = a & b, ~a & ~b, a ^ b
    if not (foreground.any() and background.any() and disputed.any()):
        return foreground
    r_a, r_b = inscribed_radius(a), inscribed_radius(b)
    if min(r_a, r_b) > 0 and max(r_a, r_b) <= tolerance * min(r_a, r_b):
        return foreground
    image = np.asarray(image, dtype=np.float32)
    fg_mean = image[:, foreground].mean(axis=1)[:, None]
    bg_mean = image[:, background].mean(axis=1)[:, None]
    pixels = image[:, disputed]
    closer = ((pixels - fg_mean) ** 2).sum(axis=0) < ((pixels - bg_mean) ** 2).sum(axis=0)
    foreground[disputed] = closer
    return foreground


def scale_factor(
    radius: float,
    reference: float,
    dead_zone: float = DEAD_ZONE,
    limits: tuple[float, float] = LIMITS,
) -> float:
    """How many times larger this image's cells are than the reference cells.

    Parameters
    ----------
    radius : float
        Inscribed radius measured on the image (0 = unknown).
    reference : float
        Inscribed radius of the annotated cells (0 = unknown).
    dead_zone : float
        Ratios within ``[1 / dead_zone, dead_zone]`` give 1.
    limits : tuple of float
        The factor is clipped to ``[low, high]``.

    Returns
    -------
    float
        1.0 when either radius is unknown or the ratio is in the dead zone.

    Examples
    --------
    >>> scale_factor(20.0, 5.0), scale_factor(5.5, 5.0), scale_factor(0.0, 5.0)
    (4.0, 1.0, 1.0)
    """
    if radius <= 0 or reference <= 0:
        return 1.0
    factor = radius / reference
    if 1.0 / dead_zone <= factor <= dead_zone:
        return 1.0
    return float(np.clip(factor, *limits))


def scaled_shape(shape: tuple[int, int], factor: float, minimum: int = 16) -> tuple[int, int]:
    """``(Y, X)`` of an image shrunk by ``factor`` (at least ``minimum`` pixels a side).

    Examples
    --------
    >>> scaled_shape((360, 520), 4.0), scaled_shape((40, 40), 4.0)
    ((90, 130), (16, 16))
    """
    return tuple(max(minimum, round(n / factor)) for n in shape)  # type: ignore[return-value]


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize every channel of ``(C, Y, X)`` to ``(C, *shape)``.

    Linear interpolation, anti-aliased when shrinking.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, Y, X)`` float32.
    shape : tuple of int
        Target ``(Y', X')``.

    Returns
    -------
    numpy.ndarray
        ``(C, Y', X')`` float32.
    """
    shrink = shape[0] < image.shape[1] or shape[1] < image.shape[2]
    return np.stack(
        [resize(c, shape, order=1, anti_aliasing=shrink, preserve_range=True) for c in image]
    ).astype(np.float32)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an instance map ``(Y, X)`` to ``shape``.

    Examples
    --------
    >>> resize_labels(np.array([[1, 2], [0, 3]]), (4, 4))[::2, ::2]
    array([[1, 2],
           [0, 3]], dtype=int32)
    """
    (h, w), (th, tw) = labels.shape, shape
    rows = np.minimum(((np.arange(th) + 0.5) * h / th).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(tw) + 0.5) * w / tw).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]].astype(np.int32)


__all__ = [
    "DEAD_ZONE",
    "FOREGROUND_LEVEL",
    "LIMITS",
    "agreed_foreground",
    "inscribed_radius",
    "resize_image",
    "resize_labels",
    "scale_factor",
    "scaled_shape",
]
