"""Preview arrays to layer data, following the PreviewUpdated layer conventions.

Pure numpy (no GUI imports): the plugin's LayerSync and any other viewer turn
the arrays of :class:`~napari_semiseg.engine.events.PreviewUpdated` into
labels, images, points, vectors and rectangles with these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .layers import box_to_rectangle


@dataclass(frozen=True)
class PreviewLayer:
    """Data for one napari layer from a preview array.

    Parameters
    ----------
    key : str
        Name of the array in the event.
    kind : {"labels", "image", "points", "vectors", "shapes"}
        napari layer type.
    data : numpy.ndarray or list of numpy.ndarray
        Layer data: ``(Y, X)`` maps, ``(Y, X, 3)`` RGB, ``(N, 2)`` points,
        ``(N, 2, 2)`` vectors or a list of ``(4, 2)`` rectangles.
    sizes : numpy.ndarray, optional
        ``(N,)`` point sizes (points only).
    rgb : bool
        Whether ``data`` is an RGB image.
    """

    key: str
    kind: str
    data: np.ndarray | list[np.ndarray]
    sizes: np.ndarray | None = None
    rgb: bool = False


def _point_sizes(scores: np.ndarray, smallest: float = 3.0, largest: float = 12.0) -> np.ndarray:
    scores = np.nan_to_num(np.asarray(scores, dtype=float))
    span = scores.max() - scores.min() if scores.size else 0.0
    unit = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    return smallest + (largest - smallest) * unit


def _image_data(array: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(C, Y, X)`` float to a napari image: one channel squeezed, three as RGB."""
    if array.ndim == 2:
        return array.astype(np.float32, copy=False), False
    if array.shape[0] == 3:
        return np.clip(np.moveaxis(array, 0, -1), 0.0, 1.0).astype(np.float32), True
    return array[0].astype(np.float32, copy=False), False


def preview_layer(key: str, array: np.ndarray) -> PreviewLayer | None:
    """Turn one preview array into layer data (PreviewUpdated layer conventions).

    ``<name>_points`` ``(N, 3)`` rows ``(y, x, score)`` become points sized by
    score, ``<name>_vectors`` ``(N, 2, 2)`` vectors, ``<name>_boxes`` ``(N, 4)``
    rows ``(y0, x0, y1, x1)`` rectangles; integer ``(Y, X)`` maps are labels,
    float ``(Y, X)`` maps and ``(C, Y, X)`` arrays are images.

    Parameters
    ----------
    key : str
        Array name.
    array : numpy.ndarray
        The array.

    Returns
    -------
    PreviewLayer or None
        None for arrays that follow no convention (e.g. 1D).
    """
    array = np.asarray(array)
    if key.endswith("_points") and array.ndim == 2 and array.shape[1] >= 2:
        scores = array[:, 2] if array.shape[1] > 2 else np.ones(len(array))
        return PreviewLayer(key, "points", array[:, :2].astype(float), _point_sizes(scores))
    if key.endswith("_vectors") and array.ndim == 3 and array.shape[1:] == (2, 2):
        return PreviewLayer(key, "vectors", array.astype(float))
    if key.endswith("_boxes") and array.ndim == 2 and array.shape[1] == 4:
        return PreviewLayer(key, "shapes", [box_to_rectangle(b) for b in array])
    if array.ndim == 2 and array.dtype.kind in "iub":
        return PreviewLayer(key, "labels", array.astype(np.int32, copy=False))
    if array.ndim in (2, 3) and array.dtype.kind == "f":
        data, rgb = _image_data(array)
        return PreviewLayer(key, "image", data, rgb=rgb)
    return None


def preview_layers(
    arrays: dict[str, np.ndarray], skip: Sequence[str] = ("probabilities",)
) -> list[PreviewLayer]:
    """Layer data for every preview array that follows a layer convention.

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        ``PreviewUpdated.arrays``.
    skip : sequence of str
        Keys not to show (the class probabilities repeat the foreground map).

    Returns
    -------
    list of PreviewLayer
    """
    layers = []
    for key, array in arrays.items():
        if key in skip:
            continue
        layer = preview_layer(key, array)
        if layer is not None:
            layers.append(layer)
    return layers
