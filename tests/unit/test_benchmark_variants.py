"""benchmarks/fewlabels.py: config variants given as --set KEY=VALUE."""

import importlib.util
import sys
from pathlib import Path

import pytest

from napari_semiseg.api import make_config


@pytest.fixture(scope="module")
def fewlabels():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fewlabels.py"
    spec = importlib.util.spec_from_file_location("fewlabels", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fewlabels"] = module  # its dataclasses look themselves up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("fewlabels", None)


def test_settings_change_nested_config_fields(fewlabels):
    settings = fewlabels.parse_settings(
        ["augment.min_contrast=0.2", "method_config.confidence_threshold=0.7", "lr=2e-3"]
    )
    assert settings == {
        "augment.min_contrast": 0.2,
        "method_config.confidence_threshold": 0.7,
        "lr": 0.002,
    }
    config = fewlabels.apply_settings(make_config(), settings)
    assert config.augment.min_contrast == 0.2
    assert config.method_config == {"confidence_threshold": 0.7}
    assert config.lr == 0.002
    assert make_config().augment.min_contrast == 1.0  # the default is untouched


def test_unknown_fields_and_bad_items_are_refused(fewlabels):
    with pytest.raises(ValueError, match="no such config field"):
        fewlabels.apply_settings(make_config(), {"augment.contrast": 0.2})
    with pytest.raises(ValueError, match="not a config section"):
        fewlabels.apply_settings(make_config(), {"lr.x": 1})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        fewlabels.parse_settings(["augment.min_contrast"])


def test_variant_labels_follow_their_method(fewlabels):
    runs = {
        "s|unet+dim02|0|180": {},
        "s|unet|0|180": {},
        "s|rf|0|0": {},
        "s|mean-teacher+gate07|0|180": {},
        "s|ceiling|0|180": {},
    }
    labels = fewlabels._labels(runs)
    assert labels.index("unet") + 1 == labels.index("unet+dim02")
    assert labels[0] == "rf"
    assert labels[-1] == "ceiling"
    assert "mean-teacher+gate07" in labels


def test_a_run_can_keep_its_model(fewlabels, tmp_path):
    from tests._synthetic import blobs

    from napari_semiseg.api import load_model
    from napari_semiseg.data.regions import region_annotation

    image, truth = blobs((96, 96), 14, seed=1)
    labels, known = region_annotation(truth, 20, 20, 48)
    task = fewlabels.Task("toy", [image], [truth], ["a"], labels, known, (20, 20, 48))
    path = fewlabels.model_path(tmp_path / "models", fewlabels.key("toy", "unet+x", 0, 1.0))
    assert path.name == "toy_unet_x_0_1.pt"
    result = fewlabels.run_method(task, "unet", 0, 1.0, save_to=path)
    assert result["steps"] >= 1
    assert load_model(path, "cpu").method.name == "unet"
