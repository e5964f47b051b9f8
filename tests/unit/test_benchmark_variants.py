"""benchmarks/fewlabels.py: config variants given as --set KEY=VALUE."""

from pathlib import Path

import pytest
from tests._benchmarks import benchmark_modules

from napari_semiseg.api import make_config


@pytest.fixture(scope="module")
def fewlabels():
    with benchmark_modules("fewlabels") as modules:
        yield modules["fewlabels"]


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


def test_equal_step_runs_are_a_variant(fewlabels):
    # runs of different machine days compare at equal steps: --set steps=N with a budget
    # long enough never to stop them first
    base = make_config(steps=1_000_000, time_budget=3600.0)
    config = fewlabels.apply_settings(base, fewlabels.parse_settings(["steps=800"]))
    assert config.steps == 800
    assert config.time_budget == 3600.0


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
    # scored again with a prediction-time setting the file predates, recorded with the scores
    seen, thresholds = [], []
    model_prominence = load_model(path, "cpu").method.config.depth_prominence
    segment = fewlabels.segment_array

    def spy(model, image, postprocess=None):
        seen.append(model.method.config.depth_prominence)
        thresholds.append(postprocess)
        return segment(model, image, postprocess=postprocess)

    fewlabels.segment_array = spy
    try:
        again = fewlabels.rescore(task, path, {"depth_prominence": 0.7})
        off = fewlabels.rescore(task, path, {"postprocess.min_median_foreground": 0.0})
    finally:
        fewlabels.segment_array = segment
    assert seen == [0.7, model_prominence]
    assert thresholds[0] is None
    assert thresholds[1].min_median_foreground == 0.0  # a post-processing field, not the method's
    assert off["predict_settings"] == {"postprocess.min_median_foreground": 0.0}
    assert again["rescored"]
    assert again["predict_settings"] == {"depth_prominence": 0.7}
    assert 0.0 <= again["ap50"] <= 1.0
    assert "predict_settings" not in fewlabels.rescore(task, path)
    with pytest.raises(ValueError, match="has no setting"):
        fewlabels.rescore(task, path, {"no_such_setting": 1})
    with pytest.raises(ValueError, match=r"postprocess\.no_such_field"):
        fewlabels.rescore(task, path, {"postprocess.no_such_field": 1})


def test_only_runs_of_the_unet_code_version_are_paired(fewlabels):
    runs = {
        "ctc_fluo_n2dh_gowt1|unet|0|180": {"ap50": 0.6, "code": 2},
        "ctc_fluo_n2dh_gowt1|unet|1|180": {"ap50": 0.5},  # version 1
        "ctc_fluo_n2dh_gowt1|rf|0|0": {"ap50": 0.4},
        "ctc_fluo_n2dh_gowt1|rf|1|0": {"ap50": 0.3},
        "ctc_fluo_n2dh_gowt1|ceiling|0|180": {"ap50": 0.8, "code": 2},
        "ctc_fluo_n2dh_gowt1|mean-teacher|0|180": {
            "ap50": 0.7
        },  # version 1 against a version-2 U-Net
        "ctc_fluo_n2dh_gowt1|mean-teacher|1|180": {"ap50": 0.6},
        "ctc_fluo_n2dh_gowt1|confkd|0|180": {"ap50": 0.1},
    }
    rows = {
        line.split(" | ")[1]: line
        for line in fewlabels.versus_unet(
            runs, ["ctc_fluo_n2dh_gowt1"], fewlabels._labels(runs), 180
        )
        if line.startswith("| ctc_fluo_n2dh_gowt1 |")
    }
    assert "| 2 | -0.200 (-0.200, -0.200) | +0.200 |" in rows["rf"]  # the forest pairs with any
    assert "| 1 | +0.100 (+0.100, +0.100)" in rows["mean-teacher"]  # seed 1 only
    assert "older code" in rows["confkd"]
    unet_row = next(
        line
        for line in fewlabels.table({"runs": runs}, 180).splitlines()
        if "| ctc_fluo_n2dh_gowt1 | unet |" in line
    )
    assert unet_row.startswith("| ctc_fluo_n2dh_gowt1 | unet | 2 | 0.550 ± 0.050 |")
    assert unet_row.endswith("| 1,2 |")


def test_a_worker_writes_back_only_its_own_runs(fewlabels, tmp_path):
    path = tmp_path / "results.json"
    fewlabels.save_cache({"runs": {"a": 1, "b": 1}, "speed": None}, path)
    stale = fewlabels.load_cache(path, None)  # worker 1 starts with a and b
    redo = fewlabels.load_cache(path, None)  # worker 2 redoes b (--force)
    redo["runs"]["b"] = 2
    fewlabels.save_cache(redo, path, {"b"})
    stale["runs"]["c"] = 3  # worker 1 finishes a new run later
    fewlabels.save_cache(stale, path, {"c"})
    assert fewlabels.load_cache(path, None)["runs"] == {"a": 1, "b": 2, "c": 3}
    assert stale["runs"]["b"] == 2  # and the worker's copy is refreshed
    fewlabels.save_cache({"runs": {"b": 1}, "speed": None}, path)  # no fresh set: caller wins
    assert fewlabels.load_cache(path, None)["runs"] == {"a": 1, "b": 1, "c": 3}


def test_model_files_are_matched_to_their_data_set(fewlabels):
    name = "dsb2018_fluo_nuclei_mean-teacher_nodepth-bf16_2_180.pt"
    assert fewlabels.dataset_of(Path(name)) == "dsb2018_fluo_nuclei"
    assert fewlabels.dataset_of(Path("/m/isbi2012_em_membrane_unet_0_180.pt")) == (
        "isbi2012_em_membrane"
    )
    assert fewlabels.dataset_of(Path("dsb2018_fluo_nucleiX_unet_0_180.pt")) is None
    assert fewlabels.dataset_of(Path("model.pt")) is None


def test_speed_of_other_methods_is_kept_and_tabled(fewlabels, tmp_path):
    figures = {
        "steps_per_s": 2.5, "predict_s_4096": 40.0, "mpix_per_s_4096": 0.42,
        "peak_rss_mb": 2100.0, "rss_before_predict_mb": 600.0,
    }  # fmt: skip
    path = tmp_path / "results.json"
    fewlabels.save_cache({"runs": {}, "speed": {**figures, "steps_per_s": 7.0}}, path)
    # a later --speed-methods ppn-auxnet run keeps the U-Net's figures and adds its own
    fewlabels.save_cache(
        {"runs": {}, "speed": None, "speed_methods": {"ppn-auxnet": figures}}, path
    )
    cache = fewlabels.load_cache(path, None)
    assert cache["speed"]["steps_per_s"] == 7.0
    lines = fewlabels.speed_table(cache)
    assert "| training steps/s (sample data, default config) | 7.00 |" in lines
    assert "| ppn-auxnet: prediction, 4096 x 4096 image | 40.0 s (0.42 MPix/s) |" in lines
    assert (
        "| ppn-auxnet: peak resident memory while predicting 4096 x 4096 | 2100 MB "
        "(before: 600 MB) |" in lines
    )
    assert fewlabels.speed_table({"runs": {}, "speed": None}) == []
