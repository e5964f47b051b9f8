"""Training methods: every method is a peer registered in :data:`METHODS`.

Adding a method means adding one file (see ``_template.py``) and one line
here; the engine, the command line and the Train widget pick it up.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import SemisegInputError
from ..models import UNetConfig
from .base import Batch, Method, MethodConfig, StepOutput
from .co_training import CoTraining
from .confkd import ConfKD
from .mean_teacher_bcp import MeanTeacherBCP
from .ppn_auxnet import PPNAuxNet
from .supervised import SupervisedUNet

#: Method name -> class.
METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (SupervisedUNet, MeanTeacherBCP, ConfKD, CoTraining, PPNAuxNet)
}


def get_method(name: str) -> type[Method]:
    """Look a method class up by name.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"unet"``.

    Returns
    -------
    type[Method]

    Raises
    ------
    SemisegInputError
        For unknown names (the message lists the known ones).
    """
    if name not in METHODS:
        raise SemisegInputError(
            f"unknown method {name!r}", f"choose one of {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]


def build_method(
    name: str,
    config: MethodConfig | dict[str, Any] | None,
    model_config: UNetConfig,
    in_channels: int,
    device: torch.device | str = "cpu",
) -> Method:
    """Build a registered method with its networks on ``device``.

    Parameters
    ----------
    name : str
        Registry key.
    config : MethodConfig or dict, optional
        Method hyper-parameters.
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
    return get_method(name).build(config, model_config, in_channels, device)


__all__ = [
    "METHODS",
    "Batch",
    "Method",
    "MethodConfig",
    "StepOutput",
    "build_method",
    "get_method",
]
