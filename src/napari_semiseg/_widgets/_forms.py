"""Forms generated from a method's ``Config`` dataclass (magicgui widgets per field).

Adding a method never changes widget code: every field becomes a widget chosen
from its type, with the field metadata ``min``, ``max``, ``step``, ``help`` and
``choices`` as options.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import typing
from typing import Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    LineEdit,
    SpinBox,
    Widget,
    create_widget,
)

from ..engine.config import DEVICES, TrainConfig
from ..errors import SemisegInputError
from ..models import PRESETS

#: Range given to numbers whose field metadata sets none.
NUMBER_RANGE = 1e6


def float_step(default: float, step: float | None = None) -> float:
    """Spin-box step for a float field: the metadata's, else a tenth of the default's scale.

    magicgui rounds a float spin box to the decimals of its step, so a default
    of 1e-3 needs a step of 1e-4 to survive.

    Parameters
    ----------
    default : float
        The field's default value.
    step : float, optional
        Step from the field metadata.

    Returns
    -------
    float
    """
    if step:
        return float(step)
    if not default:
        return 0.01
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1)


def _label(name: str) -> str:
    return name.replace("_", " ")


def field_widget(field: dataclasses.Field, annotation: Any) -> Widget:
    """A magicgui widget for one dataclass field (value = the field default)."""
    meta = dict(field.metadata)
    default = field.default
    if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    common: dict[str, Any] = {"name": field.name, "label": _label(field.name)}
    options: dict[str, Any] = {"tooltip": meta["help"]} if "help" in meta else {}
    if "choices" in meta:
        return ComboBox(value=default, choices=list(meta["choices"]), **common, **options)
    if annotation in (int, float):
        low = meta.get("min", 0 if default >= 0 else -NUMBER_RANGE)
        options.update(min=low, max=meta.get("max", NUMBER_RANGE))
        if annotation is float:
            options["step"] = float_step(default, meta.get("step"))
        elif "step" in meta:
            options["step"] = meta["step"]
    try:
        return create_widget(value=default, annotation=annotation, options=options, **common)
    except (TypeError, ValueError):
        # types magicgui has no widget for: edit the Python literal
        return LineEdit(value=repr(default), tooltip=options.get("tooltip"), **common)


def method_form(config_class: type) -> Container:
    """A container with one widget per field of a method ``Config`` dataclass.

    Parameters
    ----------
    config_class : type
        A frozen dataclass (subclass of ``MethodConfig``).

    Returns
    -------
    magicgui.widgets.Container
    """
    hints = typing.get_type_hints(config_class)
    widgets = [field_widget(f, hints.get(f.name, str)) for f in dataclasses.fields(config_class)]
    form = Container(widgets=widgets, labels=True)
    # untouched fields keep their exact default (a spin box shows 2/3 as 0.67)
    form.edited = set()
    for widget in widgets:
        widget.changed.connect(lambda *_, name=widget.name: form.edited.add(name))
    return form


def form_values(form: Container, config_class: type) -> dict[str, Any]:
    """Field values from a form made by :func:`method_form`.

    Parameters
    ----------
    form : magicgui.widgets.Container
        The form.
    config_class : type
        The dataclass it was made for.

    Returns
    -------
    dict
        Field name to value (line edits are parsed as Python literals).
    """
    values = {}
    for field in dataclasses.fields(config_class):
        widget = form[field.name]
        untouched = field.name not in getattr(form, "edited", {field.name})
        if untouched and field.default is not dataclasses.MISSING:
            values[field.name] = field.default
            continue
        value = widget.value
        if isinstance(widget, LineEdit) and not isinstance(field.default, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError) as exc:
                raise SemisegInputError(
                    f"{_label(field.name)}: {value!r} is not a valid value",
                    "type a Python literal such as 0.5, (1, 2) or 'text'",
                ) from exc
        values[field.name] = value
    return values


def training_settings() -> Container:
    """Widgets for the method-independent training settings.

    Their names are TrainConfig fields, plus ``model_size`` and ``gamma`` (the
    intensity gamma of :class:`~napari_semiseg.data.Normalization`); a
    ``time_budget`` of 0 means no limit.

    Returns
    -------
    magicgui.widgets.Container
    """
    defaults = TrainConfig()
    return Container(
        labels=True,
        widgets=[
            ComboBox(name="model_size", label="model size", choices=list(PRESETS), value="small"),
            ComboBox(name="device", choices=list(DEVICES), value="auto"),
            SpinBox(name="steps", value=500, min=1, max=1_000_000, step=50),
            FloatSpinBox(
                name="time_budget",
                label="time budget (s)",
                value=120.0,
                min=0.0,
                max=86_400.0,
                step=10.0,
                tooltip="0 = no limit (only steps)",
            ),
            FloatSpinBox(
                name="preview_every",
                label="live update (s)",
                value=5.0,
                min=0.0,
                max=600.0,
                step=0.5,
                tooltip="seconds between live layer updates (0 = off)",
            ),
            SpinBox(
                name="batch_size", label="batch size", value=defaults.batch_size, min=1, max=256
            ),
            SpinBox(
                name="patch_size",
                label="patch size",
                value=defaults.patch_size,
                min=16,
                max=2048,
                step=16,
            ),
            FloatSpinBox(
                name="lr",
                label="learning rate",
                value=defaults.lr,
                min=1e-6,
                max=1.0,
                step=float_step(defaults.lr),
            ),
            FloatSpinBox(
                name="gamma",
                label="intensity gamma",
                value=1.0,
                min=0.1,
                max=4.0,
                step=0.1,
                tooltip="applied after percentile scaling: 1 = linear; 0.5 lifts dim nuclei in "
                "fluorescence of uneven brightness. A model keeps its own when continued.",
            ),
            FloatSpinBox(
                name="core_depth",
                label="cell core depth",
                value=defaults.core_depth,
                min=0.0,
                max=0.85,
                step=0.05,
                tooltip="the network learns each cell's core (pixels deeper than this fraction "
                "of the cell's depth) and grows it back: keeps touching cells apart. 0 = thin "
                "borders (U-Net paper). A model keeps its own when continued.",
            ),
            SpinBox(name="seed", value=0, min=0, max=2**31 - 1),
        ],
    )
