"""Runners (threaded and synchronous) and the dataclass-generated method forms."""

import dataclasses

import numpy as np
import pytest

from napari_semiseg.errors import SemisegInputError

pytestmark = pytest.mark.qt


def _counting(n, fail=None):
    yield from range(n)
    if fail is not None:
        raise fail
    return "done"


def _recorder():
    log = []
    callbacks = {
        "on_yielded": lambda v: log.append(("yielded", v)),
        "on_returned": lambda v: log.append(("returned", v)),
        "on_errored": lambda e: log.append(("errored", e)),
        "on_finished": lambda: log.append(("finished", None)),
    }
    return log, callbacks


def test_sync_runner_reports_in_order_and_pauses_at_a_yield():
    from napari_semiseg._widgets._runner import SyncRunner

    log, callbacks = _recorder()
    job = SyncRunner().start(_counting, 3, **callbacks)
    assert log == [
        ("yielded", 0),
        ("yielded", 1),
        ("yielded", 2),
        ("returned", "done"),
        ("finished", None),
    ]
    assert not job.is_running

    log, callbacks = _recorder()
    jobs = []
    callbacks["on_yielded"] = lambda v: (log.append(v), v == 1 and jobs[0].pause())
    job = SyncRunner().start(_counting, 4, on_started=jobs.append, **callbacks)
    assert log == [0, 1]
    assert job.is_paused
    job.resume()
    assert log == [0, 1, 2, 3, ("returned", "done"), ("finished", None)]

    log, callbacks = _recorder()
    callbacks["on_yielded"] = lambda v: jobs[-1].quit()
    SyncRunner().start(_counting, 4, on_started=jobs.append, **callbacks)
    assert log == [("finished", None)]  # quitting drops the result


def test_runtime_errors_are_reported_not_swallowed(qtbot):
    """superqt drops RuntimeErrors silently; the runner must not."""
    from napari_semiseg._widgets._runner import JobFailed, SyncRunner, ThreadRunner

    log, callbacks = _recorder()
    SyncRunner().start(_counting, 1, RuntimeError("training diverged"), **callbacks)
    kind, error = log[-2]
    assert kind == "errored"
    assert isinstance(error, JobFailed)
    assert str(error) == "training diverged"

    log, callbacks = _recorder()
    jobs = []
    ThreadRunner(torch_threads=1).start(
        _counting, 2, RuntimeError("CUDA out of memory"), on_started=jobs.append, **callbacks
    )
    qtbot.waitUntil(lambda: not jobs[0].is_running, timeout=5000)
    assert [k for k, _ in log] == ["yielded", "yielded", "errored", "finished"]
    assert str(log[2][1]) == "CUDA out of memory"

    log, callbacks = _recorder()
    SyncRunner().start(_counting, 0, SemisegInputError("bad image", "fix it"), **callbacks)
    assert isinstance(log[0][1], SemisegInputError)


def test_thread_runner_restores_torch_threads(qtbot):
    import torch

    from napari_semiseg._widgets._runner import ThreadRunner

    before = torch.get_num_threads()
    seen = []

    def job():
        seen.append(torch.get_num_threads())
        yield 1

    _log, callbacks = _recorder()
    jobs = []
    ThreadRunner(torch_threads=1).start(job, on_started=jobs.append, **callbacks)
    qtbot.waitUntil(lambda: not jobs[0].is_running, timeout=5000)
    assert seen == [1]
    assert torch.get_num_threads() == before


def _slow(n, seconds):
    import time

    for i in range(n):
        time.sleep(seconds)
        yield i
    return "done"


def test_resume_cancels_a_pause_not_yet_reached(qtbot):
    """A pause asked for and taken back before the next yield must not stick."""
    from napari_semiseg._widgets._runner import SyncRunner, ThreadRunner

    log, callbacks = _recorder()
    jobs = []

    def pause_and_resume(value):
        log.append(value)
        if value == 1:
            jobs[0].pause()
            jobs[0].resume()

    callbacks["on_yielded"] = pause_and_resume
    job = SyncRunner().start(_counting, 4, on_started=jobs.append, **callbacks)
    assert not job.is_paused
    assert log[-1] == ("finished", None)

    log, callbacks = _recorder()
    jobs = []
    ThreadRunner(torch_threads=1).start(_slow, 3, 0.3, on_started=jobs.append, **callbacks)
    job = jobs[0]
    job.pause()  # the worker is inside its first 0.3 s step: not paused yet
    assert not job.is_paused
    job.resume()
    qtbot.waitUntil(lambda: not job.is_running, timeout=10_000)
    assert ("returned", "done") in log


@dataclasses.dataclass(frozen=True)
class _Config:
    lr: float = 1e-3
    weight: float = dataclasses.field(default=0.5, metadata={"min": 0.0, "max": 2.0, "step": 0.05})
    mode: str = dataclasses.field(default="soft", metadata={"choices": ("soft", "hard")})
    size: int = dataclasses.field(default=8, metadata={"help": "crop size"})
    flag: bool = True
    window: tuple = (3, 5)


def test_method_form_keeps_small_floats_and_parses_values(qtbot):
    from magicgui.widgets import ComboBox, LineEdit

    from napari_semiseg._widgets._forms import float_step, form_values, method_form

    assert float_step(1e-3) == pytest.approx(1e-4)
    assert float_step(0.5) == pytest.approx(0.01)
    assert float_step(0.0) == 0.01
    assert float_step(1.0, 0.25) == 0.25
    form = method_form(_Config)
    assert [w.name for w in form] == ["lr", "weight", "mode", "size", "flag", "window"]
    assert isinstance(form["mode"], ComboBox)
    assert isinstance(form["window"], LineEdit)
    assert form["weight"].max == 2.0
    assert form["size"].tooltip == "crop size"
    assert form_values(form, _Config) == dataclasses.asdict(_Config())
    form["lr"].value = 2e-4
    form["window"].value = "(1, 2)"
    values = form_values(form, _Config)
    assert values["lr"] == pytest.approx(2e-4)
    assert values["window"] == (1, 2)
    form["window"].value = "(1,"
    with pytest.raises(SemisegInputError, match="window"):
        form_values(form, _Config)


def test_every_registered_method_gets_a_form_with_its_defaults(qtbot):
    """Methods added to the registry need no widget change."""
    from napari_semiseg._widgets._forms import form_values, method_form
    from napari_semiseg.methods import METHODS

    for cls in METHODS.values():
        form = method_form(cls.Config)
        assert [w.name for w in form] == [f.name for f in dataclasses.fields(cls.Config)]
        assert form_values(form, cls.Config) == cls.Config().to_dict()


def test_loss_plot_blits_curves_and_redraws_only_when_axes_change(qtbot):
    from napari_semiseg._widgets._plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(320, 200)
    plot.show()
    qtbot.waitExposed(plot)
    plot.add(1, {"loss": 2.0, "ce": 1.5})
    plot.update_plot()
    draws = plot.n_draws
    assert set(plot.lines) == {"loss", "ce"}
    for step in range(2, 8):
        plot.add(step, {"loss": 2.0 - 0.1 * step, "ce": 1.0})
        plot.update_plot()
    assert plot.n_draws == draws  # same axes: only the curves were blitted
    assert plot.n_blits == 6
    np.testing.assert_array_equal(plot.lines["loss"].get_xdata(), np.arange(1, 8))
    plot.add(40, {"loss": 1.0})  # beyond the x range: the axes are redrawn
    plot.update_plot()
    assert plot.n_draws == draws + 1
    assert plot.axes.get_xlim()[1] >= 40
    assert np.isnan(plot.values["ce"][-1])  # a term missing at a step is a gap


def test_loss_plot_waits_a_tick_after_other_expensive_gui_work(qtbot):
    from napari_semiseg._widgets._pace import GuiPace
    from napari_semiseg._widgets._plot import LossPlot

    pace = GuiPace(gap=0.5)
    plot = LossPlot(redraw_interval=0.05, pace=pace)
    qtbot.addWidget(plot)
    plot.resize(320, 200)
    plot.show()
    qtbot.waitExposed(plot)
    pace.mark()  # a live layer was just created
    plot.add(1, {"loss": 2.0})
    qtbot.wait(200)
    assert plot._dirty  # still waiting for the gap
    qtbot.waitUntil(lambda: not plot._dirty, timeout=3000)
    assert pace.wait() > 0  # its own update is recorded too


def test_loss_plot_holds_the_worker_for_a_full_draw_only(qtbot):
    from napari_semiseg._widgets._plot import LossPlot

    plot = LossPlot(redraw_interval=10.0)
    qtbot.addWidget(plot)
    plot.resize(320, 200)
    plot.show()
    qtbot.waitExposed(plot)
    calls = []
    waiting = {"now": False}

    def hold():
        calls.append("hold")
        return waiting["now"]

    plot.hold, plot.release = hold, lambda: calls.append("release")
    draws = plot.n_draws
    plot.add(1, {"loss": 2.0})  # a new curve: full draw, the worker must wait first
    plot.update_plot()
    assert plot.n_draws == draws
    assert plot._dirty
    waiting["now"] = True  # the worker reached its next step
    qtbot.waitUntil(lambda: plot.n_draws == draws + 1, timeout=3000)
    assert calls[-2:] == ["hold", "release"]
    assert not plot._dirty
    n_calls = len(calls)
    plot.add(2, {"loss": 1.9})  # same axes: a blit, no hold
    plot.update_plot()
    assert plot.n_blits == 1
    assert len(calls) == n_calls
    # a worker that never waits delays the draw only until the timeout
    waiting["now"] = False
    plot.hold_timeout = 0.1
    plot.add(100, {"loss": 1.0})
    plot.update_plot()
    qtbot.waitUntil(lambda: plot.n_draws == draws + 2, timeout=3000)
    assert calls[-1] == "release"
