"""LayerSync turns preview events into reused, throttled layer updates."""

import numpy as np
import pytest

from napari_semiseg.engine.events import PreviewUpdated, StepFinished

pytestmark = pytest.mark.qt


def _event(step, kind="image", offset=(0, 0), **arrays):
    return PreviewUpdated(step, kind, arrays, 0, offset)


def test_preview_arrays_become_layers_at_the_window_offset(viewer):
    from napari_semiseg._widgets._layers import (
        LIVE_FOREGROUND,
        LIVE_INSTANCES,
        LayerSync,
        live_layer_name,
    )

    image = viewer.add_image(np.zeros((100, 120)), translate=(10, 20), scale=(2, 2))
    sync = LayerSync(viewer, min_interval=0, images=[image])
    instances = np.zeros((40, 50), np.int32)
    instances[5:9, 5:9] = 1
    sync.handle(
        _event(
            1,
            offset=(30, 40),
            instances=instances,
            foreground=np.full((40, 50), 0.5, np.float32),
            probabilities=np.zeros((3, 40, 50), np.float32),
            seeds_points=np.array([[1.0, 2.0, 0.5], [3.0, 4.0, 1.0]]),
            offsets_vectors=np.zeros((3, 2, 2)),
            crops_boxes=np.array([[0.0, 0.0, 5.0, 5.0]]),
        )
    )
    sync.handle(StepFinished(1, 2, {"loss": 1.0}, 0.1, 0.1, 1.0, 1.0, 0.5))  # ignored
    assert sync.flush() == 5
    labels = viewer.layers[LIVE_INSTANCES]
    assert labels.__class__.__name__ == "Labels"
    np.testing.assert_array_equal(labels.data, instances)
    assert not labels.editable  # replaced at every preview: corrections go elsewhere
    assert labels.opacity == 0.5
    # image translate + offset * scale, image scale
    np.testing.assert_allclose(labels.translate, (10 + 60, 20 + 80))
    np.testing.assert_allclose(labels.scale, (2, 2))
    assert viewer.layers[LIVE_FOREGROUND].__class__.__name__ == "Image"
    assert tuple(viewer.layers[LIVE_FOREGROUND].contrast_limits) == (0.0, 1.0)
    kinds = {
        live_layer_name("seeds_points"): "Points",
        live_layer_name("offsets_vectors"): "Vectors",
        live_layer_name("crops_boxes"): "Shapes",
    }
    for name, kind in kinds.items():
        assert viewer.layers[name].__class__.__name__ == kind
    assert len(viewer.layers[live_layer_name("seeds_points")].data) == 2
    assert "live probabilities" not in viewer.layers  # repeats the foreground map


def test_layers_are_reused_and_unchanged_data_skipped(viewer):
    from napari_semiseg._widgets._layers import LIVE_INSTANCES, LayerSync

    sync = LayerSync(viewer, min_interval=0)
    first = np.zeros((20, 20), np.int32)
    sync.handle(_event(1, instances=first))
    sync.flush()
    layer = viewer.layers[LIVE_INSTANCES]
    second = first.copy()
    second[2:5, 2:5] = 3
    sync.handle(_event(2, instances=second, boxes_boxes=np.zeros((0, 4))))
    sync.flush()
    assert viewer.layers[LIVE_INSTANCES] is layer
    np.testing.assert_array_equal(layer.data, second)
    applied = sync.n_applied
    sync.handle(_event(3, instances=second.copy()))
    sync.flush()
    assert sync.n_applied == applied
    assert sync.n_skipped == 1
    names = [lay.name for lay in viewer.layers]
    assert len(names) == len(set(names)) == 2
    # a user layer of the same name is never taken over
    viewer.layers.remove(layer)
    viewer.add_labels(np.zeros((20, 20), np.int32), name=LIVE_INSTANCES)
    sync.handle(_event(4, instances=second))
    sync.flush()
    assert viewer.layers[LIVE_INSTANCES].metadata == {}
    assert f"{LIVE_INSTANCES} [1]" in viewer.layers


def test_updates_are_coalesced_and_spread_over_event_loop_turns(viewer, qtbot):
    from napari_semiseg._widgets._layers import LIVE_FOREGROUND, LIVE_INSTANCES, LayerSync

    sync = LayerSync(viewer, min_interval=0.2)
    for step in range(1, 6):  # five previews arrive before the GUI gets a turn
        sync.handle(
            _event(
                step,
                instances=np.full((16, 16), step, np.int32),
                foreground=np.full((16, 16), step / 10, np.float32),
            )
        )
    assert sorted(sync.pending) == sorted([LIVE_INSTANCES, LIVE_FOREGROUND])
    qtbot.waitUntil(lambda: not sync.pending, timeout=3000)
    assert sync.n_applied == 2  # only the newest data of each layer was applied
    assert viewer.layers[LIVE_INSTANCES].data.max() == 5
    # a second update of the same layer waits for min_interval
    sync.handle(_event(6, instances=np.full((16, 16), 6, np.int32)))
    assert sync.pending == [LIVE_INSTANCES]
    qtbot.waitUntil(lambda: not sync.pending, timeout=3000)
    assert viewer.layers[LIVE_INSTANCES].data.max() == 6


def test_new_layers_wait_for_the_worker_to_hold(viewer, qtbot):
    """Layers are created only while the training thread waits, released after a repaint."""
    from napari_semiseg._widgets._layers import LIVE_FOREGROUND, LIVE_INSTANCES, LayerSync

    calls = []
    worker = {"waits": False}

    def hold():
        calls.append("hold")
        return worker["waits"]

    sync = LayerSync(viewer, min_interval=0)
    sync.hold, sync.release = hold, lambda: calls.append("release")
    sync.handle(
        _event(
            1,
            instances=np.ones((16, 16), np.int32),
            foreground=np.full((16, 16), 0.5, np.float32),
        )
    )
    qtbot.wait(150)  # several polls: the worker has not reached a step boundary yet
    assert calls.count("hold") >= 2
    assert "release" not in calls
    assert LIVE_INSTANCES not in viewer.layers
    assert LIVE_FOREGROUND not in viewer.layers
    worker["waits"] = True
    qtbot.waitUntil(lambda: not sync.pending, timeout=3000)
    assert LIVE_INSTANCES in viewer.layers
    assert LIVE_FOREGROUND in viewer.layers
    assert "release" not in calls  # held a little longer, for the repaint
    qtbot.waitUntil(lambda: "release" in calls, timeout=3000)
    assert calls[-1] == "release"
    assert calls.count("release") == 1
    # replacing data holds the worker too (once for both layers) ...
    calls.clear()
    sync.handle(
        _event(
            2,
            instances=np.full((16, 16), 2, np.int32),
            foreground=np.full((16, 16), 0.7, np.float32),
        )
    )
    qtbot.waitUntil(lambda: "release" in calls, timeout=3000)
    assert viewer.layers[LIVE_INSTANCES].data.max() == 2
    assert calls.count("release") == 1
    assert calls[0] == "hold"
    # ... unless told not to
    sync.hold_updates = False
    calls.clear()
    sync.handle(_event(3, instances=np.full((16, 16), 3, np.int32)))
    qtbot.waitUntil(lambda: not sync.pending, timeout=3000)
    qtbot.wait(2 * sync.PAINT_MS)
    assert viewer.layers[LIVE_INSTANCES].data.max() == 3
    assert calls == []


def test_a_worker_that_never_holds_delays_a_new_layer_only_until_the_timeout(viewer, qtbot):
    from napari_semiseg._widgets._layers import LIVE_INSTANCES, LayerSync

    released = []
    sync = LayerSync(viewer, min_interval=0)
    sync.hold, sync.release = (lambda: False), (lambda: released.append(True))
    sync.hold_timeout = 0.1
    sync.handle(_event(1, instances=np.ones((16, 16), np.int32)))
    qtbot.waitUntil(lambda: not sync.pending, timeout=3000)
    assert LIVE_INSTANCES in viewer.layers
    qtbot.waitUntil(lambda: released == [True], timeout=3000)


def test_batch_previews_go_right_of_the_image(viewer):
    from napari_semiseg._widgets._layers import BATCH_GAP, LayerSync, live_layer_name

    image = viewer.add_image(np.zeros((64, 80)))
    sync = LayerSync(viewer, min_interval=0, images=[image])
    batch = _event(
        1,
        kind="batch",
        sample_image=np.zeros((1, 32, 32), np.float32),
        sample_target=np.zeros((32, 32), np.uint8),
    )
    sync.handle(batch)
    assert sync.pending == []  # batches are off by default (fewer layer updates)
    sync.show_batches = True
    sync.handle(batch)
    sync.flush()
    layer = viewer.layers[live_layer_name("sample_image", "batch")]
    np.testing.assert_allclose(layer.translate, (0, 80 + BATCH_GAP))
    assert layer.data.shape == (32, 32)


def test_live_layers_do_not_take_the_users_selection(viewer):
    from napari_semiseg._widgets._layers import LIVE_INSTANCES, LayerSync

    image = viewer.add_image(np.zeros((40, 50)))
    cells = viewer.add_labels(np.zeros((40, 50), np.int32), name="cells")
    assert viewer.layers.selection.active is cells
    sync = LayerSync(viewer, min_interval=0, images=[image])
    sync.handle(
        _event(
            1,
            instances=np.ones((40, 50), np.int32),
            foreground=np.full((40, 50), 0.5, np.float32),
        )
    )
    assert sync.flush() == 2
    assert LIVE_INSTANCES in viewer.layers
    assert viewer.layers.selection.active is cells
    assert viewer.layers._activate_on_insert  # napari's default is back
    added = viewer.add_labels(np.zeros((4, 4), np.int32))
    assert viewer.layers.selection.active is added


def test_layer_changes_keep_their_distance_from_other_expensive_gui_work(viewer, qtbot):
    from napari_semiseg._widgets._layers import LIVE_INSTANCES, LayerSync
    from napari_semiseg._widgets._pace import GuiPace

    pace = GuiPace(gap=0.4)
    pace.mark()  # e.g. the loss plot has just drawn
    sync = LayerSync(viewer, min_interval=0, pace=pace)
    sync.handle(_event(1, instances=np.ones((16, 16), np.int32)))
    qtbot.wait(150)
    assert sync.pending == [LIVE_INSTANCES]  # the event loop gets its turn first
    qtbot.waitUntil(lambda: not sync.pending, timeout=3000)
    assert LIVE_INSTANCES in viewer.layers
    assert pace.wait() > 0  # and the layer change is recorded for the others


def test_gui_pace_counts_the_gap_from_the_last_mark():
    from napari_semiseg._widgets._pace import GuiPace

    pace = GuiPace(gap=10.0)
    assert pace.wait() == 0.0
    pace.mark()
    assert 9.0 < pace.wait() <= 10.0
    assert GuiPace(gap=0.0).wait() == 0.0


def test_a_layer_creation_repaints_in_later_event_loop_turns(viewer, qtbot):
    """Widgets first, then the canvas, each in its own turn; nothing stays frozen."""
    from napari_semiseg._widgets._layers import LIVE_INSTANCES, LayerSync, _qt_widgets
    from napari_semiseg._widgets._pace import GuiPace

    window, canvas = _qt_widgets(viewer)
    assert window is not None
    assert canvas is not None
    seen = []
    original = canvas.setUpdatesEnabled
    canvas.setUpdatesEnabled = lambda on: (seen.append(("canvas", on)), original(on))
    pace = GuiPace(gap=0.0)
    sync = LayerSync(viewer, min_interval=0, pace=pace)
    sync.handle(_event(1, instances=np.ones((16, 16), np.int32)))
    qtbot.waitUntil(lambda: LIVE_INSTANCES in viewer.layers, timeout=3000)
    assert seen == [("canvas", False)]  # frozen while the layer was added
    assert not window.updatesEnabled()
    assert pace.wait() > 0  # the deferred repaints count as GUI work
    qtbot.waitUntil(lambda: window.updatesEnabled(), timeout=1000)
    assert not canvas.updatesEnabled()  # the Qt widgets paint first ...
    qtbot.waitUntil(lambda: canvas.updatesEnabled(), timeout=1000)
    assert seen == [("canvas", False), ("canvas", True)]  # ... then the canvas
    # replacing data repaints at once (cheap), and flush never defers
    sync.handle(_event(2, instances=np.zeros((16, 16), np.int32)))
    qtbot.waitUntil(lambda: not sync.pending, timeout=3000)
    assert window.updatesEnabled()
    assert canvas.updatesEnabled()


def test_deferred_repaint_leaves_already_frozen_widgets_alone(viewer, qtbot):
    from napari_semiseg._widgets._layers import _PaintLater, _qt_widgets

    window, canvas = _qt_widgets(viewer)
    canvas.setUpdatesEnabled(False)  # someone else froze the canvas
    done = []
    with _PaintLater(viewer, widgets_ms=0, canvas_ms=0, on_done=lambda: done.append(1)):
        assert not window.updatesEnabled()
    qtbot.waitUntil(lambda: done == [1], timeout=1000)
    assert window.updatesEnabled()
    assert not canvas.updatesEnabled()  # not ours to thaw
    canvas.setUpdatesEnabled(True)
    with _PaintLater(object(), on_done=lambda: done.append(2)) as paint:  # headless
        assert paint.window is None
        assert paint.canvas is None
    assert done == [1, 2]  # nothing frozen: done at once
    assert paint.seconds == 0.0  # and no repaint left to wait for
