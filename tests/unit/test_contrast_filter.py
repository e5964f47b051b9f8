"""The post-processing's contrast filter (``PostprocessConfig.min_contrast``)."""

from dataclasses import replace

import numpy as np
import pytest

from napari_semiseg.data import TrainingData
from napari_semiseg.data.annotations import object_contrast
from napari_semiseg.engine import train
from napari_semiseg.engine.checkpoint import load_checkpoint
from napari_semiseg.inference.postprocess import (
    PostprocessConfig,
    drop_faint_objects,
    instances_from_probabilities,
)


def _square(labels, image, top, left, value, index, size=6):
    labels[top : top + size, left : left + size] = index
    image[:, top : top + size, left : left + size] = value


def test_contrast_is_measured_against_each_objects_own_surroundings():
    image = np.full((1, 30, 30), 0.1)
    labels = np.zeros((30, 30), np.int32)
    _square(labels, image, 4, 4, 0.9, 1)
    _square(labels, image, 4, 11, 0.3, 2)  # one pixel apart: the gap is shared out
    image[0, 20:, :] = 0.5  # a brighter region far from both objects does not count
    ids, contrast = object_contrast(image, labels, 3)
    assert ids.tolist() == [1, 2]
    assert contrast[:, 0].tolist() == pytest.approx([0.8, 0.2])
    # only valid pixels count as surroundings; too few of them: unmeasured (NaN)
    valid = np.zeros((30, 30), bool)
    valid[:, :3] = True
    _, contrast = object_contrast(image, labels, 3, valid)
    assert contrast[0, 0] == pytest.approx(0.8)
    assert np.isnan(contrast[1]).all()


def test_faint_objects_go_and_the_direction_follows_the_annotated_cells():
    image = np.full((1, 40, 40), 0.5)
    labels = np.zeros((40, 40), np.int32)
    _square(labels, image, 5, 5, 0.1, 1)  # dark, like brightfield nuclei
    _square(labels, image, 5, 25, 0.49, 2)  # barely darker than the background
    _square(labels, image, 25, 5, 0.9, 3)  # bright: the opposite of the annotated cells
    kept = drop_faint_objects(labels, image, [-0.4], 0.1, 36.0)
    assert np.unique(kept).tolist() == [0, 1]
    # off, no reference, a reference too weak to measure against, wrong channel count
    for reference, fraction in (([-0.4], 0.0), ((), 0.1), ([-0.01], 0.1), ([-0.4, 0.1], 0.1)):
        np.testing.assert_array_equal(
            drop_faint_objects(labels, image, reference, fraction, 36.0), labels
        )


def test_a_dim_object_the_network_is_sure_of_is_held_to_the_lower_bar():
    image = np.full((1, 40, 40), 0.1)
    labels = np.zeros((40, 40), np.int32)
    _square(labels, image, 5, 5, 0.9, 1)  # contrast 0.8: the annotated cells' own
    _square(labels, image, 5, 25, 0.156, 2)  # 0.07 of it: a dim nucleus
    _square(labels, image, 25, 5, 0.156, 3)  # as dim, where the network is unsure
    _square(labels, image, 25, 25, 0.124, 4)  # 0.03 of it: faint texture
    foreground = np.full((40, 40), 0.95)
    foreground[25:31, 5:11] = 0.8
    kept = drop_faint_objects(labels, image, [0.8], 0.1, 36.0, foreground, 0.9, 0.05)
    assert np.unique(kept).tolist() == [0, 1, 2]
    # without the foreground, with confident > 1, or a confident bar above the usual
    # one: every object is held to `fraction`
    for args in ((None, 0.9, 0.05), (foreground, 1.01, 0.05), (foreground, 0.9, 0.2)):
        kept = drop_faint_objects(labels, image, [0.8], 0.1, 36.0, *args)
        assert np.unique(kept).tolist() == [0, 1]


def test_the_watershed_reads_its_own_foreground_probability_for_the_lower_bar():
    image = np.zeros((1, 40, 40), np.float32)
    probabilities = np.zeros((3, 40, 40), np.float32)
    probabilities[0] = 1.0
    for top, value, sure in ((5, 0.8, 0.99), (25, 0.056, 0.97), (25, 0.056, 0.75)):
        left = 10 if sure > 0.9 or top == 5 else 24
        image[0, top : top + 8, left : left + 8] = value
        probabilities[:, top : top + 8, left : left + 8] = np.array([1 - sure, sure, 0.0])[
            :, None, None
        ]
    # (the unsure object's median foreground, 0.75, is kept here: the contrast filter's case)
    config = PostprocessConfig(
        reference_contrast=(0.8,), min_seed_peak=0.7, min_median_foreground=0.7
    )
    assert instances_from_probabilities(probabilities, 64.0, config).max() == 3  # no image
    labels = instances_from_probabilities(probabilities, 64.0, config, image)
    assert labels.max() == 2  # the bright cell and the dim one it is sure of
    assert labels[28, 12] > 0
    assert labels[28, 26] == 0
    off = replace(config, confident_foreground=1.01)
    assert instances_from_probabilities(probabilities, 64.0, off, image).max() == 1


def test_the_watershed_drops_a_confident_but_faint_object_only_with_the_image():
    image = np.zeros((1, 40, 40), np.float32)
    probabilities = np.zeros((3, 40, 40), np.float32)
    probabilities[0] = 1.0
    for top, value in ((5, 0.8), (25, 0.01)):  # a real cell, and faint texture
        image[0, top : top + 8, 10:18] = value
        probabilities[:, top : top + 8, 10:18] = np.array([0.0, 1.0, 0.0])[:, None, None]
    config = PostprocessConfig(reference_contrast=(0.7,))
    without = instances_from_probabilities(probabilities, 64.0, config)
    assert without.max() == 2
    with_image = instances_from_probabilities(probabilities, 64.0, config, image)
    assert with_image.max() == 1
    assert with_image[8, 12] == 1


def test_the_reference_is_measured_on_the_annotation_and_saved(toy_data, tiny_config, tmp_path):
    reference = toy_data.annotated_contrast()
    assert reference is not None
    assert len(reference) == toy_data.in_channels
    assert reference[0] > 0.2  # bright cells on a dark background
    train_run = train(toy_data, tiny_config, out=tmp_path / "m.pt")
    while True:
        try:
            next(train_run)
        except StopIteration:
            break
    model = load_checkpoint(tmp_path / "m.pt")
    assert model.annotated_contrast == pytest.approx(tuple(reference))
    assert model.postprocess().reference_contrast == pytest.approx(tuple(reference))
    assert model.postprocess().min_contrast == pytest.approx(0.1)


def test_no_reference_without_known_background_around_the_cells():
    image = np.zeros((20, 20), np.float32)
    image[5:10, 5:10] = 1.0
    labels = np.zeros((20, 20), np.int32)
    labels[5:10, 5:10] = 1
    known = labels > 0
    known[18:, :] = True  # known background, but far from the cell
    data = TrainingData.from_arrays([image], [labels], [known])
    assert data.annotated_contrast() is None
    assert np.isnan(data.dimmest_cell_contrast())


def test_dimmest_cell_contrast_is_a_fraction_of_the_median_cell():
    image = np.zeros((24, 60), np.float32)
    labels = np.zeros((24, 60), np.int32)
    for index, (x, level) in enumerate([(4, 1.0), (20, 0.8), (36, 0.1)], start=1):
        image[8:14, x : x + 6] = level
        labels[8:14, x : x + 6] = index
    data = TrainingData.from_arrays([image], [labels], [None])  # every 0 is background
    # contrasts 1.0, 0.8 and 0.1 against a background of 0: the median is 0.8
    assert data.dimmest_cell_contrast() == pytest.approx(0.1 / 0.8)
    assert data.summary()["dimmest_cell_contrast"] == pytest.approx(0.1 / 0.8)
