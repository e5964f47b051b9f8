"""Template for a new training method: copy this file, rename, fill in, register.

This file is a complete, working (deliberately minimal) method: a U-Net trained
with plain cross-entropy on the known pixels. It is not registered, so it does
not appear in the GUI or the command line; the shared contract test
(``tests/methods/test_contract.py``) runs it too, so the template never rots.

To add a method:

1. Copy this file to ``methods/<your_method>.py``.
2. Set ``name`` (the CLI's ``--method`` value), ``label`` (the GUI's combo box
   text) and ``description`` (one or two sentences shown under the combo box).
3. Put every hyper-parameter in the ``Config`` dataclass, with a type, a default
   and ``metadata={"min": ..., "max": ..., "step": ..., "help": ...}`` (values
   are converted to the type and checked against the range): the Train
   widget builds its form from these fields, the CLI sets them with
   ``--set key=value``, and checkpoints store them.
4. Build the networks in ``__init__`` and list them in ``networks()`` (names
   ending in ``ema`` stay in eval mode). Reuse ``models`` (U-Net, EMA),
   ``losses`` (masked/weighted losses, entropy, KL) and ``engine.schedules``
   (ramps) rather than writing them again.
5. ``training_step`` returns the loss and a dict of named terms (the loss plot
   shows them). Never call ``backward()`` or ``optimizer.step()``: the engine
   does. Set ``uses_unlabelled = True`` to get ``unlabelled_*`` patches.
6. Optional hooks: ``after_optimizer_step`` (EMA updates), ``pseudo_labels``
   and ``preview`` (maps shown live; see the layer conventions in
   ``engine/events.py``), ``batch_previews`` (arrays from the last batch),
   ``parameters_to_optimize`` (parameter groups with their own ``lr``),
   ``segment_instances`` (a method that predicts instances directly).
7. Register the class in ``methods/__init__.py``; the contract test
   (``tests/methods/test_contract.py``) then runs on it automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..losses import weighted_cross_entropy
from ..models import UNet, UNetConfig
from .base import Batch, Method, MethodConfig, StepOutput


@dataclass(frozen=True)
class TemplateConfig(MethodConfig):
    """Hyper-parameters (each field becomes a widget in the Train tab).

    Parameters
    ----------
    label_smoothing : float
        Cross-entropy label smoothing.
    """

    label_smoothing: float = field(
        default=0.0,
        metadata={"min": 0.0, "max": 0.5, "step": 0.01, "help": "cross-entropy label smoothing"},
    )


class TemplateMethod(Method):
    """Minimal method: U-Net with cross-entropy on the known pixels."""

    name = "template"
    label = "Template (example)"
    description = "A U-Net trained with cross-entropy on the annotated pixels (example only)."
    Config = TemplateConfig
    uses_unlabelled = False

    def __init__(self, config, model_config: UNetConfig, in_channels: int, device="cpu"):
        super().__init__(config, model_config, in_channels, device)
        self.model = UNet(in_channels, self.n_classes, model_config)

    def networks(self) -> dict[str, nn.Module]:
        """Every network, by name (saved in checkpoints under these names)."""
        return {"model": self.model}

    def training_step(self, batch: Batch, step: int) -> StepOutput:
        """Loss on one batch; see ``methods/base.py`` for the batch keys."""
        logits = self.model(batch["image"])
        target = batch["target"]
        if self.config.label_smoothing > 0:
            known = target != 255
            smooth = torch.nn.functional.cross_entropy(
                logits,
                torch.where(known, target, torch.zeros_like(target)),
                reduction="none",
                label_smoothing=self.config.label_smoothing,
            )
            loss = (smooth * known).sum() / known.sum().clamp_min(1)
        else:
            loss = weighted_cross_entropy(logits, target)
        return StepOutput(loss, {"ce": float(loss.detach())})

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, 3, Y, X)`` for images ``(B, C, Y, X)``."""
        return self.model(x)
