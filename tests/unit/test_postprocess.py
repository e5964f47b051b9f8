import numpy as np
import pytest
from scipy import ndimage as ndi
from tests._synthetic import disks

from napari_semiseg.data.annotations import instance_borders, relative_depth, semantic_target
from napari_semiseg.inference.postprocess import (
    PostprocessConfig,
    annotated_confidence,
    contact_lengths,
    drop_unsure_objects,
    fill_object_holes,
    instances_from_probabilities,
    join_cut_objects,
    object_medians,
    remove_small_objects,
    remove_weak_seeds,
)


def _probabilities(labels):
    border = instance_borders(labels)
    probs = np.zeros((3, *labels.shape), np.float32)
    probs[0] = labels == 0
    probs[1] = (labels > 0) & ~border
    probs[2] = border
    return probs


def test_touching_cells_are_split():
    labels = disks(shape=(30, 50), centres=((15, 15), (15, 27)), radius=7)
    out = instances_from_probabilities(_probabilities(labels), median_area=150)
    assert out.max() == 2
    for i in (1, 2):
        overlap = np.bincount(out[labels == i])
        assert overlap.argmax() > 0
        assert overlap.max() / (labels == i).sum() > 0.9


def test_cores_grow_back_to_their_whole_cells():
    labels = disks(shape=(60, 90), centres=((20, 20), (20, 38), (38, 68)), radius=9)
    labels[np.hypot(*np.mgrid[:60, :90] - np.array([38, 68])[:, None, None]) <= 16] = 3
    target = semantic_target(labels, np.ones(labels.shape, bool), core=0.5)
    probs = np.stack([target == k for k in range(3)]).astype(np.float32)
    area = float(np.median(np.bincount(labels.ravel())[1:]))
    out = instances_from_probabilities(probs, area, PostprocessConfig(core_depth=0.5))
    assert out.max() == 3
    for i in (1, 2, 3):
        ids, counts = np.unique(out[labels == i], return_counts=True)
        match = out == ids[np.argmax(counts)]
        iou = np.sum(match & (labels == i)) / np.sum(match | (labels == i))
        assert iou > 0.9
    # read as thin-border seeds, the cores stop a few pixels out: the large cell is cut short
    thin = instances_from_probabilities(probs, area, PostprocessConfig())
    assert np.sum(thin == thin[38, 68]) < 0.7 * np.sum(labels == 3)


def test_small_objects_removed_relative_to_cell_size():
    labels = disks(shape=(40, 40), centres=((10, 10), (30, 30)), radius=6)
    labels[38:40, 0:2] = 3  # 4-pixel speck
    out = instances_from_probabilities(_probabilities(labels), median_area=110)
    assert out.max() == 2
    assert remove_small_objects(np.array([[1, 2, 2]]), 2).tolist() == [[0, 2, 2]]


def test_holes_inside_one_cell_filled_but_gaps_between_cells_kept():
    labels = np.zeros((12, 20), int)
    labels[1:6, 1:6] = 1
    labels[3, 3] = 0  # hole inside cell 1
    labels[1:11, 8:11] = 2
    labels[1:11, 12:15] = 3
    labels[1, 11] = labels[10, 11] = 2  # background gap enclosed by cells 2 and 3
    filled = fill_object_holes(labels)
    assert filled[3, 3] == 1
    assert filled[5, 11] == 0


def test_empty_prediction_gives_no_objects():
    probs = np.zeros((3, 10, 10), np.float32)
    probs[0] = 1
    assert instances_from_probabilities(probs, 50).max() == 0


def test_seedless_foreground_is_not_an_object_and_growth_is_limited():
    labels = disks(shape=(40, 40), centres=((20, 20),), radius=6)
    probs = _probabilities(labels)
    # a large region the network calls "border" with no interior: not a cell
    probs[0, :, 30:] = 0.0
    probs[2, :, 30:] = 1.0
    out = instances_from_probabilities(probs, median_area=110)
    assert out.max() == 1
    assert out[:, 31:].max() == 0
    assert np.sum(out == 1) < np.sum(labels == 1) + 60


def test_plateau_of_doubt_and_weak_seeds_give_no_objects():
    labels = disks(shape=(60, 60), centres=((15, 15), (45, 45)), radius=6)
    probs = _probabilities(labels)
    # right half far from the cells: the network outputs about the
    # class-balanced prior, with noise, as it does where nothing was supervised
    rng = np.random.default_rng(0)
    plateau = np.array([0.2, 0.5, 0.3], np.float32)[:, None, None]
    noise = rng.normal(0, 0.03, (3, 60, 25)).astype(np.float32)
    probs[:, :, 35:] = np.clip(plateau + noise, 0, 1) / np.clip(plateau + noise, 0, 1).sum(0)
    # cell 2 sits in the plateau but has a confident core: it stays
    probs[:, labels == 2] = _probabilities(labels)[:, labels == 2]
    # a blob with interior 0.8 everywhere but no confident core: dropped
    blob = disks(shape=(60, 60), centres=((45, 15),), radius=6) > 0
    probs[:, blob] = np.array([0.05, 0.8, 0.15], np.float32)[:, None]
    out = instances_from_probabilities(probs, median_area=110)
    assert out.max() == 2
    assert {int(np.bincount(out[labels == i]).argmax()) for i in (1, 2)} == {1, 2}
    assert out[blob].max() == 0
    keep_all = PostprocessConfig(
        interior_threshold=0.45, min_seed_peak=0.0, min_median_foreground=0
    )
    assert instances_from_probabilities(probs, 110, keep_all).max() > 3  # what the defaults avoid
    weak = remove_weak_seeds(np.array([[1, 0, 2]]), np.array([[0.95, 1.0, 0.6]]), 0.9)
    assert weak.tolist() == [[1, 0, 0]]


def test_an_object_the_network_is_unsure_of_over_most_of_its_pixels_is_dropped():
    labels = disks(shape=(40, 60), centres=((20, 15), (20, 45)), radius=8)
    probs = _probabilities(labels)
    # object 2 (a fold, say): a confident seed at its centre, but most of its
    # pixels only a little more foreground than background
    centre = np.hypot(*np.mgrid[:40, :60] - np.array([20, 45])[:, None, None]) <= 3
    unsure = (labels == 2) & ~centre
    probs[:, unsure] = np.array([0.3, 0.4, 0.3], np.float32)[:, None]
    out = instances_from_probabilities(probs, median_area=200)
    assert np.unique(out[labels == 1]).tolist() == [1]
    assert out[labels == 2].max() == 0
    keep = instances_from_probabilities(probs, 200, PostprocessConfig(min_median_foreground=0))
    assert keep.max() == 2
    # a true cell whose rim is unsure stays: the median reads its confident inside
    rim = (labels == 2) & (ndi.distance_transform_edt(labels == 2) <= 2)
    probs[:, labels == 2] = _probabilities(labels)[:, labels == 2]
    probs[:, rim] = np.array([0.4, 0.1, 0.5], np.float32)[:, None]
    assert rim.sum() < 0.5 * (labels == 2).sum()
    assert instances_from_probabilities(probs, 200).max() == 2
    # the bar is the median, per object
    fg = np.where(labels == 1, 0.95, 0.85) * (labels > 0)
    assert np.unique(drop_unsure_objects(labels, fg, 0.9)).tolist() == [0, 1]
    assert drop_unsure_objects(labels, fg, 0.0) is labels


def test_object_medians_equal_scipys_for_odd_and_even_objects():
    rng = np.random.default_rng(3)
    labels, n = ndi.label(ndi.gaussian_filter(rng.random((120, 120)), 2) > 0.5)
    values = rng.random((120, 120)).astype(np.float32)
    values[labels == 1] = 1.0  # the top of the range
    ids, medians = object_medians(labels, values)
    assert ids.tolist() == list(range(1, n + 1))
    np.testing.assert_allclose(medians, ndi.median(values, labels, ids), atol=1e-7)
    assert object_medians(np.zeros((4, 4), np.int32), np.ones((4, 4)))[0].size == 0


def test_thresholds_follow_the_confidence_of_the_model():
    labels = disks(shape=(40, 60), centres=((20, 15), (20, 45)), radius=7)
    probs = _probabilities(labels)
    # a model unsure everywhere: its cells peak at 0.75 (an early EMA teacher)
    probs = 0.25 / 3 + 0.75 * probs
    assert instances_from_probabilities(probs, 150).max() == 0  # lost to fixed thresholds
    confidence = annotated_confidence([probs[1]], [labels])
    assert confidence == pytest.approx(0.75 + 0.25 / 3)
    calibrated = PostprocessConfig().for_confidence(confidence)
    assert instances_from_probabilities(probs, 150, calibrated).max() == 2
    assert PostprocessConfig().for_confidence(None) == PostprocessConfig()
    assert PostprocessConfig().for_confidence(0.1).interior_threshold == pytest.approx(0.3)
    assert PostprocessConfig().for_confidence(0.8).min_median_foreground == pytest.approx(0.72)
    assert annotated_confidence([probs[1]], [np.zeros_like(labels)]) is None


def test_depth_map_splits_cells_the_classes_merge():
    labels = disks(shape=(30, 50), centres=((15, 15), (15, 28)), radius=8)
    merged = _probabilities((labels > 0).astype(int))  # no border between the two cells
    assert instances_from_probabilities(merged, median_area=200).max() == 1
    with_depth = np.concatenate([merged, relative_depth(labels)[None]])
    out = instances_from_probabilities(with_depth, median_area=200)
    assert out.max() == 2
    for i in (1, 2):
        ids, counts = np.unique(out[labels == i], return_counts=True)
        match = out == ids[np.argmax(counts)]
        assert np.sum(match & (labels == i)) / np.sum(match | (labels == i)) > 0.9


def test_a_flat_depth_map_loses_no_cell():
    # interior seeds without a depth seed stay seeds: the depth map can split, not drop
    labels = disks(shape=(40, 40), centres=((10, 10), (30, 30)), radius=6)
    probs = _probabilities(labels)
    flat = np.concatenate([probs, np.zeros((1, 40, 40), np.float32)])
    np.testing.assert_array_equal(
        instances_from_probabilities(flat, 110), instances_from_probabilities(probs, 110)
    )


def _split_one_seed_at_a_time(seeds, depth, prominence):
    """The definition of ``split_by_depth``, seed by seed over the whole image (slow)."""
    from skimage.morphology import reconstruction

    eight = np.ones((3, 3), bool)
    out, next_id = seeds.copy(), seeds.max() + 1
    for i in range(1, seeds.max() + 1):
        height = np.where(seeds == i, depth, 0.0)
        domes = height - reconstruction(np.maximum(height - prominence, 0.0), height)
        caps, n_caps = ndi.label((seeds == i) & (domes > 1e-6), structure=eight)
        high = [c for c in range(1, n_caps + 1) if domes[caps == c].max() >= prominence - 1e-6]
        if len(high) >= 2:
            out[seeds == i] = 0
            for c in high:
                out[caps == c] = next_id
                next_id += 1
    return out


def _partition(labels):
    """Ids renumbered by first appearance (0 stays 0): equal partitions compare equal."""
    _, first, inverse = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))[inverse.ravel()]
    return np.where(labels.ravel() == 0, -1, order)


def test_split_by_depth_equals_its_seed_by_seed_definition():
    # random seeds (some touching at a corner) and depth maps, some with flat tops
    from napari_semiseg.inference.postprocess import split_by_depth

    rng = np.random.default_rng(0)
    splits = 0
    for trial in range(60):
        shape = tuple(rng.integers(8, 50, 2))
        seeds, _ = ndi.label(ndi.gaussian_filter(rng.random(shape), 2) > 0.5)
        depth = ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3))
        depth = (depth - depth.min()) / (np.ptp(depth) + 1e-9)
        if trial % 3 == 0:
            depth = np.round(depth, 1)
        prominence = float(rng.choice([0.05, 0.1, 0.3]))
        fast = split_by_depth(seeds, depth, prominence)
        expected = _split_one_seed_at_a_time(seeds, depth, prominence)
        np.testing.assert_array_equal(_partition(fast), _partition(expected))
        splits += fast.max() > seeds.max()
    assert splits > 10  # the comparison covers seeds that split


def test_a_flat_top_is_not_split_at_a_diagonal_step():
    from napari_semiseg.inference.postprocess import split_by_depth

    seeds = np.ones((5, 5), int)
    depth = np.full((5, 5), 0.5)
    depth[1, 1] = depth[2, 2] = 0.9  # one top, 8-connected
    assert split_by_depth(seeds, depth, 0.3).max() == 1
    depth[2, 2], depth[3, 3] = 0.5, 0.9  # two tops with a saddle 0.4 below
    assert split_by_depth(seeds, depth, 0.3).max() == 3


def test_contact_lengths_count_each_side():
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 1, 3, 2]])
    contacts = contact_lengths(labels)
    # 1's pixels (0,1), (1,1) touch 2; 2's (0,2), (1,2) touch 1; (2,1) | (2,2) for 1 | 3;
    # 2's (1,2) is above 3 and (2,3) beside it; 3's one pixel touches 2
    expected = {(1, 2): 2, (2, 1): 2, (1, 3): 1, (3, 1): 1, (2, 3): 2, (3, 2): 1}
    assert contacts == expected  # background (0) is no neighbour


def test_a_disk_cut_in_two_is_joined_and_touching_disks_are_not():
    disk = disks(shape=(40, 40), centres=((20, 20),), radius=12)
    cut = disk.copy()
    cut[(disk > 0) & (np.arange(40)[None, :] >= 23)] = 2  # a chord off centre
    joined = join_cut_objects(cut)
    assert np.unique(joined).tolist() == [0, 1]
    np.testing.assert_array_equal(joined > 0, disk > 0)
    # three pieces of one disk: the quarters join first, then the chord joins them
    three = cut.copy()
    three[(cut == 1) & (np.arange(40)[:, None] >= 20)] = 3
    assert np.unique(join_cut_objects(three)).tolist() == [0, 1]
    # two touching disks (a waist), and two disks sharing a flattened border
    pair = disks(shape=(40, 60), centres=((20, 18), (20, 40)), radius=11)
    np.testing.assert_array_equal(join_cut_objects(pair), pair)
    pressed = disks(shape=(40, 60), centres=((20, 20), (20, 36)), radius=11)
    assert np.unique(join_cut_objects(pressed)).tolist() == [0, 1, 2]
    # a small cell against a large one: short contact, the union has a waist
    small = disks(shape=(60, 60), centres=((30, 25), (30, 44)), radius=0)
    small[disks((60, 60), ((30, 25),), 14) > 0] = 1
    small[disks((60, 60), ((30, 44),), 6) > 0] = 2
    assert np.unique(join_cut_objects(small)).tolist() == [0, 1, 2]
    assert join_cut_objects(cut, min_contact=0) is cut  # off


def test_a_foreground_map_vetoes_joins_across_a_seam_and_allows_lobed_cells():
    # a disk cut along a chord: joined, unless the foreground shows a dark seam there
    disk = disks(shape=(40, 40), centres=((20, 20),), radius=12)
    cut = disk.copy()
    cut[(disk > 0) & (np.arange(40)[None, :] >= 23)] = 2
    bright = np.full(cut.shape, 0.9, np.float32)
    assert np.unique(join_cut_objects(cut, foreground=bright)).tolist() == [0, 1]
    seam = bright.copy()
    seam[:, 22:24] = 0.2  # the pixels either side of the cut
    np.testing.assert_array_equal(join_cut_objects(cut, foreground=seam), cut)
    # a kidney-shaped nucleus (a disk with a bite) cut across: its union is less
    # convex than 0.9, its pieces share a border as long as they are wide
    yy, xx = np.mgrid[:50, :50]
    kidney = ((yy - 25) ** 2 + (xx - 25) ** 2 <= 196) & ((yy - 25) ** 2 + (xx - 39) ** 2 > 64)
    lobed = np.where(kidney, np.where(yy < 25, 1, 2), 0)
    from skimage.morphology import convex_hull_image

    assert 0.8 < kidney.sum() / convex_hull_image(kidney).sum() < 0.9
    np.testing.assert_array_equal(join_cut_objects(lobed), lobed)  # geometry alone: two
    bright = np.full(lobed.shape, 0.9, np.float32)
    joined = join_cut_objects(lobed, foreground=bright)  # no seam: one cell
    assert np.unique(joined).tolist() == [0, 1]
    # the same shape with a dim seam along the cut stays two cells
    dim = bright.copy()
    dim[24:26] = 0.1
    np.testing.assert_array_equal(join_cut_objects(lobed, foreground=dim), lobed)
    with pytest.raises(ValueError, match="differ"):
        join_cut_objects(lobed, foreground=bright[:10])


def test_a_cut_cell_with_unclaimed_pixels_between_its_pieces_is_joined():
    # two halves of a disk with a slit between them that neither piece claimed (a
    # hole of 17 x 5 px): the union without its hole would be too concave (0.81)
    disk = disks(shape=(40, 40), centres=((20, 20),), radius=12)
    cut = disk.copy()
    cut[(disk > 0) & (np.arange(40)[None, :] >= 20)] = 2
    cut[18:23, 12:29] = 0
    assert contact_lengths(cut)[1, 2] >= 2 * np.sqrt((cut == 1).sum() / np.pi)
    assert np.unique(join_cut_objects(cut)).tolist() == [0, 1]
    # the same slit open to the outside is no hole: two pieces with a notch stay apart
    notch = cut.copy()
    notch[18:23, 5:12] = 0
    assert np.unique(join_cut_objects(notch)).tolist() == [0, 1, 2]


def test_an_elongated_cell_cut_across_joins_with_the_convex_contact_rule():
    # an ellipse 3x longer than wide cut across its short axis: the halves share a
    # border as long as the ellipse is wide, less than a half's equivalent diameter
    yy, xx = np.mgrid[:40, :80]
    ellipse = ((yy - 20) / 9.0) ** 2 + ((xx - 40) / 27.0) ** 2 <= 1
    cut = np.where(ellipse, np.where(xx < 40, 1, 2), 0)
    contact = contact_lengths(cut)[1, 2] / (2 * np.sqrt((cut == 1).sum() / np.pi))
    assert 0.5 < contact < 1.0
    np.testing.assert_array_equal(join_cut_objects(cut), cut)  # contact below 1: two
    joined = join_cut_objects(cut, convex_contact=0.5)
    assert np.unique(joined).tolist() == [0, 1]
    # ... but not across a seam, nor two touching disks (a waist, solidity < 0.9)
    seam = np.full(cut.shape, 0.9, np.float32)
    seam[:, 39:41] = 0.1
    np.testing.assert_array_equal(join_cut_objects(cut, foreground=seam, convex_contact=0.5), cut)
    pair = disks(shape=(40, 60), centres=((20, 18), (20, 38)), radius=11)
    np.testing.assert_array_equal(join_cut_objects(pair, convex_contact=0.5), pair)
    # 0 (off) and values not below min_contact change nothing
    np.testing.assert_array_equal(join_cut_objects(cut, convex_contact=0), cut)
    np.testing.assert_array_equal(join_cut_objects(cut, convex_contact=1.0), cut)
