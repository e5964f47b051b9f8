"""benchmarks/correction_loop.py: the simulated biologist's corrections."""

import numpy as np
import pytest
from tests._benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def loop():
    with benchmark_modules("fewlabels", "error_analysis", "correction_loop") as modules:
        yield modules["correction_loop"]


def _task(loop):
    truth = np.zeros((40, 40), np.int32)
    truth[2:8, 2:8] = 1
    truth[30:36, 30:36] = 2
    known = np.zeros((40, 40), bool)
    known[0:12, 0:12] = True  # the annotated square holds cell 1
    labels = np.where(known, truth, 0)
    rng = np.random.default_rng(0)
    images = [rng.random((40, 40)).astype(np.float32) for _ in range(2)]
    return loop.fewlabels.Task(
        "toy", images, [truth, truth.copy()], ["a", "b"], labels, known, (0, 0, 12)
    )


def test_the_largest_false_objects_are_painted_annotated_image_first(loop):
    task = _task(loop)
    first = task.truths[0].copy()
    first[9:11, 0:4] = 3  # on no cell, but inside the annotated square: not a candidate
    first[15:18, 15:25] = 4  # 30 px on no cell
    first[20:22, 0:5] = 5  # 10 px on no cell
    second = task.truths[1].copy()
    second[0:6, 20:30] = 6  # 60 px on no cell, but on the next image
    painted = loop.false_objects([first, second], task.truths, task.known, 2)
    assert painted[0].sum() == 30 + 10  # both candidates of the annotated image
    assert painted[0][(first == 4) | (first == 5)].all()
    assert not painted[1].any()
    painted = loop.false_objects([first, second], task.truths, task.known, 3)
    assert painted[1].sum() == 60  # the third comes from the next image
    assert not painted[0][first == 3].any()
    assert not painted[0][task.truths[0] > 0].any()  # cells are never painted


def test_corrections_become_known_background(loop):
    task = _task(loop)
    painted = [np.zeros((40, 40), bool), np.zeros((40, 40), bool)]
    painted[0][15:18, 15:25] = True
    painted[1][0:6, 20:30] = True
    data = loop.fewlabels.training_data(task, background=painted)
    first, second = data.images[0], data.images[1]
    np.testing.assert_array_equal(first.known, task.known | painted[0])
    np.testing.assert_array_equal(first.labels, task.labels)  # the cells stay
    np.testing.assert_array_equal(second.known, painted[1])
    assert second.labels is not None
    assert not second.labels.any()  # painted pixels are background


def test_painted_pixels_are_left_out_of_the_scores(loop):
    task = _task(loop)
    first = task.truths[0].copy()
    first[15:18, 15:25] = 4  # a false object, painted afterwards
    masks = [first, task.truths[1].copy()]
    painted = [first == 4, np.zeros((40, 40), bool)]
    plain = loop.fewlabels.score(task, masks)
    assert plain["ap50"] == pytest.approx(3 / 4)  # cell 1 lies in the annotated square
    assert loop.fewlabels.score(task, masks, painted)["ap50"] == pytest.approx(1.0)


def test_the_largest_missed_cells_are_painted_outside_the_annotated_square(loop):
    task = _task(loop)
    truth = task.truths[0].copy()
    truth[30:36, 2:12] = 3  # 60 px, the largest
    truth[20:24, 20:24] = 4  # 16 px
    prediction = np.where(np.isin(truth, [2]), truth, 0)  # finds cell 2 only
    prediction[20:22, 20:22] = 7  # a piece of cell 4: IoU 0.25, not found
    # cell 1 is missed too, but lies in the annotated square
    painted = loop.missed_cells([prediction, prediction], [truth, truth], task.known, 2)
    assert np.unique(painted[0]).tolist() == [0, 3, 4]  # the true ids
    np.testing.assert_array_equal(painted[0] > 0, np.isin(truth, [3, 4]))
    assert not painted[1].any()
    painted = loop.missed_cells([prediction, prediction], [truth, truth], task.known, 1)
    assert np.unique(painted[0]).tolist() == [0, 3]  # the largest first
    typical = loop.missed_cells([prediction, prediction], [truth, truth], task.known, 1, 20.0)
    assert np.unique(typical[0]).tolist() == [0, 4]  # the one nearest 20 px first


def test_painted_cells_become_new_cells_known_on_their_pixels(loop):
    task = _task(loop)
    cells = [np.zeros((40, 40), np.int32), np.zeros((40, 40), np.int32)]
    cells[0][30:36, 30:36] = 2  # a true id that is also an id of the annotation
    cells[1][30:36, 30:36] = 5
    cells[1][2:8, 2:8] = 9
    data = loop.fewlabels.training_data(task, cells=cells)
    first, second = data.images[0], data.images[1]
    np.testing.assert_array_equal(first.known, task.known | (cells[0] > 0))
    assert np.unique(first.labels).tolist() == [0, 1, 2]  # a new id next to cell 1
    assert (first.labels[30:36, 30:36] == 2).all()
    assert (first.labels[task.known] == task.labels[task.known]).all()  # cells stay
    np.testing.assert_array_equal(second.known, cells[1] > 0)  # no background
    assert np.unique(second.labels[second.known]).size == 2  # two cells, two ids


def test_a_painted_cell_in_a_box_brings_its_neighbours_and_background(loop):
    truth = np.zeros((40, 40), np.int32)
    truth[10:20, 10:20] = 4  # the missed cell: 100 px, equivalent radius 5.6
    truth[10:20, 22:30] = 5  # a neighbour within one radius
    truth[30:36, 30:36] = 6  # far away
    cells = [np.where(truth == 4, 4, 0).astype(np.int32)]
    grown, background = loop.regions_around(cells, [truth], 1.0)
    assert np.unique(grown[0]).tolist() == [0, 4, 5]  # the neighbour whole
    box = np.zeros((40, 40), bool)
    box[4:26, 4:26] = True  # the bounding box grown by 6 px
    np.testing.assert_array_equal(background[0], box & (truth == 0))
    assert not background[0][truth > 0].any()
