"""Paths and arrays of the bundled CC0 sample data (no GUI imports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_DIR = Path(__file__).parent / "sample_data"
NAMES = ("nuclei_a", "nuclei_b", "nuclei_c")


def sample_folders() -> dict[str, Path]:
    """Folders of the sample: ``images``, ``annotations``, ``known`` and ``truth``.

    Returns
    -------
    dict of str to pathlib.Path
    """
    return {name: SAMPLE_DIR / name for name in ("images", "annotations", "known", "truth")}


def load_sample() -> list[dict[str, np.ndarray | str | None]]:
    """The sample images with their sparse annotations.

    Returns
    -------
    list of dict
        One entry per image: ``name``, ``image`` ``(Y, X)`` uint8,
        ``annotation`` ``(Y, X)`` uint16 or None, ``known`` ``(Y, X)`` uint8 or None.
    """
    import tifffile

    folders = sample_folders()
    items = []
    for name in NAMES:
        annotation = folders["annotations"] / f"{name}.tif"
        known = folders["known"] / f"{name}.tif"
        items.append(
            {
                "name": name,
                "image": tifffile.imread(folders["images"] / f"{name}.tif"),
                "annotation": tifffile.imread(annotation) if annotation.exists() else None,
                "known": tifffile.imread(known) if known.exists() else None,
            }
        )
    return items
