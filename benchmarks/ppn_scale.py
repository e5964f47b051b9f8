"""How well PPN-auxnet measures each image's cell size, and what rescaling is worth.

For a trained ``ppn-auxnet`` model file and a data set of ``fewlabels.py``, the
size estimate of :meth:`PPNAuxNet.image_scale` (inscribed radius of a
thresholded foreground map, ``inference/scale.py``) is compared, image by
image, with the median inscribed radius of the true cells; the estimate
divided by the model's reference radius is the factor the image is shrunk by.
With ``--ap`` the set is also segmented with and without rescaling and scored
as in ``fewlabels.py``. Prints markdown tables (docs/ppn_auxnet.md, change 13).

Examples
--------
napari-semiseg train ... --method ppn-auxnet --out ppn.pt     # or fewlabels' protocol
python benchmarks/ppn_scale.py ppn.pt --set-name dsb2018_fluo_nuclei --ap
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fewlabels
from napari_semiseg.api import load_model, segment_array
from napari_semiseg.data.annotations import cell_inradii
from napari_semiseg.data.images import prepare_image
from napari_semiseg.inference.scale import agreed_foreground, inscribed_radius

SOURCES = ("dense", "aux", "max", "min", "agreed")
LEVELS = (0.5, 0.8)


def foreground_maps(method, image: np.ndarray) -> dict[str, np.ndarray]:
    """Dense-head, aux-net and maximum foreground probabilities ``(Y, X)``."""
    x = torch.from_numpy(image[None]).to(method.device)
    h, w = image.shape[1:]
    with torch.no_grad():
        dense = method.main(x).dense[0, :h, :w].float()
        aux = method.aux(x)[0, 0].float()
    maps = {
        "dense": dense,
        "aux": aux,
        "max": torch.maximum(dense, aux),
        "min": torch.minimum(dense, aux),
    }
    return {k: torch.sigmoid(v).cpu().numpy() for k, v in maps.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="ppn-auxnet model file")
    parser.add_argument("--set-name", default="dsb2018_fluo_nuclei")
    parser.add_argument("--limit", type=int, help="first N images")
    parser.add_argument("--ap", action="store_true", help="also score with and without rescaling")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--recalibrate", action="store_true", help="measure the reference radius again"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="with --ap: also score with these method settings (e.g. fill_gaps=true)",
    )  # fmt: skip
    parser.add_argument(
        "--only-set", action="store_true", help="with --ap and --set: score only that variant"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = fewlabels.load_task(args.set_name, args.limit)
    if task is None:
        parser.error(f"{args.set_name} not found under {fewlabels.DATA}")
    model = load_model(args.model, "cpu")
    method = model.method
    if method.name != "ppn-auxnet":
        parser.error(f"{args.model} holds a {method.name} model, not ppn-auxnet")
    method.eval()
    if args.recalibrate or float(method.main.cell_inradius) <= 0:
        # model files from before the reference was measured at the end of training
        method.main.cell_inradius.fill_(float(np.median(cell_inradii(task.labels))))
        method.on_training_end(fewlabels.training_data(task))
    reference = float(method.main.cell_inradius)
    ratios: dict[tuple[str, float], list[float]] = {(s, t): [] for s in SOURCES for t in LEVELS}
    for image, truth in zip(task.images, task.truths, strict=True):
        true_radius = float(np.median(cell_inradii(truth))) if truth.max() else 0.0
        if true_radius <= 0:
            continue
        prepared = prepare_image(image, norm=model.normalization)
        maps = foreground_maps(method, prepared)
        for source, level in ratios:
            if source == "agreed":  # what image_scale uses
                foreground = agreed_foreground(prepared, maps["dense"], maps["aux"], level)
            else:
                foreground = maps[source] > level
            estimate = inscribed_radius(foreground)
            ratios[source, level].append(max(estimate, 1e-3) / true_radius)
    print(f"{args.set_name}: {len(task.images)} images; reference radius {reference:.2f} px\n")
    print("| foreground | threshold | median estimate / truth | within x1.5 | within x2 |")
    print("| --- | --- | --- | --- | --- |")
    for (source, level), values in ratios.items():
        r = np.abs(np.log(np.asarray(values)))
        print(
            f"| {source} | {level} | {np.median(values):.2f} | {np.mean(r < np.log(1.5)):.0%} "
            f"| {np.mean(r < np.log(2)):.0%} |"
        )
    if args.ap:
        print("\n| rescale | AP50 | mean AP | TP | FP | FN |")
        print("| --- | --- | --- | --- | --- | --- |")
        base = method.config
        variants = [("off", {"rescale": False}), ("on", {"rescale": True})]
        if args.only_set:
            variants = []
        if args.set:
            settings = fewlabels.parse_settings(args.set)
            label = "on, " + ", ".join(f"{k}={v}" for k, v in settings.items())
            variants.append((label, {"rescale": True, **settings}))
        for label, settings in variants:
            method.config = dataclasses.replace(base, **settings)
            scores = fewlabels.score(task, [segment_array(model, im) for im in task.images])
            print(
                f"| {label} | {scores['ap50']:.3f} | {scores['map']:.3f} "
                f"| {scores['tp50']} | {scores['fp50']} | {scores['fn50']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
