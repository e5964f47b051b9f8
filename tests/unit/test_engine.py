import numpy as np
import pytest
import torch

from napari_semiseg.engine import (
    CheckpointSaved,
    PreviewUpdated,
    StepFinished,
    TrainConfig,
    TrainingControl,
    TrainingFinished,
    TrainingStarted,
    load_checkpoint,
    train,
)
from napari_semiseg.engine.schedules import lr_factor, sigmoid_rampup
from napari_semiseg.errors import ModelFileError, SemisegInputError
from napari_semiseg.inference import run, segment


def _events(generator):
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


def test_event_order_and_result(toy_data, tiny_config, tmp_path):
    config = tiny_config.replace(preview_every=1e-9)
    events, result = _events(train(toy_data, config, out=tmp_path / "m.pt"))
    kinds = [type(e) for e in events]
    assert kinds[0] is TrainingStarted
    assert kinds.count(StepFinished) == 3
    assert kinds[-2:] == [CheckpointSaved, TrainingFinished]
    previews = [e for e in events if isinstance(e, PreviewUpdated)]
    image_previews = [e for e in previews if e.kind == "image"]
    # a preview before the first step (a viewer creates its live layers then)
    assert kinds[1] is PreviewUpdated
    assert (events[1].step, events[1].kind) == (0, "image")
    assert "weight_map" in image_previews[0].arrays
    assert all("weight_map" not in e.arrays for e in image_previews[1:])
    assert (
        image_previews[0].arrays["instances"].shape == image_previews[0].arrays["foreground"].shape
    )
    assert any(e.kind == "batch" for e in previews)
    for e in events:  # events carry numpy / python values only
        for value in getattr(e, "arrays", {}).values():
            assert isinstance(value, np.ndarray)
    assert result.steps == 3
    assert result.reason == "steps"
    assert (tmp_path / "m.pt").exists()


def test_cpu_training_is_reproducible(toy_data, tiny_config):
    _, a = _events(train(toy_data, tiny_config))
    _, b = _events(train(toy_data, tiny_config))
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_time_budget_stops_early(toy_data, tiny_config):
    _, result = _events(train(toy_data, tiny_config.replace(steps=10_000, time_budget=0.5)))
    assert result.reason == "time_budget"
    assert result.steps < 10_000


def test_control_stops_cleanly(toy_data, tiny_config):
    control = TrainingControl()
    generator = train(toy_data, tiny_config.replace(steps=100), control=control)
    for event in generator:
        if isinstance(event, StepFinished) and event.step == 2:
            control.stop()
        if isinstance(event, TrainingFinished):
            assert event.reason == "stopped"
            assert event.step == 2


def test_checkpoint_round_trip_and_resume(toy_data, tiny_config, tmp_path):
    path = tmp_path / "model.pt"
    _, result = _events(train(toy_data, tiny_config, out=path))
    loaded = load_checkpoint(path)
    assert loaded.median_cell_area == pytest.approx(toy_data.median_cell_area())
    # the model's confidence on its annotated cells is measured and kept
    confidence = loaded.annotated_confidence
    assert confidence == pytest.approx(result.model.annotated_confidence)
    assert 0.0 < confidence <= 1.0
    assert loaded.postprocess().min_seed_peak == pytest.approx(0.9 * max(confidence, 0.5))
    # and its median foreground on them, the scale of the unsure-object bar
    foreground = loaded.annotated_foreground
    assert foreground == pytest.approx(result.model.annotated_foreground)
    assert 0.0 < foreground <= 1.0
    bar = loaded.postprocess().min_median_foreground
    assert bar == pytest.approx(0.9 * max(foreground, 0.5))
    del loaded.metadata["annotated_foreground"]  # a file written before it was measured
    assert loaded.postprocess().min_median_foreground == pytest.approx(0.9 * max(confidence, 0.5))
    assert loaded.train_config.model == tiny_config.model
    x = torch.from_numpy(toy_data.images[0].image[None])
    with torch.no_grad():
        result.model.method.eval()
        np.testing.assert_allclose(
            loaded.method.predict(x).numpy(), result.model.method.predict(x).numpy(), atol=1e-5
        )
    payload = torch.load(path, weights_only=True)  # loads without executing code
    assert payload["format"] == "napari-semiseg-model"
    events, resumed = _events(train(toy_data, tiny_config, resume=loaded))
    assert events[0].start_step == 3
    assert resumed.steps == 6


def test_segment_shapes(toy_data, tiny_config):
    _, result = _events(train(toy_data, tiny_config))
    seg = run(segment(result.model.method, toy_data.images[1].image, 100.0))
    assert seg.instances.shape == toy_data.images[1].shape
    # the three classes, then the cell depth (the U-Net's depth head is on by default)
    assert seg.maps["probabilities"].shape == (4, *toy_data.images[1].shape)
    np.testing.assert_allclose(seg.maps["probabilities"][:3].sum(0), 1.0, atol=1e-5)


def test_foreign_model_files_refused(tmp_path):
    plain = tmp_path / "state.pt"
    torch.save({"conv.weight": torch.zeros(1)}, plain)
    with pytest.raises(ModelFileError, match="not a napari-semiseg model"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_checkpoint(junk)
    with pytest.raises(ModelFileError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "napari-semiseg-model", "x": Evil()}, path)
    with pytest.raises(ModelFileError, match="cannot read"):
        load_checkpoint(path)


def test_weights_of_another_architecture_refused(toy_data, tiny_config, tmp_path):
    path = tmp_path / "m.pt"
    _events(train(toy_data, tiny_config, out=path))
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["base_channels"] = 8
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="do not fit"):
        load_checkpoint(path)


def test_settings_of_another_version_refused(toy_data, tiny_config, tmp_path):
    path = tmp_path / "m.pt"
    _events(train(toy_data, tiny_config, out=path))
    payload = torch.load(path, weights_only=True)
    payload["method_config"]["input_low"] = 0.1  # a setting this version lacks
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=r"settings do not fit this version.*input_low") as e:
        load_checkpoint(path)
    assert "update napari-semiseg" in str(e.value)


def test_config_validation_and_json():
    with pytest.raises(SemisegInputError, match="device"):
        TrainConfig(device="tpu")
    config = TrainConfig(steps=7, time_budget=3.0)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(SemisegInputError, match="unknown training settings"):
        TrainConfig.from_dict({"stepz": 1})
    for bad in (-0.1, 0.95):
        with pytest.raises(SemisegInputError, match="core depth"):
            TrainConfig(core_depth=bad)


def test_core_depth_travels_with_the_model(toy_data, tiny_config, tmp_path):
    path = tmp_path / "model.pt"
    _events(train(toy_data, tiny_config.replace(core_depth=0.5), out=path))
    # the targets were cores: the class balance of the weight map followed them
    assert toy_data.core_depth == 0.5
    assert load_checkpoint(path).postprocess().core_depth == 0.5
    # files written before core targets existed were trained on thin borders
    payload = torch.load(path, weights_only=True)
    del payload["train_config"]["core_depth"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").postprocess().core_depth == 0.0
    # PPN-auxnet's auxiliary net learns thin Sobel borders: it never gets cores
    ppn = tiny_config.replace(core_depth=0.5, method="ppn-auxnet", steps=1)
    _, result = _events(train(toy_data, ppn))
    assert result.model.train_config.core_depth == 0.0


def test_schedules():
    assert lr_factor(0.0) == pytest.approx(0.1)
    assert lr_factor(0.5) > lr_factor(0.9) > 0
    assert lr_factor(0.5, "constant") == 1.0
    assert sigmoid_rampup(0.5, 1.0) == pytest.approx(np.exp(-5 * 0.25))


def test_resume_refuses_images_normalised_otherwise(toy_set, toy_data, tiny_config):
    from napari_semiseg.data import Normalization, TrainingData

    _, result = _events(train(toy_data, tiny_config))
    lifted = TrainingData.from_arrays(
        toy_set["images"], toy_set["labels"], toy_set["masks"], norm=Normalization(gamma=0.5)
    )
    assert lifted.normalization.gamma == 0.5
    with pytest.raises(SemisegInputError, match="normalised"):
        _events(train(lifted, tiny_config, resume=result.model))
    _, lifted_result = _events(train(lifted, tiny_config))
    assert lifted_result.model.normalization.gamma == 0.5
