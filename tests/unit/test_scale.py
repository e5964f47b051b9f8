"""Per-image cell scale: inscribed radius, factor, resizing (inference/scale.py)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_semiseg.data import TrainingData
from napari_semiseg.data.annotations import cell_inradii
from napari_semiseg.inference.scale import (
    agreed_foreground,
    inscribed_radius,
    largest_piece,
    resize_image,
    resize_labels,
    scale_factor,
    scaled_shape,
)


def _disks(shape, centres, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (labels == 0)] = k
    return labels


@pytest.mark.parametrize("radius", [4, 9, 20])
def test_inscribed_radius_of_disks_of_one_size(radius):
    centres = [(y, x) for y in range(30, 200, 3 * radius + 10) for x in range(30, 200, 80)]
    labels = _disks((240, 240), centres, radius)
    assert inscribed_radius(labels > 0) == pytest.approx(radius, abs=1.0)
    assert np.median(cell_inradii(labels)) == pytest.approx(radius, abs=1.0)


def test_touching_cells_keep_the_radius_of_one_cell():
    # a chain of touching disks is one foreground piece, yet its radius is one disk's
    labels = _disks((80, 200), [(40, 30 + 18 * k) for k in range(8)], 10)
    pieces = inscribed_radius(labels > 0)
    assert pieces == pytest.approx(10, abs=1.0)
    # per-cell radii treat the neighbour as outside
    assert cell_inradii(labels).max() <= 10.5


def test_small_fragments_weigh_by_their_area():
    labels = _disks((200, 200), [(50, 50), (50, 150), (150, 100)], 20)
    foreground = labels > 0
    foreground[::7, ::7] = True  # speckle: many one-pixel pieces
    assert inscribed_radius(foreground) == pytest.approx(20, abs=1.0)


def test_too_little_foreground_gives_no_estimate():
    labels = _disks((64, 64), [(32, 32)], 5)
    assert inscribed_radius(labels > 0, min_area=200) == 0.0
    assert inscribed_radius(np.zeros((8, 8), bool)) == 0.0


def test_scale_factor_dead_zone_and_limits():
    assert scale_factor(20.0, 5.0) == 4.0
    assert scale_factor(2.5, 5.0) == 0.5
    assert scale_factor(5.0 * 1.2, 5.0) == 1.0  # not worth an interpolation
    assert scale_factor(1.0, 5.0) == 0.5  # enlarging is capped (cost grows as 1/f^2)
    assert scale_factor(500.0, 5.0) == 8.0
    assert scale_factor(0.0, 5.0) == 1.0
    assert scale_factor(10.0, 0.0) == 1.0


def test_resizing_round_trip_keeps_the_instances():
    labels = _disks((90, 130), [(30, 30), (30, 52), (65, 100)], 12)
    small = resize_labels(labels, scaled_shape(labels.shape, 2.0))
    assert small.shape == (45, 65)
    back = resize_labels(small, labels.shape)
    assert back.shape == labels.shape
    assert set(np.unique(back)) == {0, 1, 2, 3}
    agree = np.mean(back == labels)
    assert agree > 0.97
    image = np.stack([labels.astype(np.float32), -labels.astype(np.float32)])
    resized = resize_image(image, (45, 65))
    assert resized.shape == (2, 45, 65)
    assert resized.dtype == np.float32
    np.testing.assert_allclose(resized[0], -resized[1])


def test_training_data_reports_the_inscribed_radius():
    labels = _disks((96, 96), [(30, 30), (30, 70), (70, 50)], 8)
    data = TrainingData.from_arrays([np.random.default_rng(0).random((96, 96))], [labels], [None])
    summary = data.summary()
    assert summary["median_cell_inradius"] == pytest.approx(8, abs=1.0)


def _dim_background_and_large_cells():
    """Image with bright disks of radius 12 on a dim background, and the true foreground."""
    labels = _disks((120, 160), [(40, 40), (40, 110), (90, 75)], 12)
    image = np.where(labels > 0, 0.9, 0.1)[None].astype(np.float32)
    image[0, :, :20] = 0.25  # a dimmer stripe of background
    return image, labels > 0


def test_agreed_foreground_drops_a_flood_and_keeps_missed_rims():
    image, truth = _dim_background_and_large_cells()
    cores = _disks(truth.shape, [(40, 40), (40, 110), (90, 75)], 6) > 0
    good = truth.astype(np.float32)
    missing_rims = cores.astype(np.float32)  # calls only the cores (estimate too small)
    flooding = np.maximum(good, 0.9 * (image[0] > 0.2))  # also calls the dim stripe
    # one map floods, the other misses rims: the image settles both disputes
    settled = agreed_foreground(image, flooding, missing_rims)
    assert (settled == truth).all()
    assert inscribed_radius(settled) == pytest.approx(12, abs=1.0)
    # neither rule of a single map would do: the minimum is too small, the maximum floods
    assert inscribed_radius(np.minimum(flooding, missing_rims) > 0.8) == pytest.approx(6, abs=1)
    assert (np.maximum(flooding, missing_rims) > 0.8).sum() > truth.sum() + 1000


def test_agreed_foreground_multichannel_and_without_agreement():
    image, truth = _dim_background_and_large_cells()
    rgb = np.concatenate([image, 1 - image, image])  # cells bright in two channels, dark in one
    flooding = truth | (image[0] > 0.2)
    assert (agreed_foreground(rgb, truth.astype(float), flooding.astype(float)) == truth).all()
    bright_only = _disks(truth.shape, [(40, 40), (40, 110), (90, 75)], 6) > 0
    settled = agreed_foreground(rgb, bright_only.astype(float), truth.astype(float))
    assert (settled == truth).all()
    # no pixel both call foreground: nothing to compare with, nothing called foreground
    assert not agreed_foreground(image, truth.astype(float), np.zeros_like(truth, float)).any()


def test_agreed_foreground_keeps_the_common_part_when_sizes_agree():
    image, truth = _dim_background_and_large_cells()
    slightly_smaller = _disks(truth.shape, [(40, 40), (40, 110), (90, 75)], 11) > 0
    # radii 12 and 11 are within the dead zone: the pixels both call foreground
    settled = agreed_foreground(image, truth.astype(float), slightly_smaller.astype(float))
    assert (settled == slightly_smaller).all()
    # with no tolerance the rims go back to the cells they look like
    strict = agreed_foreground(image, truth.astype(float), slightly_smaller, tolerance=1.0)
    assert (strict == truth).all()


def test_largest_piece_share_and_cells():
    yy, xx = np.mgrid[:80, :80]
    glow = (yy - 70) ** 2 + (xx - 70) ** 2 <= 30**2  # cut by the image's edge
    specks = np.zeros((80, 80), bool)
    specks[5:8, 5:8] = specks[5:8, 20:23] = True
    share, cells = largest_piece(glow | specks)
    assert share == pytest.approx(glow.sum() / (glow.sum() + 18))
    # the same measure as over the whole image (no background beyond its edge)
    radius = ndi.distance_transform_edt(glow).max()
    assert cells == pytest.approx(glow.sum() / (np.pi * radius**2))
    # a row of touching disks: about one cell per disk
    cy, cx = np.mgrid[:40, :200]
    clump = np.zeros((40, 200), bool)
    for x in range(20, 181, 18):  # ten disks of radius 10, overlapping
        clump |= (cy - 20) ** 2 + (cx - x) ** 2 <= 10**2
    assert 6 < largest_piece(clump)[1] < 12
    assert largest_piece(np.zeros((5, 5), bool)) == (0.0, 0.0)


def test_sample_windows_cover_small_images_and_spread_over_large_ones():
    from napari_semiseg.inference.scale import mosaic, sample_windows

    assert sample_windows((300, 400), max_pixels=300 * 400) == [(slice(0, 300), slice(0, 400))]
    windows = sample_windows((1000, 1000), max_pixels=4 * 100 * 100, window=100)
    assert len(windows) == 4
    assert all(r.stop - r.start == 100 and c.stop - c.start == 100 for r, c in windows)
    starts = sorted({r.start for r, _ in windows})
    assert starts == [225, 675]  # centred in each half
    strip = sample_windows((100, 5000), max_pixels=4 * 100 * 100, window=100)
    assert [r.start for r, _ in strip] == [0] * 4  # one row of windows along a strip
    assert len({c.start for _, c in strip}) == 4
    joined = mosaic([np.ones((3, 2), bool), np.ones((2, 2), bool)])
    assert joined.shape == (3, 5)
    assert not joined[:, 2].any()  # a background column between the pieces
    assert ndi.label(joined)[1] == 2


def test_ppn_size_estimate_of_a_large_image_reads_windows_of_it(monkeypatch):
    import functools

    import napari_semiseg.methods.ppn_auxnet as ppn_module
    from napari_semiseg.inference import run
    from napari_semiseg.inference.scale import sample_windows
    from napari_semiseg.methods import build_method
    from napari_semiseg.models import UNetConfig

    method = build_method("ppn-auxnet", {}, UNetConfig(base_channels=4, depth=2), 1)
    method.main.cell_inradius.fill_(4.0)
    # stand-in networks: both foreground maps are the image (disks of 1 on 0)
    seen = []

    def maps(x, out=None):
        seen.append(x.shape[-2] * x.shape[-1])
        return np.repeat(x[:, :1].numpy(), 2, axis=1)

    monkeypatch.setattr(method, "_foreground_maps", maps)
    centres = [(y, x) for y in range(20, 600, 40) for x in range(20, 600, 40)]
    image = (_disks((600, 600), centres, 10) > 0).astype(np.float32)[None]
    whole = run(method.image_scale(image))
    read_whole = sum(seen)
    monkeypatch.setattr(
        ppn_module,
        "sample_windows",
        functools.partial(sample_windows, max_pixels=4 * 160**2, window=160),
    )
    seen.clear()
    sampled = run(method.image_scale(image))
    assert whole == pytest.approx(10 / 4, rel=0.1)
    assert sampled == pytest.approx(whole, rel=0.1)
    assert sum(seen) < 0.75 * read_whole  # the dense pass read windows, not the whole image
