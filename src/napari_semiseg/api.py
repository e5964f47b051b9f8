"""The public Python API: everything the command line does, callable from a notebook.

>>> import napari_semiseg as ns                                      # doctest: +SKIP
>>> result = ns.train("imgs/", "ann/", masks="known/", time_budget=120)  # doctest: +SKIP
>>> masks = ns.predict(result.model, "new/", out="masks/")           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data.datasets import TrainingData
from .data.images import Normalization, prepare_image
from .engine import (
    Event,
    LoadedModel,
    TrainConfig,
    TrainingControl,
    TrainingResult,
    load_checkpoint,
    model_preset,
    resolve_device,
)
from .engine import train as _train_generator
from .errors import SemisegInputError
from .evaluation import evaluate
from .inference import PostprocessConfig, TilingConfig, run, segment
from .inference.predict import check_channels
from .inference.tiling import fit_tiling
from .io import (
    atomic_write,
    existing_outputs,
    list_images,
    match_by_name,
    read_image,
    write_labels,
)
from .models.precision import precision_name

PathLike = str | Path


def load_training_data(
    images: PathLike | Sequence[np.ndarray],
    labels: PathLike | Sequence[np.ndarray | None] | None = None,
    masks: PathLike | Sequence[np.ndarray | None] | None = None,
    channel_axis: int | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    norm: Normalization | None = None,
) -> TrainingData:
    """Read images and sparse annotations from folders (or take arrays).

    A labels file with the same name as an image is its annotation; a mask
    file of the same name marks its known pixels (without one the labels are
    exhaustive). Images without labels form the unlabelled pool.

    Parameters
    ----------
    images : path or sequence of numpy.ndarray
        Folder of images, or ``(Y, X[, C])`` arrays.
    labels : path or sequence, optional
        Folder of instance-label images, or arrays (None where unannotated).
    masks : path or sequence, optional
        Folder of known-pixel masks, or arrays.
    channel_axis : int, optional
        Channel axis of multi-channel images; detected when None.
    w0, sigma : float
        U-Net weight map parameters.
    norm : Normalization, optional
        Intensity normalisation (default: percentiles 1 and 99.8, linear).

    Returns
    -------
    TrainingData
    """
    if not isinstance(images, str | Path):
        return TrainingData.from_arrays(
            list(images), labels, masks, channel_axis=channel_axis, norm=norm, w0=w0, sigma=sigma
        )
    files = list_images(images)
    if labels is None:
        raise SemisegInputError(
            "no labels folder was given", "pass --labels DIR with annotations for some images"
        )
    label_files = match_by_name(files, labels)
    mask_files = match_by_name(files, masks) if masks is not None else [None] * len(files)
    _check_orphans(files, labels, "labels")
    if masks is not None:
        _check_orphans(files, masks, "masks")
    for label, mask in zip(label_files, mask_files, strict=True):
        if mask is not None and label is None:
            raise SemisegInputError(
                "a known-pixel mask was given without labels",
                "add a labels file of the same name (it may be all zero: then the mask marks "
                "background), or remove the mask",
                str(mask),
            )
    if not any(label_files):
        raise SemisegInputError(
            "no labels file has the name of an image",
            "name each labels file like its image (e.g. images/a.tif and labels/a.tif)",
            str(labels),
        )
    arrays = [read_image(f) for f in files]
    return TrainingData.from_arrays(
        arrays,
        [read_image(f) if f else None for f in label_files],
        [read_image(f) if f else None for f in mask_files],
        names=[str(f) for f in files],
        channel_axis=channel_axis,
        norm=norm,
        w0=w0,
        sigma=sigma,
    )


def _check_orphans(files: Sequence[Path], folder: PathLike, what: str) -> None:
    stems = {f.stem for f in files}
    orphans = [p.name for p in list_images(folder, what) if p.stem not in stems]
    if orphans:
        raise SemisegInputError(
            f"{what} file(s) {', '.join(orphans[:3])} have no image of the same name",
            f"rename them like their images, or move them out of the {what} folder",
            str(folder),
        )


def make_config(
    method: str = "unet",
    steps: int | None = None,
    time_budget: float | None = None,
    device: str | None = None,
    seed: int | None = None,
    model_size: str | None = None,
    method_config: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    **overrides: Any,
) -> TrainConfig:
    """Build a :class:`TrainConfig` from keyword arguments.

    Parameters
    ----------
    method : str
        Registry name of the method.
    steps, time_budget, device, seed : optional
        Override the corresponding fields.
    model_size : {"tiny", "small", "medium", "large"}, optional
        Architecture preset.
    method_config : dict, optional
        Method hyper-parameters.
    config : TrainConfig, optional
        Starting point (defaults otherwise).
    **overrides
        Any other :class:`TrainConfig` field.

    Returns
    -------
    TrainConfig
    """
    changes: dict[str, Any] = {"method": method, **overrides}
    for key, value in (("steps", steps), ("device", device), ("seed", seed)):
        if value is not None:
            changes[key] = value
    if time_budget is not None:
        changes["time_budget"] = float(time_budget)
    if model_size is not None:
        changes["model"] = model_preset(model_size)
    if method_config is not None:
        changes["method_config"] = dict(method_config)
    return (config or TrainConfig()).replace(**changes)


def iter_train(
    images: PathLike | Sequence[np.ndarray] | TrainingData,
    labels: PathLike | Sequence[np.ndarray | None] | None = None,
    masks: PathLike | Sequence[np.ndarray | None] | None = None,
    *,
    out: PathLike | None = None,
    overwrite: bool = False,
    resume: PathLike | LoadedModel | None = None,
    control: TrainingControl | None = None,
    channel_axis: int | None = None,
    gamma: float | None = None,
    **settings: Any,
) -> Generator[Event, None, TrainingResult]:
    """Train and yield events as they happen (see :mod:`napari_semiseg.engine.events`).

    Parameters
    ----------
    images, labels, masks
        As in :func:`load_training_data`, or a ready :class:`TrainingData`.
    out : path, optional
        Checkpoint written at the end (and every ``checkpoint_every`` s).
    overwrite : bool
        Replace an existing ``out`` file; otherwise an existing file is refused
        before anything is read or trained. Continuing a model in place
        (``out`` is the ``resume`` file) is always allowed.
    resume : path or LoadedModel, optional
        Continue training these weights.
    control : TrainingControl, optional
        Stop training cleanly from another thread.
    channel_axis : int, optional
        Channel axis of multi-channel images.
    gamma : float, optional
        Intensity gamma after percentile scaling (:class:`Normalization`; default
        1, linear). 0.5 lifts dim objects in fluorescence whose brightness varies
        a lot. Saved with the model; a resumed model keeps its own.
    **settings
        Passed to :func:`make_config` (``method``, ``steps``, ``time_budget``,
        ``device``, ``seed``, ``model_size``, ``method_config``, ...).

    Yields
    ------
    Event

    Returns
    -------
    TrainingResult

    Raises
    ------
    SemisegInputError
        For bad input, including an existing ``out`` file without ``overwrite``.
    """
    check_model_file(out, resume, overwrite)
    config = make_config(**settings)
    if isinstance(resume, str | Path):
        resume = load_checkpoint(resume, resolve_device(config.device))
    norm = Normalization(gamma=gamma) if gamma is not None else None
    if resume is not None:
        if norm is not None and norm != resume.normalization:
            raise SemisegInputError(
                f"the model to continue was trained with gamma {resume.normalization.gamma}, "
                f"not {gamma}",
                "leave the gamma out when continuing a model (it keeps its own)",
            )
        norm = resume.normalization
    if isinstance(images, TrainingData):
        data = images
    else:
        data = load_training_data(
            images, labels, masks, channel_axis, config.w0, config.sigma, norm=norm
        )
    return (yield from _train_generator(data, config, out, resume, control))


def check_model_file(
    out: PathLike | None, resume: PathLike | LoadedModel | None = None, overwrite: bool = False
) -> None:
    """Refuse a model file to write that exists (unless asked) or is a folder.

    Parameters
    ----------
    out : path, optional
        Model file that training will write.
    resume : path or LoadedModel, optional
        The model being continued; writing back to its own file is allowed.
    overwrite : bool
        Allow replacing an existing file.

    Raises
    ------
    SemisegInputError
        If ``out`` is a folder, or exists and may not be replaced.
    """
    if out is None:
        return
    path = Path(out)
    if path.is_dir():
        raise SemisegInputError(
            "this is a folder, not a model file", "give a file name such as model.pt", str(path)
        )
    if overwrite or not path.exists():
        return
    if isinstance(resume, str | Path) and Path(resume).resolve() == path.resolve():
        return
    raise SemisegInputError(
        "model file exists and would be overwritten",
        "choose another file name (--out), or pass overwrite=True (--overwrite) to replace it",
        str(path),
    )


def train(
    images: PathLike | Sequence[np.ndarray] | TrainingData,
    labels: PathLike | Sequence[np.ndarray | None] | None = None,
    masks: PathLike | Sequence[np.ndarray | None] | None = None,
    *,
    out: PathLike | None = None,
    overwrite: bool = False,
    callback: Callable[[Event], None] | None = None,
    **kwargs: Any,
) -> TrainingResult:
    """Train to completion; like :func:`iter_train` but returns the result.

    Parameters
    ----------
    images, labels, masks
        As in :func:`load_training_data`.
    out : path, optional
        Model file written at the end.
    overwrite : bool
        Replace an existing ``out`` file (otherwise it is refused before
        training starts; continuing a model into its own file is allowed).
    callback : callable, optional
        Called with every event (e.g. to print progress).
    **kwargs
        As in :func:`iter_train`.

    Returns
    -------
    TrainingResult

    Raises
    ------
    SemisegInputError
        For bad input, including an existing ``out`` file without ``overwrite``.
    """
    generator = iter_train(images, labels, masks, out=out, overwrite=overwrite, **kwargs)
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)


def load_model(path: PathLike, device: str = "auto") -> LoadedModel:
    """Load a model file safely (no code runs from the file).

    Parameters
    ----------
    path : str or pathlib.Path
        ``.pt`` file written by :func:`train`.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.

    Returns
    -------
    LoadedModel
    """
    return load_checkpoint(path, resolve_device(device))


def segment_array(
    model: LoadedModel,
    image: np.ndarray,
    channel_axis: int | None = None,
    tiling: TilingConfig | None = None,
    postprocess: PostprocessConfig | None = None,
    source: str | None = None,
) -> np.ndarray:
    """Instance masks for one raw image array.

    Parameters
    ----------
    model : LoadedModel
        Trained model.
    image : numpy.ndarray
        ``(Y, X)`` or ``(Y, X, C)`` raw image.
    channel_axis : int, optional
        Channel axis; detected when None.
    tiling : TilingConfig, optional
        Tiling settings.
    postprocess : PostprocessConfig, optional
        Post-processing thresholds.
    source : str, optional
        Name for error messages.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` int32 instance ids.
    """
    prepared = _prepare(model, image, channel_axis, source)
    result = run(
        segment(
            model.method, prepared, model.median_cell_area, tiling, model.postprocess(postprocess)
        )
    )
    return result.instances


def _prepare(
    model: LoadedModel, image: np.ndarray, channel_axis: int | None, source: str | None
) -> np.ndarray:
    """Return the ``(C, Y, X)`` normalised image after all input checks of segmentation."""
    prepared = prepare_image(image, channel_axis, model.normalization, source)
    check_channels(model.method, prepared, source)
    return prepared


def predict(
    model: LoadedModel | PathLike,
    images: PathLike | Sequence[np.ndarray] | np.ndarray,
    out: PathLike | None = None,
    *,
    overwrite: bool = False,
    channel_axis: int | None = None,
    tile_size: int = 512,
    device: str = "auto",
    callback: Callable[[str, int, int], None] | None = None,
    tta: bool = False,
    float32: bool = False,
) -> list[np.ndarray]:
    """Predict instance masks; optionally write one TIFF per image.

    Parameters
    ----------
    model : LoadedModel or path
        Trained model or its file.
    images : path, array or sequence of arrays
        Folder of images, one ``(Y, X[, C])`` array, or several.
    out : path, optional
        Folder for ``<image name>.tif`` masks (uint16, uint32 when needed).
    overwrite : bool
        Replace existing mask files (otherwise refuse before writing anything).
    channel_axis : int, optional
        Channel axis of multi-channel images.
    tile_size : int
        Tile side for overlap-tile prediction; at least ``4 * 2**depth`` of the
        model's network (64 for depth 4), rounded up to a multiple of ``2**depth``.
    device : str
        Device when ``model`` is a path.
    callback : callable, optional
        ``callback(name, index, total)`` after each image.
    tta : bool
        Test-time augmentation: average the network's probabilities over the four
        flips of each tile (3-4x slower). Methods that decode instances from
        proposals (``ppn-auxnet``) refuse it.
    float32 : bool
        Run the network in float32 even where the device has a faster reduced
        precision (:attr:`TilingConfig.amp`).

    Returns
    -------
    list of numpy.ndarray
        ``(Y, X)`` int32 instance masks, one per image.

    Raises
    ------
    SemisegInputError
        For bad input: an unreadable or unsuitable image, a bad tile size,
        two images with the same name, or existing masks without
        ``overwrite``. Every image is checked before the first mask is
        written, and the masks are moved into ``out`` only when all images
        are segmented, so a failure leaves nothing behind.
    """
    if not isinstance(model, LoadedModel):
        model = load_model(model, device)
    tiling = fit_tiling(tile_size, 2**model.method.model_config.depth, flip_tta=tta)
    tiling = dataclasses.replace(tiling, amp=not float32)
    if isinstance(images, str | Path):
        files = list_images(images)
        names, sources = [f.stem for f in files], list(files)
    else:
        arrays = [images] if isinstance(images, np.ndarray) else list(images)
        names = [f"image_{i:03d}" for i in range(len(arrays))]
        sources = arrays
    shown = [str(s) if isinstance(s, Path) else n for n, s in zip(names, sources, strict=True)]
    targets = [Path(out) / f"{n}.tif" for n in names] if out is not None else []
    if out is not None:
        _check_mask_targets(Path(out), targets, sources, overwrite)
        for source, where in zip(sources, shown, strict=True):  # refuse before writing
            raw = read_image(source) if isinstance(source, Path) else source
            _prepare(model, raw, channel_axis, where)
    masks: list[np.ndarray] = []
    created = out is not None and not Path(out).exists()
    stage = _stage_folder(Path(out)) if out is not None else None
    try:
        for i, (name, source) in enumerate(zip(names, sources, strict=True)):
            raw = read_image(source) if isinstance(source, Path) else source
            masks.append(segment_array(model, raw, channel_axis, tiling, source=shown[i]))
            if stage is not None:
                write_labels(stage / targets[i].name, masks[-1])
            if callback is not None:
                callback(name, i + 1, len(names))
        if stage is not None:
            _check_mask_targets(Path(out), targets, sources, overwrite)
            for target in targets:
                os.replace(stage / target.name, target)
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
            if created:  # the folder this call made, now empty
                with contextlib.suppress(OSError):
                    stage.parent.rmdir()
        raise
    if stage is not None:
        shutil.rmtree(stage, ignore_errors=True)
    return masks


def _check_mask_targets(
    out: Path, targets: Sequence[Path], sources: Sequence[Path | np.ndarray], overwrite: bool
) -> None:
    """Refuse mask files that two images would share, or that exist (unless asked)."""
    if out.exists() and not out.is_dir():
        raise SemisegInputError(
            "the output path is a file, not a folder", "give a folder for the masks", str(out)
        )
    first: dict[Path, Path | np.ndarray] = {}
    for target, source in zip(targets, sources, strict=True):
        other = first.setdefault(target, source)
        if other is not source and isinstance(source, Path) and isinstance(other, Path):
            raise SemisegInputError(
                f"images {other.name} and {source.name} would both be written as "
                f"{target.name}; nothing was written",
                "rename one of them (the part before the extension) or move it to another folder",
                str(source.parent),
            )
    clash = existing_outputs(targets)
    if clash and not overwrite:
        raise SemisegInputError(
            f"{len(clash)} mask file(s) already exist (e.g. {clash[0].name}); nothing was written",
            "choose another --out folder or pass --overwrite",
            str(out),
        )


def _stage_folder(out: Path) -> Path:
    """Hidden folder inside ``out`` where masks wait until every image is done."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".semiseg-masks-", suffix=".part", dir=out))


def run_demo(
    out: PathLike = "demo_output",
    steps: int = 400,
    time_budget: float | None = 120.0,
    device: str = "auto",
    seed: int = 0,
    method: str = "unet",
    overwrite: bool = False,
    callback: Callable[[Event], None] | None = None,
) -> dict[str, Any]:
    """Train on the bundled sample, predict it, write TIFF masks and a report.

    Parameters
    ----------
    out : path
        Output folder: ``model.pt``, ``masks/*.tif``, ``report.md``, ``report.json``.
    steps : int
        Maximum training steps.
    time_budget : float, optional
        Maximum training seconds.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    seed : int
        Random seed.
    method : str
        Training method.
    overwrite : bool
        Replace the results of an earlier demo in ``out`` (otherwise any of
        the files the demo writes that exists is refused before training).
    callback : callable, optional
        Called with every training event.

    Returns
    -------
    dict
        The report (also written as JSON).

    Raises
    ------
    SemisegInputError
        If ``out`` is a file, or holds any of the files the demo writes and
        ``overwrite`` is False.
    """
    from ._sample_data import sample_folders

    out = Path(out)
    folders = sample_folders()
    files = list_images(folders["images"])
    outputs = [
        out / "model.pt",
        *[out / "masks" / f"{f.stem}.tif" for f in files],
        out / "report.json",
        out / "report.md",
    ]
    if out.exists() and not out.is_dir():
        raise SemisegInputError(
            "the output path is a file, not a folder", "give a folder for the demo", str(out)
        )
    clash = existing_outputs(outputs)
    if clash and not overwrite:
        shown = ", ".join(str(p.relative_to(out)) for p in clash[:3])
        raise SemisegInputError(
            f"an earlier demo's results are in this folder ({shown}"
            f"{', ...' if len(clash) > 3 else ''}); nothing was written",
            "pass --overwrite (overwrite=True) or choose another --out folder",
            str(out),
        )
    started = time.perf_counter()
    result = train(
        folders["images"],
        folders["annotations"],
        folders["known"],
        out=out / "model.pt",
        overwrite=overwrite,
        method=method,
        steps=steps,
        time_budget=time_budget,
        device=device,
        seed=seed,
        callback=callback,
        preview_every=0,
    )
    masks = predict(result.model, folders["images"], out / "masks", overwrite=overwrite)
    truths = [read_image(folders["truth"] / f.name) for f in files]
    known = [folders["known"] / f.name for f in files]
    ignores = [read_image(k) if k.exists() else None for k in known]
    scores = evaluate(masks, truths, ignores)
    report = {
        "method": result.model.method.name,
        "steps": result.steps,
        "stop_reason": result.reason,
        "train_seconds": round(result.elapsed, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "device": str(result.model.method.device),
        "precision": precision_name(result.model.method.device, result.model.train_config.amp),
        "images": [f.name for f in files],
        "cells_found": [int(m.max()) for m in masks],
        "scores_outside_annotation": {k: round(float(v), 4) for k, v in scores.items()},
        "model": str(out / "model.pt"),
        "masks": str(out / "masks"),
        "final_loss": round(result.history[-1]["loss"], 4) if result.history else None,
    }
    text = json.dumps(report, indent=2)
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(text), overwrite=overwrite)
    markdown = _report_markdown(report)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(markdown), overwrite=overwrite)
    return report


def _report_markdown(report: dict[str, Any]) -> str:
    s = report["scores_outside_annotation"]
    lines = [
        "# napari-semiseg demo report",
        "",
        (
            f"Method `{report['method']}` trained {report['steps']} steps in "
            f"{report['train_seconds']} s on {report['device']} in {report['precision']} "
            f"(stopped by {report['stop_reason']})."
        ),
        "Annotation: 10 nuclei in one square of `nuclei_a`; everything else unlabelled.",
        "",
        "| image | cells found |",
        "| --- | --- |",
        *[f"| {n} | {c} |" for n, c in zip(report["images"], report["cells_found"], strict=True)],
        "",
        "Scores against the full manual masks, outside the annotated region:",
        "",
        "| AP50 | mean AP (0.5:0.9) | F1@0.5 | Dice | IoU |",
        "| --- | --- | --- | --- | --- |",
        "| " + " | ".join(f"{s[k]:.3f}" for k in ("ap50", "map", "f1_50", "dice", "iou")) + " |",
        "",
        f"Masks: `{report['masks']}`; model: `{report['model']}`.",
        "",
    ]
    return "\n".join(lines)
