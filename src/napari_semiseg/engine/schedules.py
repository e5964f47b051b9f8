"""Learning-rate and ramp-up schedules as pure functions of the training progress."""

from __future__ import annotations

import math


def sigmoid_rampup(progress: float, length: float) -> float:
    """Sigmoid ramp-up ``exp(-5 (1 - t/L)^2)`` (METHODS.md S8), 1 after ``length``.

    Parameters
    ----------
    progress : float
        Current position (steps or fraction of training).
    length : float
        Ramp length in the same unit; 0 means no ramp.

    Returns
    -------
    float
        In (0, 1].

    Examples
    --------
    >>> sigmoid_rampup(1.0, 1.0)
    1.0
    >>> round(sigmoid_rampup(0.0, 1.0), 4)
    0.0067
    """
    if length <= 0:
        return 1.0
    t = min(max(progress, 0.0), length) / length
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def lr_factor(progress: float, schedule: str = "cosine", warmup: float = 0.02) -> float:
    """Multiplier of the base learning rate at a given fraction of training.

    Parameters
    ----------
    progress : float
        Fraction of training done, in [0, 1] (steps or time budget,
        whichever is further along).
    schedule : {"cosine", "constant", "poly"}
        Decay after warm-up: cosine to 5 %, none, or DoDNet's ``(1 - t)^0.9``.
    warmup : float
        Fraction of training with a linear warm-up.

    Returns
    -------
    float
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return 0.1 + 0.9 * progress / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "poly":
        return max((1.0 - progress) ** 0.9, 0.01)
    if schedule == "cosine":
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; use cosine, constant or poly")
