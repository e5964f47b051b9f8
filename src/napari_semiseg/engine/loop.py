"""The training loop: a plain generator of events.

``train(data, config)`` runs in a ``for`` loop in a notebook, in the command
line, or on the plugin's worker thread; it yields at least once per
optimisation step (so a GUI worker can pause or quit there) and returns a
:class:`TrainingResult`. It never starts threads.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.annotations import BACKGROUND, INTERIOR
from ..data.datasets import TrainingData
from ..data.sampling import PatchSampler, SamplerConfig
from ..errors import SemisegInputError
from ..inference.postprocess import (
    annotated_confidence,
    annotated_foreground,
    instances_from_probabilities,
)
from ..models.layout import place_network
from ..models.precision import autocast, mixed_precision_dtype, precision_name
from .checkpoint import LoadedModel, postprocess_for, save_checkpoint
from .config import TrainConfig
from .device import resolve_device
from .events import (
    CheckpointSaved,
    Event,
    PreviewUpdated,
    StepFinished,
    TrainingFinished,
    TrainingStarted,
)
from .schedules import lr_factor

if TYPE_CHECKING:  # methods import engine.schedules: import them lazily (no cycle)
    from ..methods import Method


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN)."""


class TrainingControl:
    """Thread-safe stop request shared between a GUI and the training generator.

    ``stop()`` makes the loop finish after the current step, save and return
    its result (unlike killing the worker, which loses it).
    """

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the loop to finish after the current step."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()


@dataclass
class TrainingResult:
    """What the training generator returns.

    Parameters
    ----------
    model : LoadedModel
        The trained method with its configuration and metadata.
    steps : int
        Total steps trained (including resumed ones).
    elapsed : float
        Seconds spent in this run.
    reason : str
        Why training ended: ``steps``, ``time_budget`` or ``stopped``.
    history : list of dict
        Per-step losses (``step``, ``loss`` and the method's terms).
    checkpoint : str, optional
        Path of the saved checkpoint.
    """

    model: LoadedModel
    steps: int
    elapsed: float
    reason: str
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str | None = None


def _to_tensors(batch: dict[str, np.ndarray], device: torch.device, prefix: str = "") -> dict:
    out = {}
    for key, value in batch.items():
        tensor = torch.from_numpy(value)
        if key in ("target", "labels"):
            tensor = tensor.long()
        elif key == "known":
            tensor = tensor.float()
        out[prefix + key] = tensor.to(device, non_blocking=True)
    return out


def _preview_window(data: TrainingData, index: int, size: int) -> tuple[slice, slice]:
    """Window of at most ``size`` pixels, centred on the annotation when there is one."""
    image = data.images[index]
    h, w = image.shape
    cy, cx = h // 2, w // 2
    if image.known is not None and image.known.any() and not image.known.all():
        ys, xs = np.nonzero(image.known)
        cy, cx = int(ys.mean()), int(xs.mean())
    y0 = min(max(cy - size // 2, 0), max(h - size, 0))
    x0 = min(max(cx - size // 2, 0), max(w - size, 0))
    return slice(y0, min(y0 + size, h)), slice(x0, min(x0 + size, w))


class _Trainer:
    """State of one training run (kept out of the generator for readability)."""

    def __init__(
        self,
        data: TrainingData,
        config: TrainConfig,
        resume: LoadedModel | Method | None,
    ) -> None:
        from ..methods import Method, build_method, get_method

        self.data, self.config = data, config
        #: ``data.summary()``, computed once (the data do not change while training).
        self.summary = data.summary()
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.start_step = 0
        optimizer_state = None
        if isinstance(resume, LoadedModel):
            self.method = resume.method
            self.start_step = int(resume.metadata.get("steps", 0))
            optimizer_state = resume.optimizer_state
        elif isinstance(resume, Method):
            self.method = resume
        else:
            settings = get_method(config.method).settings_for_data(  # clear error if unknown
                dict(config.method_config), self.summary
            )
            self.method = build_method(
                config.method, settings, config.model, data.in_channels, self.device
            )
        self._check_resume(resume)
        core_depth = config.core_depth if self.method.core_targets else 0.0
        if isinstance(resume, LoadedModel):  # the network learnt that kind of interior
            core_depth = resume.train_config.core_depth
        #: sentences for the user about settings these data turned off
        self.notes = tuple(self.method.data_notes(config.augment, self.summary))
        self.config = config = config.replace(
            method=self.method.name,
            model=self.method.model_config,
            method_config=self.method.config.to_dict(),
            core_depth=core_depth,
            augment=self.method.augment_for_data(config.augment, self.summary),
        )
        for net in self.method.networks().values():
            place_network(net, self.device)
        self.method.device = self.device
        data.set_weight_map_parameters(config.w0, config.sigma, config.core_depth)
        #: what patches are drawn from (a method may resize images; previews use ``data``)
        self.train_data = self.method.training_view(data)
        self.train_data.set_weight_map_parameters(config.w0, config.sigma, config.core_depth)
        self.sampler = PatchSampler(
            self.train_data,
            SamplerConfig(config.patch_size, config.known_fraction, core_depth=config.core_depth),
            config.augment,
        )
        params = list(self.method.parameters_to_optimize())
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        if optimizer_state:
            # a different optimiser layout (another method): keep the fresh optimiser
            with contextlib.suppress(ValueError, KeyError):
                self.optimizer.load_state_dict(optimizer_state)
        # loss scaling only for float16 (CUDA); bfloat16 has float32's range
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == torch.float16)
        self.median_area = data.median_cell_area()
        self.contrast = data.annotated_contrast()
        #: Median peak interior probability on the annotated cells (None: unknown).
        self.confidence: float | None = None
        #: Median of the annotated cells' median foreground probability (None: unknown).
        self.foreground: float | None = None
        self.method.on_training_data(self.summary)

    @property
    def _amp(self) -> bool:
        return self.precision is not None

    @property
    def precision(self) -> torch.dtype | None:
        """Reduced precision of the forward passes (None: float32)."""
        return mixed_precision_dtype(self.device, bool(self.config.amp))

    def _check_resume(self, resume: LoadedModel | Method | None) -> None:
        if resume is None:
            return
        if self.method.in_channels != self.data.in_channels:
            raise SemisegInputError(
                f"the model to continue was trained on {self.method.in_channels}-channel images "
                f"but these images have {self.data.in_channels}",
                "continue training on images of the same kind, or start a fresh model",
            )
        if isinstance(resume, LoadedModel) and resume.normalization != self.data.normalization:
            raise SemisegInputError(
                f"the model to continue was trained on images normalised as "
                f"{resume.normalization.to_dict()}, these as {self.data.normalization.to_dict()}",
                "normalise the images like the model (TrainingData.from_arrays(..., "
                "norm=model.normalization)), or start a fresh model",
            )

    def metadata(self, steps: int) -> dict[str, Any]:
        return {
            "median_cell_area": self.median_area,
            "annotated_confidence": self.confidence,
            "annotated_foreground": self.foreground,
            "annotated_contrast": self.contrast,
            "steps": steps,
            "data_summary": self.summary,
            "image_names": [im.name for im in self.data.images][:1000],
        }

    def batch(self) -> dict[str, torch.Tensor]:
        config = self.config
        batch = _to_tensors(self.sampler.labelled_batch(self.rng, config.batch_size), self.device)
        if self.method.uses_unlabelled:
            size = config.unlabelled_batch_size or config.batch_size
            unlabelled = self.sampler.unlabelled_batch(self.rng, size)
            batch.update(_to_tensors(unlabelled, self.device, prefix="unlabelled_"))
        return batch

    def step(self, step: int, progress: float) -> dict[str, float]:
        method, optimizer = self.method, self.optimizer
        factor = lr_factor(progress, self.config.schedule)
        for group, base in zip(optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        method.progress = progress
        method.train()
        batch = self.batch()
        with autocast(self.device, self._amp):
            output = method.training_step(batch, step)
        loss = output.loss
        if not torch.isfinite(loss.detach()):
            raise TrainingError(
                f"training diverged at step {step}: the loss is {float(loss)}. "
                "Lower the learning rate or check the annotations"
            )
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.max_grad_norm > 0:
            self.scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
        method.after_optimizer_step(step)
        terms = {"loss": float(loss.detach())}
        terms.update(output.terms)
        self._last_batch = batch
        return terms

    def preview_index(self) -> int:
        index = self.config.preview_image
        if index is None:
            annotated = [i for i, im in enumerate(self.data.images) if im.is_annotated]
            index = annotated[0] if annotated else 0
        return min(max(index, 0), len(self.data.images) - 1)

    @torch.no_grad()
    def _window_preview(self, index: int) -> tuple[tuple[slice, slice], dict[str, np.ndarray]]:
        window = _preview_window(self.data, index, self.config.preview_size)
        item = self.data.images[index]
        x = torch.from_numpy(np.ascontiguousarray(item.image[(slice(None), *window)]))
        self.method.eval()
        with autocast(self.device, self._amp):
            arrays = self.method.preview(x[None].to(self.device))
        self.method.train()
        return window, arrays

    @staticmethod
    def _cells_and_probabilities(
        item: Any, window: tuple[slice, slice], arrays: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        probabilities = arrays.get("probabilities")
        if item.labels is None or probabilities is None:
            return None
        cells = item.labels[window]
        if probabilities.shape[-2:] != cells.shape or not cells.any():
            return None
        return probabilities, cells

    def _measure_confidence(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """:attr:`confidence` and :attr:`foreground` from (probabilities, cells) windows."""
        if not pairs:
            return
        cells = [c for _, c in pairs]
        self.confidence = annotated_confidence([p[INTERIOR] for p, _ in pairs], cells)
        self.foreground = annotated_foreground([1.0 - p[BACKGROUND] for p, _ in pairs], cells)

    def calibrate(self, max_images: int = 8) -> float | None:
        """Measure :attr:`confidence` and :attr:`foreground` on up to ``max_images`` images."""
        pairs = []
        annotated = [i for i, im in enumerate(self.data.images) if im.is_annotated]
        for index in annotated[:max_images]:
            window, arrays = self._window_preview(index)
            pair = self._cells_and_probabilities(self.data.images[index], window, arrays)
            if pair is not None:
                pairs.append(pair)
        self._measure_confidence(pairs)
        return self.confidence

    def image_preview(self, step: int, first: bool) -> PreviewUpdated:
        index = self.preview_index()
        item = self.data.images[index]
        window, arrays = self._window_preview(index)
        pair = self._cells_and_probabilities(item, window, arrays)
        if pair is not None:
            self._measure_confidence([pair])
        if "instances" not in arrays and "probabilities" in arrays:
            postprocess = postprocess_for(
                self.method, self.config.core_depth, self.contrast, self.confidence,
                foreground=self.foreground,
            )  # fmt: skip
            image = item.image[(slice(None), *window)]
            same = image.shape[-2:] == arrays["probabilities"].shape[-2:]
            arrays["instances"] = instances_from_probabilities(
                arrays["probabilities"], self.median_area, postprocess, image if same else None
            )
        if first and item.weight is not None:
            arrays["weight_map"] = item.weight[window].copy()
        return PreviewUpdated(step, "image", arrays, index, (window[0].start, window[1].start))

    def batch_preview(self, step: int) -> PreviewUpdated:
        batch = self._last_batch
        arrays = {
            "sample_image": batch["image"][0].float().cpu().numpy(),
            "sample_target": batch["target"][0].cpu().numpy().astype(np.uint8),
        }
        arrays.update(self.method.batch_previews)
        return PreviewUpdated(step, "batch", arrays)


def train(
    data: TrainingData,
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    resume: LoadedModel | Method | None = None,
    control: TrainingControl | None = None,
) -> Generator[Event, None, TrainingResult]:
    """Train a method on sparsely annotated data, yielding events.

    Parameters
    ----------
    data : TrainingData
        Annotated and unannotated images.
    config : TrainConfig, optional
        Method, architecture, steps, time budget, device, seed, ...
    out : str or pathlib.Path, optional
        Checkpoint file written at the end (and every ``checkpoint_every`` s).
    resume : LoadedModel or Method, optional
        Continue from these weights instead of a fresh model (the method and
        architecture of ``resume`` win over ``config``).
    control : TrainingControl, optional
        Lets another thread stop training cleanly.

    Yields
    ------
    TrainingStarted, StepFinished, PreviewUpdated, CheckpointSaved, TrainingFinished

    Returns
    -------
    TrainingResult
    """
    config = config or TrainConfig()
    trainer = _Trainer(data, config, resume)
    method, config = trainer.method, trainer.config
    total = config.steps
    yield TrainingStarted(
        method=method.name,
        device=str(trainer.device),
        total_steps=total,
        time_budget=config.time_budget,
        start_step=trainer.start_step,
        n_parameters=sum(p.numel() for n in method.networks().values() for p in n.parameters()),
        data_summary=trainer.summary,
        precision=precision_name(trainer.device, bool(config.amp)),
        advice=(*data.advice(), *trainer.notes),
    )
    history: list[dict[str, float]] = []
    if config.preview_every > 0:
        # before the first step: a viewer creates its live layers now (a one-off cost
        # at the start) and only replaces their data while training runs; a resumed
        # model shows what it predicts at once
        yield trainer.image_preview(trainer.start_step, first=True)
    start = time.perf_counter()
    last_preview = start if config.preview_every > 0 else -math.inf
    last_checkpoint = start
    reason = "steps"
    done = 0
    checkpoint_path = None
    for done in range(1, total + 1):
        elapsed = time.perf_counter() - start
        progress = (done - 1) / total
        if config.time_budget:
            progress = max(progress, elapsed / config.time_budget)
        step = trainer.start_step + done
        terms = trainer.step(step, min(progress, 1.0))
        history.append({"step": float(step), **terms})
        elapsed = time.perf_counter() - start
        rate = done / max(elapsed, 1e-9)
        remaining = (total - done) / rate
        if config.time_budget:
            remaining = min(remaining, max(config.time_budget - elapsed, 0.0))
        yield StepFinished(
            step=step,
            total_steps=trainer.start_step + total,
            losses=terms,
            lr=float(trainer.optimizer.param_groups[0]["lr"]),
            elapsed=elapsed,
            steps_per_second=rate,
            remaining_seconds=remaining,
            progress=min(max(done / total, elapsed / (config.time_budget or math.inf)), 1.0),
        )
        now = time.perf_counter()
        if config.preview_every > 0 and now - last_preview >= config.preview_every:
            yield trainer.image_preview(step, first=False)
            yield trainer.batch_preview(step)
            last_preview = time.perf_counter()
        periodic = out is not None and config.checkpoint_every > 0
        if periodic and now - last_checkpoint >= config.checkpoint_every:
            checkpoint_path = _save(trainer, out, step)
            yield CheckpointSaved(step, str(checkpoint_path))
            last_checkpoint = time.perf_counter()
        if control is not None and control.stop_requested:
            reason = "stopped"
            break
        if config.time_budget and time.perf_counter() - start >= config.time_budget:
            reason = "time_budget"
            break
    steps = trainer.start_step + done
    trainer.calibrate()
    method.eval()
    method.on_training_end(data)
    if out is not None:
        checkpoint_path = _save(trainer, out, steps)
        yield CheckpointSaved(steps, str(checkpoint_path))
    elapsed = time.perf_counter() - start
    yield TrainingFinished(steps, elapsed, reason)
    model = LoadedModel(
        method=method,
        train_config=config,
        normalization=data.normalization,
        metadata=trainer.metadata(steps),
        optimizer_state=trainer.optimizer.state_dict(),
    )
    return TrainingResult(
        model=model,
        steps=steps,
        elapsed=elapsed,
        reason=reason,
        history=history,
        checkpoint=str(checkpoint_path) if checkpoint_path else None,
    )


def _save(trainer: _Trainer, out: str | Path, steps: int) -> Path:
    return save_checkpoint(
        out,
        trainer.method,
        trainer.config,
        trainer.metadata(steps),
        trainer.optimizer.state_dict(),
        trainer.data.normalization,
    )
