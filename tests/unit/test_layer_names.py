"""Layer-name conventions, channel axes of layer shapes, export file clashes (no Qt)."""

import subprocess
import sys

import numpy as np
import pytest

from napari_semiseg.data.images import spatial_shape
from napari_semiseg.data.layers import (
    CELLS,
    PREDICTION,
    duplicate_stems,
    fingerprint,
    image_name_of,
    layer_spatial_shape,
    prediction_name,
)


def test_prediction_names_and_image_names():
    assert prediction_name("img") == f"img {PREDICTION}"
    assert prediction_name("img", 3) == "img prediction (3)"
    for name in ("img cells", "img prediction", "img prediction (2)", "img regions"):
        assert image_name_of(name) == "img"
    assert image_name_of("img (2)") == "img (2)"
    assert image_name_of(f"a {CELLS} b") == f"a {CELLS} b"


@pytest.mark.parametrize(
    "shape", [(40, 50), (40, 50, 2), (2, 40, 50), (40, 50, 3), (3, 40, 50), (40, 50, 4)]
)
def test_layer_shape_finds_channels_like_the_core(shape):
    assert layer_spatial_shape(shape) == spatial_shape(np.zeros(shape, np.float32))
    assert layer_spatial_shape(shape) == (40, 50)


def test_layer_shape_of_rgb_and_of_stacks():
    assert layer_spatial_shape((40, 50, 3), rgb=True) == (40, 50)
    assert layer_spatial_shape((9, 40, 50)) == (40, 50)  # a stack: training refuses it


def test_fingerprint_notices_a_one_pixel_edit():
    labels = np.zeros((30, 40), np.int32)
    before = fingerprint(labels)
    assert fingerprint(labels.copy()) == before
    labels[3, 4] = 1
    assert fingerprint(labels) != before
    assert fingerprint(np.zeros((40, 30), np.int32)) != fingerprint(np.zeros((30, 40), np.int32))


def test_duplicate_stems_groups_names_that_share_a_file():
    names = ["img 1", "img_1", "a.tif", "a.png", "b", "B", "c"]
    assert duplicate_stems(names) == [["img 1", "img_1"], ["a.tif", "a.png"], ["b", "B"]]
    assert duplicate_stems(["x", "y"]) == []


def test_sample_loader_and_writer_import_neither_the_gui_nor_torch():
    code = (
        "import sys, napari_semiseg._napari_contrib\n"
        "bad = ('torch', 'napari', 'qtpy', 'magicgui', 'napari_semiseg._widgets')\n"
        "print(sorted(m for m in bad if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
