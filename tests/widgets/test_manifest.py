"""The npe2 manifest and its non-widget contributions (sample data, writer)."""

import os
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_is_valid_and_symlinked():
    from npe2 import PluginManifest

    link = ROOT / "napari.yaml"
    assert link.is_symlink()
    assert os.readlink(link) == "src/napari_semiseg/napari.yaml"
    manifest = PluginManifest.from_file(link)
    manifest.validate_imports()
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == ["Semi-supervised segmentation"]
    assert contributions.sample_data[0].key == "nuclei"
    writer = contributions.writers[0]
    assert writer.layer_types == ["labels"]
    assert writer.filename_extensions == [".tif", ".tiff"]


def test_installed_plugin_is_discovered():
    from npe2 import PluginManager

    manager = PluginManager()
    manager.discover()
    manifest = manager.get_manifest("napari-semiseg")
    assert manifest.display_name == "Semi-supervised segmentation"


def test_sample_data_opens_as_image_and_annotation_layers():
    from napari_semiseg._napari_contrib import load_sample_data
    from napari_semiseg._sample_data import load_sample
    from napari_semiseg.data.layers import known_from_annotations, rasterize_shapes

    layers = load_sample_data()
    names = [(kwargs["name"], kind) for _, kwargs, kind in layers]
    assert names == [
        ("nuclei_a", "image"),
        ("nuclei_a regions", "shapes"),
        ("nuclei_a cells", "labels"),
        ("nuclei_b", "image"),
        ("nuclei_c", "image"),
    ]
    # the images lie side by side, annotation layers on top of their image
    translates = [kwargs["translate"][1] for _, kwargs, _ in layers]
    assert translates == [0.0, 0.0, 0.0, 272.0, 544.0]
    # cells + the exhaustive square reproduce the shipped known-pixel mask exactly
    sample = load_sample()[0]
    rectangles = layers[1][0]
    regions = rasterize_shapes(rectangles, ["rectangle"] * len(rectangles), (256, 256))
    known = known_from_annotations(layers[2][0], None, regions)
    np.testing.assert_array_equal(known, sample["known"] > 0)
    np.testing.assert_array_equal(layers[2][0], sample["annotation"])


def test_writer_writes_uint16_tiff(tmp_path):
    from napari_semiseg._napari_contrib import write_labels_tiff

    labels = np.zeros((20, 30), np.int32)
    labels[2:5, 3:9] = 7
    path = tmp_path / "masks.tif"
    assert write_labels_tiff(str(path), labels, {}) == [str(path)]
    back = tifffile.imread(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)
