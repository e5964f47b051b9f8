"""Few-label benchmark: ~10 annotated cells in one square, everything else unknown.

For each data set in ``../shared/data`` (skipped when absent), every cell touching
one square region of the first image is annotated (about 10 cells; the square
grows from the image centre until it holds that many) and every other pixel of
the set is unknown. Each method is trained with a fixed time budget on the
annotated square plus all images as the unlabelled pool, predicts every image,
and is scored outside the annotated region (ground-truth objects touching it
and predictions mostly inside it are dropped). Baselines on the same task:

- ``rf``: an ilastik-style random forest on ``multiscale_basic_features``
  trained on the same known pixels, with the same post-processing;
- ``ceiling``: the same U-Net trained on the full labels of every image.

Results are cached per (set, method, seed, budget) in a JSON file, so runs can
be split, resumed and extended; the markdown table is rebuilt from the cache.

Examples
--------
python benchmarks/fewlabels.py --budget 180 --seeds 0,1,2
python benchmarks/fewlabels.py --sets dsb2018_fluo_nuclei --methods unet,rf --budget 60 --seeds 0
python benchmarks/fewlabels.py --speed --methods ''   # steps/s, MPix/s, peak memory on 4096x4096
python benchmarks/fewlabels.py --speed --speed-methods unet,ppn-auxnet --methods ''  # per method
python benchmarks/fewlabels.py --table-only     # rebuild docs/benchmarks.md from the cache

Two workers on a 2-core machine (each run on one core; they share the cache and
never take the same run): start the same command twice with ``--threads 1``.
A killed worker's claims expire with its process.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_semiseg.api import load_model, make_config, segment_array
from napari_semiseg.data import TrainingData
from napari_semiseg.data.images import Normalization, prepare_image
from napari_semiseg.data.regions import find_region, region_annotation
from napari_semiseg.engine import LoadedModel, TrainConfig, train
from napari_semiseg.engine.checkpoint import save_checkpoint
from napari_semiseg.evaluation import evaluate
from napari_semiseg.inference import run
from napari_semiseg.inference.postprocess import PostprocessConfig, instances_from_probabilities
from napari_semiseg.io import atomic_write
from napari_semiseg.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_SEMISEG_DATA", ROOT.parent / "shared" / "data"))
CACHE = ROOT / "benchmarks" / "results" / "fewlabels.json"
DOC = ROOT / "docs" / "benchmarks.md"
SETS = (
    "dsb2018_fluo_nuclei",
    "dsb2018_brightfield_nuclei",
    "ctc_fluo_n2dh_gowt1",
    "cpm15_he_nuclei",
    "isbi2012_em_membrane",
)
#: Sets whose border-cut objects are unlabelled in the ground truth.
EXCLUDE_BORDER = {"ctc_fluo_n2dh_gowt1"}
N_CELLS = 10
#: Version of the training code that made a run, stored with it (runs without one
#: are version 1). Runs of different versions are not paired against each other:
#: 2 = CPU networks channels-last and a faster elastic field (about 1.4x the steps
#: of version 1 in the same budget); 3 = mean teacher's strong view decided from the
#: images by default (``strong_view = "auto"``), and a machine that gave about 1.2x
#: the steps of the version-2 runs in the same budget (the U-Net code is unchanged);
#: 4 = the training code of 3 on a machine that gave about 1.2x the steps of the
#: version-3 runs (EM and brightfield reruns of 2026-12-06); 5 = bfloat16 forward
#: passes on CPUs with bfloat16 units (``TrainConfig.amp``, on by default; about 1.9x
#: the steps of version 4 on this machine).
CODE = 5
#: Version of the post-processing that scored a run (runs without one are 1):
#: 2 = with the contrast filter (``PostprocessConfig.min_contrast``); 3 = PPN-auxnet
#: joins touching instances that form one convex cell (``join_contact``; the other
#: methods' masks are those of 2); 4 = that join measures the convexity of the union
#: with its holes filled; 5 = the join reads the foreground along the shared border
#: (a gap of background there keeps two cells apart; without one a less convex
#: union, solidity 0.8, is joined), and PPN-auxnet resizes an image only when its
#: cells measure beyond 1.5x the annotated ones (``rescale_dead_zone``, was 1.25);
#: 6 = the watershed's objects whose median foreground probability is below 0.9
#: times the model's own median foreground on its annotated cells are removed
#: (``min_median_foreground``; not the forest's, nor PPN-auxnet's, which has its own
#: instance path).
SCORING = 6


@dataclass
class Task:
    """One data set turned into the few-label task."""

    name: str
    images: list[np.ndarray]
    truths: list[np.ndarray]
    names: list[str]
    labels: np.ndarray
    known: np.ndarray
    region: tuple[int, int, int]
    extra_unlabelled: list[np.ndarray] = field(default_factory=list)

    def ignores(self) -> list[np.ndarray | None]:
        """Ignore masks: the annotated region of the first image."""
        return [self.known, *[None] * (len(self.images) - 1)]


def load_task(name: str, limit: int | None = None) -> Task | None:
    """Read a data set and build its few-label annotation (None if absent)."""
    folder = DATA / name
    if not (folder / "images").is_dir():
        return None
    files = sorted((folder / "images").glob("*.tif"))[:limit]
    images = [tifffile.imread(f) for f in files]
    truths = [tifffile.imread(folder / "labels" / f.name).astype(np.int32) for f in files]
    top, left, size = find_region(truths[0], N_CELLS)
    labels, known = region_annotation(truths[0], top, left, size)
    extra = []
    if (folder / "unlabeled").is_dir():
        extra = [tifffile.imread(f) for f in sorted((folder / "unlabeled").glob("*.tif"))]
    return Task(
        name, images, truths, [f.stem for f in files], labels, known, (top, left, size), extra
    )


def dataset_of(path: Path) -> str | None:
    """The data set a model file written by ``--save-models`` belongs to (None: unknown).

    Its name starts with the set's name (the longest matching name wins).
    """
    names = sorted(SETS, key=len, reverse=True)
    return next((name for name in names if path.name.startswith(name + "_")), None)


def training_data(
    task: Task,
    full: bool = False,
    norm: Normalization | None = None,
    background: list[np.ndarray] | None = None,
    cells: list[np.ndarray] | None = None,
) -> TrainingData:
    """Few-label training data (or full labels for the ceiling).

    ``background``: per image of the set, ``(Y, X)`` bool pixels a user painted as
    known background after a prediction (added to the few-label annotation).
    ``cells``: per image, ``(Y, X)`` int cells a user painted after a prediction
    (0 = none): each nonzero id is added as a new annotated cell, known on its own
    pixels only (the widget's **New cell**).
    """
    images = [*task.images, *task.extra_unlabelled]
    if full:
        labels = [*task.truths, *[None] * len(task.extra_unlabelled)]
        masks = [None] * len(images)
    else:
        labels = [task.labels, *[None] * (len(images) - 1)]
        masks = [task.known, *[None] * (len(images) - 1)]
        edits = [(i, p, None) for i, p in enumerate(background or [])]
        edits += [(i, c > 0, c) for i, c in enumerate(cells or [])]
        for index, paint, painted_cells in edits:
            if not paint.any():
                continue
            masks[index] = paint if masks[index] is None else masks[index] | paint
            base = np.zeros(paint.shape, np.int32) if labels[index] is None else labels[index]
            if painted_cells is not None:  # new ids above the image's own
                ids = np.unique(painted_cells[paint])
                lookup = np.zeros(int(ids.max()) + 1, np.int32)
                lookup[ids] = np.arange(1, ids.size + 1) + int(base.max())
                base = np.where(paint, lookup[painted_cells], base).astype(np.int32)
            labels[index] = base
    return TrainingData.from_arrays(
        images,
        labels,
        masks,
        names=[*task.names, *["u"] * len(task.extra_unlabelled)],
        norm=norm,
    )


def budget_config(method: str, seed: int, budget: float) -> TrainConfig:
    """Training config of a benchmark run: ``budget`` seconds, no step limit, no previews."""
    return make_config(
        method=method, steps=1_000_000, time_budget=budget, seed=seed, device="auto",
        preview_every=0,
    )  # fmt: skip


def score(
    task: Task, masks: list[np.ndarray], ignored: list[np.ndarray] | None = None
) -> dict[str, float]:
    """Scores outside the annotated region (and outside ``ignored``, per image, if given)."""
    ignores = task.ignores()
    for index, extra in enumerate(ignored or []):
        ignores[index] = extra if ignores[index] is None else ignores[index] | extra
    return evaluate(masks, task.truths, ignores, exclude_border=task.name in EXCLUDE_BORDER)


def load_task_model(task: Task, path: Path) -> LoadedModel:
    """A saved model of ``task``; files from before the contrast filter get its reference.

    The reference is what the engine now measures when training starts, from the
    same annotation (:meth:`TrainingData.annotated_contrast`).
    """
    model = load_model(path, "cpu")
    if "annotated_contrast" not in model.metadata:
        model.metadata["annotated_contrast"] = training_data(task).annotated_contrast()
    return model


def rescore(task: Task, path: Path, overrides: dict[str, Any] | None = None) -> dict:
    """Scores of a saved model on its task with the current post-processing.

    Parameters
    ----------
    task : Task
        The few-label task the model was trained on.
    path : pathlib.Path
        Model file written by ``--save-models``.
    overrides : dict, optional
        Method settings that act at prediction only (e.g. a new default the
        file predates), applied to the loaded method's config; keys
        ``postprocess.<field>`` set a ``PostprocessConfig`` field instead (e.g.
        ``postprocess.min_median_foreground: 0``, the filter off), before the
        model's own scaling (``LoadedModel.postprocess``).

    Returns
    -------
    dict
        The metrics of :func:`score`, ``rescored: True`` and the overrides
        (``predict_settings``) when given.
    """
    model = load_task_model(task, path)
    overrides = dict(overrides or {})
    prefix = "postprocess."
    thresholds = {k[len(prefix) :]: v for k, v in overrides.items() if k.startswith(prefix)}
    method_settings = {k: v for k, v in overrides.items() if not k.startswith(prefix)}
    unknown = set(method_settings) - {f.name for f in dataclasses.fields(model.method.config)}
    fields = {f.name for f in dataclasses.fields(PostprocessConfig)}
    unknown |= {prefix + k for k in set(thresholds) - fields}
    if unknown:
        raise ValueError(f"{path.name}: {model.method.name} has no setting {sorted(unknown)}")
    if method_settings:
        model.method.config = dataclasses.replace(model.method.config, **method_settings)
    postprocess = PostprocessConfig(**thresholds) if thresholds else None
    masks = [segment_array(model, image, postprocess=postprocess) for image in task.images]
    extra = {"predict_settings": overrides} if overrides else {}
    return {**score(task, masks), "rescored": True, "scoring": SCORING, **extra}


def run_method(
    task: Task,
    method: str,
    seed: int,
    budget: float,
    full: bool = False,
    settings: dict[str, Any] | None = None,
    save_to: Path | None = None,
) -> dict:
    """Train one method with a time budget, predict every image, score.

    ``save_to``: also write the trained model file there (to look into a run later).

    ``settings`` maps dotted config fields (``"augment.min_contrast"``,
    ``"method_config.confidence_threshold"``, ``"lr"``) to values, for variants;
    ``"normalization.<field>"`` sets the input normalisation (saved with the model,
    so prediction uses it too).
    """
    settings = dict(settings or {})
    norm_fields = {
        name.split(".", 1)[1]: settings.pop(name)
        for name in list(settings)
        if name.startswith("normalization.")
    }
    data = training_data(task, full, Normalization(**norm_fields) if norm_fields else None)
    config = budget_config(method, seed, budget)
    if settings:
        config = apply_settings(config, settings)
    started = time.perf_counter()
    result = run(train(data, config))
    trained = time.perf_counter() - started
    model = result.model
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            save_to, model.method, model.train_config, model.metadata,
            normalization=model.normalization,
        )  # fmt: skip
    started = time.perf_counter()
    masks = []
    pixels = 0
    for image in task.images:
        masks.append(segment_array(model, image))
        pixels += image.shape[0] * image.shape[1]
    predicted = time.perf_counter() - started
    return {
        **score(task, masks),
        "scoring": SCORING,
        "steps": result.steps,
        "annotated_confidence": model.annotated_confidence,
        "steps_per_s": result.steps / max(trained, 1e-9),
        "train_s": trained,
        "predict_mpix_per_s": pixels / 1e6 / max(predicted, 1e-9),
    }


def apply_settings(config: TrainConfig, settings: dict[str, Any]) -> TrainConfig:
    """Return ``config`` with dotted fields replaced (see :func:`run_method`)."""
    values = config.to_dict()
    for name, value in settings.items():
        *parents, leaf = name.split(".")
        target = values
        for part in parents:
            if not isinstance(target.get(part), dict):
                raise ValueError(f"--set {name}: {part!r} is not a config section")
            target = target[part]
        in_method = parents[:1] == ["method_config"]
        if not in_method and leaf not in target:
            raise ValueError(f"--set {name}: no such config field")
        target[leaf] = value
    return TrainConfig.from_dict(values)


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["a.b=0.2", "c=true"]`` -> ``{"a.b": 0.2, "c": True}`` (values read as JSON)."""
    settings = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            settings[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            settings[name.strip()] = text
    return settings


#: Post-processing of the forest: seeds at p_interior > 0.5, no peak rule. A
#: forest's vote fractions are flatter than a network's softmax (true nuclei
#: rarely reach 0.9) and it has no class-balanced "plateau of doubt" to remove;
#: the network's rule cost it 0.08 AP50 on DSB fluo (0.53 -> 0.46). For the same
#: reason no median-foreground rule (``min_median_foreground``).
RF_POSTPROCESS = PostprocessConfig(
    interior_threshold=0.5, min_seed_peak=0.0, min_median_foreground=0.0
)


def run_random_forest(task: Task, seed: int) -> dict:
    """ilastik-style pixel classifier: random forest on multiscale features + post-processing."""
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    def features(image: np.ndarray) -> np.ndarray:
        prepared = prepare_image(image)
        return multiscale_basic_features(
            np.moveaxis(prepared, 0, -1), channel_axis=-1, sigma_max=16
        )

    started = time.perf_counter()
    data = training_data(task)
    target = data.images[0].target
    known = target != 255
    x = features(task.images[0])[known]
    y = target[known]
    rng = np.random.default_rng(seed)
    if len(y) > 200_000:
        keep = rng.choice(len(y), 200_000, replace=False)
        x, y = x[keep], y[keep]
    forest = RandomForestClassifier(
        n_estimators=100, max_depth=12, n_jobs=_threads(), random_state=seed
    )
    forest.fit(x, y)
    trained = time.perf_counter() - started
    median = data.median_cell_area()
    # the networks' contrast filter too, against the same annotated cells
    reference = tuple(data.annotated_contrast() or ())
    postprocess = replace(RF_POSTPROCESS, reference_contrast=reference)
    masks = []
    for image in task.images:
        f = features(image)
        proba = np.zeros((3, *f.shape[:2]), np.float32)
        p = forest.predict_proba(f.reshape(-1, f.shape[-1]))
        for column, cls in enumerate(forest.classes_):
            proba[cls] = p[:, column].reshape(f.shape[:2])
        masks.append(
            instances_from_probabilities(proba, median, postprocess, prepare_image(image))
        )
    return {**score(task, masks), "scoring": SCORING, "train_s": trained}


def measure_speed(budget: float, method: str = "unet") -> dict:
    """Training steps/s on the sample data and prediction speed/memory on 4096 x 4096.

    ``method`` is trained with its defaults for ``budget`` seconds in a fresh
    process, then predicts the sample image tiled 16 x 16 (4096 x 4096, cells of
    the annotated size); the peak resident memory is that process's.
    """
    code = f"""
import json, resource, time, numpy as np, torch
from napari_semiseg._sample_data import sample_folders
from napari_semiseg.api import train, predict
folders = sample_folders()
result = train(folders['images'], folders['annotations'], folders['known'], steps=10**6,
               time_budget={budget}, device='auto', preview_every=0, method={method!r})
rate = result.steps / result.elapsed
rng = np.random.default_rng(0)
import tifffile
tile = tifffile.imread(folders['images'] / 'nuclei_a.tif')
image = np.tile(tile, (16, 16))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
mask = predict(result.model, image)[0]
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"steps_per_s": rate, "predict_s_4096": seconds,
                   "mpix_per_s_4096": image.size / 1e6 / seconds, "peak_rss_mb": peak / 1024,
                   "rss_before_predict_mb": base / 1024, "objects_4096": int(mask.max()),
                   "torch_threads": torch.get_num_threads()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (workers sharing one results file)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_alive(line: str) -> bool:
    """Whether a ``key pid`` claim line belongs to a running worker (junk lines do not)."""
    pid = line.rsplit(" ", 1)[-1]
    return " " in line and pid.isdigit() and _alive(int(pid))


def claim(path: Path, k: str) -> bool:
    """Reserve run ``k`` for this worker; False if cached or taken by a live worker.

    Claims are ``key pid`` lines; those of workers that no longer run are ignored,
    so a killed worker's runs are taken up again by the next start.
    """
    claims_file = path.with_suffix(".claims")
    with _locked(path):
        runs = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
        lines = claims_file.read_text().splitlines() if claims_file.exists() else []
        live = [line for line in lines if _claim_alive(line)]
        if k in runs or any(line.rsplit(" ", 1)[0] == k for line in live):
            return False
        claims_file.write_text("\n".join([*live, f"{k} {os.getpid()}"]) + "\n")
        return True


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def load_cache(path: Path, limit: int | None) -> dict:
    """Cached results; a cache made with another ``--limit`` is refused."""
    if path.exists():
        cache = json.loads(path.read_text())
        if cache.get("limit") != limit:
            sys.exit(f"{path} holds results for --limit {cache.get('limit')}; use another --cache")
        return cache
    return {"runs": {}, "speed": None, "machine": None, "limit": limit}


def save_cache(cache: dict, path: Path, fresh: set[str] | None = None) -> None:
    """Merge ``cache`` into the file under a lock (several workers may share it).

    ``fresh``: keys of the runs this worker made; only those override the file.
    The file wins for every other key, so a worker's stale copy of a run that
    another worker redid meanwhile (``--force``) is not written back. None: every
    run of ``cache`` overrides the file.
    """
    with _locked(path):
        if path.exists():
            on_disk = json.loads(path.read_text())
            mine = cache["runs"] if fresh is None else {k: cache["runs"][k] for k in fresh}
            cache["runs"] = {**cache["runs"], **on_disk.get("runs", {}), **mine}
            cache["speed"] = cache.get("speed") or on_disk.get("speed")
            others = {**on_disk.get("speed_methods", {}), **cache.get("speed_methods", {})}
            if others:
                cache["speed_methods"] = others
        text = json.dumps(cache, indent=1, sort_keys=True)
        atomic_write(path, lambda tmp: tmp.write_text(text))


def key(dataset: str, method: str, seed: int, budget: float) -> str:
    return f"{dataset}|{method}|{seed}|{budget:g}"


def model_path(folder: Path, k: str) -> Path:
    """File name of the model of run ``k`` in ``folder`` (``|`` and ``+`` -> ``_``).

    Examples
    --------
    >>> model_path(Path("m"), "ctc|unet+dim02|0|180").as_posix()
    'm/ctc_unet_dim02_0_180.pt'
    """
    return folder / (k.replace("|", "_").replace("+", "_") + ".pt")


def table(cache: dict, budget: float) -> str:
    """Markdown: AP50 / mean AP / Dice per set and method, mean ± std over seeds."""
    runs = cache["runs"]
    sets = [s for s in SETS if any(k.startswith(s + "|") for k in runs)]
    methods = _labels(runs)
    lines = [
        f"Time budget {budget:g} s per training run; mean ± std over seeds (n = seeds run).",
        "",
        "| data set | method | n | AP50 | mean AP | Dice | steps | steps/s | code |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dataset in sets:
        for method in methods:
            rows = [
                v
                for k, v in runs.items()
                if k.startswith(f"{dataset}|{method}|")
                and (method == "rf" or k.endswith(f"|{budget:g}"))
            ]
            if not rows:
                continue

            def stat(name: str, rows=rows) -> str:
                values = [r[name] for r in rows if name in r]
                if not values:
                    return "–"
                if len(values) == 1:
                    return f"{values[0]:.3f}"
                return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

            steps = f"{np.mean([r['steps'] for r in rows]):.0f}" if "steps" in rows[0] else "–"
            rate = (
                f"{np.mean([r['steps_per_s'] for r in rows]):.2f}" if "steps" in rows[0] else "–"
            )
            codes = "–" if method == "rf" else ",".join(sorted({str(code_of(r)) for r in rows}))
            lines.append(
                f"| {dataset} | {method} | {len(rows)} | {stat('ap50')} | {stat('map')} | "
                f"{stat('dice')} | {steps} | {rate} | {codes} |"
            )
    lines += ["", *versus_unet(runs, sets, methods, budget)]
    lines += speed_table(cache)
    return "\n".join(lines)


def speed_table(cache: dict) -> list[str]:
    """Markdown lines of the speed and memory figures in ``cache`` (none: empty).

    ``speed`` is the U-Net's (the default method); ``speed_methods`` holds the
    figures of other methods (``--speed-methods``), each row prefixed by its name.
    """
    measured = {"unet": cache.get("speed"), **cache.get("speed_methods", {})}
    lines = []
    for method, speed in measured.items():
        if not speed:
            continue
        prefix = "" if method == "unet" else f"{method}: "
        config = "default config" if method == "unet" else "its defaults"
        lines += [
            f"| {prefix}training steps/s (sample data, {config}) | {speed['steps_per_s']:.2f} |",
            (
                f"| {prefix}prediction, 4096 x 4096 image | {speed['predict_s_4096']:.1f} s "
                f"({speed['mpix_per_s_4096']:.2f} MPix/s) |"
            ),
            (
                f"| {prefix}peak resident memory while predicting 4096 x 4096 | "
                f"{speed['peak_rss_mb']:.0f} MB "
                f"(before: {speed['rss_before_predict_mb']:.0f} MB) |"
            ),
        ]
    return ["", "| measure | value |", "| --- | --- |", *lines] if lines else []


def code_of(run: dict) -> int:
    """Version of the training code that made ``run`` (see :data:`CODE`)."""
    return int(run.get("code", 1))


def _labels(runs: dict) -> list[str]:
    """Method labels present in ``runs``: known methods first, each followed by its variants."""
    present = {k.split("|")[1] for k in runs}
    order = []
    for base in ["rf", *METHODS, "ceiling"]:
        order += [base] if base in present else []
        order += sorted(m for m in present if m.startswith(base + "+"))
    return order


def versus_unet(runs: dict, sets: list[str], methods: list[str], budget: float) -> list[str]:
    """Markdown: each method against the few-label U-Net, on the seeds both ran.

    ``Δ AP50`` is the mean over seeds of (method - U-Net); ``gap closed`` is that
    mean difference divided by the mean gap between the U-Net and the ceiling
    (same seeds), reported only where that gap is at least 0.05 AP50. Only runs
    of the same code version as the U-Net run of their seed are paired (the
    forest has no training code and pairs with any).
    """
    lines = [
        (
            "Against the few-label U-Net (paired by seed): Δ AP50 = method − unet, mean over "
            "seeds (min, max); gap closed = Δ / (ceiling − unet). Only runs of the U-Net's "
            "code version are paired (column `code` above)."
        ),
        "",
        "| data set | method | seeds | Δ AP50 | gap to ceiling (unet) | gap closed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def run_of(dataset: str, method: str, seed: str) -> dict | None:
        return runs.get(key(dataset, method, int(seed), 0 if method == "rf" else budget))

    def ap50(dataset: str, method: str, seed: str, code: int | None = None) -> float | None:
        """AP50 of a run; None when absent or made by another code version than ``code``."""
        run = run_of(dataset, method, seed)
        if run is None or (code is not None and method != "rf" and code_of(run) != code):
            return None
        return run["ap50"]

    for dataset in sets:
        seeds = sorted(  # the U-Net runs of this budget
            {
                k.split("|")[2]
                for k in runs
                if k.startswith(f"{dataset}|unet|") and k.endswith(f"|{budget:g}")
            },
            key=int,
        )
        for method in methods:
            if method in ("unet", "ceiling") or method.startswith("ceiling+"):
                continue
            pairs = []
            for seed in seeds:
                code = code_of(run_of(dataset, "unet", seed))
                m, u = ap50(dataset, method, seed, code), ap50(dataset, "unet", seed)
                if m is not None:
                    pairs.append((m, u, seed, code))
            if not pairs:
                if any(k.startswith(f"{dataset}|{method}|") for k in runs):
                    lines.append(
                        f"| {dataset} | {method} | 0 | – (older code than the U-Net rows) "
                        "| – | – |"
                    )
                continue
            diffs = np.array([m - u for m, u, _, _ in pairs])
            ceilings = [(ap50(dataset, "ceiling", seed, code), u) for _, u, seed, code in pairs]
            gaps = [c - u for c, u in ceilings if c is not None]
            gap = float(np.mean(gaps)) if gaps else None
            closed = f"{diffs.mean() / gap:.0%}" if gap is not None and gap >= 0.05 else "–"
            gap_text = "–" if gap is None else f"{gap:+.3f}"
            lines.append(
                f"| {dataset} | {method} | {len(pairs)} | {diffs.mean():+.3f} "
                f"({diffs.min():+.3f}, {diffs.max():+.3f}) | {gap_text} | {closed} |"
            )
    return lines


def write_doc(cache: dict, budget: float, doc: Path = DOC) -> None:
    """Replace the generated block of the benchmark page (the rest is hand-written)."""
    begin, end = "<!-- fewlabels:begin -->", "<!-- fewlabels:end -->"
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"{head}{begin}\n{table(cache, budget)}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument(
        "--methods", default="rf,unet,ceiling", help=f"rf, ceiling, {', '.join(METHODS)} or 'all'"
    )
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per run")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--limit", type=int, help="use only the first N images of each set")
    parser.add_argument("--force", action="store_true", help="rerun cached results")
    parser.add_argument(
        "--save-models", type=Path, metavar="DIR", help="also keep each trained model file here"
    )
    parser.add_argument("--speed", action="store_true", help="measure speed and memory")
    parser.add_argument(
        "--speed-methods",
        default="unet",
        metavar="M1,M2",
        help="methods whose speed and memory --speed measures (default: unet)",
    )
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--cache", type=Path, default=CACHE, help="results file (JSON)")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config change for a variant, e.g. augment.min_contrast=0.2 or "
        "normalization.gamma=0.5 (needs --variant)",
    )
    parser.add_argument(
        "--variant", help="label of a variant: results are stored as METHOD+VARIANT"
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads per run (1 when two workers share 2 cores)"
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score cached runs again from their model files in --save-models DIR with the "
        "current post-processing (training figures are kept; nothing is trained)",
    )
    parser.add_argument(
        "--predict-set", action="append", default=[], metavar="KEY=VALUE",
        help="with --rescore: a method setting that acts at prediction only, applied to "
        "the loaded models (e.g. a new default the files predate), or postprocess.FIELD "
        "for a PostprocessConfig field; stored with the scores",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rescore and not args.save_models:
        parser.error("--rescore reads the model files: give --save-models DIR")
    if args.predict_set and not args.rescore:
        parser.error("--predict-set applies to saved models: use it with --rescore")
    try:
        settings = parse_settings(args.set)
        overrides = parse_settings(args.predict_set)
    except ValueError as error:
        parser.error(str(error))
    if bool(settings) != bool(args.variant):
        parser.error("--set and --variant go together (a variant is stored under its own name)")
    if args.variant and "rf" in args.methods.split(","):
        parser.error("--variant changes the network's training; drop 'rf' from --methods")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cache = load_cache(args.cache, args.limit)
    fresh: set[str] = set()  # runs made by this worker (the only ones it writes back)
    methods = [m for m in args.methods.split(",") if m]
    if methods == ["all"]:
        methods = ["rf", *METHODS, "ceiling"]
    unknown = set(methods) - {"rf", "ceiling", *METHODS}
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")
    unknown = {m for m in args.speed_methods.split(",") if m} - set(METHODS)
    if unknown:
        parser.error(f"unknown --speed-methods {sorted(unknown)}")
    if not args.table_only:
        if args.speed:
            for method in [m for m in args.speed_methods.split(",") if m]:
                measured = measure_speed(min(args.budget, 60.0), method)
                if method == "unet":
                    cache["speed"] = measured
                else:
                    cache.setdefault("speed_methods", {})[method] = measured
                save_cache(cache, args.cache, fresh)
                print(method, json.dumps(measured, indent=1))
        for dataset in args.sets.split(","):
            if not args.methods:
                break
            task = load_task(dataset, args.limit)
            if task is None:
                print(f"skipping {dataset}: not found under {DATA}")
                continue
            print(
                f"{dataset}: {len(task.images)} images, region {task.region}, "
                f"{len(np.unique(task.labels)) - 1} annotated cells",
                flush=True,
            )
            for seed in (int(s) for s in args.seeds.split(",")):
                for method in methods:
                    label = f"{method}+{args.variant}" if args.variant else method
                    k = key(dataset, label, seed, 0 if method == "rf" else args.budget)
                    if args.rescore:
                        if k in cache["runs"] and model_path(args.save_models, k).exists():
                            cache["runs"][k].update(
                                rescore(task, model_path(args.save_models, k), overrides)
                            )
                            fresh.add(k)
                            save_cache(cache, args.cache, fresh)
                            ap50 = cache["runs"][k]["ap50"]
                            print(f"  seed {seed} {label:>14}: AP50 {ap50:.3f} (rescored)")
                        continue
                    if not args.force and (k in cache["runs"] or not claim(args.cache, k)):
                        continue
                    started = time.perf_counter()
                    if method == "rf":
                        result = run_random_forest(task, seed)
                    else:
                        result = run_method(
                            task,
                            "unet" if method == "ceiling" else method,
                            seed,
                            args.budget,
                            full=method == "ceiling",
                            settings=settings,
                            save_to=model_path(args.save_models, k) if args.save_models else None,
                        )
                        if settings:
                            result["settings"] = settings
                    result["wall_s"] = time.perf_counter() - started
                    result["threads"] = _threads()
                    if method != "rf":
                        result["code"] = CODE
                    cache["runs"][k] = result
                    fresh.add(k)
                    save_cache(cache, args.cache, fresh)
                    print(
                        f"  seed {seed} {label:>14}: AP50 {result['ap50']:.3f}  mAP "
                        f"{result['map']:.3f}  Dice {result['dice']:.3f}  "
                        f"({result['wall_s']:.0f} s)",
                        flush=True,
                    )
    cache["machine"] = {
        "cpus": os.cpu_count(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    save_cache(cache, args.cache, fresh)
    write_doc(cache, args.budget, args.doc)
    print(table(cache, args.budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
