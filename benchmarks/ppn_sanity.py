"""Fixed-step CPU sanity runs on the few-label task of ``fewlabels.py`` (docs/ppn_auxnet.md).

Same task, data and scoring as :mod:`fewlabels` (one square of ~10 annotated
cells in the first image, scored outside it), but a fixed number of steps, a
chosen architecture and patch size, and one torch thread, so that runs on a
shared CPU compare by steps and report their wall time. Prints one JSON line
per score threshold; nothing is written to the benchmark cache.

Examples
--------
python benchmarks/ppn_sanity.py --method ppn-auxnet --steps 80
python benchmarks/ppn_sanity.py --method unet --steps 210
python benchmarks/ppn_sanity.py --method ppn-auxnet --steps 50 --set-name ctc_fluo_n2dh_gowt1 \
    --size small --patch 192
python benchmarks/ppn_sanity.py --method ppn-auxnet --steps 80 --set stride=2 --thresholds 0.5,0.35
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fewlabels
from napari_semiseg.api import make_config, segment_array
from napari_semiseg.engine import train
from napari_semiseg.inference import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set-name", default="dsb2018_fluo_nuclei", help="data set folder")
    parser.add_argument("--method", default="ppn-auxnet")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--limit", type=int, default=20, help="first N images of the set")
    parser.add_argument("--size", default="tiny", help="U-Net preset")
    parser.add_argument("--patch", type=int, default=128, help="patch side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--thresholds", default="", help="score thresholds to evaluate (ppn)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {k: json.loads(v) for k, v in (pair.split("=", 1) for pair in args.set)}
    task = fewlabels.load_task(args.set_name, args.limit)
    if task is None:
        parser.error(f"{args.set_name} not found under {fewlabels.DATA}")
    config = make_config(
        method=args.method, steps=args.steps, seed=args.seed, device="cpu", preview_every=0,
        model_size=args.size, patch_size=args.patch, method_config=settings,
    )  # fmt: skip
    started = time.perf_counter()
    result = run(train(fewlabels.training_data(task), config))
    trained = time.perf_counter() - started
    model = result.model
    thresholds = [float(t) for t in args.thresholds.split(",") if t] or [None]
    for threshold in thresholds:
        if threshold is not None:
            model.method.config = dataclasses.replace(
                model.method.config, score_threshold=threshold
            )
        masks = [segment_array(model, image) for image in task.images]
        scores = fewlabels.score(task, masks)
        line = {
            "set": args.set_name, "method": args.method, "settings": settings,
            "threshold": threshold, "seed": args.seed, "steps": result.steps,
            "train_s": round(trained, 1),
            **{k: round(scores[k], 3) for k in ("ap50", "map", "dice")},
            **{k: int(scores[k]) for k in ("tp50", "fp50", "fn50")},
        }  # fmt: skip
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
