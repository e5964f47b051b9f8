"""napari-semiseg: interactive semi-supervised cell segmentation.

The package is a small PyTorch library with a napari front end. Importing it is
cheap: torch and the GUI are only imported when a function that needs them is
called. The public functions are

- :func:`train` / :func:`iter_train`: train a model on sparse annotations,
- :func:`predict`: instance masks for new images (tiled, any size),
- :func:`evaluate`: instance AP, F1, Dice and IoU against ground truth,
- :func:`load_model`: a checkpoint written by :func:`train`,
- :func:`run_demo`: the headless demo on the bundled sample data.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = [
    "__version__",
    "evaluate",
    "iter_train",
    "load_model",
    "load_training_data",
    "predict",
    "run_demo",
    "train",
]

_LAZY = {
    "train": "napari_semiseg.api",
    "iter_train": "napari_semiseg.api",
    "predict": "napari_semiseg.api",
    "load_model": "napari_semiseg.api",
    "load_training_data": "napari_semiseg.api",
    "run_demo": "napari_semiseg.api",
    "evaluate": "napari_semiseg.evaluation",
}


def __getattr__(name: str) -> Any:
    """Import the public functions on first use (keeps ``import napari_semiseg`` light)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_semiseg' has no attribute {name!r}")
