"""Atomic file writes: a temporary name in the target folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: str | Path, write: Callable[[Path], object], overwrite: bool = True
) -> Path:
    """Write a file through a temporary name in the same folder, then rename it.

    An interrupted write leaves no partial file behind.

    Parameters
    ----------
    path : str or pathlib.Path
        Final path.
    write : callable
        ``write(tmp_path)`` writes the content.
    overwrite : bool
        Replace an existing file; otherwise raise FileExistsError.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path}: file exists and was not overwritten. Fix: choose another name or "
            "folder, or allow overwriting (--overwrite)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
