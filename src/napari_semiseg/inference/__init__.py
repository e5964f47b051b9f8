"""Inference: overlap-tile prediction and post-processing into instance masks."""

from .postprocess import PostprocessConfig, instances_from_probabilities
from .predict import Segmentation, predict_probabilities, run, segment
from .tiling import TileDone, TilingConfig, predict_tiled

__all__ = [
    "PostprocessConfig",
    "Segmentation",
    "TileDone",
    "TilingConfig",
    "instances_from_probabilities",
    "predict_probabilities",
    "predict_tiled",
    "run",
    "segment",
]
