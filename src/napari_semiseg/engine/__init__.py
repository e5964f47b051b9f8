"""Training engine: configuration, events, the training generator and checkpoints."""

from .checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from .config import TrainConfig, model_preset
from .device import resolve_device
from .events import (
    CheckpointSaved,
    Event,
    PreviewUpdated,
    StepFinished,
    TrainingFinished,
    TrainingStarted,
)
from .loop import TrainingControl, TrainingError, TrainingResult, train

__all__ = [
    "CheckpointSaved",
    "Event",
    "LoadedModel",
    "PreviewUpdated",
    "StepFinished",
    "TrainConfig",
    "TrainingControl",
    "TrainingError",
    "TrainingFinished",
    "TrainingResult",
    "TrainingStarted",
    "load_checkpoint",
    "model_preset",
    "resolve_device",
    "save_checkpoint",
    "train",
]
