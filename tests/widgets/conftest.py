"""Fixtures for the Qt tests: a viewer with the sample, the dock widget on a sync runner."""

import pytest

TINY = {
    "steps": 2,
    "batch_size": 2,
    "patch_size": 48,
    "device": "cpu",
    "time_budget": None,
    "preview_every": 1e6,  # one preview, at the first step
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The widget tests share 2 cores with other work: one torch thread is faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_overrides():
    from napari_semiseg.models import UNetConfig

    return {**TINY, "model": UNetConfig(base_channels=4, depth=2, dropout=0.0)}


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def sample_viewer(viewer):
    viewer.open_sample("napari-semiseg", "nuclei")
    return viewer


@pytest.fixture
def notes():
    """Messages of the notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    return lambda: [n.message for n in notification_manager.records[start:]]


@pytest.fixture
def make_widget(tiny_overrides):
    """Dock the widget on a viewer, with a synchronous runner and a tiny U-Net."""
    from napari_semiseg._widgets import SemisegWidget
    from napari_semiseg._widgets._runner import SyncRunner

    def make(viewer, runner=None, **kwargs):
        widget = SemisegWidget(viewer, runner=runner or SyncRunner(), **kwargs)
        viewer.window.add_dock_widget(widget, name="semiseg")
        widget.train.config_overrides = dict(tiny_overrides)
        return widget

    return make
