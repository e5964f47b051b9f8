import numpy as np
import pytest

from napari_semiseg.data.images import Normalization, normalize, prepare_image, to_channels_first
from napari_semiseg.errors import SemisegInputError


def test_grey_becomes_one_channel():
    assert to_channels_first(np.zeros((20, 30))).shape == (1, 20, 30)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((64, 48, 3), (3, 64, 48)), ((64, 48, 4), (3, 64, 48)), ((2, 64, 48), (2, 64, 48))],
)
def test_channel_axis_detected(shape, expected):
    assert to_channels_first(np.zeros(shape, np.uint8)).shape == expected


def test_explicit_channel_axis():
    assert to_channels_first(np.zeros((10, 64, 48)), channel_axis=0).shape == (10, 64, 48)


def test_3d_stack_is_refused_with_a_fix():
    with pytest.raises(SemisegInputError, match=r"3D stack.*split the stack"):
        to_channels_first(np.zeros((30, 64, 64)), source="stack.tif")


def test_4d_refused():
    with pytest.raises(SemisegInputError, match="4 dimensions"):
        to_channels_first(np.zeros((2, 3, 32, 32)))


def test_normalize_maps_percentiles_to_unit_range():
    x = np.arange(10000, dtype=np.uint16).reshape(1, 100, 100)
    y = normalize(x, Normalization(1, 99))
    assert y.dtype == np.float32
    assert np.isclose(np.percentile(y, 1), 0, atol=1e-3)
    assert np.isclose(np.percentile(y, 99), 1, atol=1e-3)


def test_normalize_sparse_signal_uses_full_range():
    x = np.zeros((1, 50, 50))
    x[0, 3, 3] = 7
    y = normalize(x)
    assert y.max() == pytest.approx(1.0)


def test_nan_image_refused():
    x = np.ones((1, 16, 16))
    x[0, 1, 1] = np.nan
    with pytest.raises(SemisegInputError, match="NaN"):
        normalize(x, source="a.tif")


def test_constant_image_refused():
    with pytest.raises(SemisegInputError, match="constant"):
        prepare_image(np.full((32, 32), 7, np.uint8), source="blank.tif")


def test_float_and_int_dtypes_accepted():
    for dtype in (np.uint8, np.int16, np.uint16, np.float32, np.float64):
        x = (np.arange(1024) % 37).reshape(32, 32).astype(dtype)
        assert prepare_image(x).shape == (1, 32, 32)


def test_bool_image_refused():
    with pytest.raises(SemisegInputError, match="dtype bool"):
        prepare_image(np.zeros((32, 32), bool))


def test_gamma_lifts_dim_signal_and_keeps_the_ends():
    x = np.array([[[0, 4, 25, 100]]], dtype=np.uint16)
    linear = normalize(x, Normalization(0, 100))
    lifted = normalize(x, Normalization(0, 100, gamma=0.5))
    np.testing.assert_allclose(linear[0, 0], [0.0, 0.04, 0.25, 1.0], atol=1e-6)
    np.testing.assert_allclose(lifted[0, 0], [0.0, 0.2, 0.5, 1.0], atol=1e-6)
    # below the low percentile stays below 0 (the sign is kept)
    below = normalize(np.array([[[-4, 0, 100]]], float), Normalization(0, 100, gamma=0.5))
    assert below[0, 0, 0] == 0.0
    assert below[0, 0, 2] == 1.0
    below = normalize(np.array([[[-4, 0, 96]]], float), Normalization(4, 100, gamma=0.5))
    assert below[0, 0, 0] < 0.0


def test_gamma_out_of_range_is_refused_with_a_fix():
    with pytest.raises(SemisegInputError, match="gamma"):
        Normalization(gamma=0.0)
    assert Normalization(gamma=0.5).to_dict()["gamma"] == 0.5


def test_flat_alpha_is_dropped_but_a_fourth_channel_with_content_is_kept():
    rgba = np.zeros((64, 48, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(0).integers(0, 255, (64, 48, 3))
    rgba[..., 3] = 255
    assert to_channels_first(rgba).shape == (3, 64, 48)
    four = np.random.default_rng(1).random((4, 64, 48)).astype(np.float32)
    out = to_channels_first(four)
    assert out.shape == (4, 64, 48)
    np.testing.assert_array_equal(out[3], four[3])


def test_channel_axis_given_for_a_grey_image_is_refused():
    with pytest.raises(SemisegInputError, match=r"grey \(20, 30\).*leave the channel axis out"):
        to_channels_first(np.zeros((20, 30)), channel_axis=2)
