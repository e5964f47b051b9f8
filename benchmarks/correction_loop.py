"""Does one round of corrections help? The label-train-correct loop, simulated.

The few-label task of ``fewlabels.py`` (about ten cells annotated in one square),
then what a biologist does after the first prediction: they look at the image they
annotated, see objects on empty background, paint over the largest ``--marks`` of
them as known background, and press Train again (the model continues). The
simulated biologist paints exactly the predicted object (no cell pixel: it lies on
no annotated-in-truth cell). When the annotated image has fewer such objects, the
next images are looked at in order. With ``--cells N`` they also paint the N
largest cells the prediction missed (no predicted object overlaps them with IoU
0.5 or more: missed, cut or merged with a neighbour) as new annotated cells, as
with **New cell** (known on the cell's own pixels), looking at the images in the
same order; ``--typical-cells`` takes those nearest the annotated cells' median
area instead of the largest. ``--cell-margin M`` paints each of them inside a rectangle annotated
in full instead (**regions**: every cell touching it painted, the rest known
background), the cell's bounding box grown by M times its radius.

Three models are scored per seed, on the same pixels:

- ``first``: after the first training (``--budget`` seconds);
- ``continued``: the first model trained ``--more`` seconds longer on the same
  annotation (the control: more training alone);
- ``corrected``: the first model trained ``--more`` seconds longer with the
  corrections added.

Scores are those of ``fewlabels.py`` (outside the annotated square) with the
painted pixels ignored as well: predictions lying mostly on them are dropped, and
cells touching them too, so the corrected objects themselves do not count and what
is measured is whether the network learnt the *kind* of error elsewhere.

Examples
--------
python benchmarks/correction_loop.py --sets dsb2018_brightfield_nuclei --seeds 0
python benchmarks/correction_loop.py --sets ctc_fluo_n2dh_gowt1 --marks 0 --cells 3
OMP_NUM_THREADS=1 python benchmarks/correction_loop.py --threads 1 --seeds 0,1,2 --json c.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from skimage.segmentation import relabel_sequential

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fewlabels
from error_analysis import split_predictions
from napari_semiseg.api import segment_array
from napari_semiseg.engine import train
from napari_semiseg.evaluation import iou_matrix
from napari_semiseg.inference import run


def false_objects(
    masks: list[np.ndarray], truths: list[np.ndarray], known: np.ndarray, count: int
) -> list[np.ndarray]:
    """Boolean masks of the largest predicted objects lying on no cell, image by image.

    Parameters
    ----------
    masks, truths : list of numpy.ndarray
        ``(Y, X)`` predicted and true instance ids of every image.
    known : numpy.ndarray
        ``(Y, X)`` bool annotated square of the first image (objects mostly
        inside it are not candidates: the biologist already annotated there).
    count : int
        How many objects to mark in all.

    Returns
    -------
    list of numpy.ndarray
        ``(Y, X)`` bool painted pixels per image (all False where none).

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 0, 0, 0, 0]])
    >>> pred = np.array([[1, 1, 0, 2, 0, 3, 3]])
    >>> [m.astype(int).tolist() for m in false_objects([pred], [truth], truth < 0, 1)]
    [[[0, 0, 0, 0, 0, 1, 1]]]
    """
    painted = [np.zeros(m.shape, bool) for m in masks]
    left = count
    for index, (mask, truth) in enumerate(zip(masks, truths, strict=True)):
        if left <= 0:
            break
        _, stray = split_predictions(mask, truth)
        areas = np.bincount(mask.ravel())
        if index == 0:
            inside = np.bincount(mask[known].ravel(), minlength=areas.size)
            stray = {s for s in stray if inside[s] < 0.5 * areas[s]}
        for obj in sorted(stray, key=lambda s: -areas[s])[:left]:
            painted[index] |= mask == obj
            left -= 1
    return painted


def missed_cells(
    masks: list[np.ndarray],
    truths: list[np.ndarray],
    known: np.ndarray,
    count: int,
    typical_area: float = 0.0,
) -> list[np.ndarray]:
    """The largest true cells no prediction found, as a biologist would paint them.

    A cell is missed when no predicted object overlaps it with IoU 0.5 or more
    (missed, cut in pieces, or merged with a neighbour). Cells with a pixel in
    the annotated square of the first image are not candidates. With
    ``typical_area``, the cells nearest that area (on a log scale) come first
    instead of the largest: missed cells that look like the annotated ones.

    Parameters
    ----------
    masks, truths : list of numpy.ndarray
        ``(Y, X)`` predicted and true instance ids of every image.
    known : numpy.ndarray
        ``(Y, X)`` bool annotated square of the first image.
    count : int
        How many cells to paint in all.
    typical_area : float
        Prefer missed cells of about this area in pixels (0 = the largest first).

    Returns
    -------
    list of numpy.ndarray
        ``(Y, X)`` int32 painted cells per image (their true ids; 0 elsewhere).

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 2, 2, 2, 0, 3]])
    >>> pred = np.array([[1, 1, 0, 0, 0, 2, 0, 0]])
    >>> [m.tolist() for m in missed_cells([pred], [truth], truth < 0, 1)]
    [[[0, 0, 0, 2, 2, 2, 0, 0]]]
    >>> [m.tolist() for m in missed_cells([pred], [truth], truth < 0, 1, typical_area=1)]
    [[[0, 0, 0, 0, 0, 0, 0, 3]]]
    """
    painted = [np.zeros(m.shape, np.int32) for m in masks]
    left = count
    for index, (mask, truth) in enumerate(zip(masks, truths, strict=True)):
        if left <= 0:
            break
        truth, _, back = relabel_sequential(truth)
        found = (iou_matrix(relabel_sequential(mask)[0], truth) >= 0.5).any(1)
        areas = np.bincount(truth.ravel())[1:]
        candidates = np.flatnonzero(~found) + 1
        if index == 0:
            inside = set(np.unique(truth[known]).tolist())
            candidates = np.array([c for c in candidates if c not in inside], np.int64)
        if typical_area > 0:
            order = np.abs(np.log(areas[candidates - 1] / typical_area))
        else:
            order = -areas[candidates - 1].astype(np.float64)
        for cell in candidates[np.argsort(order, kind="stable")][:left].tolist():
            painted[index][truth == cell] = back[cell]
            left -= 1
    return painted


def regions_around(
    cells: list[np.ndarray], truths: list[np.ndarray], margin: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each painted cell inside a rectangle annotated in full, as with **regions**.

    The rectangle is the cell's bounding box grown by ``margin`` times its
    equivalent radius on every side; every true cell touching it is painted
    whole and the rest of it is known background.

    Parameters
    ----------
    cells : list of numpy.ndarray
        ``(Y, X)`` int painted cells per image (:func:`missed_cells`).
    truths : list of numpy.ndarray
        ``(Y, X)`` true instance ids per image.
    margin : float
        Growth of each box in equivalent radii of its cell.

    Returns
    -------
    cells, background : list of numpy.ndarray
        ``(Y, X)`` int32 painted cells and ``(Y, X)`` bool known background, per image.

    Examples
    --------
    >>> truth = np.array([[0, 1, 1, 0, 0, 0, 2, 0]])
    >>> cells, bg = regions_around([np.where(truth == 1, 1, 0)], [truth], 1.0)
    >>> cells[0].tolist(), bg[0].astype(int).tolist()
    ([[0, 1, 1, 0, 0, 0, 0, 0]], [[1, 0, 0, 1, 0, 0, 0, 0]])
    """
    grown, background = [], []
    for painted, truth in zip(cells, truths, strict=True):
        box = np.zeros(truth.shape, bool)
        for cell in np.unique(painted[painted > 0]):
            rows, cols = np.nonzero(painted == cell)
            pad = int(np.ceil(margin * np.sqrt(rows.size / np.pi)))
            box[
                max(rows.min() - pad, 0) : rows.max() + 1 + pad,
                max(cols.min() - pad, 0) : cols.max() + 1 + pad,
            ] = True
        inside = np.isin(truth, np.unique(truth[box & (truth > 0)]))
        grown.append(np.where(inside, truth, 0).astype(np.int32))
        background.append(box & ~inside)
    return grown, background


def one_seed(task: fewlabels.Task, method: str, seed: int, args) -> dict:
    """First training, the corrections, and the two continuations of one seed."""
    config = partial(fewlabels.budget_config, method, seed)
    first = run(train(fewlabels.training_data(task), config(args.budget))).model
    masks = [segment_array(first, image) for image in task.images]
    painted = false_objects(masks, task.truths, task.known, args.marks)
    typical = 0.0
    if args.typical_cells:  # the median annotated cell
        areas = np.bincount(task.labels.ravel())[1:]
        typical = float(np.median(areas[areas > 0]))
    cells = missed_cells(masks, task.truths, task.known, args.cells, typical)
    if args.cell_margin > 0:
        cells, around = regions_around(cells, task.truths, args.cell_margin)
        painted = [p | a for p, a in zip(painted, around, strict=True)]
    ignored = [p | (c > 0) for p, c in zip(painted, cells, strict=True)]
    row = {
        "seed": seed,
        "marked_objects": args.marks,
        "marked_pixels": int(sum(p.sum() for p in painted)),
        "marked_images": [i for i, p in enumerate(painted) if p.any()],
        "cell_margin": args.cell_margin,
        "typical_cells": args.typical_cells,
        "painted_cells": int(sum(np.unique(c).size - 1 for c in cells)),
        "painted_cell_pixels": int(sum((c > 0).sum() for c in cells)),
        "painted_cell_images": [i for i, c in enumerate(cells) if c.any()],
        # scored outside the painted pixels too: the painted objects themselves do not count
        "first": fewlabels.score(task, masks, ignored),
    }
    for name, data in (
        ("continued", fewlabels.training_data(task)),
        ("corrected", fewlabels.training_data(task, background=painted, cells=cells)),
    ):
        resume = copy.deepcopy(first)  # training continues the model in place
        # a fresh optimizer, as in the runs of 2026-12-07 (they continued from the
        # saved weights); the widget's Continue keeps Adam's state
        resume.optimizer_state = None
        model = run(train(data, config(args.more), resume=resume)).model
        masks = [segment_array(model, image) for image in task.images]
        row[name] = fewlabels.score(task, masks, ignored)
    return row


def markdown(results: dict) -> str:
    """One row per set: AP50 of the three models, mean over seeds (per seed).

    ``difference``: corrected − continued, mean (min..max over seeds).
    """
    lines = [
        "| data set | method | seeds | marked | first | continued | corrected | difference |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cell(rows: list[dict], key: str) -> str:
        values = [r[key]["ap50"] for r in rows]
        each = " / ".join(f"{v:.3f}" for v in values)
        return f"{np.mean(values):.3f} ({each})"

    for (name, method), rows in results.items():
        delta = [r["corrected"]["ap50"] - r["continued"]["ap50"] for r in rows]
        spread = f"{min(delta):+.3f}..{max(delta):+.3f}"
        marked = f"{rows[0]['marked_objects']} objects"
        if rows[0].get("painted_cells") is not None:
            marked += f", {max(r['painted_cells'] for r in rows)} cells"
            if rows[0].get("typical_cells"):
                marked += " of typical size"
            if rows[0].get("cell_margin"):
                marked += f" in boxes {rows[0]['cell_margin']:g} radii wider"
        lines.append(
            f"| {name} | {method} | {len(rows)} | {marked} | {cell(rows, 'first')} "
            f"| {cell(rows, 'continued')} | {cell(rows, 'corrected')} "
            f"| {np.mean(delta):+.3f} ({spread}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="dsb2018_brightfield_nuclei")
    parser.add_argument("--method", default="unet")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--budget", type=float, default=180.0, help="first training (s)")
    parser.add_argument("--more", type=float, default=90.0, help="each continuation (s)")
    parser.add_argument("--marks", type=int, default=3, help="false objects painted")
    parser.add_argument("--cells", type=int, default=0, help="missed cells painted")
    parser.add_argument(
        "--typical-cells", action="store_true",
        help="paint the missed cells nearest the annotated cells' median area, not the largest",
    )  # fmt: skip
    parser.add_argument(
        "--cell-margin", type=float, default=0.0,
        help="paint each missed cell inside a fully annotated box this many radii wider",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[tuple[str, str], list[dict]] = {}
    for name in args.sets.split(","):
        task = fewlabels.load_task(name)
        if task is None:
            print(f"{name}: not found under {fewlabels.DATA}, skipped")
            continue
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            row = one_seed(task, args.method, seed, args)
            results.setdefault((name, args.method), []).append(row)
            print(
                f"{name} {args.method} seed {seed}: first {row['first']['ap50']:.3f}, "
                f"continued {row['continued']['ap50']:.3f}, "
                f"corrected {row['corrected']['ap50']:.3f} ({row['marked_pixels']} px "
                f"painted on images {row['marked_images']}, {row['painted_cells']} cells "
                f"({row['painted_cell_pixels']} px) on images {row['painted_cell_images']}; "
                f"{time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    if results:
        print(markdown(results))
    if args.json:
        flat = [{"set": n, "method": m, **r} for (n, m), rows in results.items() for r in rows]
        args.json.write_text(json.dumps(flat, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
