"""The dock widget driven through its handlers with the synchronous runner."""

import dataclasses

import numpy as np
import pytest
import tifffile

pytestmark = pytest.mark.qt


def _layer_names(viewer):
    return [layer.name for layer in viewer.layers]


def test_annotate_creates_layers_new_cell_and_counts(viewer, make_widget):
    from qtpy.QtCore import Qt

    from napari_semiseg._widgets._annotate import NO_BACKGROUND
    from napari_semiseg.data.layers import box_to_rectangle

    viewer.add_image(np.random.default_rng(0).random((40, 50)), name="img", translate=(5, 7))
    widget = make_widget(viewer)
    annotate = widget.annotate
    assert [im.name for im in widget.session.training_images] == ["img"]
    layers = annotate.create_layers()
    assert _layer_names(viewer) == ["img", "img regions", "img background", "img cells"]
    for layer in layers.values():
        np.testing.assert_allclose(layer.translate, (5, 7))
    assert layers["cells"].data.shape == (40, 50)
    assert annotate.new_cell() == 1
    assert viewer.layers.selection.active is layers["cells"]
    assert layers["cells"].mode == "paint"
    layers["cells"].data[2:6, 2:6] = 1
    assert annotate.new_cell() == 2
    counts = annotate.update_counts()
    assert (counts[0].cells, counts[0].known_pixels) == (1, 16)
    assert annotate.warning.text() == NO_BACKGROUND
    layers["regions"].add_rectangles(box_to_rectangle((0, 0, 9, 9), pixels=True))
    counts = annotate.update_counts()
    assert counts[0].background_pixels == 100 - 16
    assert annotate.warning.text() == ""
    assert annotate.table.item(0, 1).text() == "1"
    # unticking the image removes it from training
    annotate.images.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert widget.session.training_images == []
    # a picked layer wins over the name convention
    other = viewer.add_labels(np.zeros((40, 50), np.uint16), name="my cells")
    annotate.images.item(0).setCheckState(Qt.CheckState.Checked)
    annotate.role_combos["cells"].setCurrentText("my cells")
    annotate._on_role_layer_changed("cells")
    assert widget.session.annotation_layer(viewer.layers["img"], "cells") is other


def test_train_form_follows_the_method(viewer, make_widget, monkeypatch):
    from napari_semiseg.methods import METHODS, MethodConfig
    from napari_semiseg.methods.supervised import SupervisedUNet

    @dataclasses.dataclass(frozen=True)
    class OtherConfig(MethodConfig):
        consistency: float = dataclasses.field(default=1e-3, metadata={"help": "weight"})
        views: int = 2

    class Other(SupervisedUNet):
        name, label, description, Config = "other", "Other method", "A test method.", OtherConfig

    monkeypatch.setitem(METHODS, "other", Other)
    train = make_widget(viewer).train
    assert [w.name for w in train.form] == [
        "dice_weight",
        "use_weight_map",
        "depth_head",
        "depth_weight",
        "depth_prominence",
        "dim_contrast",
    ]
    train.method.value = "other"
    assert [w.name for w in train.form] == ["consistency", "views"]
    assert train.description.text() == "A test method."
    config = train.train_config()
    assert config.method == "other"
    assert config.method_config == {"consistency": pytest.approx(1e-3), "views": 2}
    train.method.value = "unet"
    assert train.train_config().method_config == {
        "dice_weight": 1.0,
        "use_weight_map": True,
        "depth_head": True,
        "depth_weight": 1.0,
        "depth_prominence": 0.3,
        "dim_contrast": 0.2,
    }


def test_training_live_layers_continue_and_no_duplicates(sample_viewer, make_widget):
    from napari_semiseg._widgets._layers import LIVE_FOREGROUND, LIVE_INSTANCES, LIVE_WEIGHT_MAP

    viewer = sample_viewer
    widget = make_widget(viewer)
    train = widget.train
    cells_before = viewer.layers["nuclei_a cells"].data.copy()
    assert train.start_button.text() == "Start"
    train._on_start_clicked()
    assert widget.session.model is not None
    assert train.last_result.steps == 2
    train.sync.flush()
    for name in (LIVE_INSTANCES, LIVE_FOREGROUND, LIVE_WEIGHT_MAP):
        assert name in viewer.layers
    assert train.plot.steps == [1.0, 2.0]
    assert "loss" in train.plot.lines
    assert train.progress.value() == 1000
    assert train.start_button.text() == "Continue"
    names = _layer_names(viewer)
    model = widget.session.model
    train._on_start_clicked()  # continues the same model
    train.sync.flush()
    assert train.last_result.steps == 4
    assert widget.session.model.method.name == model.method.name
    assert widget.session.model.method is not model.method  # a trained copy
    assert model.metadata["steps"] == 2  # the continued model itself is unchanged
    assert train.plot.steps == [1.0, 2.0, 3.0, 4.0]
    assert _layer_names(viewer) == names  # reused, never duplicated
    train._on_scratch_clicked()
    assert train.last_result.steps == 2
    assert widget.session.model.method is not model.method
    np.testing.assert_array_equal(viewer.layers["nuclei_a cells"].data, cells_before)


def test_worker_error_notifies_and_leaves_layers_intact(
    sample_viewer, make_widget, notes, monkeypatch
):
    from napari_semiseg._widgets import _train

    viewer = sample_viewer
    widget = make_widget(viewer)
    before = {
        layer.name: np.asarray(layer.data).copy()
        for layer in viewer.layers
        if layer.name.endswith("cells")
    }
    names = _layer_names(viewer)

    def exploding(*args):
        yield from ()
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(_train, "training_job", exploding)
    widget.train._on_start_clicked()
    assert notes() == ["Training failed: the GPU caught fire"]
    assert _layer_names(viewer) == names
    for name, data in before.items():
        np.testing.assert_array_equal(viewer.layers[name].data, data)
    assert not widget.session.busy
    assert widget.train.start_button.isEnabled()
    assert widget.session.model is None


def test_bad_input_shows_the_core_message(viewer, make_widget, notes):
    widget = make_widget(viewer)
    train = widget.train
    train._on_start_clicked()
    assert "no image layer is ticked" in notes()[-1]
    # empty annotation layers
    viewer.add_image(np.random.default_rng(1).random((48, 48)), name="grey")
    widget.annotate.create_layers()
    train._on_start_clicked()
    assert "no annotated cells" in notes()[-1]
    # cells but no background anywhere
    viewer.layers["grey cells"].data[10:20, 10:20] = 1
    train._on_start_clicked()
    assert "no pixel is known to be background" in notes()[-1]
    # a 3D stack
    viewer.layers.clear()
    viewer.add_image(np.random.default_rng(2).random((9, 48, 48)), name="stack")
    widget.annotate.create_layers()
    viewer.layers["stack cells"].data[10:20, 10:20] = 1
    viewer.layers["stack background"].data[30:40, 30:40] = 1
    train._on_start_clicked()
    assert "3D" in notes()[-1]
    # NaN pixels
    viewer.layers["stack"].data = np.full((48, 48), np.nan)
    train._on_start_clicked()
    assert "NaN" in notes()[-1]
    assert all("Traceback" not in note for note in notes())
    assert not widget.session.busy


def test_pause_and_stop_keep_the_model(sample_viewer, make_widget):
    widget = make_widget(sample_viewer)
    train = widget.train
    train.config_overrides["steps"] = 50
    train.config_overrides["preview_every"] = 0.0
    on_step = train._on_step

    def pause_at_step_one(event):
        on_step(event)
        if event.step == 1:
            train._on_pause_clicked()

    train._on_step = pause_at_step_one
    train._on_start_clicked()
    assert widget.session.busy
    assert widget.session.job.is_paused
    assert train.pause_button.text() == "Resume"
    assert train.stop_button.isEnabled()
    assert not train.start_button.isEnabled()
    train._on_stop_clicked()
    assert not widget.session.busy
    assert train.last_result.reason == "stopped"
    assert train.last_result.steps == 1  # ends after the step it was paused at
    assert widget.session.model is not None


def test_predict_accept_export_and_model_files(sample_viewer, make_widget, notes, tmp_path):
    from scipy import ndimage as ndi

    from napari_semiseg._widgets._reading import read_annotation
    from napari_semiseg.data.layers import annotation_counts

    viewer = sample_viewer
    answers = []
    paths = []
    widget = make_widget(
        viewer,
        confirm=lambda text: answers.pop(0),
        ask_path=lambda save: paths.pop(0),
    )
    widget.predict.predict_all_button.click()  # no model yet: disabled
    assert "nuclei_a prediction" not in viewer.layers
    # enough steps for the tiny U-Net to call some cells (2 steps leave it at chance)
    widget.train.config_overrides["steps"] = 40
    widget.train._on_start_clicked()
    widget.predict.continue_box.setChecked(False)
    widget.predict._on_predict_all_clicked()
    for name in ("nuclei_a", "nuclei_b", "nuclei_c"):
        prediction = viewer.layers[f"{name} prediction"]
        assert prediction.data.shape == (256, 256)
        np.testing.assert_allclose(prediction.translate, viewer.layers[name].translate)
    # flip averaging: the checkbox reaches the tiling of the prediction job
    session, tilings = widget.predict.session, []
    run = session.run

    def spy(*args, **kwargs):
        tilings.append(args[4])
        return run(*args, **kwargs)

    session.run = spy
    widget.predict.tta_box.setChecked(True)
    widget.predict._on_predict_clicked()
    widget.predict.tta_box.setChecked(False)
    widget.predict._on_predict_clicked()
    session.run = run
    assert [t.flip_tta for t in tilings] == [True, False]
    assert viewer.layers["nuclei_a prediction"].data.max() > 0
    # the user corrects the prediction of nuclei_a, then accepts it
    cells = viewer.layers["nuclei_a cells"]
    user = np.asarray(cells.data).copy()
    correction = np.zeros((256, 256), np.int32)
    correction[200:210, 200:210] = 5
    correction[ndi.binary_dilation(user == user.max(), iterations=1)] = 6  # a user cell: dropped
    viewer.layers["nuclei_a prediction"].data = correction
    widget.predict.image.setCurrentText("nuclei_a")
    assert widget.predict.accept() == 1
    merged = np.asarray(cells.data)
    np.testing.assert_array_equal(merged[user > 0], user[user > 0])
    assert merged[205, 205] == user.max() + 1
    regions = viewer.layers["nuclei_a regions"]
    assert len(regions.data) == 2  # the sample's square + the whole image
    labels, known = read_annotation(widget.session, viewer.layers["nuclei_a"])
    assert annotation_counts(labels, known).known_pixels == 256 * 256
    # accepting an image without annotation layers creates them
    assert widget.predict.accept(viewer.layers["nuclei_b"]) >= 0
    assert "nuclei_b cells" in viewer.layers

    # export every prediction, named after the images
    export = widget.export
    export.folder.value = tmp_path / "masks"
    written = export.export([viewer.layers[f"{n} prediction"] for n in ("nuclei_a", "nuclei_b")])
    assert [p.name for p in written] == ["nuclei_a.tif", "nuclei_b.tif"]
    back = tifffile.imread(written[0])
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, correction)
    # existing files: ask first; "no" writes nothing
    answers.append(False)
    viewer.layers["nuclei_a prediction"].data = np.zeros((256, 256), np.int32)
    assert export.export([viewer.layers["nuclei_a prediction"]]) == []
    np.testing.assert_array_equal(tifffile.imread(written[0]), correction)
    answers.append(True)
    export.dtype.setCurrentText("uint32")
    assert len(export.export([viewer.layers["nuclei_a prediction"]])) == 1
    assert tifffile.imread(written[0]).dtype == np.uint32
    # a layer of the wrong shape for its image is refused with the core message
    viewer.add_labels(np.zeros((10, 10), np.uint16), name="nuclei_c cells")
    assert export.export([viewer.layers["nuclei_c cells"]]) == []
    assert "same height and width" in notes()[-1]

    # save and load the model
    paths.append(str(tmp_path / "model.pt"))
    export._on_save_clicked()
    assert (tmp_path / "model.pt").exists()
    trained = widget.session.model
    paths.append(str(tmp_path / "model.pt"))
    export._on_load_clicked()
    assert widget.session.model is not trained
    assert widget.session.model.method.name == "unet"
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    paths.append(str(tmp_path / "junk.pt"))
    export._on_load_clicked()
    assert "cannot read this file" in notes()[-1]


def test_rgb_image_on_a_grey_model_is_refused(sample_viewer, make_widget, notes):
    viewer = sample_viewer
    widget = make_widget(viewer)
    widget.train._on_start_clicked()
    rgb = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="rgb", rgb=True)
    widget.predict.image.setCurrentText("rgb")
    widget.predict._on_predict_clicked()
    assert "channel" in notes()[-1]
    assert "rgb prediction" not in viewer.layers


def test_closing_the_widget_stops_training_and_frees_the_model(sample_viewer, make_widget, qtbot):
    from napari_semiseg._widgets._runner import ThreadRunner

    widget = make_widget(sample_viewer, runner=ThreadRunner(torch_threads=1))
    widget.train.config_overrides.update(steps=100_000, preview_every=0.0)
    steps = []
    on_step = widget.train._on_step
    widget.train._on_step = lambda event: (steps.append(event.step), on_step(event))
    widget.train._on_start_clicked()
    job = widget.session.job
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=30_000)
    widget.close()
    qtbot.waitUntil(lambda: not job.is_running, timeout=30_000)
    assert widget.session.closed
    assert widget.session.model is None
    assert widget.train.last_result is None  # quit, not a finished run
    assert max(steps) < 100_000


def test_gamma_setting_goes_to_a_new_model_and_a_continued_model_keeps_its_own(
    sample_viewer, make_widget, notes
):
    widget = make_widget(sample_viewer)
    train = widget.train
    train.settings.gamma.value = 0.5
    train._on_start_clicked()
    assert widget.session.model.normalization.gamma == 0.5
    train.settings.gamma.value = 1.0
    train._on_start_clicked()  # continues: the model keeps 0.5
    assert train.last_result.steps == 4
    assert widget.session.model.normalization.gamma == 0.5
    assert any("own intensity gamma 0.5" in note for note in notes())
    train._on_scratch_clicked()
    assert widget.session.model.normalization.gamma == 1.0


def test_core_depth_setting_goes_to_a_new_model_and_a_continued_model_keeps_its_own(
    sample_viewer, make_widget, notes
):
    widget = make_widget(sample_viewer)
    train = widget.train
    train.settings.core_depth.value = 0.5
    train._on_start_clicked()
    assert widget.session.model.train_config.core_depth == 0.5
    assert widget.session.model.postprocess().core_depth == 0.5  # predictions grow cores
    train.settings.core_depth.value = 0.0
    train._on_start_clicked()  # continues: the model keeps its cores
    assert widget.session.model.train_config.core_depth == 0.5
    assert any("own cell core depth 0.5" in note for note in notes())
    train._on_scratch_clicked()
    assert widget.session.model.train_config.core_depth == 0.0


def test_training_start_advice_becomes_a_warning(viewer, make_widget, notes):
    from napari_semiseg.engine import TrainingStarted

    widget = make_widget(viewer)
    started = TrainingStarted("unet", "cpu", 10, None, 0, 1000, {"cells": 3}, advice=("mark X",))
    widget.train._on_worker_yielded(started)
    assert notes() == ["Note: mark X."]
    assert "Training unet on cpu" in widget.train.status.text()
