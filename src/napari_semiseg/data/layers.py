"""Array maths behind the plugin's layers (no GUI imports).

The napari widgets read layers, call these functions and write layers back;
everything here works on plain numpy arrays so it is unit-tested without Qt:

- the sparse-annotation model of METHODS.md section 0.2 built from the three
  annotation layers (cells, background scribbles, exhaustive regions),
- annotation counts and the next free cell id,
- merging a corrected prediction into the user's cells without touching them,
- casting masks for export and naming the files,
- the layer-name conventions (``"<image> cells"``, ...), shared by the widget
  and the sample loader (which must not import the GUI).

Preview arrays become layer data in :mod:`napari_semiseg.data.previews`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.draw import polygon2mask

from ..errors import SemisegInputError
from .images import _channel_axis_guess

#: Shape types of a napari Shapes layer that enclose an area.
AREA_SHAPES = ("rectangle", "polygon", "ellipse")

# -- annotation layers of one image: "<image name> <role>" ---------------------
# (layer roles, not the class ids of :mod:`napari_semiseg.data.annotations`)
CELLS = "cells"
BACKGROUND = "background"
REGIONS = "regions"
PREDICTION = "prediction"
ROLES = (CELLS, BACKGROUND, REGIONS)


def annotation_name(image_name: str, role: str) -> str:
    """Name of the annotation (or prediction) layer of one image.

    Examples
    --------
    >>> annotation_name("img", CELLS)
    'img cells'
    """
    return f"{image_name} {role}"


def prediction_name(image_name: str, number: int = 1) -> str:
    """Name of the ``number``-th prediction layer of one image.

    The first is ``"<image> prediction"``; further ones (made when the user
    edited the first) get ``" (2)"``, ``" (3)"``, ...

    Examples
    --------
    >>> prediction_name("img"), prediction_name("img", 2)
    ('img prediction', 'img prediction (2)')
    """
    name = annotation_name(image_name, PREDICTION)
    return name if number <= 1 else f"{name} ({number})"


def pick_prediction(
    image_name: str, layer_names: Sequence[str], selected: Sequence[str] = ()
) -> str | None:
    """The prediction layer of one image to accept or export.

    An image may have several prediction layers (``"<image> prediction"``,
    ``"<image> prediction (2)"``, ...: predicting again never overwrites an
    edited one). The one selected in the layer list wins; otherwise the newest
    (highest number).

    Parameters
    ----------
    image_name : str
        The image layer's name.
    layer_names : sequence of str
        Names of all layers in the viewer.
    selected : sequence of str
        Names of the selected layers.

    Returns
    -------
    str or None
        The layer name, or None when the image has no prediction layer.

    Examples
    --------
    >>> names = ["img", "img prediction", "img prediction (2)", "b prediction"]
    >>> pick_prediction("img", names), pick_prediction("img", names, ["img prediction"])
    ('img prediction (2)', 'img prediction')
    >>> pick_prediction("c", names) is None
    True
    """
    numbered = {}
    base = prediction_name(image_name)
    for name in layer_names:
        if name == base:
            numbered[name] = 1
        elif (match := re.fullmatch(re.escape(base) + r" \((\d+)\)", name)) is not None:
            numbered[name] = int(match.group(1))
    if not numbered:
        return None
    chosen = [name for name in selected if name in numbered]
    if chosen:
        return chosen[0]
    return max(numbered, key=numbered.__getitem__)


def image_name_of(layer_name: str) -> str:
    """The image name in an annotation or prediction layer name (else the name itself).

    Examples
    --------
    >>> image_name_of("img cells"), image_name_of("img prediction (2)"), image_name_of("img")
    ('img', 'img', 'img')
    """
    for role in ROLES:
        suffix = f" {role}"
        if layer_name.endswith(suffix):
            return layer_name[: -len(suffix)]
    match = re.fullmatch(rf"(.+) {PREDICTION}(?: \(\d+\))?", layer_name, flags=re.DOTALL)
    return match.group(1) if match else layer_name


def layer_spatial_shape(shape: Sequence[int], rgb: bool = False) -> tuple[int, int]:
    """``(Y, X)`` of an image layer's data shape, with channels found as the core finds them.

    A 3D non-RGB shape is read like :func:`napari_semiseg.data.images.to_channels_first`
    reads the array: channels last (``(Y, X, C)``) or first (``(C, Y, X)``) when
    that axis is small next to two large ones. Other shapes (a stack, 4D+) give
    their last two axes; training refuses them with its own message.

    Parameters
    ----------
    shape : sequence of int
        The layer's data shape (level 0 of a multiscale layer).
    rgb : bool
        napari shows the layer as RGB(A): the last axis holds the colours.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> layer_spatial_shape((64, 80, 2)), layer_spatial_shape((2, 64, 80))
    ((64, 80), (64, 80))
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2 or (rgb and len(shape) == 3):
        return shape[0], shape[1]
    if len(shape) == 3:
        axis = _channel_axis_guess(shape)
        if axis == 2:
            return shape[0], shape[1]
        if axis == 0:
            return shape[1], shape[2]
    return shape[-2], shape[-1]


def fingerprint(array: np.ndarray) -> str:
    """A digest of an array's shape, dtype and values (to notice later edits).

    Examples
    --------
    >>> a = np.zeros((2, 3), np.int32); before = fingerprint(a); a[0, 0] = 1
    >>> fingerprint(a) == before
    False
    """
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.shape}{array.dtype.str}".encode())
    digest.update(array.data.cast("B") if array.size else b"")
    return digest.hexdigest()


def to_pixel_vertices(
    vertices: np.ndarray,
    scale: Sequence[float] = (1.0, 1.0),
    translate: Sequence[float] = (0.0, 0.0),
    image_scale: Sequence[float] = (1.0, 1.0),
    image_translate: Sequence[float] = (0.0, 0.0),
) -> np.ndarray:
    """Map shape vertices from their layer's data coordinates to image pixels.

    ``world = vertices * scale + translate`` and
    ``pixel = (world - image_translate) / image_scale``.

    Parameters
    ----------
    vertices : numpy.ndarray
        ``(N, 2)`` ``(y, x)`` vertices in the shapes layer's data coordinates.
    scale, translate : sequence of float
        ``(y, x)`` scale and translation of the shapes layer.
    image_scale, image_translate : sequence of float
        ``(y, x)`` scale and translation of the image layer.

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float vertices in image pixel coordinates.

    Examples
    --------
    >>> to_pixel_vertices(np.array([[2.0, 4.0]]), translate=(10, 0), image_translate=(8, 0))
    array([[4., 4.]])
    """
    vertices = np.asarray(vertices, dtype=float)[:, -2:]
    world = vertices * np.asarray(scale, float)[-2:] + np.asarray(translate, float)[-2:]
    return (world - np.asarray(image_translate, float)[-2:]) / np.asarray(image_scale, float)[-2:]


def _ellipse_mask(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Axis-aligned ellipse inscribed in the bounding box of ``vertices``."""
    (y0, x0), (y1, x1) = vertices.min(0), vertices.max(0)
    cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
    if ry <= 0 or rx <= 0:
        return np.zeros(shape, bool)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def rasterize_shapes(
    shapes: Sequence[np.ndarray], shape_types: Sequence[str], shape: tuple[int, int]
) -> np.ndarray:
    """Pixels covered by rectangles, polygons and ellipses.

    A pixel is covered when its centre lies inside the shape or on its edge,
    so a rectangle with corners ``(y0 - 0.5, x0 - 0.5)`` and
    ``(y1 + 0.5, x1 + 0.5)`` covers rows ``y0..y1`` and columns ``x0..x1``.
    Lines and paths enclose nothing and are skipped.

    Parameters
    ----------
    shapes : sequence of numpy.ndarray
        ``(N, 2)`` ``(y, x)`` vertices per shape, in image pixel coordinates
        (see :func:`to_pixel_vertices`).
    shape_types : sequence of str
        napari shape type per shape (``rectangle``, ``polygon``, ``ellipse``, ...).
    shape : tuple of int
        ``(Y, X)`` of the image.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` bool.

    Examples
    --------
    >>> rect = np.array([[0.5, 0.5], [0.5, 2.5], [1.5, 2.5], [1.5, 0.5]])
    >>> rasterize_shapes([rect], ["rectangle"], (3, 4)).astype(int)
    array([[0, 0, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 0, 0]])
    """
    mask = np.zeros(shape, dtype=bool)
    for vertices, kind in zip(shapes, shape_types, strict=True):
        vertices = np.asarray(vertices, dtype=float)[:, -2:]
        if kind == "ellipse":
            mask |= _ellipse_mask(vertices, shape)
        elif kind in AREA_SHAPES and len(vertices) >= 3:
            mask |= polygon2mask(shape, vertices)
    return mask


def known_from_annotations(
    cells: np.ndarray,
    background: np.ndarray | None = None,
    regions: np.ndarray | None = None,
) -> np.ndarray:
    """Known-pixel mask K = cells ∪ background scribbles ∪ exhaustive regions.

    Parameters
    ----------
    cells : numpy.ndarray
        ``(Y, X)`` instance ids, 0 = no annotated cell.
    background : numpy.ndarray, optional
        ``(Y, X)`` scribbles, nonzero = surely background.
    regions : numpy.ndarray, optional
        ``(Y, X)`` bool, inside a rectangle where every cell is annotated.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` bool.

    Examples
    --------
    >>> cells = np.array([[0, 1, 0, 0]]); scribble = np.array([[0, 0, 0, 1]])
    >>> known_from_annotations(cells, scribble).astype(int)
    array([[0, 1, 0, 1]])
    """
    known = np.asarray(cells) > 0
    for extra in (background, regions):
        if extra is not None:
            extra = np.asarray(extra)
            if extra.shape != known.shape:
                raise SemisegInputError(
                    f"an annotation layer has shape {extra.shape} but the cells are {known.shape}",
                    "draw the annotation layers over the same image (same height and width)",
                )
            known |= extra != 0
    return known


def training_annotation(
    cells: np.ndarray | None,
    background: np.ndarray | None = None,
    regions: np.ndarray | None = None,
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Labels and known mask for training, or ``(None, None)`` when nothing is annotated.

    Parameters
    ----------
    cells : numpy.ndarray, optional
        ``(Y, X)`` instance ids.
    background : numpy.ndarray, optional
        ``(Y, X)`` scribbles.
    regions : numpy.ndarray, optional
        ``(Y, X)`` bool rasterised exhaustive regions.
    shape : tuple of int, optional
        ``(Y, X)`` of the image, needed when ``cells`` is None.

    Returns
    -------
    labels : numpy.ndarray or None
        ``(Y, X)`` copy of the instance ids (zeros when only background is marked).
    known : numpy.ndarray or None
        ``(Y, X)`` bool known-pixel mask.
    """
    present = [a for a in (cells, background, regions) if a is not None]
    if not present:
        return None, None
    if shape is None:
        shape = tuple(np.shape(present[0]))[-2:]
    labels = np.zeros(shape, np.int32) if cells is None else np.array(cells, copy=True)
    known = known_from_annotations(labels, background, regions)
    if not known.any():
        return None, None
    return labels, known


@dataclass(frozen=True)
class AnnotationCounts:
    """What the Annotate panel shows for one image.

    Parameters
    ----------
    cells : int
        Number of annotated cells (distinct nonzero ids).
    known_pixels : int
        Pixels whose class is known.
    background_pixels : int
        Known pixels that are background.
    """

    cells: int
    known_pixels: int
    background_pixels: int

    @property
    def has_background(self) -> bool:
        """Whether any pixel is known to be background."""
        return self.background_pixels > 0


def annotation_counts(cells: np.ndarray | None, known: np.ndarray | None) -> AnnotationCounts:
    """Count annotated cells, known pixels and known background pixels.

    Parameters
    ----------
    cells : numpy.ndarray, optional
        ``(Y, X)`` instance ids.
    known : numpy.ndarray, optional
        ``(Y, X)`` bool known-pixel mask.

    Returns
    -------
    AnnotationCounts

    Examples
    --------
    >>> cells = np.array([[0, 1, 1, 2]]); known = np.array([[True, True, True, True]])
    >>> annotation_counts(cells, known)
    AnnotationCounts(cells=2, known_pixels=4, background_pixels=1)
    """
    if cells is None or known is None:
        return AnnotationCounts(0, 0, 0)
    cells = np.asarray(cells)
    ids = np.unique(cells)
    return AnnotationCounts(
        cells=int(np.count_nonzero(ids)),
        known_pixels=int(np.count_nonzero(known)),
        background_pixels=int(np.count_nonzero(known & (cells == 0))),
    )


def next_label(labels: np.ndarray | None) -> int:
    """The next free cell id: one more than the largest id in use.

    Parameters
    ----------
    labels : numpy.ndarray, optional
        ``(Y, X)`` instance ids.

    Returns
    -------
    int

    Examples
    --------
    >>> next_label(np.array([[0, 3], [7, 0]]))
    8
    """
    if labels is None or np.size(labels) == 0:
        return 1
    return int(np.max(labels)) + 1


def merge_prediction(
    cells: np.ndarray, prediction: np.ndarray, min_fraction: float = 0.5
) -> tuple[np.ndarray, int]:
    """Add predicted objects to the user's cells without changing any user pixel.

    Every predicted object keeps only its pixels where the user has no cell;
    it is added under a new id (after the largest user id) when at least
    ``min_fraction`` of it remains, otherwise it is dropped (it was mostly a
    cell the user already drew, and its leftover rim is not a cell).

    Parameters
    ----------
    cells : numpy.ndarray
        ``(Y, X)`` the user's instance ids, 0 = no cell.
    prediction : numpy.ndarray
        ``(Y, X)`` predicted (and possibly corrected) instance ids.
    min_fraction : float
        Share of a predicted object that must lie outside user cells.

    Returns
    -------
    merged : numpy.ndarray
        ``(Y, X)`` instance ids, equal to ``cells`` wherever ``cells > 0``;
        int32, or int64 when the ids need it.
    n_added : int
        Number of predicted objects added.

    Examples
    --------
    >>> cells = np.array([[1, 1, 0, 0, 0]])
    >>> pred = np.array([[4, 4, 4, 0, 9]])
    >>> merge_prediction(cells, pred)
    (array([[1, 1, 0, 0, 2]], dtype=int32), 1)
    """
    cells, prediction = np.asarray(cells), np.asarray(prediction)
    if cells.shape != prediction.shape:
        raise SemisegInputError(
            f"the prediction has shape {prediction.shape} but the cells are {cells.shape}",
            "accept a prediction of the same image",
        )
    free = cells == 0
    ids, sizes = np.unique(prediction, return_counts=True)
    kept_ids, kept = np.unique(prediction[free], return_counts=True)
    total = dict(zip(ids.tolist(), sizes.tolist(), strict=True))
    accepted = [
        i
        for i, n in zip(kept_ids.tolist(), kept.tolist(), strict=True)
        if i != 0 and n >= min_fraction * total[i]
    ]
    start = next_label(cells)
    dtype = np.int32 if start + len(accepted) < np.iinfo(np.int32).max else np.int64
    lookup = np.zeros(int(prediction.max(initial=0)) + 1, dtype=dtype)
    lookup[accepted] = np.arange(start, start + len(accepted), dtype=dtype)
    merged = cells.astype(dtype, copy=True)
    merged[free] = lookup[prediction[free]]
    return merged, len(accepted)


def cast_labels(labels: np.ndarray, dtype: str = "uint16") -> np.ndarray:
    """Cast instance ids for export, refusing ids that do not fit.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` non-negative integer ids.
    dtype : {"uint16", "uint32"}
        Output type.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` of ``dtype``.

    Raises
    ------
    SemisegInputError
        For non-integer or negative labels and ids above the dtype's range.
    """
    labels = np.asarray(labels)
    if dtype not in ("uint16", "uint32"):
        raise SemisegInputError(f"unknown mask type {dtype!r}", "choose uint16 or uint32")
    if labels.dtype.kind not in "iub" or (labels.size and labels.min() < 0):
        raise SemisegInputError(
            f"masks must be non-negative integer ids, not {labels.dtype} values",
            "export a Labels layer",
        )
    top = int(labels.max(initial=0))
    if top > np.iinfo(dtype).max:
        raise SemisegInputError(
            f"the largest id {top} does not fit in {dtype}", "export as uint32"
        )
    return labels.astype(dtype)


def file_stem(name: str) -> str:
    """A safe file name stem for a layer name.

    Parameters
    ----------
    name : str
        Layer name (may hold spaces, slashes, brackets).

    Returns
    -------
    str

    Examples
    --------
    >>> file_stem("cells/a b [1].tif")
    'cells_a_b_1'
    """
    stem = re.sub(r"\.(tiff?|png|jpe?g)$", "", name.strip(), flags=re.IGNORECASE)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    return stem or "mask"


def duplicate_stems(names: Iterable[str]) -> list[list[str]]:
    """Groups of names that :func:`file_stem` maps to the same file.

    Stems are compared without case, as on Windows and macOS file systems.

    Parameters
    ----------
    names : iterable of str
        Names to be written as ``<stem>.tif`` into one folder.

    Returns
    -------
    list of list of str
        Each group of two or more names sharing a file, in input order.

    Examples
    --------
    >>> duplicate_stems(["img 1", "img_1", "a.tif", "a.png", "b"])
    [['img 1', 'img_1'], ['a.tif', 'a.png']]
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(file_stem(name).casefold(), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def box_to_rectangle(box: Sequence[float], pixels: bool = False) -> np.ndarray:
    """Corners of a napari rectangle for a box.

    Parameters
    ----------
    box : sequence of float
        ``(y0, x0, y1, x1)``.
    pixels : bool
        The box lists inclusive pixel indices: the rectangle then runs along
        the outer pixel edges (half a pixel outside the centres).

    Returns
    -------
    numpy.ndarray
        ``(4, 2)`` ``(y, x)`` corners.
    """
    y0, x0, y1, x1 = (float(v) for v in box)
    if pixels:
        y0, x0, y1, x1 = y0 - 0.5, x0 - 0.5, y1 + 0.5, x1 + 0.5
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])


def regions_from_known(
    labels: np.ndarray, known: np.ndarray
) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Express a known-pixel mask as cells + one exhaustive rectangle + scribbles.

    When the known pixels outside the cells fill their bounding box, that box
    is the exhaustive region; whatever the cells and the box do not explain
    is returned as background scribbles.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.
    known : numpy.ndarray
        ``(Y, X)`` known-pixel mask.

    Returns
    -------
    boxes : list of tuple of int
        Inclusive ``(y0, x0, y1, x1)`` pixel boxes (zero or one).
    scribbles : numpy.ndarray
        ``(Y, X)`` uint8, 1 where known background is not covered by a box.
    """
    background = (np.asarray(known) != 0) & (np.asarray(labels) == 0)
    boxes: list[tuple[int, int, int, int]] = []
    covered = np.zeros_like(background)
    if background.any():
        ys, xs = np.nonzero(background)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
        box = np.zeros_like(background)
        box[y0 : y1 + 1, x0 : x1 + 1] = True
        if not np.any(box & (labels == 0) & ~background):
            boxes.append((y0, x0, y1, x1))
            covered = box
    return boxes, (background & ~covered).astype(np.uint8)
