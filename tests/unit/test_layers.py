import numpy as np
import pytest

from napari_semiseg.data.layers import (
    annotation_counts,
    box_to_rectangle,
    cast_labels,
    file_stem,
    known_from_annotations,
    merge_prediction,
    next_label,
    rasterize_shapes,
    regions_from_known,
    to_pixel_vertices,
    training_annotation,
)
from napari_semiseg.data.previews import preview_layers
from napari_semiseg.errors import SemisegInputError


def test_rectangle_covers_inclusive_pixel_box():
    rect = box_to_rectangle((2, 3, 5, 7), pixels=True)
    mask = rasterize_shapes([rect], ["rectangle"], (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[2:6, 3:8] = True
    np.testing.assert_array_equal(mask, expected)


def test_rasterize_polygon_ellipse_and_skip_lines():
    triangle = np.array([[0, 0], [0, 8], [8, 0]], float)
    ellipse = box_to_rectangle((10, 10, 18, 14))
    line = np.array([[0, 0], [19, 19]], float)
    mask = rasterize_shapes([triangle, ellipse, line], ["polygon", "ellipse", "line"], (20, 20))
    assert mask[1, 1]
    assert not mask[7, 7]
    assert mask[14, 12]
    assert not mask[10, 10]
    assert not mask[19, 19]  # lines enclose nothing


def test_shapes_in_another_frame_map_to_image_pixels():
    # a shapes layer translated by (10, 0) and an image translated by (8, 0)
    rect = box_to_rectangle((0, 0, 1, 1), pixels=True)
    pixels = to_pixel_vertices(rect, translate=(10, 0), image_translate=(8, 0))
    mask = rasterize_shapes([pixels], ["rectangle"], (6, 6))
    assert mask[2:4, 0:2].all()
    assert mask.sum() == 4


def test_known_mask_is_union_of_the_three_layers():
    cells = np.zeros((6, 6), np.uint16)
    cells[1:3, 1:3] = 1
    scribbles = np.zeros((6, 6), np.uint8)
    scribbles[5, :] = 1
    regions = np.zeros((6, 6), bool)
    regions[0:2, 4:6] = True
    known = known_from_annotations(cells, scribbles, regions)
    assert known.sum() == 4 + 6 + 4
    assert not known[3, 3]
    with pytest.raises(SemisegInputError, match="same height and width"):
        known_from_annotations(cells, np.zeros((5, 5)))


def test_training_annotation_copies_and_handles_missing_layers():
    cells = np.zeros((4, 4), np.uint16)
    assert training_annotation(None, None, None) == (None, None)
    assert training_annotation(cells) == (None, None)  # empty layers: unlabelled image
    scribbles = np.zeros((4, 4), np.uint8)
    scribbles[0, 0] = 1
    labels, known = training_annotation(None, scribbles, shape=(4, 4))
    assert labels.sum() == 0
    assert known.sum() == 1
    cells[2, 2] = 5
    labels, known = training_annotation(cells, scribbles)
    cells[2, 2] = 0  # the snapshot must not follow later edits
    assert labels[2, 2] == 5
    assert known.sum() == 2


def test_counts_and_next_label():
    cells = np.array([[0, 4, 4], [0, 0, 9]])
    known = np.array([[True, True, True], [False, False, True]])
    counts = annotation_counts(cells, known)
    assert (counts.cells, counts.known_pixels, counts.background_pixels) == (2, 4, 1)
    assert counts.has_background
    assert not annotation_counts(cells, cells > 0).has_background
    assert annotation_counts(None, None).cells == 0
    assert next_label(cells) == 10
    assert next_label(np.zeros((2, 2), int)) == 1
    assert next_label(None) == 1


def test_merge_never_changes_user_cells():
    cells = np.zeros((30, 30), np.uint16)
    cells[2:10, 2:10] = 3
    cells[20:25, 20:25] = 7
    prediction = np.zeros((30, 30), np.int32)
    prediction[1:11, 1:11] = 1  # the user's cell 3, predicted a bit larger: dropped
    prediction[12:18, 2:8] = 2  # a new cell: added
    prediction[20:25, 18:26] = 5  # overlaps cell 7 on 25 of 40 pixels: dropped
    prediction[26:29, 26:29] = 6  # a new cell: added
    merged, added = merge_prediction(cells, prediction)
    assert added == 2
    user = cells > 0
    np.testing.assert_array_equal(merged[user], cells[user])
    new_ids = set(np.unique(merged[~user]).tolist()) - {0}
    assert new_ids == {8, 9}  # after the largest user id
    assert (merged[12:18, 2:8] > 7).all()
    assert merged[1, 1] == 0  # the rim of the user's cell stays background
    with pytest.raises(SemisegInputError):
        merge_prediction(cells, prediction[:10])


def test_merge_keeps_the_free_part_of_a_mostly_new_object():
    cells = np.array([[1, 0, 0, 0]])
    prediction = np.array([[2, 2, 2, 2]])
    merged, added = merge_prediction(cells, prediction)
    np.testing.assert_array_equal(merged, [[1, 2, 2, 2]])
    assert added == 1


def test_cast_labels_and_file_stem():
    labels = np.array([[0, 70000]])
    assert cast_labels(labels, "uint32").dtype == np.uint32
    with pytest.raises(SemisegInputError, match="uint32"):
        cast_labels(labels, "uint16")
    with pytest.raises(SemisegInputError):
        cast_labels(np.array([[0.5]]), "uint16")
    assert cast_labels(np.array([[3]]), "uint16").dtype == np.uint16
    assert file_stem("nuclei_a") == "nuclei_a"
    assert file_stem("my image [1].tif") == "my_image_1"
    assert file_stem("///") == "mask"


def test_regions_from_known_recovers_the_square():
    labels = np.zeros((20, 20), np.uint16)
    labels[0:4, 8:14] = 1  # a cell sticking out of the square
    known = labels > 0
    known[2:10, 5:12] = True
    boxes, scribbles = regions_from_known(labels, known)
    assert boxes == [(2, 5, 9, 11)]
    assert scribbles.sum() == 0
    rect = rasterize_shapes([box_to_rectangle(boxes[0], pixels=True)], ["rectangle"], (20, 20))
    np.testing.assert_array_equal(known_from_annotations(labels, None, rect), known)
    # scattered background is not a rectangle: it comes back as scribbles
    known2 = labels > 0
    known2[15, 15] = known2[18, 2] = True
    boxes, scribbles = regions_from_known(labels, known2)
    assert boxes == []
    assert scribbles.sum() == 2


def test_preview_layers_follow_the_conventions():
    arrays = {
        "probabilities": np.zeros((3, 8, 8), np.float32),
        "foreground": np.zeros((8, 8), np.float32),
        "instances": np.zeros((8, 8), np.int64),
        "sample_image": np.ones((1, 8, 8), np.float32),
        "mixed_rgb": np.ones((3, 8, 8), np.float32) * 2,
        "proposals_points": np.array([[1, 2, 0.1], [3, 4, 0.9]]),
        "offsets_vectors": np.zeros((5, 2, 2)),
        "crops_boxes": np.array([[0, 0, 4, 4]]),
        "scalar": np.zeros(3),
    }
    layers = {layer.key: layer for layer in preview_layers(arrays)}
    assert set(layers) == set(arrays) - {"probabilities", "scalar"}
    assert layers["foreground"].kind == "image"
    assert layers["instances"].kind == "labels"
    assert layers["instances"].data.dtype == np.int32
    assert layers["sample_image"].data.shape == (8, 8)
    assert layers["mixed_rgb"].rgb
    assert layers["mixed_rgb"].data.max() == 1.0
    points = layers["proposals_points"]
    assert points.kind == "points"
    assert points.data.shape == (2, 2)
    assert points.sizes[1] > points.sizes[0]
    assert layers["offsets_vectors"].kind == "vectors"
    shapes = layers["crops_boxes"]
    assert shapes.kind == "shapes"
    assert shapes.data[0].shape == (4, 2)


def test_layer_maths_imports_no_gui():
    import subprocess
    import sys

    code = (
        "import sys, napari_semiseg.data.layers, napari_semiseg.data.previews\n"
        "gui = ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in gui))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
