"""Synthetic microscopy-like images with known cells, for fast tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def blobs(
    shape: tuple[int, int] = (96, 96),
    n_cells: int = 12,
    radius: float = 6.0,
    seed: int = 0,
    touching: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Bright round cells on a dark noisy background.

    Returns
    -------
    image : (Y, X) uint16
    labels : (Y, X) int32 instance ids, touching cells split by a Voronoi border
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    centres = []
    tries = 0
    min_gap = radius * (1.6 if touching else 2.4)
    while len(centres) < n_cells and tries < 5000:
        tries += 1
        c = rng.uniform(radius + 1, [h - radius - 1, w - radius - 1])
        if all(np.hypot(*(c - d)) > min_gap for d in centres):
            centres.append(c)
    yy, xx = np.mgrid[:h, :w]
    distance = np.full(shape, np.inf)
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        r = radius * rng.uniform(0.8, 1.2)
        d = np.hypot(yy - cy, xx - cx) / r
        inside = (d < 1) & (d < distance)
        labels[inside] = i
        distance = np.minimum(distance, np.where(d < 1, d, np.inf))
    image = 100 + 800 * (labels > 0) * (1.0 - 0.3 * np.nan_to_num(distance, posinf=1.0))
    image = ndi.gaussian_filter(image, 1.0) + rng.normal(0, 20, shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def disks(shape=(40, 40), centres=((12, 12), (12, 24)), radius=6.0) -> np.ndarray:
    """Instance ids of (possibly touching) disks, later ids win overlaps."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[np.hypot(yy - cy, xx - cx) <= radius] = i
    return labels
