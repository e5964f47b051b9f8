import numpy as np
import pytest
from tests._synthetic import disks

from napari_semiseg.data.annotations import IGNORE, semantic_target
from napari_semiseg.data.weights import border_distances, class_balance, unet_weight_map


def test_class_balance_mean_is_one_over_known():
    target = np.array([[0, 0, 0, 1, IGNORE]], np.uint8)
    weights = class_balance(target, 3)
    known = target[target != IGNORE]
    assert weights[known].mean() == pytest.approx(1.0)
    assert weights[2] == 0


def test_two_cell_gap_gets_high_weight():
    labels = disks(shape=(40, 60), centres=((20, 15), (20, 41)), radius=10)
    target = semantic_target(labels, np.ones(labels.shape, bool))
    weights = unet_weight_map(labels, target, w0=10, sigma=5)
    gap = weights[20, 28]  # midway: d1 = d2 = 3 -> w0 * exp(-36/50) ~ 4.9 on top of w_c
    far = weights[2, 2]
    d1, d2 = border_distances(labels, margin=20)
    expected = class_balance(target)[0] + 10 * np.exp(-((d1[20, 28] + d2[20, 28]) ** 2) / 50)
    assert gap == pytest.approx(expected, rel=1e-5)
    assert gap > far + 4
    assert far == pytest.approx(class_balance(target)[0], abs=1e-3)


def test_weight_zero_on_unknown_and_positive_on_known():
    labels = disks()
    known = np.zeros(labels.shape, bool)
    known[:, :30] = True
    target = semantic_target(labels, known | (labels > 0))
    weights = unet_weight_map(labels, target)
    assert np.all(weights[target == IGNORE] == 0)
    assert np.all(weights[target != IGNORE] > 0)


def test_border_distances_nearest_and_second():
    labels = disks(shape=(30, 60), centres=((15, 10), (15, 50)), radius=5)
    d1, d2 = border_distances(labels, margin=100)
    assert d1[15, 30] == pytest.approx(15, abs=1)
    assert d2[15, 30] == pytest.approx(15, abs=1)
    assert d1[15, 20] < d2[15, 20]


def test_training_config_weight_parameters_reach_the_data(toy_data, tiny_config):
    from napari_semiseg.engine import train

    before = toy_data.images[0].weight.copy()
    generator = train(toy_data, tiny_config.replace(w0=0.0, steps=1))
    next(generator)  # the trainer is built before the first event
    after = toy_data.images[0].weight
    assert toy_data.w0 == 0.0
    assert after.max() < before.max()
