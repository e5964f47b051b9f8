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
from skimage.segmentation import clear_border

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fewlabels
from napari_semiseg.api import _prepare
from napari_semiseg.evaluation import apply_ignore
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
