"""Data: image normalisation, sparse annotations, weight maps, augmentation, sampling."""

from .annotations import BACKGROUND, BORDER, IGNORE, INTERIOR, N_CLASSES
from .augment import AugmentConfig
from .datasets import TrainingData, TrainingImage
from .images import Normalization, prepare_image
from .sampling import PatchSampler, SamplerConfig

__all__ = [
    "BACKGROUND",
    "BORDER",
    "IGNORE",
    "INTERIOR",
    "N_CLASSES",
    "AugmentConfig",
    "Normalization",
    "PatchSampler",
    "SamplerConfig",
    "TrainingData",
    "TrainingImage",
    "prepare_image",
]
