"""npe2 contributions besides the widget: the sample data and the TIFF labels writer.

No maths here: the sample is split into layers by :mod:`napari_semiseg.data.layers`
and written by :mod:`napari_semiseg.io`. Only core modules are imported (no GUI,
no torch): opening the sample or saving a layer does not load the dock widget.
"""

from __future__ import annotations

from typing import Any

from ._sample_data import load_sample
from .data.layers import (
    BACKGROUND,
    CELLS,
    REGIONS,
    annotation_name,
    box_to_rectangle,
    regions_from_known,
)
from .io import write_labels

#: Horizontal gap in pixels between the sample images laid side by side.
SAMPLE_GAP = 16


def load_sample_data() -> list[tuple[Any, dict[str, Any], str]]:
    """The bundled CC0 nuclei images with their sparse annotation, as napari layers.

    The images lie side by side; the annotated one comes with its ``cells``
    (Labels) and ``regions`` (Shapes: the square in which every nucleus is
    annotated) layers, plus ``background`` scribbles for any known background
    outside that square.

    Returns
    -------
    list of (data, kwargs, layer type)
    """
    layers: list[tuple[Any, dict[str, Any], str]] = []
    x = 0.0
    for item in load_sample():
        name, image = str(item["name"]), item["image"]
        place = {"translate": (0.0, x)}
        layers.append((image, {"name": name, **place}, "image"))
        if item["annotation"] is not None:
            layers.extend(_annotation_layers(name, item["annotation"], item["known"], place))
        x += image.shape[1] + SAMPLE_GAP
    return layers


def _annotation_layers(
    name: str, labels: Any, known: Any, place: dict[str, Any]
) -> list[tuple[Any, dict[str, Any], str]]:
    layers: list[tuple[Any, dict[str, Any], str]] = []
    if known is None:
        known = labels > 0
    boxes, scribbles = regions_from_known(labels, known)
    rectangles = [box_to_rectangle(box, pixels=True) for box in boxes]
    regions = {
        "name": annotation_name(name, REGIONS),
        "shape_type": "rectangle",
        "edge_color": "yellow",
        "face_color": "transparent",
        "edge_width": 2,
        "ndim": 2,
        **place,
    }
    layers.append((rectangles, regions, "shapes"))
    if scribbles.any():
        layers.append(
            (
                scribbles,
                {"name": annotation_name(name, BACKGROUND), "opacity": 0.5, **place},
                "labels",
            )
        )
    layers.append((labels, {"name": annotation_name(name, CELLS), **place}, "labels"))
    return layers


def write_labels_tiff(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write a Labels layer as a uint16 (uint32 when needed) TIFF.

    Parameters
    ----------
    path : str
        Destination ``.tif``/``.tiff`` (napari's save dialog has already asked
        before replacing a file).
    data : numpy.ndarray
        ``(Y, X)`` instance ids.
    attributes : dict
        Layer attributes (unused).

    Returns
    -------
    list of str
        The written path.
    """
    return [str(write_labels(path, data, overwrite=True))]
