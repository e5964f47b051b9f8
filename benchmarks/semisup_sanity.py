"""Short CPU sanity run of one method on the few-label task of ``fewlabels.py``.

Uses the task, data and scoring of :mod:`fewlabels` (one square of ~10
annotated cells in the first image, everything else unknown, scored outside the
square) with a configuration small enough for a shared laptop-class CPU:
the ``tiny`` U-Net, 128 px patches, batch 4 (+ 4 unlabelled), one torch thread.
Prints one JSON line (AP50, mean AP, Dice, steps, mean of the last 20 loss
terms) and appends it to ``--out``. Nothing is written to the benchmark cache.

Examples
--------
python benchmarks/semisup_sanity.py --method mean-teacher --budget 100 --limit 12
python benchmarks/semisup_sanity.py --method co-training --set weight_soft_by_confidence=false
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
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
    parser.add_argument("--method", default="unet")
    parser.add_argument("--budget", type=float, default=100.0, help="training seconds")
    parser.add_argument("--limit", type=int, default=12, help="first N images of the set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("/tmp/semisup_sanity.jsonl"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {k: json.loads(v) for k, v in (pair.split("=", 1) for pair in args.set)}
    task = fewlabels.load_task(args.set_name, args.limit)
    if task is None:
        parser.error(f"{args.set_name} not found under {fewlabels.DATA}")
    config = make_config(
        method=args.method,
        steps=10**6,
        time_budget=args.budget,
        seed=args.seed,
        device="cpu",
        preview_every=0,
        model_size="tiny",
        patch_size=128,
        batch_size=4,
        method_config=settings,
    )
    started = time.perf_counter()
    result = run(train(fewlabels.training_data(task), config))
    model = result.model
    masks = []
    for image in task.images:
        masks.append(segment_array(model, image))
    scores = fewlabels.score(task, masks)
    tail = result.history[-20:]
    terms = {k: round(float(np.mean([h[k] for h in tail])), 3) for k in tail[-1] if k != "step"}
    line = {
        "set": args.set_name,
        "method": args.method,
        "settings": settings,
        "seed": args.seed,
        "steps": result.steps,
        "ap50": round(scores["ap50"], 3),
        "map": round(scores["map"], 3),
        "dice": round(scores["dice"], 3),
        "last_terms": terms,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(line))
    with args.out.open("a") as stream:
        stream.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
