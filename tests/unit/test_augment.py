import numpy as np
import pytest
from tests._synthetic import blobs

from napari_semiseg.data.augment import AugmentConfig, augment_patch, elastic_displacement
from napari_semiseg.data.sampling import PatchSampler, SamplerConfig, crop


def _aligned_fraction(image, labels):
    return np.mean((image[0] > 0.5) == (labels > 0))


def test_labels_follow_the_image():
    _, labels = blobs((80, 80), 10, seed=4)
    image = (labels > 0).astype(np.float32)[None]
    known = np.ones(labels.shape, bool)
    weight = np.ones(labels.shape, np.float32)
    config = AugmentConfig(intensity=0, gamma=0, noise=0, elastic_std=10, rotation_degrees=15)
    for seed in range(5):
        out_image, out_labels, out_known, _ = augment_patch(
            np.random.default_rng(seed), image, labels, known, weight, config
        )
        assert out_image.shape == image.shape
        assert out_labels.dtype == labels.dtype
        assert set(np.unique(out_labels)) <= set(np.unique(labels))
        assert _aligned_fraction(out_image, out_labels) > 0.97
        assert out_known.dtype == bool


def test_augmentation_changes_the_patch_and_is_seeded():
    image, labels = blobs((64, 64), 6, seed=5)
    x = image.astype(np.float32)[None] / image.max()
    a = augment_patch(np.random.default_rng(1), x, labels)
    b = augment_patch(np.random.default_rng(1), x, labels)
    c = augment_patch(np.random.default_rng(2), x, labels)
    assert np.array_equal(a[0], b[0])
    assert np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_disabled_augmentation_is_identity():
    x = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    out = augment_patch(np.random.default_rng(0), x, config=AugmentConfig(enabled=False))
    assert out[0] is x


def test_elastic_field_is_smooth_with_requested_scale():
    field = elastic_displacement(np.random.default_rng(0), (128, 128), std=10)
    assert field.shape == (2, 128, 128)
    assert 2 < np.abs(field).mean() < 30
    assert np.abs(np.diff(field, axis=-1)).max() < 3  # smooth: no pixel-level jumps


def test_crop_mirrors_outside():
    a = np.arange(16).reshape(4, 4)
    out = crop(a, -1, -1, 3)
    assert out.shape == (3, 3)
    assert out[1, 1] == a[0, 0]
    assert out[0, 0] == a[0, 0]  # symmetric padding repeats the edge


def test_sampler_batches_have_documented_layout(toy_data, rng):
    sampler = PatchSampler(toy_data, SamplerConfig(patch_size=32, margin=8))
    batch = sampler.labelled_batch(rng, 3)
    assert batch["image"].shape == (3, 1, 32, 32)
    assert batch["target"].shape == (3, 32, 32)
    assert batch["target"].dtype == np.uint8
    assert batch["weight"].dtype == np.float32
    assert (batch["target"] != 255).any()
    assert np.all(batch["weight"][batch["target"] == 255] == 0)
    unlabelled = sampler.unlabelled_batch(rng, 2)
    assert unlabelled["image"].shape == (2, 1, 32, 32)
    assert (unlabelled["target"] == 255).mean() > 0.5


def test_known_bias(toy_data):
    sampler = PatchSampler(toy_data, SamplerConfig(patch_size=16, known_fraction=1.0, margin=0))
    rng = np.random.default_rng(0)
    centres = [sampler.labelled_batch(rng, 1)["target"][0, 8, 8] for _ in range(30)]
    assert np.mean([c != 255 for c in centres]) > 0.8


def test_min_contrast_scales_patches_by_a_factor_in_range():
    from napari_semiseg.data.augment import jitter_intensity

    image = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(1, 8, 8)
    off = AugmentConfig(intensity=0.0, gamma=0.0, noise=0.0)
    np.testing.assert_array_equal(jitter_intensity(np.random.default_rng(0), image, off), image)
    dim = AugmentConfig(intensity=0.0, gamma=0.0, noise=0.0, min_contrast=0.2)
    factors = []
    for seed in range(200):
        out = jitter_intensity(np.random.default_rng(seed), image, dim)
        factor = out[0, -1, -1] / image[0, -1, -1]
        np.testing.assert_allclose(out, image * factor, rtol=1e-5, atol=1e-6)  # one factor
        factors.append(factor)
    factors = np.array(factors)
    assert factors.min() >= 0.2 - 1e-6
    assert factors.max() <= 1.0 + 1e-6
    assert factors.min() < 0.3  # the dim end is reached
    assert np.median(factors) < 0.6  # log-uniform: median sqrt(0.2) ~ 0.45


@pytest.mark.parametrize("shape", [(192, 192), (100, 37), (5, 7)])
def test_elastic_field_is_the_bicubic_zoom_of_the_coarse_grid(shape):
    from scipy import ndimage as ndi

    field = elastic_displacement(np.random.default_rng(3), shape, std=10, grid=3)
    coarse = np.random.default_rng(3).normal(0.0, 10, size=(2, 3, 3))
    zoom = (shape[0] / 3, shape[1] / 3)
    expected = [ndi.zoom(c, zoom, order=3, mode="nearest", grid_mode=True) for c in coarse]
    np.testing.assert_allclose(field, np.stack(expected), atol=1e-4)
