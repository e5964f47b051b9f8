"""Does reduced-precision prediction change the scores? Saved few-label models, both ways.

Each model file written by ``fewlabels.py --save-models`` is scored on its task with
float32 prediction and with :attr:`TilingConfig.amp` (bfloat16 on CPUs with bfloat16
units, float16 on CUDA); the same weights, so the difference is the precision alone.
Prints one line per model and a markdown table.

    python benchmarks/predict_precision.py models/dsb2018_fluo_nuclei_unet_0_180.pt ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import fewlabels
from napari_semiseg.api import segment_array
from napari_semiseg.inference import TilingConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model files (--save-models)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [
        "| model | AP50 float32 | AP50 reduced | Δ | s float32 | s reduced |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for path in args.models:
        name = fewlabels.dataset_of(path)
        task = fewlabels.load_task(name) if name else None
        if task is None:
            raise SystemExit(f"{path.name}: no data set of {fewlabels.DATA} matches the file name")
        model = fewlabels.load_task_model(task, path)
        scores, seconds = {}, {}
        for amp in (False, True):
            started = time.perf_counter()
            tiling = TilingConfig(amp=amp)
            masks = [segment_array(model, image, tiling=tiling) for image in task.images]
            seconds[amp] = time.perf_counter() - started
            scores[amp] = fewlabels.score(task, masks)["ap50"]
        delta = scores[True] - scores[False]
        print(f"{path.name}: {scores[False]:.4f} -> {scores[True]:.4f} ({delta:+.4f})", flush=True)
        rows.append(
            f"| {path.name} | {scores[False]:.4f} | {scores[True]:.4f} | {delta:+.4f} "
            f"| {seconds[False]:.0f} | {seconds[True]:.0f} |"
        )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
