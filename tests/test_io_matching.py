"""Matching files by name, and the messages of the image listing."""

import numpy as np
import pytest
import tifffile

from napari_semiseg.errors import SemisegInputError
from napari_semiseg.io import list_images, match_by_name
from napari_semiseg.io.tiff import IMAGE_SUFFIXES

ARRAY = np.zeros((8, 8), np.uint8)


def _folder(path, *names):
    path.mkdir()
    for name in names:
        tifffile.imwrite(path / name, ARRAY)  # the content does not matter here
    return path


def test_two_label_files_for_one_image_are_refused(tmp_path):
    images = list_images(_folder(tmp_path / "images", "a.tif"))
    labels = _folder(tmp_path / "labels", "a.tif", "a.png")
    with pytest.raises(
        SemisegInputError, match=r"a\.png and a\.tif both have the name of image a"
    ):
        match_by_name(images, labels)


def test_two_images_for_one_label_file_are_refused(tmp_path):
    images = list_images(_folder(tmp_path / "images", "a.tif", "a.png"))
    labels = _folder(tmp_path / "labels", "a.tif")
    with pytest.raises(SemisegInputError, match=r"images a\.png and a\.tif both match a\.tif"):
        match_by_name(images, labels)


def test_unambiguous_matches_still_work(tmp_path):
    images = list_images(_folder(tmp_path / "images", "a.tif", "b.tif"))
    # two files named x do not matter: no image is called x
    labels = _folder(tmp_path / "labels", "a.png", "x.tif", "x.png")
    assert match_by_name(images, labels) == [labels / "a.png", None]


def test_empty_folder_message_lists_every_accepted_extension(tmp_path):
    with pytest.raises(SemisegInputError) as info:
        list_images(_folder(tmp_path / "images"))
    for suffix in IMAGE_SUFFIXES:
        assert suffix in str(info.value)
    assert ".jpeg" in str(info.value)
    assert ".bmp" in str(info.value)
