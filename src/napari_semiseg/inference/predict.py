"""Prediction: class probabilities and instance masks for whole images.

Both functions are generators that yield :class:`TileDone` progress events and
return their result, like the training engine; :func:`run` consumes one
without a GUI.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import SemisegInputError
from ..methods import Method
from ..models.precision import autocast
from ..models.unet import valid_output_size
from .postprocess import PostprocessConfig, instances_from_probabilities
from .tiling import TileDone, TilingConfig, predict_tiled

T = TypeVar("T")


def run(generator: Generator[Any, None, T]) -> T:
    """Exhaust a generator and return its return value.

    Parameters
    ----------
    generator : generator
        E.g. :func:`predict_probabilities` or the training loop.

    Returns
    -------
    object
        The generator's return value.
    """
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


@dataclass
class Segmentation:
    """Result of :func:`segment`.

    Parameters
    ----------
    instances : numpy.ndarray
        ``(Y, X)`` int32 instance ids.
    maps : dict of str to numpy.ndarray
        Per-pixel maps worth keeping, e.g. ``probabilities`` ``(K, Y, X)``.
    """

    instances: np.ndarray
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def _geometry(method: Method, tile_size: int) -> tuple[int, int, int]:
    """Return ``(multiple, margin, crop)`` of the method's backbone for a tile size."""
    config = method.model_config
    multiple = 2**config.depth
    if config.padding == "same":
        return multiple, 0, 0
    size = tile_size
    while True:  # smallest valid input whose output covers the tile
        try:
            out = valid_output_size(config, size)
        except ValueError:
            size += 2
            continue
        if out >= tile_size and (size - tile_size) % 2 == 0 and (out - tile_size) % 2 == 0:
            return multiple, (size - tile_size) // 2, (out - tile_size) // 2
        size += 2


def check_channels(method: Method, image: np.ndarray, source: str | None = None) -> None:
    """Refuse images whose channel count differs from the model's.

    Parameters
    ----------
    method : Method
        The trained method.
    image : numpy.ndarray
        ``(C, Y, X)`` prepared image.
    source : str, optional
        File or layer name for the message.
    """
    if image.shape[0] != method.in_channels:
        kinds = {1: "grey", 3: "RGB"}
        raise SemisegInputError(
            f"the model was trained on {method.in_channels}-channel "
            f"({kinds.get(method.in_channels, 'multi-channel')}) images but this image has "
            f"{image.shape[0]} channel(s)",
            "predict images of the kind the model was trained on, or retrain on this kind",
            source,
        )


@torch.no_grad()
def predict_probabilities(
    method: Method, image: np.ndarray, tiling: TilingConfig | None = None
) -> Generator[TileDone, None, np.ndarray]:
    """Class probabilities of a normalised image, tile by tile.

    Parameters
    ----------
    method : Method
        Trained method (its ``predict`` gives logits).
    image : numpy.ndarray
        ``(C, Y, X)`` float32, normalised.
    tiling : TilingConfig, optional
        Tile size, halo, blend, batch and flip TTA.

    Yields
    ------
    TileDone
        Progress.

    Returns
    -------
    numpy.ndarray
        ``(K, Y, X)`` float32 class probabilities (softmax), followed by any
        extra maps of the method (:meth:`Method.output_probabilities`).
    """
    tiling = tiling or TilingConfig()
    check_channels(method, image)
    multiple, margin, crop = _geometry(method, tiling.tile_size)
    was_training = any(net.training for net in method.networks().values())
    method.eval()
    device = method.device

    def forward(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device)
        flips = [(), (-1,), (-2,), (-2, -1)] if tiling.flip_tta else [()]
        probs = 0.0
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            with autocast(device, tiling.amp):
                logits = method.predict(xi)
            p = method.output_probabilities(logits.float())
            probs = probs + (torch.flip(p, dims) if dims else p)
        probs = probs / len(flips)
        if crop:
            probs = probs[..., crop:-crop, crop:-crop]
        return probs.cpu().numpy()

    try:
        result = yield from predict_tiled(
            forward, image, method.n_outputs, tiling, multiple=multiple, margin=margin
        )
    finally:
        method.train(was_training)
    return result


def segment(
    method: Method,
    image: np.ndarray,
    median_area: float,
    tiling: TilingConfig | None = None,
    postprocess: PostprocessConfig | None = None,
) -> Generator[TileDone, None, Segmentation]:
    """Instance masks of a normalised image.

    Methods that predict instances directly (``segment_instances``) use their
    own path; the others go through tiled probabilities and the seeded
    watershed of :func:`instances_from_probabilities` (with the image, for its
    contrast filter).

    Parameters
    ----------
    method : Method
        Trained method.
    image : numpy.ndarray
        ``(C, Y, X)`` float32, normalised.
    median_area : float
        Median annotated cell area (for the size filter).
    tiling : TilingConfig, optional
        Tiling settings.
    postprocess : PostprocessConfig, optional
        Thresholds.

    Yields
    ------
    TileDone
        Progress.

    Returns
    -------
    Segmentation
    """
    custom = getattr(method, "segment_instances", None)
    if custom is not None:
        return (yield from custom(image, median_area, tiling, postprocess))
    probabilities = yield from predict_probabilities(method, image, tiling)
    instances = instances_from_probabilities(probabilities, median_area, postprocess, image)
    return Segmentation(instances, {"probabilities": probabilities})
