"""PPN-auxnet building blocks: targets, proposals, window pasting, losses, heads, tiling."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests._synthetic import disks

from napari_semiseg.inference import run
from napari_semiseg.inference.ppn_instances import (
    TileProposals,
    assemble_instances,
    keep_largest_fragment,
    segment_from_proposals,
)
from napari_semiseg.inference.proposals import (
    decode_centres,
    find_proposals,
    merge_close,
    paste_windows,
    window_coordinates,
    window_radius,
)
from napari_semiseg.inference.tiling import TileDone, TilingConfig
from napari_semiseg.losses.mutual import (
    agreement_loss,
    confident_bce,
    inner_border,
    overlap_loss,
    sobel_border,
)
from napari_semiseg.losses.ppn import (
    balanced_bce,
    instance_centroids,
    offset_loss,
    ppn_targets,
)
from napari_semiseg.models import UNetConfig
from napari_semiseg.models.aux_heads import AuxNet, dynamic_head_size, dynamic_mask_logits
from napari_semiseg.models.ppn import PPNNet, anchor_grid

# two touching disks centred on pixels (12, 12) and (12, 23), one disk cut by the bottom edge
CENTRES = ((12, 12), (12, 23))


def _labels():
    labels = disks((40, 40), (*CENTRES, (38, 30)), radius=5.0)
    return torch.from_numpy(labels).long()


# -- targets ---------------------------------------------------------------------------------
def test_anchor_grid_and_decoding():
    anchors = anchor_grid((2, 3), 4)
    assert anchors[:, 1, 2].tolist() == [5.5, 9.5]
    offsets = torch.zeros(1, 2, 2, 3)
    offsets[0, :, 1, 2] = torch.tensor([0.5, -0.25])
    assert decode_centres(offsets, 4)[0, :, 1, 2].tolist() == [7.5, 8.5]


def test_instance_centroids_of_disks():
    cells = instance_centroids(_labels())
    assert cells.ids.tolist() == [1, 2, 3]
    assert cells.centres[:2].tolist() == [[12.0, 12.0], [12.0, 23.0]]
    assert cells.cut.tolist() == [False, False, True]
    assert cells.areas[0] == pytest.approx(81.0)  # pixels within radius 5 of a centre


def test_ppn_targets_scores_and_offsets():
    labels = _labels()[None]
    known = torch.ones_like(labels)
    known[0, :, 34:] = 0  # right stripe unknown
    t = ppn_targets(labels, known, (10, 10), 4, 4.0)
    anchors = anchor_grid((10, 10), 4)
    for cy, cx in CENTRES:
        d = torch.hypot(anchors[0] - cy, anchors[1] - cx)
        near = d <= 4.0
        assert bool(t.score[0][near].eq(1).all())
        assert bool(t.positive[0][near].all())
        expected = (torch.tensor([cy, cx], dtype=torch.float32)[:, None] - anchors[:, near]) / 4
        torch.testing.assert_close(t.offsets[0][:, near], expected)
    assert int(t.positive.sum()) == 8  # four anchors around each centre
    # far from both centres and known: negative; on the cut cell or unknown: ignored
    assert t.valid[0, 0, 0]
    assert t.score[0, 0, 0] == 0
    assert not t.valid[0, 9, 7]  # anchor (37.5, 29.5) lies on the cut disk
    assert not t.valid[0, 0, 9]  # anchor pixel x = 38 is unknown
    assert int(t.regress.sum()) == 8


def test_ppn_targets_whole_cells_regress_every_anchor_of_a_cell():
    labels = _labels()[None]
    t = ppn_targets(labels, torch.ones_like(labels), (10, 10), 4, 1.0, whole_cells=True)
    inside = labels[0, 2::4, 2::4]  # the anchors' pixels
    assert torch.equal(t.regress[0], (inside == 1) | (inside == 2))
    centre_of = {1: CENTRES[0], 2: CENTRES[1]}
    anchors = anchor_grid((10, 10), 4)
    for i, j in zip(*torch.nonzero(t.regress[0], as_tuple=True), strict=True):
        target = torch.tensor(centre_of[int(inside[i, j])], dtype=torch.float32)
        torch.testing.assert_close(t.offsets[0, :, i, j], (target - anchors[:, i, j]) / 4)


def test_balanced_bce_weights_classes_equally():
    logits = torch.tensor([2.0, -1.0, 0.0, 0.0])
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    valid = torch.tensor([True, True, True, False])
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    w = 1 / 3  # positive fraction among valid entries
    weights = torch.tensor([1 - w, w, w])
    expected = (bce[:3] * weights).sum() / weights.sum()
    assert float(balanced_bce(logits, target, valid)) == pytest.approx(float(expected))
    # one class only: plain mean over valid entries
    zeros = torch.zeros(4)
    plain = F.binary_cross_entropy_with_logits(logits[:3], zeros[:3])
    assert float(balanced_bce(logits, zeros, valid)) == pytest.approx(float(plain))


def test_offset_loss_is_smooth_l1_on_regressed_anchors():
    labels = _labels()[None]
    t = ppn_targets(labels, torch.ones_like(labels), (10, 10), 4, 4.0)
    assert float(offset_loss(t.offsets.clone(), t)) == 0.0
    shifted = t.offsets + 0.5 * t.regress[:, None]  # both coordinates off by 0.5
    assert float(offset_loss(shifted, t)) == pytest.approx(2 * 0.5 * 0.5**2)


# -- proposals ---------------------------------------------------------------------------------
def test_targets_decode_back_to_the_centres():
    labels = _labels()[None]
    t = ppn_targets(labels, torch.ones_like(labels), (10, 10), 4, 4.0)
    logits = torch.where(t.score[0] > 0, 8.0, -8.0)
    for peaks_only in (False, True):
        found = find_proposals(logits, t.offsets[0], 4, 0.5, 2.5, peaks_only=peaks_only)
        assert len(found) == 2
        centres = sorted(map(tuple, found.centres.tolist()))
        assert centres == [(12.0, 12.0), (12.0, 23.0)]


def test_find_proposals_threshold_cap_and_bounds():
    logits = torch.full((4, 4), -5.0)
    logits[0, 0], logits[3, 3] = 3.0, 1.0
    offsets = torch.zeros(2, 4, 4)
    found = find_proposals(logits, offsets, 4, 0.5)
    assert found.scores.tolist() == pytest.approx([0.9526, 0.7311], abs=1e-4)
    assert len(find_proposals(logits, offsets, 4, 0.5, max_proposals=1)) == 1
    assert len(find_proposals(logits, offsets, 4, 0.8)) == 1
    assert len(find_proposals(logits, offsets, 4, 0.5, bounds=(10, 10))) == 1  # (13.5, 13.5) out


def test_merge_close_keeps_the_best_of_each_cluster():
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [10.5, 0.5]])
    scores = np.array([0.5, 0.9, 0.6, 0.7])
    assert merge_close(centres, scores, 2.0).tolist() == [1, 3]
    assert merge_close(centres, scores, 0.0).tolist() == [1, 3, 2, 0]


def test_paste_windows_sum_and_max_with_edges():
    values = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 0.0], [0.0, 0.0]]], requires_grad=True)
    _, ys, xs = window_coordinates(torch.tensor([[0.0, 0.0], [1.2, 1.9]]), 0)
    ys = torch.stack([torch.tensor([-1, 0]), torch.tensor([1, 2])])  # window 0 sticks out
    xs = torch.stack([torch.tensor([0, 1]), torch.tensor([1, 2])])
    index = torch.tensor([0, 0])
    total = paste_windows(values, index, ys, xs, (1, 3, 3), "sum")
    assert total[0].tolist() == [[3.0, 4.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]
    best = paste_windows(values, index, ys, xs, (1, 3, 3), "amax", -1.0)
    assert best[0].tolist() == [[3.0, 4.0, -1.0], [-1.0, 5.0, 0.0], [-1.0, 0.0, 0.0]]
    best.sum().backward()
    assert values.grad[1, 0, 0] == 1.0  # the maximum gets the gradient
    assert values.grad[0, 0, 0] == 0.0  # outside the image


def test_window_geometry():
    origin, ys, xs = window_coordinates(torch.tensor([[5.4, 7.6]]), 2)
    assert origin.tolist() == [[3, 6]]
    assert ys.tolist() == [[3, 4, 5, 6, 7]]
    assert xs.tolist() == [[6, 7, 8, 9, 10]]
    assert window_radius(6.2, 3.0) == 19
    assert window_radius(0.1, 3.0) == 2


# -- heads ---------------------------------------------------------------------------------------
def test_dynamic_head_matches_a_plain_mlp():
    assert dynamic_head_size(10, 8) == 169
    gen = torch.Generator().manual_seed(0)
    params = torch.randn(2, dynamic_head_size(3, 4), generator=gen)
    inputs = torch.randn(2, 3, 5, generator=gen)
    out = dynamic_mask_logits(inputs, params, 4)
    w1, b1, w2, b2, w3, b3 = torch.split(params[1], [12, 4, 16, 4, 4, 1])
    h = torch.relu(w1.view(4, 3) @ inputs[1] + b1[:, None])
    h = torch.relu(w2.view(4, 4) @ h + b2[:, None])
    torch.testing.assert_close(out[1], (w3.view(1, 4) @ h + b3[:, None])[0])


def test_ppn_net_shapes_stride_and_size_prior():
    net = PPNNet(1, UNetConfig(base_channels=4, depth=2, dropout=0.0)).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 1, 30, 22))
    assert out.score.shape == (2, 8, 6)
    assert out.offsets.shape == (2, 2, 8, 6)
    assert out.params.shape == (2, 169, 8, 6)
    assert out.mask_features.shape == (2, 8, 32, 24)
    net.set_stride(8)
    assert net.multiple == 8
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 30, 22)).score.shape == (1, 4, 3)
    with pytest.raises(ValueError, match="power of 2"):
        net.set_stride(6)
    # a head that outputs 1 everywhere: the logits are 1 - |p - c|^2 / (2 sigma^2)
    out.params.zero_()
    out.params[:, -1] = 1.0
    centre = torch.tensor([[10.0, 11.0]])
    _, ys, xs = window_coordinates(centre, 4)
    z = net.instance_logits(out, torch.tensor([0]), centre, ys, xs, radius=3.0, sigma=2.0)
    assert float(z[0, 4, 4]) == pytest.approx(1.0)
    assert float(z[0, 4, 8]) == pytest.approx(1.0 - 16 / 8)


def test_aux_net_keeps_the_size():
    net = AuxNet(3, 4).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 37, 20)).shape == (1, 2, 37, 20)
    assert net.receptive_field > 60


# -- losses --------------------------------------------------------------------------------------
def test_sobel_borders_of_a_square():
    m = torch.zeros(1, 6, 6)
    m[0, 1:5, 1:5] = 1.0
    inner = inner_border(m)[0] > 0.5
    ring = torch.zeros(6, 6, dtype=torch.bool)
    ring[1:5, 1:5] = True
    ring[2:4, 2:4] = False
    assert torch.equal(inner, ring)
    both = sobel_border(m)[0] > 0.5
    assert both[0, 2]
    assert both[1, 2]
    assert not both[2, 2]


def test_confident_bce_ignores_uncertain_targets():
    s = torch.tensor([0.3, 0.3])
    q = torch.tensor([0.5, 1.0])
    assert float(confident_bce(s, q)) == pytest.approx(-math.log(0.3) / 2)
    assert float(confident_bce(s, q, gamma=0.0)) > float(confident_bce(s, q))
    s.requires_grad_(True)
    q.requires_grad_(True)
    confident_bce(s, q).backward()
    assert q.grad is None


def test_agreement_and_overlap():
    mask_sum = torch.tensor([[[1.5, 0.0]]])
    square_sum = torch.tensor([[[1.25, 0.0]]])  # masks 1.0 and 0.5 on the first pixel
    semantic = torch.tensor([[[1.0, 1.0]]])
    assert float(agreement_loss(mask_sum, semantic)) == pytest.approx((0.25 + 1.0) / 2)
    assert float(overlap_loss(mask_sum, square_sum)) == pytest.approx(0.5 / 2)
    assert float(overlap_loss(torch.tensor([[[0.7]]]), torch.tensor([[[0.49]]]))) == 0.0


# -- tiled instance assembly ---------------------------------------------------------------------
def _oracle(radius: int):
    """Proposals from the tile itself: one per bright disk, scored by its brightness."""
    from scipy import ndimage as ndi

    def propose(tile: np.ndarray) -> TileProposals:
        components, n = ndi.label(tile[0] > 0.5)
        centres = np.array(ndi.center_of_mass(tile[0] > 0.5, components, range(1, n + 1)))
        centres = centres.reshape(-1, 2)
        windows = []
        for k, (cy, cx) in enumerate(centres, start=1):
            oy, ox = round(cy) - radius, round(cx) - radius
            padded = np.pad(components == k, radius)
            part = padded[oy + radius : oy + 3 * radius + 1, ox + radius : ox + 3 * radius + 1]
            windows.append(np.where(part, 5.0, -5.0).astype(np.float32))
        windows = np.array(windows).reshape(-1, 2 * radius + 1, 2 * radius + 1)
        scores = ndi.mean(tile[0], components, range(1, n + 1))
        return TileProposals(centres, np.asarray(scores), windows)

    return propose


def test_segment_from_proposals_tiled_equals_untiled():
    centres = [(10, 10), (10, 23), (40, 50), (75, 20), (60, 90), (90, 95), (14, 97)]
    truth = disks((100, 110), centres, radius=5.0)
    image = np.where(truth > 0, 0.6 + 0.05 * truth, 0.0).astype(np.float32)[None]
    propose = _oracle(8)
    results = []
    for tile in (256, 48):
        generator = segment_from_proposals(propose, image, 8, 4, TilingConfig(tile, 4, 0))
        events = []
        while True:
            try:
                events.append(next(generator))
            except StopIteration as stop:
                results.append(stop.value)
                break
        assert all(isinstance(e, TileDone) for e in events)
        assert (len(events) > 20) == (tile == 48)  # many small tiles vs one
    (whole, foreground), (tiled, _) = results
    assert whole.max() == len(centres)
    np.testing.assert_array_equal(whole, tiled)
    for cy, cx in centres:  # one instance per disk, exactly the disk
        label = whole[cy, cx]
        np.testing.assert_array_equal(whole == label, truth == truth[cy, cx])
    assert foreground.shape == truth.shape
    assert foreground[10, 10] > 0.99


def test_tile_foreground_maps_are_stitched_for_the_join(monkeypatch):
    # each tile reports its image channel as foreground; the map the join gets,
    # stitched from the tiles' owned regions, must be the image itself
    import napari_semiseg.inference.ppn_instances as ppn_instances

    seen = []

    def spy(labels, min_contact, **kwargs):
        seen.append(kwargs["foreground"])
        return labels

    monkeypatch.setattr(ppn_instances, "join_cut_objects", spy)
    rng = np.random.default_rng(0)
    image = rng.random((1, 100, 110)).astype(np.float32)
    base = _oracle(8)

    def propose(tile: np.ndarray) -> TileProposals:
        found = base(tile)
        return TileProposals(found.centres, found.scores, found.windows, tile[0].copy())

    for size in (256, 48):
        run(segment_from_proposals(propose, image, 8, 4, TilingConfig(size, 4, 0), join_contact=1))
        np.testing.assert_array_equal(seen[-1], image[0])
    # without tile maps the join gets none
    run(segment_from_proposals(base, image, 8, 4, TilingConfig(48, 4, 0), join_contact=1))
    assert seen[-1] is None


def test_assemble_instances_and_fragments():
    windows = np.full((2, 3, 3), -1.0, np.float32)
    windows[0, 1, :] = 2.0
    windows[1, :, 1] = 3.0
    labels, best = assemble_instances(np.array([[0, 0], [0, 0]]), windows, (3, 4))
    assert labels.tolist() == [[0, 2, 0, 0], [1, 2, 1, 0], [0, 2, 0, 0]]
    assert np.isneginf(best[0, 3])
    kept = keep_largest_fragment(np.array([[1, 0, 1, 1], [2, 2, 0, 0]]))
    assert kept.tolist() == [[0, 0, 1, 1], [2, 2, 0, 0]]


@pytest.mark.parametrize(("reach", "found"), [(0.0, False), (2.0, False), (4.0, True)])
def test_a_cell_cut_by_the_image_border_keeps_its_proposal(reach, found):
    # its centre lies 3 px above the image; only its lower rim is inside
    radius, halo = 8, 20
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    window = np.where(yy**2 + xx**2 <= 36, 5.0, -5.0).astype(np.float32)[None]

    def propose(tile: np.ndarray) -> TileProposals:  # tile coordinates = image + halo
        return TileProposals(np.array([[halo - 3.0, halo + 50.0]]), np.array([0.9]), window)

    image = np.zeros((1, 64, 100), np.float32)
    labels, _ = run(
        segment_from_proposals(
            propose, image, radius, 4, TilingConfig(256, halo, 0), border_reach=reach
        )
    )
    assert (labels.max() == 1) == found
    if found:  # the part of the disk inside the image: rows 0-3 around column 50
        rows, cols = np.nonzero(labels)
        assert rows.min() == 0
        assert rows.max() == 3
        assert cols.min() == 50 - 5
        assert cols.max() == 50 + 5


@pytest.mark.parametrize("join", [0.0, 1.0])
def test_a_nucleus_cut_by_two_proposals_is_joined(join):
    # a large disk with two proposals on it (each mask fades from its own
    # centre, so the argmax cuts the disk in two) beside two touching disks
    radius, halo = 14, 20
    big = disks((40, 100), ((20, 28),), radius=10.0) > 0
    pair = disks((40, 100), ((20, 62), (20, 81)), radius=10.0)
    image = (1.0 * big + np.where(pair == 1, 0.7, 0.0) + np.where(pair == 2, 0.8, 0.0))[None]
    centres = np.array([[20.0, 22.0], [20.0, 34.0], [20.0, 62.0], [20.0, 81.0]])
    values = (1.0, 1.0, 0.7, 0.8)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]

    def propose(tile: np.ndarray) -> TileProposals:  # tile = image + halo on every side
        windows = []
        for (cy, cx), value in zip(centres + halo, values, strict=True):
            part = tile[0, round(cy) - radius : round(cy) + radius + 1,
                        round(cx) - radius : round(cx) + radius + 1]  # fmt: skip
            windows.append(np.where(part == value, 5.0 - 0.1 * np.hypot(yy, xx), -5.0))
        return TileProposals(centres + halo, np.full(4, 0.9), np.array(windows, np.float32))

    labels, _ = run(
        segment_from_proposals(
            propose, image.astype(np.float32), radius, 4, TilingConfig(256, halo, 0),
            join_contact=join,
        )
    )  # fmt: skip
    assert labels.max() == (3 if join else 4)
    assert len(np.unique(labels[big])) == (1 if join else 2)
    assert (labels[big] > 0).all()
    for index in (1, 2):  # the touching pair stays two cells, each whole
        assert len(np.unique(labels[pair == index])) == 1
    assert labels[20, 62] != labels[20, 81]


def test_masks_are_trained_in_one_window_and_predicted_in_a_wider_one():
    from napari_semiseg.inference.proposals import window_radius as _window_radius
    from napari_semiseg.methods import build_method

    tiny = UNetConfig(base_channels=4, depth=2, dropout=0.0)
    method = build_method("ppn-auxnet", {}, tiny, 1)
    method.train()
    sigma, trained = method._window(10.0)
    method.eval()
    assert method._window(10.0) == (sigma, _window_radius(sigma, 4.0))
    assert method._window(10.0)[1] > trained == _window_radius(sigma, 3.0)
    same = build_method("ppn-auxnet", {"predict_window_sigmas": 0.0}, tiny, 1)
    same.eval()
    assert same._window(10.0)[1] == trained  # 0: the training window
