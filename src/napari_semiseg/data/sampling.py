"""Random training patches from sparsely annotated images.

Labelled patches are centred on a known pixel with probability
``known_fraction`` (METHODS.md section 2: at least half of the tiles centred on
known pixels), otherwise anywhere in an annotated image. Unlabelled patches
come from the unknown part of every image. Each patch is cut with a margin,
augmented, and cropped back so that the elastic warp sees real context rather
than mirrored borders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .annotations import semantic_target
from .augment import AugmentConfig, augment_patch
from .datasets import TrainingData, TrainingImage, unknown_fraction

#: Grid step of the precomputed lists of known / unknown positions.
_GRID = 4


def crop(array: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    """Cut a ``size x size`` window, mirroring where it leaves the array.

    Parameters
    ----------
    array : numpy.ndarray
        ``(..., Y, X)``.
    y0, x0 : int
        Top-left corner; may be negative or past the end.
    size : int
        Side of the window.

    Returns
    -------
    numpy.ndarray
        ``(..., size, size)``.
    """
    h, w = array.shape[-2:]
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, h), min(x0 + size, w)
    if ye <= ys or xe <= xs:  # window entirely outside: clamp to the nearest part
        ys, ye = min(max(y0, 0), h - 1), min(max(y0, 0), h - 1) + 1
        xs, xe = min(max(x0, 0), w - 1), min(max(x0, 0), w - 1) + 1
    part = array[..., ys:ye, xs:xe]
    pad = [(0, 0)] * (array.ndim - 2) + [
        (ys - y0, y0 + size - ye),
        (xs - x0, x0 + size - xe),
    ]
    if any(p for pair in pad for p in pair):
        part = np.pad(part, pad, mode="symmetric")
    return part


@dataclass(frozen=True)
class SamplerConfig:
    """How patches are drawn.

    Parameters
    ----------
    patch_size : int
        Side of the square patches.
    known_fraction : float
        Probability that a labelled patch is centred on a known pixel.
    margin : int
        Extra context cut around each patch before augmentation.
    core_depth : float
        Interior class = cell cores (see :func:`semantic_target`); 0 = thin borders.
    """

    patch_size: int = 256
    known_fraction: float = 0.9
    margin: int = 24
    core_depth: float = 0.0


class PatchSampler:
    """Draws augmented labelled and unlabelled batches from :class:`TrainingData`.

    Parameters
    ----------
    data : TrainingData
        The training images.
    config : SamplerConfig, optional
        Patch size and sampling bias.
    augment : AugmentConfig, optional
        Augmentation settings.
    """

    def __init__(
        self,
        data: TrainingData,
        config: SamplerConfig | None = None,
        augment: AugmentConfig | None = None,
    ) -> None:
        self.data = data
        self.config = config or SamplerConfig()
        self.augment = augment or AugmentConfig()
        self._annotated = data.annotated
        self._known_pos = [self._positions(im.known) for im in self._annotated]
        self._known_p = _normalised([len(p) for p in self._known_pos])
        self._area_p = _normalised([im.shape[0] * im.shape[1] for im in self._annotated])
        pool = [(im, unknown_fraction(im)) for im in data.images]
        self._pool = [im for im, f in pool if f > 0]
        self._pool_p = _normalised([f * im.shape[0] * im.shape[1] for im, f in pool if f > 0])
        self._unknown_pos = [
            self._positions(None if im.known is None else ~im.known) for im in self._pool
        ]

    @staticmethod
    def _positions(mask: np.ndarray | None) -> np.ndarray | None:
        """Coarse grid of (y, x) positions where ``mask`` holds; None = everywhere."""
        if mask is None:
            return None
        ys, xs = np.nonzero(mask[::_GRID, ::_GRID])
        if ys.size == 0:
            ys, xs = np.nonzero(mask)
            return np.stack([ys, xs], axis=1)
        return np.stack([ys * _GRID, xs * _GRID], axis=1)

    def _centre(
        self, rng: np.random.Generator, image: TrainingImage, positions: np.ndarray | None
    ) -> tuple[int, int]:
        if positions is None or len(positions) == 0:
            return int(rng.integers(image.shape[0])), int(rng.integers(image.shape[1]))
        y, x = positions[int(rng.integers(len(positions)))]
        jitter = rng.integers(_GRID, size=2)
        return (
            int(min(y + jitter[0], image.shape[0] - 1)),
            int(min(x + jitter[1], image.shape[1] - 1)),
        )

    def _patch(
        self, rng: np.random.Generator, image: TrainingImage, centre: tuple[int, int]
    ) -> dict[str, np.ndarray]:
        size, margin = self.config.patch_size, self.config.margin
        big = size + 2 * margin
        y0, x0 = centre[0] - big // 2, centre[1] - big // 2
        pixels = crop(image.image, y0, x0, big)
        if image.labels is None:
            labels = np.zeros((big, big), np.int32)
            known = np.zeros((big, big), bool)
            weight = np.zeros((big, big), np.float32)
        else:
            labels = crop(image.labels, y0, x0, big)
            known = crop(image.known, y0, x0, big)
            weight = crop(image.weight, y0, x0, big)
        pixels, labels, known, weight = augment_patch(
            rng, pixels, labels, known, weight, self.augment
        )
        inner = (slice(margin, margin + size), slice(margin, margin + size))
        labels, known, weight = labels[inner], known[inner], weight[inner]
        return {
            "image": np.ascontiguousarray(pixels[(slice(None), *inner)]),
            "labels": np.ascontiguousarray(labels),
            "known": np.ascontiguousarray(known),
            "target": semantic_target(labels, known, self.config.core_depth),
            "weight": np.ascontiguousarray(np.where(known, weight, 0).astype(np.float32)),
        }

    def labelled_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        """Draw a batch of annotated patches.

        Parameters
        ----------
        rng : numpy.random.Generator
            Random source.
        batch_size : int
            Number of patches B.

        Returns
        -------
        dict of numpy.ndarray
            ``image`` (B, C, P, P) float32, ``labels`` (B, P, P) int32,
            ``known`` (B, P, P) bool, ``target`` (B, P, P) uint8 with
            255 = unknown, ``weight`` (B, P, P) float32.
        """
        patches = []
        for _ in range(batch_size):
            on_known = rng.random() < self.config.known_fraction
            p = self._known_p if on_known else self._area_p
            i = int(rng.choice(len(self._annotated), p=p))
            positions = self._known_pos[i] if on_known else None
            image = self._annotated[i]
            patches.append(self._patch(rng, image, self._centre(rng, image, positions)))
        return _stack(patches)

    def unlabelled_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        """Draw a batch of patches centred on unknown pixels.

        Known pixels that fall inside these patches keep their targets (an
        unlabelled patch may overlap an annotation); everything else has
        target 255.

        Parameters
        ----------
        rng : numpy.random.Generator
            Random source.
        batch_size : int
            Number of patches B.

        Returns
        -------
        dict of numpy.ndarray
            Same keys and layouts as :meth:`labelled_batch`.
        """
        if not self._pool:  # everything is annotated: unlabelled = any patch
            return self.labelled_batch(rng, batch_size)
        patches = []
        for _ in range(batch_size):
            i = int(rng.choice(len(self._pool), p=self._pool_p))
            image = self._pool[i]
            patches.append(self._patch(rng, image, self._centre(rng, image, self._unknown_pos[i])))
        return _stack(patches)


def _normalised(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.sum() <= 0:
        array = np.ones_like(array)
    return array / array.sum()


def _stack(patches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([p[key] for p in patches]) for key in patches[0]}
