"""Generator functions the widgets run on a worker (no Qt, no layer access).

Each takes plain data copied from the layers on the main thread, so the user
can keep editing the layers while the job runs.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.datasets import TrainingData
from ..data.images import Normalization, prepare_image
from ..engine import LoadedModel, TrainConfig, TrainingControl, TrainingResult
from ..engine import train as train_generator
from ..inference import TilingConfig, segment

# torch imports its compiler stack lazily when the first optimiser is built. That
# import runs C++ initialisation that holds the GIL for 100-200 ms stretches, which
# would freeze the GUI thread while the worker starts training; importing it here,
# when the plugin opens (torch itself is imported then too), pays it up front.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401


@dataclass(frozen=True)
class ImageSnapshot:
    """Copies of one image and its annotation, taken when a job starts.

    Parameters
    ----------
    name : str
        Image layer name.
    image : numpy.ndarray
        ``(Y, X)``, ``(Y, X, C)`` or ``(C, Y, X)`` raw pixels.
    labels : numpy.ndarray, optional
        ``(Y, X)`` instance ids (None: the image is unlabelled).
    known : numpy.ndarray, optional
        ``(Y, X)`` bool known-pixel mask.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray | None = None
    known: np.ndarray | None = None


def training_job(
    snapshots: Sequence[ImageSnapshot],
    config: TrainConfig,
    resume: LoadedModel | None,
    control: TrainingControl,
    norm: Normalization | None = None,
) -> Generator[Any, None, TrainingResult]:
    """Build the training data from the snapshots, then train (yields engine events).

    Parameters
    ----------
    snapshots : sequence of ImageSnapshot
        Images with their annotations (None labels = unlabelled pool).
    config : TrainConfig
        Training settings.
    resume : LoadedModel, optional
        Continue training this model. A copy is trained (the engine trains
        in place): ``resume`` itself is never changed, so a run that fails
        half-way (a diverged loss, an exception) leaves the caller's model as
        it was. The trained copy is in the returned result, also after Stop.
    control : TrainingControl
        Lets the Stop button end training cleanly (the model is kept).
    norm : Normalization, optional
        Intensity normalisation of a new model (a resumed model keeps its own).

    Yields
    ------
    TrainingStarted, StepFinished, PreviewUpdated, CheckpointSaved, TrainingFinished

    Returns
    -------
    TrainingResult
    """
    if resume is not None:
        resume = copy.deepcopy(resume)  # on this thread: the GUI stays responsive
    data = TrainingData.from_arrays(
        [s.image for s in snapshots],
        [s.labels for s in snapshots],
        [s.known for s in snapshots],
        names=[s.name for s in snapshots],
        norm=resume.normalization if resume is not None else norm,
        w0=config.w0,
        sigma=config.sigma,
    )
    return (yield from train_generator(data, config, resume=resume, control=control))


@dataclass(frozen=True)
class PredictProgress:
    """Progress of a prediction job: tile ``tile``/``tiles`` of image ``index``/``total``."""

    index: int
    total: int
    tile: int
    tiles: int
    name: str


def predict_job(
    model: LoadedModel,
    images: Sequence[tuple[str, np.ndarray]],
    tiling: TilingConfig | None = None,
) -> Generator[PredictProgress, None, list[tuple[str, np.ndarray]]]:
    """Instance masks for raw images, tile by tile.

    Parameters
    ----------
    model : LoadedModel
        Trained model.
    images : sequence of (str, numpy.ndarray)
        Layer name and raw ``(Y, X[, C])`` pixels.
    tiling : TilingConfig, optional
        Tile size and overlap.

    Yields
    ------
    PredictProgress

    Returns
    -------
    list of (str, numpy.ndarray)
        Layer name and ``(Y, X)`` int32 instance ids.
    """
    results = []
    for index, (name, raw) in enumerate(images):
        image = prepare_image(raw, None, model.normalization, source=name)
        segmentation = segment(
            model.method, image, model.median_cell_area, tiling, model.postprocess()
        )
        while True:
            try:
                tile = next(segmentation)
            except StopIteration as stop:
                results.append((name, stop.value.instances))
                break
            yield PredictProgress(index, len(images), tile.index, tile.total, name)
    return results
