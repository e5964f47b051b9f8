"""Reading images and writing instance masks as TIFF.

Writes go to a temporary name in the target folder and are renamed when
complete, so an interrupted export never leaves a half-written mask; an
existing file is never overwritten unless asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from ..errors import SemisegInputError
from ._files import atomic_write

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg", ".bmp")


def read_image(path: str | Path) -> np.ndarray:
    """Read a TIFF (tifffile) or PNG/JPEG/BMP (scikit-image) file.

    Parameters
    ----------
    path : str or pathlib.Path
        Image file.

    Returns
    -------
    numpy.ndarray
        The stored array (no conversion).

    Raises
    ------
    SemisegInputError
        If the file is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise SemisegInputError("file not found", "check the path", str(path))
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            return np.asarray(tifffile.imread(path))
        from skimage import io as skio

        return np.asarray(skio.imread(path))
    except (OSError, ValueError, RuntimeError, tifffile.TiffFileError) as exc:
        raise SemisegInputError(
            f"cannot read the image ({str(exc).splitlines()[0][:120]})",
            "check that the file is a valid TIFF/PNG/JPEG image",
            str(path),
        ) from exc


def list_images(folder: str | Path, what: str = "images") -> list[Path]:
    """Image files of a folder, sorted by name.

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder to list.
    what : str
        What the folder holds, for messages (e.g. ``"labels"``).

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    SemisegInputError
        If the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise SemisegInputError(
            f"{what} folder does not exist", "check the path (and its spelling)", str(folder)
        )
    if not folder.is_dir():
        raise SemisegInputError(f"{what} path is not a folder", "give a folder", str(folder))
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files and what == "images":
        raise SemisegInputError(
            f"no images found (looked for {', '.join(IMAGE_SUFFIXES)})",
            "put the images in this folder or give another one",
            str(folder),
        )
    return files


def match_by_name(images: Sequence[Path], folder: str | Path | None) -> list[Path | None]:
    """For each image, the file of the same stem in ``folder`` (or None).

    Parameters
    ----------
    images : sequence of pathlib.Path
        Image files.
    folder : str or pathlib.Path, optional
        Folder with labels or masks named like the images.

    Returns
    -------
    list of pathlib.Path or None

    Raises
    ------
    SemisegInputError
        If the match is ambiguous: two files of ``folder`` share the name of an
        image (e.g. ``a.tif`` and ``a.png``), or two images share the name of
        one file.
    """
    if folder is None:
        return [None] * len(images)
    wanted = {p.stem for p in images}
    by_stem: dict[str, Path] = {}
    for path in list_images(folder, what="labels/masks"):
        other = by_stem.setdefault(path.stem, path)
        if other != path and path.stem in wanted:
            raise SemisegInputError(
                f"{other.name} and {path.name} both have the name of image {path.stem}",
                "keep one file per image name (remove or rename the other)",
                str(folder),
            )
    matched: dict[str, Path] = {}
    for image in images:
        if image.stem not in by_stem:
            continue
        other = matched.setdefault(image.stem, image)
        if other != image:
            raise SemisegInputError(
                f"images {other.name} and {image.name} both match {by_stem[image.stem].name}",
                "give the images different names (the part before the extension)",
                str(folder),
            )
    return [by_stem.get(p.stem) for p in images]


def labels_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 when the ids fit, else uint32.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance ids.

    Returns
    -------
    numpy.dtype

    Examples
    --------
    >>> labels_dtype(np.array([0, 70000])).name
    'uint32'
    """
    top = int(labels.max()) if labels.size else 0
    return np.dtype(np.uint16) if top <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def write_tiff(
    path: str | Path, array: np.ndarray, overwrite: bool = False, compress: bool = True
) -> Path:
    """Write an array as TIFF through a temporary file and an atomic rename.

    Parameters
    ----------
    path : str or pathlib.Path
        Destination.
    array : numpy.ndarray
        Data to write.
    overwrite : bool
        Replace an existing file (otherwise refuse).
    compress : bool
        zlib compression.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileExistsError
        If the file exists and ``overwrite`` is False.
    """
    compression = "zlib" if compress else None
    return atomic_write(
        path, lambda tmp: tifffile.imwrite(tmp, array, compression=compression), overwrite
    )


def write_labels(path: str | Path, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write instance masks as uint16 (uint32 when needed) TIFF.

    Parameters
    ----------
    path : str or pathlib.Path
        Destination (``.tif``).
    labels : numpy.ndarray
        ``(Y, X)`` non-negative integer ids.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub" or (labels.size and labels.min() < 0):
        raise SemisegInputError(
            f"masks must be non-negative integer ids, got dtype {labels.dtype}",
            "export a Labels layer",
            str(path),
        )
    return write_tiff(path, labels.astype(labels_dtype(labels)), overwrite=overwrite)


def existing_outputs(paths: Sequence[str | Path]) -> list[Path]:
    """The paths among ``paths`` that already exist (to ask before overwriting).

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
        Planned output files.

    Returns
    -------
    list of pathlib.Path
    """
    return [Path(p) for p in paths if Path(p).exists()]
