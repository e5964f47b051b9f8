"""The widget never loses the user's work: models, corrections, exported files."""

import numpy as np
import pytest

pytestmark = pytest.mark.qt


def _weights(model):
    return {
        f"{net}.{key}": value.detach().cpu().clone()
        for net, module in model.method.networks().items()
        for key, value in module.state_dict().items()
    }


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def test_a_failed_continue_keeps_the_model_as_it_was(
    sample_viewer, make_widget, notes, monkeypatch, tmp_path
):
    from napari_semiseg.engine import load_checkpoint, loop

    widget = make_widget(sample_viewer, ask_path=lambda save: str(tmp_path / "model.pt"))
    train = widget.train
    train._on_start_clicked()
    model = widget.session.model
    weights, metadata = _weights(model), dict(model.metadata)
    optimizer_steps = {k: dict(v) for k, v in model.optimizer_state["state"].items()}
    # the first continued step trains, the second diverges
    step, calls = loop._Trainer.step, []

    def diverging(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise loop.TrainingError("training diverged at step 4: the loss is nan")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(loop._Trainer, "step", diverging)
    assert train.start_button.text() == "Continue"
    train._on_start_clicked()
    assert len(calls) == 2
    assert "training diverged" in notes()[-1]
    assert widget.session.model is model
    _assert_same_weights(_weights(model), weights)
    assert model.metadata == metadata
    for key, state in model.optimizer_state["state"].items():
        assert int(state["step"]) == int(optimizer_steps[key]["step"])
    # "Save model..." writes the model from before the failed run
    widget.export._on_save_clicked()
    _assert_same_weights(_weights(load_checkpoint(tmp_path / "model.pt", "cpu")), weights)


def test_a_stopped_continue_keeps_the_trained_weights(sample_viewer, make_widget):
    widget = make_widget(sample_viewer)
    train = widget.train
    train._on_start_clicked()
    weights = _weights(widget.session.model)
    train.config_overrides.update(steps=50, preview_every=0.0)
    on_step = train._on_step

    def stop_at_step_three(event):
        on_step(event)
        if event.step == 3:
            train._on_stop_clicked()

    train._on_step = stop_at_step_three
    train._on_start_clicked()
    assert train.last_result.reason == "stopped"
    assert widget.session.model.metadata["steps"] == 3
    after = _weights(widget.session.model)
    assert any(not np.array_equal(after[k].numpy(), weights[k].numpy()) for k in weights)


def test_predicting_again_keeps_an_edited_prediction(viewer, make_widget, notes):
    viewer.add_image(np.zeros((32, 40), np.float32), name="img", translate=(3, 4))
    widget = make_widget(viewer)
    image = viewer.layers["img"]
    first, second, third = (np.full((32, 40), v, np.int32) for v in (1, 2, 3))
    layer = widget.predict.show_prediction(image, first)
    assert layer.name == "img prediction"
    # unedited: replaced in place
    assert widget.predict.show_prediction(image, second) is layer
    np.testing.assert_array_equal(layer.data, second)
    assert "img prediction (2)" not in viewer.layers
    # the user paints on it: the next prediction goes to a new layer
    layer.paint((5, 6), 9, refresh=False)
    edited = np.asarray(layer.data).copy()
    assert edited[5, 6] == 9
    new = widget.predict.show_prediction(image, third)
    assert new.name == "img prediction (2)"
    np.testing.assert_array_equal(layer.data, edited)
    np.testing.assert_array_equal(new.data, third)
    np.testing.assert_allclose(new.translate, (3, 4))
    assert "Kept your edits in 'img prediction'" in notes()[-1]
    # the new layer is unedited: predicting again updates it, no third layer
    assert widget.predict.show_prediction(image, first) is new
    np.testing.assert_array_equal(new.data, first)
    np.testing.assert_array_equal(layer.data, edited)
    assert [n for n in (lyr.name for lyr in viewer.layers) if "prediction" in n] == [
        "img prediction",
        "img prediction (2)",
    ]
    # a layer of that name the plugin never wrote is the user's too
    viewer.add_image(np.zeros((32, 40), np.float32), name="other")
    mine = viewer.add_labels(np.ones((32, 40), np.int32), name="other prediction")
    made = widget.predict.show_prediction(viewer.layers["other"], second)
    assert made.name == "other prediction (2)"
    np.testing.assert_array_equal(mine.data, 1)


@pytest.mark.parametrize(("a", "b"), [("img 1", "img_1"), ("a.tif", "a.png"), ("Cells", "cells")])
def test_export_refuses_layers_that_would_share_a_file(viewer, make_widget, notes, tmp_path, a, b):
    widget = make_widget(viewer, confirm=lambda text: pytest.fail("nothing may exist yet"))
    layers = []
    for name, value in ((a, 1), (b, 2)):
        viewer.add_image(np.zeros((20, 30), np.float32), name=name)
        layers.append(
            viewer.add_labels(np.full((20, 30), value, np.int32), name=f"{name} prediction")
        )
    export = widget.export
    export.folder.value = tmp_path / "masks"
    assert export.export(layers) == []
    assert list(tmp_path.rglob("*.tif")) == []
    message = notes()[-1]
    assert f"'{a} prediction'" in message
    assert f"'{b} prediction'" in message
    assert "Nothing written" in export.status.text()
    # one at a time still works
    assert len(export.export(layers[:1])) == 1


def test_two_channel_image_gets_annotation_layers_of_its_size(viewer, make_widget):
    from napari_semiseg._widgets._layers import image_shape

    two = viewer.add_image(np.zeros((40, 50, 2), np.float32), name="two")
    first = viewer.add_image(np.zeros((2, 40, 50), np.float32), name="first")
    assert image_shape(two) == (40, 50)
    assert image_shape(first) == (40, 50)
    widget = make_widget(viewer)
    widget.annotate.current.setCurrentText("two")
    layers = widget.annotate.create_layers()
    assert layers["cells"].data.shape == (40, 50)
    assert layers["background"].data.shape == (40, 50)


def test_accept_and_export_all_take_the_selected_prediction_else_the_newest(
    viewer, make_widget, notes, tmp_path
):
    import tifffile

    viewer.add_image(np.zeros((32, 40), np.float32), name="img")
    widget = make_widget(viewer, confirm=lambda text: True)
    widget.predict.continue_box.setChecked(False)
    first = np.zeros((32, 40), np.int32)
    first[2:8, 2:8] = 1
    newest = np.zeros((32, 40), np.int32)
    newest[20:28, 30:38] = 1
    older = viewer.add_labels(first, name="img prediction")
    viewer.add_labels(newest, name="img prediction (2)")
    # nothing selected: export all and accept take the newest
    viewer.layers.selection.clear()
    widget.export.folder.value = tmp_path / "masks"
    widget.export._on_export_all_clicked()
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "masks" / "img.tif"), newest)
    assert widget.predict.accept(viewer.layers["img"]) == 1
    assert "from 'img prediction (2)'" in notes()[-1]
    cells = np.asarray(viewer.layers["img cells"].data)
    assert cells[24, 34] > 0
    assert cells[4, 4] == 0
    # the selected one wins
    viewer.layers.selection.active = older
    assert widget.predict.accept(viewer.layers["img"]) == 1
    assert "from 'img prediction'" in notes()[-1]
    cells = np.asarray(viewer.layers["img cells"].data)
    assert cells[4, 4] > 0
    assert cells[24, 34] > 0
