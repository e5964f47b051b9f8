"""benchmarks/error_analysis.py: the shape report of false objects."""

import numpy as np
import pytest
from tests._benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def analysis():
    with benchmark_modules("fewlabels", "error_analysis") as modules:  # in import order
        yield modules["error_analysis"]


def _scene():
    """Two cells; a prediction with one match, one fold-like streak and one partial."""
    truth = np.zeros((40, 40), np.int32)
    truth[4:14, 4:14] = 1
    truth[20:30, 20:30] = 2
    pred = np.zeros_like(truth)
    pred[5:14, 4:14] = 1  # IoU 0.9 with cell 1
    pred[34:36, 2:30] = 2  # a long thin object on no cell
    pred[20:30, 20:23] = 3  # a third of cell 2: neither matched nor stray
    return pred, truth


def test_predictions_split_into_matched_and_stray(analysis):
    pred, truth = _scene()
    matched, stray = analysis.split_predictions(pred, truth)
    assert matched == {1}
    assert stray == {2}


def test_object_shapes_tell_a_streak_from_a_square(analysis):
    pred, _ = _scene()
    grey = np.zeros(pred.shape)
    grey[pred == 2] = 0.8
    shapes = analysis.object_shapes(pred, grey, {1, 2})
    assert shapes.shape == (2, 4)
    square, streak = shapes
    assert square[0] == 90  # areas in pixels
    assert streak[0] == 56
    assert square[2] > 0.8 > 0.2 > streak[2]  # minor / major axis ratio
    assert streak[3] == pytest.approx(0.8)  # grey level
    assert square[3] == 0.0


def test_shape_table_gives_medians_relative_to_the_annotated_area(analysis):
    rows = np.array([[50.0, 0.9, 0.5, 0.1], [150.0, 0.7, 0.3, 0.3]])
    lines = analysis.shape_table({"stray": rows, "none": np.zeros((0, 4))}, median_area=100.0)
    assert lines[2] == "| stray | 2 | 1.00 | 0.80 | 0.40 | 0.20 |"
    assert lines[3].startswith("| none | 0 |")
