"""Segmentation metrics: instance AP, F1, and foreground Dice / IoU.

AP at an IoU threshold t follows the Data Science Bowl / StarDist convention:
``TP / (TP + FP + FN)``, a prediction and a ground-truth object matching when
their IoU is at least t (one-to-one, by maximum total IoU). Mean AP averages
over ``t = 0.5, 0.55, ..., 0.9``. Counts are summed over images before the
ratio is taken, so a data set's score weights every object equally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import clear_border, relabel_sequential

from .errors import SemisegInputError

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(9))


def iou_matrix(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of every (truth, prediction) pair of objects.

    Parameters
    ----------
    prediction, truth : numpy.ndarray
        ``(Y, X)`` instance ids with sequential ids 1..N (0 = background).

    Returns
    -------
    numpy.ndarray
        ``(n_truth, n_prediction)`` float64.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 0]]); p = np.array([[1, 0, 0, 0]])
    >>> iou_matrix(p, t)
    array([[0.5]])
    """
    n_t, n_p = int(truth.max()), int(prediction.max())
    pairs = truth.astype(np.int64).ravel() * (n_p + 1) + prediction.astype(np.int64).ravel()
    overlap = np.bincount(pairs, minlength=(n_t + 1) * (n_p + 1)).reshape(n_t + 1, n_p + 1)
    area_t = overlap.sum(1, keepdims=True)
    area_p = overlap.sum(0, keepdims=True)
    union = area_t + area_p - overlap
    iou = overlap / np.maximum(union, 1)
    return iou[1:, 1:]


def match_counts(iou: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """True positives, false positives and false negatives at an IoU threshold.

    Parameters
    ----------
    iou : numpy.ndarray
        ``(n_truth, n_prediction)`` IoU matrix.
    threshold : float
        Minimal IoU of a match.

    Returns
    -------
    tp, fp, fn : int
    """
    n_t, n_p = iou.shape
    if n_t == 0 or n_p == 0:
        return 0, n_p, n_t
    candidate = iou >= threshold
    if threshold > 0.5:  # matches are unique above 0.5: no assignment needed
        tp = int(candidate.sum())
    else:
        rows, cols = linear_sum_assignment(-np.where(candidate, iou, 0.0))
        tp = int(candidate[rows, cols].sum())
    return tp, n_p - tp, n_t - tp


def apply_ignore(
    prediction: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Drop ground-truth objects touching ``ignore`` and predictions mostly inside it.

    Parameters
    ----------
    prediction, truth : numpy.ndarray
        ``(Y, X)`` instance ids.
    ignore : numpy.ndarray, optional
        ``(Y, X)``, nonzero = do not score.

    Returns
    -------
    prediction, truth : numpy.ndarray
        Copies with the dropped objects set to 0.
    """
    if ignore is None:
        return prediction, truth
    ignore = np.asarray(ignore) != 0
    truth, prediction = truth.copy(), prediction.copy()
    touching = np.unique(truth[ignore])
    truth[np.isin(truth, touching[touching > 0])] = 0
    area = np.bincount(prediction.ravel())
    inside = np.bincount(prediction[ignore].ravel(), minlength=area.size)
    mostly = np.flatnonzero(inside > 0.5 * np.maximum(area, 1))
    prediction[np.isin(prediction, mostly[mostly > 0])] = 0
    return prediction, truth


@dataclass
class Scores:
    """Accumulated counts over images and the metrics derived from them."""

    counts: dict[float, list[int]] = field(
        default_factory=lambda: {t: [0, 0, 0] for t in THRESHOLDS}
    )
    intersection: int = 0
    predicted: int = 0
    true: int = 0
    union: int = 0
    images: int = 0

    def add(
        self, prediction: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None
    ) -> None:
        """Score one image and add its counts.

        Parameters
        ----------
        prediction, truth : numpy.ndarray
            ``(Y, X)`` instance ids.
        ignore : numpy.ndarray, optional
            ``(Y, X)`` region not scored.
        """
        prediction, truth = _check_pair(prediction, truth, ignore)
        prediction, truth = apply_ignore(prediction, truth, ignore)
        valid = np.ones(truth.shape, bool) if ignore is None else np.asarray(ignore) == 0
        p_fg, t_fg = (prediction > 0) & valid, (truth > 0) & valid
        self.intersection += int(np.sum(p_fg & t_fg))
        self.union += int(np.sum(p_fg | t_fg))
        self.predicted += int(p_fg.sum())
        self.true += int(t_fg.sum())
        prediction = relabel_sequential(prediction)[0]
        truth = relabel_sequential(truth)[0]
        iou = iou_matrix(prediction, truth)
        for t in THRESHOLDS:
            tp, fp, fn = match_counts(iou, t)
            c = self.counts[t]
            c[0] += tp
            c[1] += fp
            c[2] += fn
        self.images += 1

    def ap(self, threshold: float = 0.5) -> float:
        """``TP / (TP + FP + FN)`` at an IoU threshold (1.0 when both are empty)."""
        tp, fp, fn = self.counts[threshold]
        return tp / (tp + fp + fn) if tp + fp + fn else 1.0

    def f1(self, threshold: float = 0.5) -> float:
        """``2 TP / (2 TP + FP + FN)``."""
        tp, fp, fn = self.counts[threshold]
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0

    def as_dict(self) -> dict[str, float]:
        """Every metric as a flat dictionary."""
        tp, fp, fn = self.counts[0.5]
        total = self.predicted + self.true
        return {
            "ap50": self.ap(0.5),
            "map": float(np.mean([self.ap(t) for t in THRESHOLDS])),
            "f1_50": self.f1(0.5),
            "ap75": self.ap(0.75),
            "dice": 2 * self.intersection / total if total else 1.0,
            "iou": self.intersection / self.union if self.union else 1.0,
            "tp50": tp,
            "fp50": fp,
            "fn50": fn,
            "images": self.images,
        }


def _check_pair(
    prediction: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    for name, a in (("prediction", prediction), ("ground truth", truth)):
        if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
            raise SemisegInputError(
                f"{name} has dtype {a.dtype}; instance masks must be integer ids",
                "give label images (uint16) with one id per object",
            )
    if prediction.shape != truth.shape:
        raise SemisegInputError(
            f"prediction shape {prediction.shape} differs from ground truth {truth.shape}",
            "compare masks of the same image",
        )
    if ignore is not None and np.shape(ignore) != truth.shape:
        raise SemisegInputError(
            f"ignore mask shape {np.shape(ignore)} differs from ground truth {truth.shape}",
            "give an ignore mask of the same size",
        )
    return prediction.astype(np.int64), truth.astype(np.int64)


def evaluate(
    prediction: np.ndarray | Sequence[np.ndarray],
    truth: np.ndarray | Sequence[np.ndarray],
    ignore: np.ndarray | Sequence[np.ndarray | None] | None = None,
    exclude_border: bool = False,
) -> dict[str, float]:
    """Score predicted instance masks against ground truth.

    Parameters
    ----------
    prediction, truth : numpy.ndarray or sequence of numpy.ndarray
        ``(Y, X)`` instance ids, one pair per image.
    ignore : numpy.ndarray or sequence, optional
        ``(Y, X)`` regions not scored: ground-truth objects touching them and
        predictions lying mostly inside them are dropped.
    exclude_border : bool
        Drop objects touching the image border from both sides first (for
        data sets such as CTC whose border-cut cells are unlabelled).

    Returns
    -------
    dict of str to float
        ``ap50``, ``map`` (mean AP over IoU 0.5:0.05:0.9), ``f1_50``, ``ap75``,
        foreground ``dice`` and ``iou``, counts ``tp50``/``fp50``/``fn50``.

    Examples
    --------
    >>> truth = np.zeros((8, 8), int); truth[1:4, 1:4] = 1; truth[5:8, 5:8] = 2
    >>> evaluate(truth.copy(), truth)["ap50"]
    1.0
    """
    if isinstance(prediction, np.ndarray) and prediction.ndim == 2:
        prediction, truth, ignore = [prediction], [truth], [ignore]
    prediction, truth = list(prediction), list(truth)
    if len(prediction) != len(truth):
        raise SemisegInputError(
            f"{len(prediction)} predictions but {len(truth)} ground-truth images",
            "give one ground-truth image per prediction",
        )
    ignores = list(ignore) if ignore is not None else [None] * len(truth)
    scores = Scores()
    for p, t, ig in zip(prediction, truth, ignores, strict=True):
        if exclude_border:
            p, t = clear_border(np.asarray(p)), clear_border(np.asarray(t))
        scores.add(p, t, ig)
    return scores.as_dict()
