"""Reading layers into plain arrays (copies) for the core and the jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.layers import rasterize_shapes, to_pixel_vertices, training_annotation
from ._jobs import ImageSnapshot
from ._layers import BACKGROUND, CELLS, REGIONS, image_shape
from ._session import Session


def image_array(layer: Any) -> np.ndarray:
    """The full-resolution pixels of an image layer (level 0 when multiscale)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data)


def regions_mask(shapes: Any, image: Any) -> np.ndarray | None:
    """Rasterised exhaustive regions of a Shapes layer over ``image``'s pixels."""
    if shapes is None or len(shapes.data) == 0:
        return None
    vertices = [
        to_pixel_vertices(v, shapes.scale, shapes.translate, image.scale, image.translate)
        for v in shapes.data
    ]
    return rasterize_shapes(vertices, list(shapes.shape_type), image_shape(image))


def read_annotation(session: Session, image: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Copies of the labels and known mask of ``image`` (``(None, None)`` if unannotated)."""
    layers = session.annotation_layers(image)
    cells, background = layers[CELLS], layers[BACKGROUND]
    return training_annotation(
        None if cells is None else np.asarray(cells.data),
        None if background is None else np.asarray(background.data),
        regions_mask(layers[REGIONS], image),
        image_shape(image),
    )


def snapshot(session: Session, images: Sequence[Any]) -> list[ImageSnapshot]:
    """Copies of the images and their annotations, taken when training starts."""
    items = []
    for image in images:
        labels, known = read_annotation(session, image)
        pixels = np.array(image_array(image), copy=True)
        items.append(ImageSnapshot(image.name, pixels, labels, known))
    return items
