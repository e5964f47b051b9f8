"""Training configuration: one frozen dataclass that serialises to JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..data.augment import AugmentConfig
from ..errors import SemisegInputError
from ..models import PRESETS, UNetConfig

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run, besides the data.

    Parameters
    ----------
    method : str
        Registry name of the training method (``napari_semiseg.methods.METHODS``).
    method_config : dict
        Method hyper-parameters (fields of the method's ``Config``).
    model : UNetConfig
        Backbone architecture.
    steps : int
        Maximum number of optimisation steps.
    time_budget : float, optional
        Stop after this many seconds (whichever of steps and budget comes first).
    batch_size : int
        Annotated patches per step.
    unlabelled_batch_size : int, optional
        Unlabelled patches per step for semi-supervised methods (default: batch_size).
    patch_size : int
        Side of the square training patches.
    lr : float
        Base learning rate (AdamW).
    weight_decay : float
        AdamW weight decay.
    schedule : {"cosine", "constant", "poly"}
        Learning-rate decay over the run.
    max_grad_norm : float
        Gradient clipping threshold (0 = off).
    device : {"auto", "cpu", "cuda", "mps"}
        Where to train; auto takes CUDA, then MPS, then CPU.
    amp : bool
        Mixed precision: float16 on CUDA, bfloat16 on a CPU with bfloat16
        hardware (AMX or AVX512-BF16; about twice as many steps in a time
        budget); False keeps float32 everywhere. Losses are always float32.
    seed : int
        Random seed; runs on the CPU with the same seed and steps are identical.
    known_fraction : float
        Share of patches centred on a known pixel.
    augment : AugmentConfig
        Augmentation settings.
    w0, sigma : float
        U-Net weight map parameters.
    core_depth : float
        0: the interior class is the whole cell inside its thin Sobel border (the
        U-Net paper). Above 0: only each cell's core, where the distance to the
        cell's edge exceeds this fraction of the cell's largest one, is interior;
        the rest of the cell is border (``semantic_target``). Methods that need
        the thin border (``core_targets = False``) ignore it.
    preview_every : float
        Seconds between live previews (0 = never).
    preview_image : int, optional
        Index of the image to preview (default: the first annotated one).
    preview_size : int
        Largest side of the previewed window.
    checkpoint_every : float
        Seconds between checkpoints while training (0 = only at the end).
    """

    method: str = "unet"
    method_config: dict[str, Any] = field(default_factory=dict)
    model: UNetConfig = field(default_factory=lambda: PRESETS["small"])
    steps: int = 1000
    time_budget: float | None = None
    batch_size: int = 4
    unlabelled_batch_size: int | None = None
    patch_size: int = 192
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    max_grad_norm: float = 5.0
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    known_fraction: float = 0.9
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    w0: float = 10.0
    sigma: float = 5.0
    core_depth: float = 0.0
    preview_every: float = 10.0
    preview_image: int | None = None
    preview_size: int = 512
    checkpoint_every: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise SemisegInputError(
                f"steps must be at least 1, not {self.steps}", "give --steps 1 or more"
            )
        if self.time_budget is not None and self.time_budget <= 0:
            raise SemisegInputError(
                f"time budget must be positive, not {self.time_budget}", "give seconds > 0"
            )
        if self.device not in DEVICES:
            raise SemisegInputError(
                f"unknown device {self.device!r}", f"choose one of {', '.join(DEVICES)}"
            )
        if not 0.0 <= self.core_depth < 0.9:
            raise SemisegInputError(
                f"core depth must be in [0, 0.9), not {self.core_depth}",
                "give 0 (thin borders) or a fraction such as 0.5",
            )
        if self.patch_size < 16 or self.batch_size < 1:
            raise SemisegInputError(
                "patch size must be at least 16 and batch size at least 1",
                "use e.g. --patch-size 192 --batch-size 4",
            )

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dictionary (nested configs become dictionaries)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error).

        Parameters
        ----------
        values : dict
            As written by :meth:`to_dict`.

        Returns
        -------
        TrainConfig
        """
        values = dict(values)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise SemisegInputError(
                f"unknown training settings {sorted(unknown)}", f"use only {sorted(names)}"
            )
        if isinstance(values.get("model"), dict):
            values["model"] = UNetConfig(**values["model"])
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig(**values["augment"])
        return cls(**values)


def model_preset(name: str) -> UNetConfig:
    """Architecture preset by name (tiny, small, medium, large).

    Parameters
    ----------
    name : str
        Preset name.

    Returns
    -------
    UNetConfig
    """
    if name not in PRESETS:
        raise SemisegInputError(
            f"unknown model size {name!r}", f"choose one of {', '.join(PRESETS)}"
        )
    return PRESETS[name]
