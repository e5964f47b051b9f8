"""Checkpoints: weights, configuration, normalisation and metadata in one file.

The file is a plain dictionary of tensors, numbers, strings and lists written
with ``torch.save`` and read with ``torch.load(..., weights_only=True)``, so
loading a model never runs code from the file.
"""

from __future__ import annotations

import datetime
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._version import __version__
from ..data.images import Normalization
from ..errors import ModelFileError, SemisegInputError
from ..inference.postprocess import PostprocessConfig
from ..io._files import atomic_write
from ..models import UNetConfig
from .config import TrainConfig

if TYPE_CHECKING:  # methods import engine.schedules: import them lazily (no cycle)
    from ..methods import Method

FORMAT = "napari-semiseg-model"
FORMAT_VERSION = 1


def postprocess_for(
    method: Method,
    core_depth: float,
    contrast: tuple[float, ...] | list[float] | None,
    confidence: float | None,
    config: PostprocessConfig | None = None,
    foreground: float | None = None,
) -> PostprocessConfig:
    """The post-processing of a model, while it trains (previews) and once saved.

    Parameters
    ----------
    method : Method
        Its settings that decide post-processing fields apply
        (:meth:`Method.postprocess_settings`).
    core_depth : float
        ``TrainConfig.core_depth`` the model is trained with.
    contrast : sequence of float, optional
        The annotated cells' median contrast (reference of the contrast filter).
    confidence : float, optional
        Median peak interior probability on the annotated cells
        (:meth:`PostprocessConfig.for_confidence`).
    config : PostprocessConfig, optional
        Base thresholds (default: :class:`PostprocessConfig`).
    foreground : float, optional
        Median foreground probability on the annotated cells
        (:meth:`PostprocessConfig.for_confidence`).

    Returns
    -------
    PostprocessConfig
    """
    config = replace(
        config or PostprocessConfig(),
        core_depth=core_depth,
        reference_contrast=tuple(contrast or ()),
        **method.postprocess_settings(),
    )
    return config.for_confidence(confidence, foreground)


@dataclass
class LoadedModel:
    """A method with its trained weights and everything needed to predict.

    Parameters
    ----------
    method : Method
        The method, its networks in eval mode.
    train_config : TrainConfig
        The configuration it was trained with.
    normalization : Normalization
        Image normalisation to apply before prediction.
    metadata : dict
        Median cell area, steps trained, data summary, creation time, version.
    optimizer_state : dict, optional
        AdamW state, for resuming.
    """

    method: Method
    train_config: TrainConfig
    normalization: Normalization = field(default_factory=Normalization)
    metadata: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None

    @property
    def median_cell_area(self) -> float:
        """Median area of the annotated cells the model was trained on."""
        return float(self.metadata.get("median_cell_area", 0.0))

    @property
    def annotated_contrast(self) -> tuple[float, ...]:
        """Median contrast of the annotated cells to their surroundings (empty: unknown)."""
        return tuple(float(v) for v in self.metadata.get("annotated_contrast") or ())

    @property
    def annotated_confidence(self) -> float | None:
        """Median peak interior probability of the model on its annotated cells."""
        value = self.metadata.get("annotated_confidence")
        return None if value is None else float(value)

    @property
    def annotated_foreground(self) -> float | None:
        """Median foreground probability of the model on its annotated cells."""
        value = self.metadata.get("annotated_foreground")
        return None if value is None else float(value)

    def postprocess(self, config: PostprocessConfig | None = None) -> PostprocessConfig:
        """Post-processing thresholds scaled to this model's confidence.

        Parameters
        ----------
        config : PostprocessConfig, optional
            Base thresholds (default: :class:`PostprocessConfig`).

        Returns
        -------
        PostprocessConfig
            See :meth:`PostprocessConfig.for_confidence`; ``core_depth`` is the
            one the model was trained with, and the method's own settings
            (:meth:`Method.postprocess_settings`) apply; the contrast filter
            measures against the annotated cells' contrast saved with the model.
        """
        return postprocess_for(
            self.method,
            self.train_config.core_depth,
            self.annotated_contrast,
            self.annotated_confidence,
            config,
            self.annotated_foreground,
        )

    @property
    def in_channels(self) -> int:
        """Image channels the model expects."""
        return self.method.in_channels


def save_checkpoint(
    path: str | Path,
    method: Method,
    train_config: TrainConfig,
    metadata: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    normalization: Normalization | None = None,
    overwrite: bool = True,
) -> Path:
    """Save a trained method to one file (atomically).

    Parameters
    ----------
    path : str or pathlib.Path
        Output file (``.pt``).
    method : Method
        The trained method.
    train_config : TrainConfig
        Its configuration.
    metadata : dict
        JSON-like metadata (median cell area, steps, data summary).
    optimizer_state : dict, optional
        Optimiser state for resuming.
    normalization : Normalization, optional
        Image normalisation used in training.
    overwrite : bool
        Replace an existing file (the default, for periodic checkpoints and
        callers that asked the user already); when False an existing file is
        refused.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    SemisegInputError
        If the file exists and ``overwrite`` is False.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise SemisegInputError(
            "model file exists and would be overwritten",
            "choose another file name, or pass overwrite=True (--overwrite) to replace it",
            str(path),
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": method.name,
        "method_config": method.config.to_dict(),
        "model_config": method.model_config.to_dict(),
        "in_channels": method.in_channels,
        "n_classes": method.n_classes,
        "train_config": train_config.to_dict(),
        "normalization": (normalization or Normalization()).to_dict(),
        "metadata": dict(metadata),
        "state": method.state_dict(),
        "optimizer": optimizer_state,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp), overwrite=overwrite)
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ModelFileError("model file not found", "check the path to the .pt file", str(path))
    if path.is_dir():
        raise ModelFileError("this is a folder, not a model file", "give the .pt file", str(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"cannot read this file as a napari-semiseg model ({reason})",
            "give a .pt file written by napari-semiseg train (files that need code to load "
            "are refused for safety)",
            str(path),
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(
            "this is not a napari-semiseg model (it may be a model of another tool, e.g. a "
            "plain PyTorch state dict)",
            "give a .pt file written by napari-semiseg train",
            str(path),
        )
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(
            f"model file format {payload['format_version']} is newer than this version "
            f"understands ({FORMAT_VERSION})",
            "update napari-semiseg",
            str(path),
        )
    return payload


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint` without executing code.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.pt`` file.
    device : torch.device or str
        Where to put the networks.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelFileError
        For missing files, files of other tools, unknown methods and weights
        that do not fit the stored architecture.
    """
    from ..methods import METHODS, build_method

    path = Path(path)
    payload = _read(path)
    name = payload["method"]
    if name not in METHODS:
        raise ModelFileError(
            f"model was trained with method {name!r}, which this version does not know",
            f"update napari-semiseg (known methods: {', '.join(sorted(METHODS))})",
            str(path),
        )
    try:
        method = build_method(
            name,
            # settings missing from older files take the default they were trained with
            {**METHODS[name].former_defaults, **payload["method_config"]},
            UNetConfig(**payload["model_config"]),
            int(payload["in_channels"]),
            device,
        )
        method.load_state_dict(payload["state"])
    except SemisegInputError as exc:  # settings a newer (or other) version wrote
        raise ModelFileError(
            f"the file's {name} settings do not fit this version ({exc.problem})",
            "update napari-semiseg to the version that wrote it, or retrain the model",
            str(path),
        ) from exc
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise ModelFileError(
            f"the weights in this file do not fit its {name} architecture ({reason})",
            "the file is damaged or was written by an incompatible version; retrain the model",
            str(path),
        ) from exc
    method.eval()
    return LoadedModel(
        method=method,
        # files from before core targets were trained with thin borders
        train_config=TrainConfig.from_dict({"core_depth": 0.0, **payload["train_config"]}),
        normalization=Normalization(**payload.get("normalization", {})),
        metadata=dict(payload.get("metadata", {})),
        optimizer_state=payload.get("optimizer"),
    )
