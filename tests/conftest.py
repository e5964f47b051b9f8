import os

import numpy as np
import pytest

from tests._synthetic import blobs

os.environ.setdefault("NAPARI_SEMISEG_TEST", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def toy_set():
    """Two synthetic images; the first sparsely annotated inside a square."""
    from napari_semiseg.data.regions import region_annotation

    image_a, truth_a = blobs((96, 96), 14, seed=1)
    image_b, truth_b = blobs((96, 96), 14, seed=2)
    labels, known = region_annotation(truth_a, 20, 20, 48)
    return {
        "images": [image_a, image_b],
        "labels": [labels, None],
        "masks": [known.astype(np.uint8), None],
        "truth": [truth_a, truth_b],
    }


@pytest.fixture
def toy_data(toy_set):
    from napari_semiseg.data import TrainingData

    return TrainingData.from_arrays(toy_set["images"], toy_set["labels"], toy_set["masks"])


@pytest.fixture
def tiny_config():
    from napari_semiseg.engine import TrainConfig
    from napari_semiseg.models import UNetConfig

    return TrainConfig(
        steps=3,
        model=UNetConfig(base_channels=4, depth=2, dropout=0.0),
        batch_size=2,
        patch_size=32,
        device="cpu",
        preview_every=0,
    )
