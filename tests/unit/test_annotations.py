import numpy as np
import pytest
from tests._synthetic import blobs, disks

from napari_semiseg.data import TrainingData
from napari_semiseg.data.annotations import (
    IGNORE,
    check_labels,
    instance_borders,
    known_mask,
    relative_depth,
    semantic_target,
)
from napari_semiseg.data.regions import find_region, region_annotation
from napari_semiseg.errors import SemisegInputError


def test_borders_separate_touching_cells():
    labels = disks(centres=((12, 12), (12, 23)), radius=6)
    border = instance_borders(labels)
    # the column where the two cells meet is border on both sides
    touching = (labels[:, :-1] == 1) & (labels[:, 1:] == 2)
    ys, xs = np.nonzero(touching)
    assert border[ys, xs].all()
    assert border[ys, xs + 1].all()
    # the centre of each cell is interior
    assert not border[12, 12]
    assert not border[12, 23]


def test_semantic_target_marks_unknown():
    labels = np.zeros((10, 10), np.int32)
    labels[2:6, 2:6] = 1
    known = np.zeros((10, 10), bool)
    known[:8, :8] = True
    target = semantic_target(labels, known_mask(labels, known))
    assert target[9, 9] == IGNORE
    assert target[7, 7] == 0
    assert target[3, 3] == 1
    assert target[2, 2] == 2


def test_relative_depth_is_one_at_the_centre_and_free_of_scale():
    small = disks(shape=(40, 40), centres=((20, 20),), radius=6)
    large = disks(shape=(90, 90), centres=((45, 45),), radius=30)
    for labels, centre in ((small, 20), (large, 45)):
        depth = relative_depth(labels)
        assert depth[centre, centre] == pytest.approx(1.0)
        assert depth[labels == 0].max() == 0.0
        assert depth[centre, centre:].tolist() == sorted(depth[centre, centre:], reverse=True)
    # the core above half depth is about a quarter of a disc, small or large
    fractions = [np.mean(relative_depth(lab)[lab > 0] > 0.5) for lab in (small, large)]
    assert fractions[0] == pytest.approx(0.25, abs=0.1)
    assert fractions[1] == pytest.approx(0.25, abs=0.05)


def _gap(target, labels):
    """Smallest distance between interior pixels of cell 1 and of cell 2."""
    a = np.argwhere((target == 1) & (labels == 1))
    b = np.argwhere((target == 1) & (labels == 2))
    return np.hypot(*(a[:, None] - b[None]).transpose(2, 0, 1)).min()


def test_core_targets_keep_touching_cells_apart():
    labels = disks(shape=(40, 60), centres=((20, 20), (20, 38)), radius=10)
    known = np.ones(labels.shape, bool)
    thin = semantic_target(labels, known)
    np.testing.assert_array_equal(semantic_target(labels, known, core=0.0), thin)
    cores = semantic_target(labels, known, core=0.5)
    # same cells, same background; only the interior shrinks to each cell's core
    np.testing.assert_array_equal(cores == 0, thin == 0)
    assert np.all(thin[cores == 1] == 1)
    assert _gap(thin, labels) <= 3
    assert _gap(cores, labels) >= 8
    # each core is one piece in the middle of its cell
    for i, (cy, cx) in enumerate(((20, 20), (20, 38)), start=1):
        assert cores[cy, cx] == 1
        assert np.sum((cores == 1) & (labels == i)) > 0.15 * np.sum(labels == i)


def test_no_mask_means_exhaustive():
    labels = np.zeros((5, 5), np.int32)
    assert known_mask(labels).all()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((10, 10), np.float32), "dtype float32"),
        (np.zeros((10, 11), np.uint16), "shape"),
        (np.zeros((10, 10), bool), "dtype bool"),
        (-np.ones((10, 10), np.int16), "negative"),
        (np.zeros((10, 10, 3), np.uint8), "RGB"),
    ],
)
def test_bad_labels_refused(labels, message):
    with pytest.raises(SemisegInputError, match=message):
        check_labels(labels, (10, 10), source="lab.tif")


def test_empty_annotations_refused():
    image, _ = blobs()
    with pytest.raises(SemisegInputError, match="no annotated cells"):
        TrainingData.from_arrays([image], [np.zeros(image.shape, np.uint16)])


def test_positive_only_annotation_refused():
    image, truth = blobs()
    labels = np.where(truth == 1, 1, 0)
    with pytest.raises(SemisegInputError, match="no pixel is known to be background"):
        TrainingData.from_arrays([image], [labels], [labels > 0])


def test_mask_without_labels_refused():
    image, _ = blobs()
    with pytest.raises(SemisegInputError, match="without labels"):
        TrainingData.from_arrays([image], [None], [np.ones(image.shape)])


def test_channel_mismatch_refused():
    grey, truth = blobs()
    rgb = np.stack([grey] * 3, axis=-1)
    with pytest.raises(SemisegInputError, match="different numbers of channels"):
        TrainingData.from_arrays([grey, rgb], [truth, None])


def test_region_annotation_takes_whole_cells():
    _, truth = blobs(seed=3)
    top, left, size = find_region(truth, n_cells=5)
    labels, known = region_annotation(truth, top, left, size)
    ids = np.unique(labels)[1:]
    assert len(ids) >= 5
    for i in ids:  # every annotated cell is complete
        assert np.array_equal(labels == i, truth == i)
    assert known[top : top + size, left : left + size].all()
    assert known.sum() < known.size


def test_summary_counts(toy_data):
    summary = toy_data.summary()
    assert summary["images"] == 2
    assert summary["annotated_images"] == 1
    assert summary["cells"] > 0
    assert summary["unknown_pixels"] > 0
