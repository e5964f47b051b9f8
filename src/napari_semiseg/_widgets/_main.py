"""The dock widget: Annotate, Train, Predict and Export tabs sharing one Session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ._annotate import AnnotateWidget
from ._export import ExportWidget
from ._layers import LIVE_MARKER
from ._predict import PredictWidget
from ._runner import Runner
from ._session import Session
from ._train import TrainWidget

#: Layer events that mean "an annotation may have changed".
_EDIT_EVENTS = ("data", "paint", "set_data")


def _scrolled(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(widget)
    return area


class SemisegWidget(QWidget):
    """Label a few cells, train in the background, correct, export: one dock widget.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it when it opens the widget).
    runner : Runner, optional
        Starts background jobs (default: napari worker threads; tests pass a
        synchronous one).
    confirm : callable, optional
        ``confirm(text) -> bool`` before overwriting files.
    ask_path : callable, optional
        ``ask_path(save) -> str | None`` for model files.
    """

    def __init__(
        self,
        napari_viewer: Any,
        runner: Runner | None = None,
        confirm: Callable[[str], bool] | None = None,
        ask_path: Callable[[bool], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session = Session(napari_viewer, runner)
        self.annotate = AnnotateWidget(session)
        self.train = TrainWidget(session)
        self.predict = PredictWidget(session, self.annotate)
        self.export = ExportWidget(session, confirm, ask_path)
        self.tabs = QTabWidget()
        for widget, title in (
            (self.annotate, "Annotate"),
            (self.train, "Train"),
            (self.predict, "Predict"),
            (self.export, "Export"),
        ):
            self.tabs.addTab(_scrolled(widget), title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self._watched: list[Any] = []
        self._connect_viewer()
        # the viewer closing deletes this widget: stop the worker and free the model then
        self.destroyed.connect(lambda *_, s=session: s.shutdown())

    # -- viewer events --------------------------------------------------------------
    def _connect_viewer(self) -> None:
        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.moved.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            self._watch(layer)

    def _watch(self, layer: Any) -> None:
        if layer.metadata.get(LIVE_MARKER) or layer in self._watched:
            return
        layer.events.name.connect(self._on_layers_changed)
        for name in _EDIT_EVENTS:
            if hasattr(layer.events, name):
                getattr(layer.events, name).connect(self.annotate.schedule_counts)
        self._watched.append(layer)

    def _unwatch(self, layer: Any) -> None:
        layer.events.name.disconnect(self._on_layers_changed)
        for name in _EDIT_EVENTS:
            if hasattr(layer.events, name):
                getattr(layer.events, name).disconnect(self.annotate.schedule_counts)

    def _on_layers_changed(self, event: Any = None) -> None:
        if not self.session.alive:
            return
        for layer in self.viewer.layers:
            self._watch(layer)
        self._watched = [layer for layer in self._watched if layer in self.viewer.layers]
        self.annotate.refresh_layers()
        self.predict.refresh_layers()
        self.export.refresh_layers()

    # -- closing ------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop training, free the model and disconnect from the viewer."""
        if self.session.closed:
            return
        self.session.shutdown()
        events = self.viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved):
            emitter.disconnect(self._on_layers_changed)
        for layer in self._watched:
            self._unwatch(layer)
        self._watched = []

    def closeEvent(self, event: Any) -> None:
        """Closing the widget stops its work."""
        self.shutdown()
        super().closeEvent(event)
