"""Events yielded by the training generator.

Events are small frozen dataclasses holding Python numbers and CPU numpy
copies, never live tensors, so the GUI thread can keep them while training
goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TrainingStarted:
    """Training is about to run its first step."""

    method: str
    device: str
    total_steps: int
    time_budget: float | None
    start_step: int
    n_parameters: int
    data_summary: dict[str, Any] = field(default_factory=dict)
    #: Precision of the forward passes: "float32", "bfloat16" or "float16".
    precision: str = "float32"
    #: What the annotation does not show the network (``TrainingData.advice``), and
    #: settings these data turned off (``Method.data_notes``).
    advice: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """Device and, when reduced, precision, e.g. ``"cpu (bfloat16)"``."""
        return self.device if self.precision == "float32" else f"{self.device} ({self.precision})"


@dataclass(frozen=True)
class StepFinished:
    """One optimisation step is done.

    ``losses`` maps loss-term names to values (``"loss"`` is the total);
    ``remaining_seconds`` estimates the time left from the step rate and the
    time budget, whichever ends first.
    """

    step: int
    total_steps: int
    losses: dict[str, float]
    lr: float
    elapsed: float
    steps_per_second: float
    remaining_seconds: float
    progress: float


@dataclass(frozen=True)
class PreviewUpdated:
    """New maps to show live.

    ``kind == "image"``: maps over (a window of) training image
    ``image_index`` whose top-left corner is ``offset`` (y, x): e.g.
    ``foreground`` (Y, X) float, ``instances`` (Y, X) int32, ``weight_map``,
    ``pseudo_labels``, ``confidence`` and method-specific maps.
    ``kind == "batch"``: arrays from the last training batch (the augmented
    sample and its target, mixed inputs of copy-paste methods, ...).

    Layer conventions for viewers (the plugin and ``--previews`` follow them):

    - integer ``(Y, X)`` arrays are label maps (napari Labels), float ``(Y, X)``
      arrays are maps (napari Image); ``(C, Y, X)`` float arrays are images;
    - ``<name>_points``: ``(N, 3)`` float rows ``(y, x, score)`` (napari Points,
      size by score);
    - ``<name>_vectors``: ``(N, 2, 2)`` float, start ``(y, x)`` and direction
      ``(dy, dx)`` per row (napari Vectors);
    - ``<name>_boxes``: ``(N, 4)`` float rows ``(y0, x0, y1, x1)`` (napari
      Shapes rectangles).

    Coordinates are in pixels of the previewed window (add ``offset`` for the
    full image).
    """

    step: int
    kind: str
    arrays: dict[str, np.ndarray]
    image_index: int = 0
    offset: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint file was written."""

    step: int
    path: str


@dataclass(frozen=True)
class TrainingFinished:
    """Training ended; ``reason`` is ``"steps"``, ``"time_budget"`` or ``"stopped"``."""

    step: int
    elapsed: float
    reason: str


Event = TrainingStarted | StepFinished | PreviewUpdated | CheckpointSaved | TrainingFinished
