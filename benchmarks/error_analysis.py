"""What the errors of a few-label model are: missed, merged or fragmented cells.

Each model file saved by ``fewlabels.py --save-models DIR`` (named
``<set>_<method>_<seed>_<budget>.pt``) is loaded, its class probabilities on every
image of its data set are computed once, and the instance masks are scored as in
the benchmark (outside the annotated region). The script prints, per model:

- TP / FP / FN at IoU 0.5 and the kind of each missed cell: *missed* (less than
  30 % of it predicted as any object), *merged* (its best-overlapping prediction
  also covers other cells) or *partial* (covered, but cut or grown wrong);
- the same counts by image, grouped by how large the image's cells are against
  the annotated ones (median area ratio), since sets such as the DSB nuclei mix
  sources whose nuclei differ 20-fold in area;
- what the false objects lying on no cell look like next to the matched ones and
  the annotated cells (median area, solidity, minor/major axis ratio, grey
  level): on DSB brightfield they are folds of cytoplasm, long and concave;
- with ``--set KEY=VALUE``, the AP50 of a post-processing variant on the *same*
  probabilities (so the difference is due to the post-processing alone).

Models that segment instances themselves (``ppn-auxnet``) are skipped.

Examples
--------
python benchmarks/fewlabels.py --methods unet --seeds 0 --save-models models/
python benchmarks/error_analysis.py models/*.pt
python benchmarks/error_analysis.py models/*.pt --set min_seed_peak=0 --set max_growth=0
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from skimage.measure import regionprops
from skimage.segmentation import clear_border

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fewlabels
from napari_semiseg.api import _prepare
from napari_semiseg.evaluation import apply_ignore, iou_matrix
from napari_semiseg.inference import run
from napari_semiseg.inference.postprocess import instances_from_probabilities
from napari_semiseg.inference.predict import predict_probabilities

#: Median cell area of an image / median annotated area: bin edges.
RATIO_BINS = (0.0, 0.5, 0.8, 1.25, 2.0, 4.0, np.inf)


def classify_misses(prediction: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """Count true positives, false positives and the kinds of missed cells.

    Parameters
    ----------
    prediction, truth : numpy.ndarray
        ``(Y, X)`` instance ids (already restricted to the scored area).

    Returns
    -------
    dict of str to int
        ``tp``, ``fp``, ``missed``, ``merged``, ``partial`` (``fn`` is the sum of
        the last three).

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 2, 2, 0, 3, 3]])
    >>> pred = np.array([[1, 1, 0, 2, 2, 2, 2, 2]])
    >>> classify_misses(pred, truth)
    {'tp': 1, 'fp': 1, 'missed': 0, 'merged': 2, 'partial': 0}
    """
    counts = {"tp": 0, "fp": 0, "missed": 0, "merged": 0, "partial": 0}
    pred_area = np.bincount(prediction.ravel())
    matched = set()
    for t in np.unique(truth[truth > 0]):
        inside = truth == t
        ids, overlap = np.unique(prediction[inside], return_counts=True)
        keep = ids > 0
        ids, overlap = ids[keep], overlap[keep]
        if ids.size == 0 or overlap.sum() < 0.3 * inside.sum():
            counts["missed"] += 1
            continue
        iou = overlap / (inside.sum() + pred_area[ids] - overlap)
        best = int(np.argmax(iou))
        if iou[best] >= 0.5:
            counts["tp"] += 1
            matched.add(int(ids[best]))
            continue
        main = ids[int(np.argmax(overlap))]
        others = ((prediction == main) & (truth > 0) & (truth != t)).sum()
        counts["merged" if others > 0.3 * inside.sum() else "partial"] += 1
    counts["fp"] = len(set(np.unique(prediction[prediction > 0]).tolist()) - matched)
    return counts


#: Object measures of :func:`object_shapes`, in their column order.
SHAPE_COLUMNS = ("area / annotated", "solidity", "axis ratio", "grey level")


def object_shapes(labels: np.ndarray, grey: np.ndarray, ids=None) -> np.ndarray:
    """Area, solidity, minor/major axis ratio and mean grey level of objects.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` instance ids.
    grey : numpy.ndarray
        ``(Y, X)`` normalised grey image.
    ids : collection of int, optional
        Only these objects (default: all).

    Returns
    -------
    numpy.ndarray
        ``(N, 4)`` float64, one row per object (columns :data:`SHAPE_COLUMNS`,
        the area in pixels).

    Examples
    --------
    >>> labels = np.zeros((20, 20), int); labels[2:8, 2:8] = 1; labels[10:12, 2:18] = 2
    >>> object_shapes(labels, np.ones((20, 20)))[:, :3].round(2).tolist()
    [[36.0, 1.0, 1.0], [32.0, 1.0, 0.11]]
    """
    rows = []
    for r in regionprops(labels, grey):
        if ids is not None and r.label not in ids:
            continue
        ratio = r.axis_minor_length / r.axis_major_length if r.axis_major_length else 1.0
        rows.append((r.area, r.solidity, ratio, r.intensity_mean))
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def split_predictions(prediction: np.ndarray, truth: np.ndarray) -> tuple[set, set]:
    """Predicted objects matched to a cell (IoU >= 0.5) and those lying on no cell.

    "On no cell": under 5 % of the object's pixels belong to any cell.

    Parameters
    ----------
    prediction, truth : numpy.ndarray
        ``(Y, X)`` instance ids (already restricted to the scored area).

    Returns
    -------
    matched, stray : set of int
        Ids of ``prediction``.

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 0, 0, 0]])
    >>> pred = np.array([[1, 1, 0, 0, 2, 2]])
    >>> split_predictions(pred, truth)
    ({1}, {2})
    """
    iou = iou_matrix(prediction, truth)  # (truth, prediction); ids need not be sequential
    matched = {int(p) + 1 for p in np.flatnonzero((iou >= 0.5).any(0))}
    pred_area = np.bincount(prediction.ravel())
    on_cells = np.bincount(prediction[truth > 0].ravel(), minlength=pred_area.size)
    stray = {int(p) for p in np.flatnonzero(on_cells < 0.05 * pred_area) if p > 0}
    return matched, stray


def shape_table(groups: dict[str, np.ndarray], median_area: float) -> list[str]:
    """Markdown rows: the median of each measure of :data:`SHAPE_COLUMNS` per group."""
    lines = [
        "| objects | n | " + " | ".join(SHAPE_COLUMNS) + " |",
        "| --- | --- |" + " --- |" * len(SHAPE_COLUMNS),
    ]
    for name, rows in groups.items():
        if not len(rows):
            lines.append(f"| {name} | 0 |" + " – |" * len(SHAPE_COLUMNS))
            continue
        medians = np.median(rows, axis=0)
        medians[0] /= max(median_area, 1e-9)
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(f"{v:.2f}" for v in medians) + " |")
    return lines


def analyse(path: Path, changes: dict) -> list[str]:
    """Report lines for one model file (empty when it cannot be analysed)."""
    dataset = fewlabels.dataset_of(path)
    task = fewlabels.load_task(dataset) if dataset else None
    if task is None:
        return [f"{path.name}: its data set is not in {fewlabels.DATA}, skipped"]
    model = fewlabels.load_task_model(task, path)
    if getattr(model.method, "segment_instances", None) is not None:
        return [f"{path.name}: {model.method.name} segments instances itself, skipped"]
    own = model.postprocess(None)
    total: dict[str, int] = {}
    by_ratio: dict[int, dict[str, int]] = {}
    own_masks, variant_masks = [], []
    shapes: dict[str, list[np.ndarray]] = {"matched": [], "on no cell": []}
    for image, truth, ignore in zip(task.images, task.truths, task.ignores(), strict=True):
        prepared = _prepare(model, image, None, None)
        probabilities = run(predict_probabilities(model.method, prepared))
        area = model.median_cell_area
        mask = instances_from_probabilities(probabilities, area, own, prepared)
        own_masks.append(mask)
        if changes:
            variant = replace(own, **changes)
            variant_masks.append(
                instances_from_probabilities(probabilities, area, variant, prepared)
            )
        if dataset in fewlabels.EXCLUDE_BORDER:  # as the benchmark scores these sets
            mask, truth = clear_border(mask), clear_border(truth)
        scored_mask, scored_truth = apply_ignore(mask, truth, ignore)
        counts = classify_misses(scored_mask, scored_truth)
        matched, stray = split_predictions(scored_mask, scored_truth)
        grey = prepared.mean(0)
        shapes["matched"].append(object_shapes(scored_mask, grey, matched))
        shapes["on no cell"].append(object_shapes(scored_mask, grey, stray))
        areas = np.bincount(truth.ravel())[1:]
        ratio = float(np.median(areas[areas > 0])) / max(model.median_cell_area, 1e-9)
        group = int(np.searchsorted(RATIO_BINS, ratio, side="right")) - 1
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
            by_ratio.setdefault(group, {"images": 0})
            by_ratio[group][name] = by_ratio[group].get(name, 0) + value
        by_ratio[group]["images"] += 1
    fn = total["missed"] + total["merged"] + total["partial"]
    lines = [
        f"## {path.stem}",
        "",
        (
            f"TP {total['tp']}, FP {total['fp']}, FN {fn} (missed {total['missed']}, merged "
            f"{total['merged']}, partial {total['partial']}); AP50 "
            f"{total['tp'] / max(total['tp'] + total['fp'] + fn, 1):.3f}"
        ),
        "",
        "| cell area / annotated | images | TP | FP | missed | merged | partial | AP50 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for group in sorted(by_ratio):
        c = by_ratio[group]
        errors = c["fp"] + c["missed"] + c["merged"] + c["partial"]
        lines.append(
            f"| {RATIO_BINS[group]:g}-{RATIO_BINS[group + 1]:g} | {c['images']} | {c['tp']} | "
            f"{c['fp']} | {c['missed']} | {c['merged']} | {c['partial']} | "
            f"{c['tp'] / max(c['tp'] + errors, 1):.3f} |"
        )
    annotated = object_shapes(task.labels, _prepare(model, task.images[0], None, None).mean(0))
    lines += [
        "",
        (
            "What the predicted objects look like (medians; false objects lying on no "
            "cell next to the matched ones and the annotated cells):"
        ),
        "",
        *shape_table(
            {
                "annotated cells": annotated,
                **{name: np.concatenate(rows) for name, rows in shapes.items()},
            },
            model.median_cell_area,
        ),
    ]
    if changes:
        a, b = fewlabels.score(task, own_masks), fewlabels.score(task, variant_masks)
        lines += [
            "",
            (
                f"post-processing {changes}: AP50 {a['ap50']:.3f} -> {b['ap50']:.3f}, "
                f"mean AP {a['map']:.3f} -> {b['map']:.3f}"
            ),
        ]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="model files <set>_<method>_...pt")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="post-processing change to compare (JSON value), e.g. min_seed_peak=0",
    )  # fmt: skip
    args = parser.parse_args(argv)
    changes = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    for path in args.models:
        print("\n".join(analyse(path, changes)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
