"""End to end on easy synthetic data: a few annotated cells are enough to find the rest.

The contract tests check that every method runs; this test checks that the default
pipeline (sparse annotation -> U-Net -> seeded watershed) actually segments, on
images it never saw.
"""

import numpy as np

from napari_semiseg.api import _prepare, segment_array, train
from napari_semiseg.data.annotations import relative_depth
from napari_semiseg.engine import TrainConfig
from napari_semiseg.evaluation import evaluate
from napari_semiseg.inference import run
from napari_semiseg.inference.predict import predict_probabilities
from napari_semiseg.models import UNetConfig
from tests._synthetic import blobs


def _config(steps: int, core_depth: float = 0.0, **method_config) -> TrainConfig:
    return TrainConfig(
        method="unet", steps=steps, model=UNetConfig(base_channels=8, depth=3, dropout=0.0),
        batch_size=4, patch_size=48, lr=3e-3, device="cpu", preview_every=0, seed=0,
        core_depth=core_depth, method_config=method_config,
    )  # fmt: skip


def test_ten_annotated_cells_are_enough_to_segment_unseen_images(toy_set):
    data = (toy_set["images"], toy_set["labels"], toy_set["masks"])
    model = train(*data, config=_config(150)).model
    separate = [blobs((128, 128), 16, seed=seed, touching=False) for seed in (7, 8)]
    scores = [evaluate(segment_array(model, image), truth) for image, truth in separate]
    assert min(s["ap50"] for s in scores) > 0.85
    assert min(s["dice"] for s in scores) > 0.9
    # touching cells (the unannotated training image): most are still split; this toy
    # task measures 0.56 (merged pairs of touching cells are the errors)
    touching = evaluate(segment_array(model, toy_set["images"][1]), toy_set["truth"][1])
    assert touching["ap50"] > 0.45
    assert touching["dice"] > 0.9
    # the same pipeline one step into training finds nothing useful: the bar means something
    untrained = train(*data, config=_config(1)).model
    assert evaluate(segment_array(untrained, separate[0][0]), separate[0][1])["ap50"] < 0.3


def test_cell_cores_keep_touching_cells_apart(toy_set):
    # the same task with core targets: the merged pairs of the test above are split.
    # One run varies with its trajectory (seeds 0-3 measured 1.00 / 0.86 / 0.56 / 1.00
    # in float32, 0.80 / 0.93 / 0.73 / 1.00 in bfloat16; thin borders: 0.47-0.56), so
    # the bar is on the mean of two seeds (float32 0.93, bfloat16 0.87)
    data = (toy_set["images"], toy_set["labels"], toy_set["masks"])
    scores = []
    for seed in (0, 1):
        model = train(*data, config=_config(150, core_depth=0.5).replace(seed=seed)).model
        scores.append(evaluate(segment_array(model, toy_set["images"][1]), toy_set["truth"][1]))
    assert np.mean([s["ap50"] for s in scores]) > 0.8
    assert min(s["dice"] for s in scores) > 0.9
    separate, truth = blobs((128, 128), 16, seed=7, touching=False)
    assert evaluate(segment_array(model, separate), truth)["ap50"] > 0.85


def test_depth_head_learns_cell_depth_on_unseen_images(toy_set):
    # the same task with a depth output: the classes segment as well as before and
    # the depth map follows each cell's true relative depth on the unannotated image
    # (measured 0.81 correlation after 150 steps)
    data = (toy_set["images"], toy_set["labels"], toy_set["masks"])
    model = train(*data, config=_config(150, depth_head=True)).model
    image, truth = toy_set["images"][1], toy_set["truth"][1]
    touching = evaluate(segment_array(model, image), truth)
    assert touching["ap50"] > 0.45
    assert touching["dice"] > 0.9
    depth = run(predict_probabilities(model.method, _prepare(model, image, None, None)))[3]
    cells = truth > 0
    assert np.corrcoef(depth[cells], relative_depth(truth)[cells])[0, 1] > 0.6
    separate, truth = blobs((128, 128), 16, seed=7, touching=False)
    assert evaluate(segment_array(model, separate), truth)["ap50"] > 0.85
