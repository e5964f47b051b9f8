"""Exponential moving average (mean-teacher / weight-averaged) copies of a model."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA(nn.Module):
    """An EMA copy of a model: ``θ̄ ← λ θ̄ + (1 − λ) θ`` after every step (METHODS.md S8).

    Shaped like timm's ``ModelEmaV2``: a deep copy in eval mode, updated under
    ``no_grad`` with ``lerp``. Buffers (BatchNorm statistics) are averaged as
    well, as in BCP's ACDC script; integer buffers are copied.

    Parameters
    ----------
    model : torch.nn.Module
        The student; copied, not referenced.
    decay : float
        λ, e.g. 0.99 for BCP.
    warmup : bool
        Use ``min(decay, (1 + t) / (10 + t))`` so the teacher follows the
        student closely during the first steps (the mean-teacher reference code
        does this).
    """

    def __init__(self, model: nn.Module, decay: float = 0.99, warmup: bool = True) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """The decay used for the next update."""
        t = int(self.updates)
        if self.warmup:
            return min(self.decay, (1.0 + t) / (10.0 + t))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        decay = self.current_decay()
        student = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = student[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value.to(ema_value.dtype), 1.0 - decay)
            else:
                ema_value.copy_(value)
        self.updates += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the averaged model on ``x``."""
        return self.module(x)
