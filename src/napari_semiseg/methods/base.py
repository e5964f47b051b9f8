"""The protocol every training method implements (STYLE.md section 5).

The engine knows only this class. A method owns its networks and losses; the
engine owns the optimiser, the schedule, ``backward()`` and ``step()``.

Batches are dictionaries of tensors on the method's device:

=====================  ===================  ==========================================
key                    layout               meaning
=====================  ===================  ==========================================
``image``              (B, C, P, P) float   annotated patches, normalised
``target``             (B, P, P) int64      0 bg, 1 interior, 2 border, 255 unknown
``weight``             (B, P, P) float      U-Net weight map, 0 on unknown pixels
``labels``             (B, P, P) int64      instance ids, 0 = no annotated cell
``known``              (B, P, P) float      1 where the class is known
``unlabelled_*``       same                 patches from the unknown pool (only for
                                            methods with ``uses_unlabelled``)
=====================  ===================  ==========================================
"""

from __future__ import annotations

import abc
import dataclasses
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.annotations import N_CLASSES
from ..data.augment import AugmentConfig
from ..errors import SemisegInputError
from ..models import UNetConfig
from ..models.layout import place_network

Batch = dict[str, torch.Tensor]


#: Images whose median normalised pixel is below this look dark (fluorescence-like).
DARK_IMAGE_LEVEL = 0.25


def looks_like_fluorescence(summary: dict[str, Any]) -> bool:
    """Whether images look like fluorescence: mostly dark, cells brighter than background.

    Parameters
    ----------
    summary : dict
        ``TrainingData.summary()``: ``image_level``, ``background_level`` and
        ``cell_level`` (normalised intensities; missing or NaN = unknown).

    Returns
    -------
    bool
        True when the median pixel is below :data:`DARK_IMAGE_LEVEL` and the
        annotated cells are brighter than the known background. In the
        benchmark sets the median pixel is 0.00-0.02 for the two fluorescence
        sets and 0.50-0.93 for brightfield, H&E and EM.
    """
    image, background, cells = (
        float("nan") if summary.get(k) is None else float(summary[k])
        for k in ("image_level", "background_level", "cell_level")
    )
    if not np.isfinite(image) or image >= DARK_IMAGE_LEVEL:
        return False
    return not (np.isfinite(background) and np.isfinite(cells)) or cells > background


def dim_contrast_field(default: float) -> Any:
    """Dataclass field ``dim_contrast`` (read by :meth:`Method.augment_for_data`)."""
    return field(
        default=default,
        metadata=setting(
            0.05, 1.0, 0.05,
            "on dark (fluorescence-like) images also train on patches dimmed down to this "
            "contrast, so bright annotated cells teach dim ones (1 = off)",
        ),
    )  # fmt: skip


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's hyper-parameters (a frozen dataclass with defaults).

    The Train widget builds its form from the fields; field metadata may hold
    ``{"min": ..., "max": ..., "step": ..., "help": ...}`` for the widget, or
    ``{"choices": (...), "help": ...}`` for a setting with a few named values.
    Values are checked here: choices, and the range ``"limits": (low, high)``
    where given, otherwise ``min``/``max`` (the widget's range). ``limits`` is
    for settings whose valid range is wider than what the form usually needs.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            try:
                value = _coerce(f.name, value, hints.get(f.name))
            except SemisegInputError:
                if choices is None:
                    raise
            object.__setattr__(self, f.name, value)
            if choices is not None and value not in choices:
                raise SemisegInputError(
                    f"{f.name} = {value!r} is not one of {', '.join(map(repr, choices))}",
                    f"set {f.name} to one of them",
                )
            low, high = f.metadata.get("limits", (f.metadata.get("min"), f.metadata.get("max")))
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            below = number and low is not None and value < low
            if below or (number and high is not None and value > high):
                raise SemisegInputError(
                    f"{f.name} = {value!r} is outside its range [{low}, {high}]",
                    f"set {f.name} to a value from {low} to {high}",
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary for checkpoints and JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> MethodConfig:
        """Build from a dictionary; unknown keys are refused.

        Values are converted to the field's type where that is unambiguous
        (``"0.5"`` to 0.5, ``"false"`` to False, 3.0 to 3) and checked against the
        field's range and choices.

        Parameters
        ----------
        values : dict, optional
            Field values; missing fields keep their defaults.

        Returns
        -------
        MethodConfig

        Raises
        ------
        SemisegInputError
            For an unknown key, a value of the wrong type, or one out of range.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values or {}) - names
        if unknown:
            raise SemisegInputError(
                f"unknown settings {sorted(unknown)} for {cls.__qualname__}",
                f"use only {', '.join(sorted(names))}",
            )
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


def setting(
    low: float, high: float, step: float, text: str, limits: tuple[float, float] | None = None
) -> dict[str, object]:
    """Field metadata of a numeric setting: form range, step, help, optional wider limits.

    Examples
    --------
    >>> setting(0.0, 1.0, 0.1, "weight")
    {'min': 0.0, 'max': 1.0, 'step': 0.1, 'help': 'weight'}
    """
    meta: dict[str, object] = {"min": low, "max": high, "step": step, "help": text}
    if limits is not None:
        meta["limits"] = limits
    return meta


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Convert a setting to its declared type (bool, int, float or str) or refuse it.

    Parameters
    ----------
    name : str
        Setting name (for the message).
    value : object
        Given value (from a form, JSON, a checkpoint or the command line).
    kind : type or None
        Declared type; ``X | None`` accepts None, anything else is left alone.

    Returns
    -------
    object
        The converted value.
    """
    if value is None and kind is not None and type(None) in typing.get_args(kind):
        return None
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if args:
        kind = args[0] if len(args) == 1 else None
    expected = {bool: "true or false", int: "a whole number", float: "a number"}.get(
        kind, f"a {getattr(kind, '__name__', kind)}"
    )
    wrong = SemisegInputError(f"{name} = {value!r} is not {expected}", f"give {name} {expected}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise wrong
    if kind is int:
        if isinstance(value, bool):
            raise wrong
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise wrong from None
        if isinstance(value, (int, np.integer)):
            return int(value)
        raise wrong
    if kind is float:
        if isinstance(value, bool):
            raise wrong
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise wrong from None
        if not isinstance(value, (int, float, np.integer, np.floating)):
            raise wrong
        if not math.isfinite(float(value)):
            raise SemisegInputError(f"{name} = {value!r} is not finite", f"give {name} a number")
        return float(value)
    if kind is str and not isinstance(value, str):
        raise wrong
    return value


@dataclass(frozen=True)
class StepOutput:
    """What :meth:`Method.training_step` returns.

    Parameters
    ----------
    loss : torch.Tensor
        Scalar to minimise (the engine calls ``backward`` on it).
    terms : dict of str to float
        Loss terms for logging and the loss plot.
    """

    loss: torch.Tensor
    terms: dict[str, float]


class Method(abc.ABC):
    """Base class of training methods.

    Subclasses set ``name``, ``label``, ``description`` and ``Config``, build
    their networks in ``__init__`` and implement :meth:`training_step`.

    Parameters
    ----------
    config : MethodConfig
        Method hyper-parameters (an instance of ``cls.Config``).
    model_config : UNetConfig
        Backbone architecture.
    in_channels : int
        Image channels.
    device : torch.device or str
        Where the networks live.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    #: Whether the engine should add ``unlabelled_*`` patches to every batch.
    uses_unlabelled: ClassVar[bool] = False
    #: Number of semantic classes predicted.
    n_classes: ClassVar[int] = N_CLASSES
    #: Whether the interior class may be the cell core (``TrainConfig.core_depth``);
    #: False for methods that need the thin Sobel border as their border target.
    core_targets: ClassVar[bool] = True
    #: Boolean settings that a new model gets turned off where most pixels of the
    #: images look like nothing annotated (``TrainingData.unseen_intensity``),
    #: unless the method's setting ``<name>_on_unseen`` is true
    #: (:meth:`settings_for_data`).
    off_where_unseen: ClassVar[tuple[str, ...]] = ()
    #: Keep the dimmed patches of ``dim_contrast`` even where the annotation already
    #: holds a cell that faint (:meth:`augment_for_data`).
    dim_with_faint_annotation: ClassVar[bool] = False
    #: Settings whose default changed: the value that model files written before
    #: the change were trained with (they do not store a setting they did not have).
    former_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        config: MethodConfig,
        model_config: UNetConfig,
        in_channels: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = config
        self.model_config = model_config
        self.in_channels = in_channels
        self.device = torch.device(device)
        #: Fraction of training done, in [0, 1]; set by the engine before each step.
        self.progress = 0.0
        #: Arrays worth showing from the last training step (e.g. mixed inputs).
        self.batch_previews: dict[str, np.ndarray] = {}

    @classmethod
    def build(
        cls,
        config: MethodConfig | dict[str, Any] | None,
        model_config: UNetConfig,
        in_channels: int,
        device: torch.device | str = "cpu",
    ) -> Method:
        """Create the method and its networks on ``device``.

        Parameters
        ----------
        config : MethodConfig or dict, optional
            Hyper-parameters; defaults when None.
        model_config : UNetConfig
            Backbone architecture.
        in_channels : int
            Image channels.
        device : torch.device or str
            Target device.

        Returns
        -------
        Method
        """
        if not isinstance(config, cls.Config):
            config = cls.Config.from_dict(config if isinstance(config, dict) else None)
        method = cls(config, model_config, in_channels, device)
        for net in method.networks().values():
            place_network(net, method.device)
        return method

    # -- what subclasses provide -------------------------------------------------
    @abc.abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """Every network of the method by name (EMA copies included)."""

    @abc.abstractmethod
    def training_step(self, batch: Batch, step: int) -> StepOutput:
        """Compute the loss for one batch; never calls ``backward``/``step``.

        Parameters
        ----------
        batch : dict of str to torch.Tensor
            See the module docstring for keys and layouts.
        step : int
            Index of this optimisation step.

        Returns
        -------
        StepOutput
        """

    @abc.abstractmethod
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K, Y, X)`` for images ``(B, C, Y, X)``."""

    # -- optional hooks ------------------------------------------------------------
    def parameters_to_optimize(self) -> Iterable[nn.Parameter] | list[dict[str, Any]]:
        """Parameters (or parameter groups with their own ``lr``) the engine optimises."""
        params: list[nn.Parameter] = []
        for net in self.networks().values():
            params.extend(p for p in net.parameters() if p.requires_grad)
        return params

    def after_optimizer_step(self, step: int) -> None:  # noqa: B027 (optional hook)
        """Called after every optimiser step (EMA updates, schedules)."""

    @classmethod
    def settings_for_data(
        cls, settings: dict[str, Any], summary: dict[str, Any]
    ) -> dict[str, Any]:
        """Settings to build a new model with, given the training data.

        Called by the engine before it builds the networks of a new model (not
        when a model is continued). The default turns off the settings named
        in :attr:`off_where_unseen` when the data summary says most pixels
        look like nothing annotated (``unseen_typical_pixel``), unless their
        ``<name>_on_unseen`` setting keeps them; otherwise the settings are
        returned unchanged.

        Parameters
        ----------
        settings : dict
            The user's method settings (``TrainConfig.method_config``).
        summary : dict
            ``TrainingData.summary()``.

        Returns
        -------
        dict
            The settings to use; they are saved with the model.
        """
        if not cls.off_where_unseen or not summary.get("unseen_typical_pixel"):
            return settings
        config = cls.Config.from_dict(settings)
        off = {
            name: False
            for name in cls.off_where_unseen
            if getattr(config, name) and not getattr(config, f"{name}_on_unseen")
        }
        return {**settings, **off} if off else settings

    def augment_for_data(self, augment: AugmentConfig, summary: dict[str, Any]) -> AugmentConfig:
        """The augmentation to train with, given the training data.

        Called by the engine once before training (new or continued models);
        the result is saved with the model. For a method whose settings have
        ``dim_contrast`` below 1 (:func:`dim_contrast_field`), on images that
        :func:`looks_like_fluorescence`, each patch is also scaled by a
        log-uniform factor in ``[dim_contrast, 1]``
        (:attr:`AugmentConfig.min_contrast`; a stronger setting of the user's
        is kept), so the bright annotated cells teach the network dim ones.
        Never on transmitted-light images, where scaling towards 0 darkens the
        bright background instead of fading the cells. Nor, unless the method
        sets :attr:`dim_with_faint_annotation`, when the annotation already
        holds a cell at least that faint against the median one
        (``dimmest_cell_contrast`` of the summary at or below
        ``dim_contrast``): the dimmed patches would show nothing fainter than
        the annotated cells do, only fainter things called cells (on CTC, whose
        annotated square holds a cell at 0.11 of the median contrast, 0.2 gave
        the U-Net false objects on dim blobs the annotation leaves out:
        0.973 -> 0.946 AP50, three seeds; docs/benchmarks.md). Otherwise
        ``augment`` is returned unchanged.

        Parameters
        ----------
        augment : AugmentConfig
            The user's augmentation settings (``TrainConfig.augment``).
        summary : dict
            ``TrainingData.summary()``.

        Returns
        -------
        AugmentConfig
        """
        dim, blocked_by = self._dimming(augment, summary)
        if dim is None or blocked_by is not None:
            return augment
        return dataclasses.replace(augment, min_contrast=dim)

    def _dimming(
        self, augment: AugmentConfig, summary: dict[str, Any]
    ) -> tuple[float | None, float | None]:
        """``(dim_contrast, dimmest annotated cell)`` of :meth:`augment_for_data`'s choice.

        The first is None where the dimming does not concern these settings and
        images (off, the user's own is as strong, not fluorescence); the second
        is the dimmest annotated cell's relative contrast where that cell stops
        the dimming, else None.
        """
        dim = float(getattr(self.config, "dim_contrast", 1.0))
        if dim >= 1.0 or augment.min_contrast <= dim or not looks_like_fluorescence(summary):
            return None, None
        dimmest = summary.get("dimmest_cell_contrast")
        if self.dim_with_faint_annotation or dimmest is None or not np.isfinite(dimmest):
            return dim, None
        return dim, (float(dimmest) if float(dimmest) <= dim else None)

    def data_notes(self, augment: AugmentConfig, summary: dict[str, Any]) -> list[str]:
        """Sentences for the user about settings the training data turned off.

        Shown when training starts (with ``TrainingData.advice``): a setting the
        user sees in the form but that :meth:`augment_for_data` does not apply
        to these data should not be skipped silently.

        Parameters
        ----------
        augment : AugmentConfig
            The user's augmentation settings.
        summary : dict
            ``TrainingData.summary()``.

        Returns
        -------
        list of str
            Empty when every setting applies.
        """
        dim, dimmest = self._dimming(augment, summary)
        if dim is None or dimmest is None:
            return []
        note = (
            f"dimmed training patches (dim contrast {dim:g}) are not used: the cells you "
            f"annotated already include one at {dimmest:.2f} of the typical cell's contrast, "
            "so the network is shown dim cells. Set dim contrast below that to use them anyway"
        )
        return [note]

    def on_training_data(self, summary: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Called by the engine once before training with ``TrainingData.summary()``.

        Methods that need statistics of the annotations (e.g. the median cell
        area for a size prior) read them here; the default ignores them.

        Parameters
        ----------
        summary : dict
            ``images``, ``cells``, ``median_cell_area``, ... of the training data.
        """

    def training_view(self, data: Any) -> Any:
        """The training data the engine draws patches from (called once before training).

        A method may return the images changed, e.g. resized so that cells
        annotated at another magnification look like the typical annotated
        cell; previews, calibration and :meth:`on_training_end` still see the
        images as given. The default returns ``data`` itself.

        Parameters
        ----------
        data : TrainingData
            The training images, annotations and known masks.

        Returns
        -------
        TrainingData
            ``data`` or a new object (``data`` is not modified).
        """
        return data

    def on_training_end(self, data: Any) -> None:  # noqa: B027 (optional hook)
        """Called by the engine once after the last step, in eval mode, before saving.

        Methods that calibrate something on the annotated images with the
        trained weights do it here; the default does nothing.

        Parameters
        ----------
        data : TrainingData
            The training images, annotations and known masks.
        """

    @property
    def n_outputs(self) -> int:
        """Channels of :meth:`output_probabilities`: the classes, plus any extra maps."""
        return self.n_classes

    def output_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B, n_outputs, Y, X)`` from :meth:`predict`'s output.

        The default is the softmax over the classes. Methods with extra outputs
        (e.g. a cell-depth map after the classes) override it; the first
        :attr:`n_classes` channels are always the class probabilities.

        Parameters
        ----------
        logits : torch.Tensor
            ``(B, n_outputs, Y, X)`` raw output of :meth:`predict`.

        Returns
        -------
        torch.Tensor
            ``(B, n_outputs, Y, X)`` float32.
        """
        return torch.softmax(logits.float(), 1)

    def postprocess_settings(self) -> dict[str, Any]:
        """Post-processing fields this method's settings decide (``PostprocessConfig``)."""
        return {}

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Pseudo-labels ``(B, Y, X)`` and confidence ``(B, Y, X)``, for methods that have them."""
        return None

    def preview(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Maps worth showing live for one image ``(1, C, Y, X)``.

        The default gives the class probabilities (``probabilities``,
        ``(K, Y, X)``, see :meth:`output_probabilities`), the foreground
        probability and, for methods that have them, pseudo-labels and their
        confidence. Subclasses add their own maps.

        Parameters
        ----------
        x : torch.Tensor
            ``(1, C, Y, X)`` image on the method's device.

        Returns
        -------
        dict of str to numpy.ndarray
            ``(Y, X)`` maps (``probabilities`` is ``(K, Y, X)``).
        """
        probs = self.output_probabilities(self.predict(x))[0]
        out = {
            "probabilities": probs.cpu().numpy(),
            "foreground": (1.0 - probs[0]).cpu().numpy(),
        }
        pseudo = self.pseudo_labels(x)
        if pseudo is not None:
            out["pseudo_labels"] = pseudo[0][0].cpu().numpy().astype(np.uint8)
            out["confidence"] = pseudo[1][0].float().cpu().numpy()
        return out

    # -- state -----------------------------------------------------------------------
    def train(self, mode: bool = True) -> Method:
        """Put every network in training (or eval) mode; EMA copies stay in eval."""
        for name, net in self.networks().items():
            net.train(mode and not name.endswith("ema"))
        return self

    def eval(self) -> Method:
        """Put every network in eval mode."""
        return self.train(False)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Weights of every network by name (CPU tensors, safe for ``weights_only``)."""
        return {
            name: {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            for name, net in self.networks().items()
        }

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load weights saved by :meth:`state_dict` (strict: names and shapes must match)."""
        nets = self.networks()
        if set(state) != set(nets):
            raise ValueError(f"networks {sorted(state)} do not match {sorted(nets)}")
        for name, net in nets.items():
            net.load_state_dict(state[name])
