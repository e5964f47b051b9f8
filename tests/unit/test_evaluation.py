import numpy as np
import pytest

from napari_semiseg.errors import SemisegInputError
from napari_semiseg.evaluation import evaluate, iou_matrix, match_counts


def _truth():
    t = np.zeros((10, 10), int)
    t[0:4, 0:4] = 1
    t[6:10, 6:10] = 2
    return t


def test_perfect_prediction():
    scores = evaluate(_truth(), _truth())
    assert scores["ap50"] == scores["map"] == scores["f1_50"] == scores["dice"] == 1.0


def test_one_missed_one_false():
    p = np.zeros((10, 10), int)
    p[0:4, 0:4] = 5  # matches truth 1 (ids need not agree)
    p[0:2, 8:10] = 7  # false positive
    scores = evaluate(p, _truth())
    assert (scores["tp50"], scores["fp50"], scores["fn50"]) == (1, 1, 1)
    assert scores["ap50"] == pytest.approx(1 / 3)
    assert scores["f1_50"] == pytest.approx(0.5)
    assert scores["dice"] == pytest.approx(2 * 16 / (20 + 32))


def test_partial_overlap_counts_at_low_but_not_high_threshold():
    p = np.zeros((10, 10), int)
    p[0:4, 0:3] = 1  # IoU 12/16 = 0.75 with truth 1
    t = np.zeros((10, 10), int)
    t[0:4, 0:4] = 1
    scores = evaluate(p, t)
    assert scores["ap50"] == 1.0
    assert scores["ap75"] == 1.0
    assert 0 < scores["map"] < 1  # fails at 0.8, 0.85, 0.9
    assert scores["map"] == pytest.approx(6 / 9)


def test_ignore_drops_touching_truth_and_inside_predictions():
    ignore = np.zeros((10, 10), bool)
    ignore[5:10, 5:10] = True
    p = np.zeros((10, 10), int)
    p[0:4, 0:4] = 1
    p[7:9, 7:9] = 2  # inside the ignore region: dropped
    scores = evaluate(p, _truth(), ignore)
    assert (scores["tp50"], scores["fp50"], scores["fn50"]) == (1, 0, 0)


def test_iou_matrix_and_counts():
    iou = iou_matrix(np.array([[1, 1, 2, 0]]), np.array([[1, 1, 1, 0]]))
    assert iou.shape == (1, 2)
    assert iou[0, 0] == pytest.approx(2 / 3)
    assert match_counts(iou, 0.5) == (1, 1, 0)
    assert match_counts(np.zeros((0, 3)), 0.5) == (0, 3, 0)


def test_counts_accumulate_over_images():
    empty = np.zeros((10, 10), int)
    scores = evaluate([_truth(), empty], [_truth(), _truth()])
    assert scores["tp50"] == 2
    assert scores["fn50"] == 2


def test_exclude_border():
    t = _truth()
    p = np.zeros_like(t)
    assert evaluate(p, t, exclude_border=True)["fn50"] == 0


def test_bad_inputs():
    with pytest.raises(SemisegInputError, match="shape"):
        evaluate(np.zeros((4, 4), int), np.zeros((5, 4), int))
    with pytest.raises(SemisegInputError, match="integer"):
        evaluate(np.zeros((4, 4), float), np.zeros((4, 4), int))
