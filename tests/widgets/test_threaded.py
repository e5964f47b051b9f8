"""End to end on worker threads: sample -> train -> live layers -> predict -> TIFF."""

import numpy as np
import pytest
import tifffile

pytestmark = pytest.mark.qt


def test_sample_to_tiff_on_worker_threads(sample_viewer, make_widget, qtbot, tmp_path):
    from napari_semiseg._widgets._layers import LIVE_FOREGROUND, LIVE_INSTANCES, LIVE_WEIGHT_MAP
    from napari_semiseg._widgets._runner import ThreadRunner

    viewer = sample_viewer
    widget = make_widget(viewer, runner=ThreadRunner(torch_threads=1))
    widget.train.config_overrides["steps"] = 3
    assert widget.train.start()
    assert widget.session.busy
    qtbot.waitUntil(lambda: not widget.session.busy, timeout=60_000)
    assert widget.train.last_result.steps == 3
    # live layers arrive through the throttled LayerSync timer
    live = (LIVE_INSTANCES, LIVE_FOREGROUND, LIVE_WEIGHT_MAP)
    qtbot.waitUntil(lambda: all(name in viewer.layers for name in live), timeout=20_000)

    widget.predict.image.setCurrentText("nuclei_c")
    widget.predict._on_predict_clicked()
    qtbot.waitUntil(lambda: "nuclei_c prediction" in viewer.layers, timeout=60_000)
    assert not widget.session.busy
    prediction = viewer.layers["nuclei_c prediction"]
    assert prediction.data.shape == viewer.layers["nuclei_c"].data.shape

    widget.export.folder.value = tmp_path
    widget.export.layer.setCurrentText("nuclei_c prediction")
    widget.export._on_export_clicked()
    back = tifffile.imread(tmp_path / "nuclei_c.tif")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, prediction.data)


def test_closing_the_viewer_stops_the_worker(sample_viewer, make_widget, qtbot):
    from napari_semiseg._widgets._runner import ThreadRunner

    widget = make_widget(sample_viewer, runner=ThreadRunner(torch_threads=1))
    widget.train.config_overrides.update(steps=100_000, preview_every=0.5)
    session = widget.session
    widget.train.start()
    job = session.job
    qtbot.waitUntil(lambda: len(widget.train.plot.steps) > 0, timeout=30_000)
    sample_viewer.close()
    qtbot.waitUntil(lambda: not job.is_running, timeout=30_000)
    qtbot.waitUntil(lambda: session.closed, timeout=5_000)
    assert session.model is None


def test_live_layers_are_created_while_training_waits_at_a_step(sample_viewer, make_widget, qtbot):
    from napari_semiseg._widgets._runner import ThreadRunner

    widget = make_widget(sample_viewer, runner=ThreadRunner(torch_threads=1))
    widget.train.config_overrides.update(steps=12, preview_every=0.2)
    sync = widget.train.sync
    sync.hold_timeout = 60.0  # never create a layer without the hold in this test
    paused_at_creation = []
    add = sync._add

    def recording_add(update):
        paused_at_creation.append(widget.session.job.is_paused)
        return add(update)

    sync._add = recording_add
    steps_at_creation = []
    on_step = widget.train._on_step
    steps_seen = []

    def recording_step(event):
        steps_seen.append(event.step)
        on_step(event)

    widget.train._on_step = recording_step
    add2 = sync._add

    def counting_add(update):
        steps_at_creation.append(len(steps_seen))
        return add2(update)

    sync._add = counting_add
    assert widget.train.start()
    qtbot.waitUntil(lambda: not widget.session.busy, timeout=60_000)
    assert paused_at_creation
    assert all(paused_at_creation)
    # the live layers were made from the preview before the first step, with the
    # worker waiting at the end of the first step (it was already computing it)
    assert len(steps_at_creation) >= 3
    assert max(steps_at_creation[:3]) <= 1
    assert widget.train.last_result.steps == 12  # the hold was released every time
    assert not widget.train._held


class _FakeJob:
    """A job whose pause is reached at once (or, with ``lag``, only after a resume)."""

    def __init__(self, lag=False):
        self.is_running = True
        self.is_paused = False
        self.lag = lag
        self.calls = []

    def pause(self):
        self.calls.append("pause")
        self.is_paused = not self.lag

    def resume(self):
        self.calls.append("resume")
        if self.lag:  # the pause lands in the instant of the resume and sticks
            self.is_paused = True
            self.lag = False
        else:
            self.is_paused = False


def test_hold_respects_the_users_pause_and_a_late_pause_is_undone(viewer, make_widget, qtbot):
    from napari_semiseg._widgets._train import TRAINING

    train = make_widget(viewer).train
    session = train.session
    session.job, session.job_kind = _FakeJob(), TRAINING
    assert train._hold_worker()  # paused at once
    train._release_worker()
    assert session.job.calls == ["pause", "resume"]
    assert not session.job.is_paused

    session.job = _FakeJob()
    train._paused = True  # the user pressed Pause: the hold neither pauses nor resumes
    session.job.is_paused = True
    assert train._hold_worker()
    train._release_worker()
    assert session.job.calls == []
    train._paused = False

    session.job = job = _FakeJob(lag=True)
    assert not train._hold_worker()  # asked, not reached yet
    train._release_worker()
    assert job.is_paused  # the pause landed after the resume
    qtbot.waitUntil(lambda: not job.is_paused, timeout=2000)  # looked at again, resumed
    assert job.calls == ["pause", "resume", "resume"]
    session.job = None


def test_a_hold_pauses_again_after_the_user_resumed(viewer, make_widget):
    from napari_semiseg._widgets._train import TRAINING

    train = make_widget(viewer).train
    session = train.session
    job = _FakeJob()
    session.job, session.job_kind = job, TRAINING
    assert train._hold_worker("layers")
    train._on_pause_clicked()  # the user pauses ...
    train._on_pause_clicked()  # ... and resumes while the layers still hold
    assert not job.is_paused
    assert train._hold_worker("layers")  # the next check pauses it again
    train._release_worker("layers")
    assert not job.is_paused
    assert not train._held
    session.job = None
