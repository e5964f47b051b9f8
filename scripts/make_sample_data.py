"""Build the bundled sample data from the CC0 DSB 2018 fluorescence set.

Run from the repository root with ``../shared/data`` beside it:

    python scripts/make_sample_data.py

Writes ``src/napari_semiseg/sample_data/``: three 256 x 256 nuclei images, a
sparse annotation of the first (every nucleus touching one square region, about
ten cells) with its known-pixel mask, and the complete ground truth of all
three (used by the demo's report only, never for training).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tifffile

from napari_semiseg.data.regions import find_region, region_annotation

SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsb2018_fluo_nuclei"
OUT = Path(__file__).resolve().parents[1] / "src" / "napari_semiseg" / "sample_data"
PICK = {"nuclei_a": "000", "nuclei_b": "012", "nuclei_c": "026"}


def main() -> None:
    for sub in ("images", "annotations", "known", "truth"):
        shutil.rmtree(OUT / sub, ignore_errors=True)
        (OUT / sub).mkdir(parents=True)
    for i, (name, index) in enumerate(PICK.items()):
        image = tifffile.imread(SOURCE / "images" / f"{index}.tif")
        truth = tifffile.imread(SOURCE / "labels" / f"{index}.tif").astype(np.uint16)
        tifffile.imwrite(OUT / "images" / f"{name}.tif", image, compression="zlib")
        tifffile.imwrite(OUT / "truth" / f"{name}.tif", truth, compression="zlib")
        if i == 0:
            top, left, size = find_region(truth, n_cells=10)
            labels, known = region_annotation(truth, top, left, size)
            tifffile.imwrite(
                OUT / "annotations" / f"{name}.tif", labels.astype(np.uint16), compression="zlib"
            )
            tifffile.imwrite(
                OUT / "known" / f"{name}.tif", known.astype(np.uint8), compression="zlib"
            )
            print(
                f"{name}: square top={top} left={left} size={size}, {labels.max()} max id, "
                f"{len(np.unique(labels)) - 1} cells"
            )


if __name__ == "__main__":
    main()
