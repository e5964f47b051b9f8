"""Layer names and LayerSync: preview events -> napari layers.

The annotation layer names are defined once, in :mod:`napari_semiseg.data.layers`
(the sample loader uses them without importing the GUI), and re-exported here.

LayerSync keeps the viewer fluid while training sends previews: it keeps only
the newest data per layer, applies at most one layer update per event-loop turn
(one update costs 50-120 ms in software OpenGL), at most one update per layer
every ``min_interval`` seconds, and skips data that did not change. Layers are
created once and then reused (their data replaced), never duplicated.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer

from ..data.layers import (
    BACKGROUND,
    CELLS,
    PREDICTION,
    REGIONS,
    ROLES,
    annotation_name,
    image_name_of,
    layer_spatial_shape,
    pick_prediction,
    prediction_name,
)
from ..data.previews import PreviewLayer, preview_layers
from ..engine.events import PreviewUpdated
from ._pace import GuiPace, WorkerHold

__all__ = [  # the names defined in data.layers, re-exported for the widgets
    "BACKGROUND",
    "CELLS",
    "PREDICTION",
    "REGIONS",
    "ROLES",
    "annotation_name",
    "image_name_of",
    "pick_prediction",
    "prediction_name",
]

# -- live layers while training ----------------------------------------------
LIVE_INSTANCES = "live instances"
LIVE_FOREGROUND = "live foreground probability"
LIVE_WEIGHT_MAP = "live weight map"
LIVE_PSEUDO_LABELS = "live pseudo-labels"
LIVE_CONFIDENCE = "live confidence"
LIVE_NAMES = {
    "instances": LIVE_INSTANCES,
    "foreground": LIVE_FOREGROUND,
    "weight_map": LIVE_WEIGHT_MAP,
    "pseudo_labels": LIVE_PSEUDO_LABELS,
    "confidence": LIVE_CONFIDENCE,
}
#: Prefixes of the layers made for other (method-specific) preview arrays.
LIVE_PREFIX, BATCH_PREFIX = "live ", "batch "
#: Marker in ``layer.metadata`` of the layers LayerSync owns.
LIVE_MARKER = "napari_semiseg_live"
#: Gap in pixels between the previewed image and the batch previews on its right.
BATCH_GAP = 16

#: Colormap, contrast limits, opacity and initial visibility of known maps.
_IMAGE_STYLE: dict[str, dict[str, Any]] = {
    "foreground": {"colormap": "magma", "contrast_limits": (0.0, 1.0), "opacity": 0.6},
    "confidence": {"colormap": "viridis", "contrast_limits": (0.0, 1.0), "visible": False},
    "weight_map": {"colormap": "turbo", "visible": False},
}


def live_layer_name(key: str, kind: str = "image") -> str:
    """Name of the layer showing preview array ``key`` of a ``kind`` event."""
    words = key.replace("_", " ")
    if kind == "batch":
        return BATCH_PREFIX + words
    return LIVE_NAMES.get(key, LIVE_PREFIX + words)


def find_layer(viewer: Any, name: str) -> Any | None:
    """The layer called ``name`` in the viewer, or None."""
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


def viewer_alive(viewer: Any) -> bool:
    """Whether the viewer still has its window (layers may not be touched after close)."""
    window = getattr(viewer, "window", None)
    return window is not None and getattr(window, "_qt_window", None) is not None


def image_shape(layer: Any) -> tuple[int, int]:
    """``(Y, X)`` of an image layer (RGB, multi-channel and multiscale included).

    Channels are found as the core finds them (see
    :func:`napari_semiseg.data.layers.layer_spatial_shape`).
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return layer_spatial_shape(data.shape, bool(getattr(layer, "rgb", False)))


@dataclass
class _Update:
    name: str
    layer: PreviewLayer
    translate: tuple[float, float]
    scale: tuple[float, float]
    received: float


def _place(layer: Any, update: Any) -> None:
    """Give ``layer`` the update's translate and scale, assigning only what changed.

    Each assignment refreshes the layer (tens of ms in software GL).
    """
    if tuple(layer.translate[-2:]) != tuple(update.translate):
        layer.translate = update.translate
    if tuple(layer.scale[-2:]) != tuple(update.scale):
        layer.scale = update.scale


@contextlib.contextmanager
def _keep_selection(viewer: Any):
    """Add layers without making them the active layer.

    The user keeps the layer they are annotating selected while training adds
    live layers, and napari skips switching the layer controls (tens of ms per
    layer in software GL).
    """
    layers = viewer.layers
    active = layers.selection.active
    flag = getattr(layers, "_activate_on_insert", None)  # private in napari: guard it
    if flag is not None:
        layers._activate_on_insert = False
    try:
        yield
    finally:
        if flag is not None:
            layers._activate_on_insert = flag
        if active is not None and layers.selection.active is not active and active in layers:
            layers.selection.active = active


def _qt_widgets(viewer: Any) -> tuple[Any | None, Any | None]:
    """The viewer's main window and its canvas widget (None where absent)."""
    window = getattr(getattr(viewer, "window", None), "_qt_window", None)  # private: guarded
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    canvas = getattr(getattr(qt_viewer, "canvas", None), "native", None)
    return window, canvas


class _PaintLater:
    """Run the repaint that adding a layer causes in two later event-loop turns.

    Adding a layer costs 75-120 ms inside ``layers.append`` (vispy visuals,
    layer controls) and its first repaint 55-130 ms more (layer list,
    controls, canvas). Qt runs that repaint in the same event-loop pass as
    the creation, so the viewer froze for their sum (``benchmarks/ui_latency.py``,
    start phase, three 60 s runs on one day: longest gap 93-141 ms with the
    repaint in the same pass, 66-100 ms split). While the layer is added, painting is
    switched off for the main window and the canvas; the Qt widgets are
    repainted ``widgets_ms`` later, the canvas ``canvas_ms`` after that, so the
    three costs fall in three separate turns with input and timers between
    them. Nothing is lost: re-enabling updates repaints the whole widget.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose window is frozen during the creation.
    widgets_ms, canvas_ms : int
        Delays of the two repaints (the second counted from the first).
    on_done : callable, optional
        Called once the canvas is painting again.
    """

    def __init__(
        self,
        viewer: Any,
        widgets_ms: int = 20,
        canvas_ms: int = 40,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.widgets_ms, self.canvas_ms, self.on_done = widgets_ms, canvas_ms, on_done
        self.window, self.canvas = _qt_widgets(viewer)
        self._frozen: list[Any] = []

    @property
    def seconds(self) -> float:
        """Time from the end of the creation until the canvas paints again (0: nothing frozen)."""
        return (self.widgets_ms + self.canvas_ms) / 1000 if self._frozen else 0.0

    def __enter__(self) -> _PaintLater:
        # Only widgets that are painting now are frozen (and later thawed), so
        # nested or overlapping uses never leave a widget switched off.
        self._frozen = [
            w for w in (self.canvas, self.window) if w is not None and _updates_enabled(w)
        ]
        for widget in self._frozen:
            widget.setUpdatesEnabled(False)
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._frozen:
            if self.on_done is not None:
                self.on_done()
            return
        # The canvas is switched off explicitly, so enabling the window leaves it
        # off until its own turn. The pending timers hold weak references only:
        # a viewer closed in between is not kept alive (nor touched).
        window = _weak(self.window if self.window in self._frozen else None)
        canvas = _weak(self.canvas if self.canvas in self._frozen else None)
        widgets_ms, canvas_ms, on_done = self.widgets_ms, self.canvas_ms, self.on_done

        def thaw_canvas() -> None:
            _enable(canvas())
            if on_done is not None:
                on_done()

        def thaw_window() -> None:
            _enable(window())
            QTimer.singleShot(canvas_ms, thaw_canvas)

        QTimer.singleShot(widgets_ms, thaw_window)


def _weak(widget: Any | None) -> Callable[[], Any | None]:
    return weakref.ref(widget) if widget is not None else (lambda: None)


def _enable(widget: Any | None) -> None:
    if widget is not None:
        with contextlib.suppress(RuntimeError):  # its C++ object may be deleted
            widget.setUpdatesEnabled(True)


def _updates_enabled(widget: Any) -> bool:
    with contextlib.suppress(RuntimeError, AttributeError):
        return bool(widget.updatesEnabled())
    return False


def _preview_labels(data: np.ndarray, **kwargs: Any) -> Any:
    """A read-only Labels layer for a live preview, cheap to add to the viewer.

    The data is replaced at every preview, so painting on it would be lost:
    the layer is not editable (corrections go to the prediction layer). Its
    painting overlays (polygon, brush outline) stay hidden, so napari does not
    build their visuals: adding the layer costs 88-137 ms of GUI-thread time
    instead of 146-177 ms in software GL.
    """
    from napari.layers import Labels

    layer = Labels(data, opacity=0.5, **kwargs)
    layer.editable = False
    overlays = getattr(layer, "_overlays", {})  # private in napari: guard it
    for key in ("polygon", "brush_stroke"):
        with contextlib.suppress(AttributeError, KeyError, TypeError):
            overlays[key].visible = False
    return layer


def _same(old: Any, new: Any) -> bool:
    if isinstance(new, list):
        return (
            isinstance(old, list)
            and len(old) == len(new)
            and all(np.array_equal(a, b) for a, b in zip(old, new, strict=True))
        )
    return (
        isinstance(old, np.ndarray)
        and old.shape == new.shape
        and old.dtype == new.dtype
        and np.array_equal(old, new)
    )


class LayerSync(WorkerHold):
    """Apply preview events to viewer layers, coalesced and throttled.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layers go.
    min_interval : float
        Seconds between two updates of the same layer.
    images : sequence of napari layers, optional
        Training image layers by ``image_index`` (for placing the previews).
    parent : QObject, optional
        Owner of the timer (the timer dies with it).
    pace : GuiPace, optional
        Shared with the other expensive GUI work (the loss plot), so that
        two of them never run in one event-loop pass.

    Notes
    -----
    Creating a layer costs 85-190 ms of GUI-thread time in software GL plus
    45-130 ms of event processing after it (``benchmarks/layer_cost.py``),
    more while the training thread competes for the interpreter. With ``hold`` and
    ``release`` set, the sync first asks the worker to wait at its next yield
    (a step boundary), creates the new layers one per event-loop turn, then
    lets the worker go on. ``hold()`` returns whether the worker is waiting
    (or there is none); after :attr:`hold_timeout` seconds the layer is
    created anyway.
    """

    #: Milliseconds between two checks whether the worker has stopped at a yield.
    HOLD_POLL_MS = 20
    #: Milliseconds the worker stays held after the last change, for the repaint.
    PAINT_MS = 120

    def __init__(
        self,
        viewer: Any,
        min_interval: float = 1.0,
        images: Sequence = (),
        parent: QObject | None = None,
        pace: GuiPace | None = None,
    ) -> None:
        self.viewer = viewer
        self.pace = pace or GuiPace()
        self.min_interval = min_interval
        self.images: list[Any] = list(images)
        self._pending: dict[str, _Update] = {}
        self._applied_at: dict[str, float] = {}
        self._applied_data: dict[str, Any] = {}
        self._layers: dict[str, Any] = {}
        self.n_applied = 0
        self.n_skipped = 0
        self.closed = False
        #: Whether to show the arrays of training batches (off: fewer layer updates).
        self.show_batches = False
        self._init_hold()
        #: Hold the worker for data replacements too, not only for creations (an
        #: update's gap was 60-145 ms without the hold, at most 100 ms with it;
        #: training made 53-55 steps in 60 s with it, 48-52 without).
        self.hold_updates = True
        #: Split a layer creation's repaint from the creation (see _PaintLater).
        self.defer_paint = True
        self._paint_ms = self.PAINT_MS
        self._release_timer = QTimer(parent)
        self._release_timer.setSingleShot(True)
        self._release_timer.timeout.connect(self._let_go)
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)

    # -- receiving -------------------------------------------------------------
    def handle(self, event: Any) -> None:
        """Queue the layers of a :class:`PreviewUpdated` (other events are ignored)."""
        if self.closed or not isinstance(event, PreviewUpdated):
            return
        if event.kind == "batch" and not self.show_batches:
            return
        translate, scale = self._placement(event)
        now = time.perf_counter()
        for layer in preview_layers(event.arrays):
            name = live_layer_name(layer.key, event.kind)
            self._pending[name] = _Update(name, layer, translate, scale, now)
        self._schedule()

    def _placement(self, event: PreviewUpdated) -> tuple[tuple[float, float], tuple[float, float]]:
        """World translate and scale of the previewed window (or the batch strip)."""
        image = self.images[event.image_index] if event.image_index < len(self.images) else None
        if image is None:
            base, scale = np.zeros(2), np.ones(2)
        else:
            base = np.asarray(image.translate, float)[-2:]
            scale = np.asarray(image.scale, float)[-2:]
        if event.kind == "batch":
            width = image_shape(image)[1] if image is not None else 0
            offset = np.array([0.0, width + BATCH_GAP])
        else:
            offset = np.asarray(event.offset, float)
        translate = base + offset * scale
        return (float(translate[0]), float(translate[1])), (float(scale[0]), float(scale[1]))

    # -- applying --------------------------------------------------------------
    def _due_in(self, name: str, now: float) -> float:
        return self._applied_at.get(name, -np.inf) + self.min_interval - now

    def _schedule(self) -> None:
        if not self._pending or self._timer.isActive():
            return
        now = time.perf_counter()
        wait = min(self._due_in(name, now) for name in self._pending)
        self._timer.start(int(max(0.0, wait) * 1000))

    def _on_timer_timeout(self) -> None:
        if self.closed or not viewer_alive(self.viewer):
            return
        wait = self.pace.wait()
        if wait > 0:
            self._timer.start(int(wait * 1000) + 1)
            return
        now = time.perf_counter()
        due = [u for u in self._pending.values() if self._due_in(u.name, now) <= 0]
        if due:
            update = min(due, key=lambda u: u.received)
            if self._needs_hold(update, now) and not self._worker_waits(now):
                self._timer.start(self.HOLD_POLL_MS)
                return
            del self._pending[update.name]
            paint = None
            if self.defer_paint and self._creates(update):
                paint = _PaintLater(self.viewer, on_done=self.pace.mark)
            with paint or contextlib.nullcontext():
                self._apply(update)
            extra = paint.seconds if paint else 0.0
            self.pace.mark(after=extra)
            self._paint_ms = self.PAINT_MS + int(extra * 1000)
        now = time.perf_counter()
        if self._hold_since is not None and not any(
            self._needs_hold(u, now) for u in self._pending.values()
        ):
            self._release_timer.start(self._paint_ms)  # let the repaint run while held
        self._schedule()

    def _needs_hold(self, update: _Update, now: float) -> bool:
        """Whether applying ``update`` (now or when due) should wait for the worker."""
        if self._creates(update):
            return True
        return self.hold_updates and self._due_in(update.name, now) <= 0

    def _creates(self, update: _Update, layer: Any | None = None) -> bool:
        """Whether applying ``update`` adds a layer (rather than replacing data).

        ``layer`` is the current layer of that name when the caller has it.
        """
        layer = layer if layer is not None else self.layer(update.name)
        return layer is None or type(layer).__name__.lower() != update.layer.kind

    def _worker_waits(self, now: float | None = None) -> bool:
        """Hold the worker for a layer change; whether it is waiting (or to go ahead)."""
        if self.hold is not None:
            self._release_timer.stop()
        return super()._worker_waits(now)

    def _let_go(self) -> None:
        with contextlib.suppress(RuntimeError):  # the timer may be deleted already
            self._release_timer.stop()
        super()._let_go()

    def flush(self) -> int:
        """Apply every pending update now (end of training, tests); returns how many."""
        self._timer.stop()
        pending, self._pending = list(self._pending.values()), {}
        for update in pending:
            self._apply(update)
        self._let_go()
        return len(pending)

    def clear(self) -> None:
        """Drop pending updates and accept no more (closing)."""
        self.closed = True
        self._pending.clear()
        self._let_go()
        with contextlib.suppress(RuntimeError):  # the timer may be deleted already
            self._timer.stop()

    @property
    def pending(self) -> list[str]:
        """Names of the layers waiting for an update."""
        return list(self._pending)

    def layer(self, name: str) -> Any | None:
        """The live layer of that name, if it is (still) in the viewer."""
        layer = self._layers.get(name)
        if layer is not None and layer in self.viewer.layers:
            return layer
        for candidate in self.viewer.layers:
            if candidate.name == name and candidate.metadata.get(LIVE_MARKER):
                self._layers[name] = candidate
                return candidate
        return None

    def _apply(self, update: _Update) -> None:
        data = update.layer.data
        layer = self.layer(update.name)
        self._applied_at[update.name] = time.perf_counter()
        if layer is not None and _same(self._applied_data.get(update.name), data):
            self.n_skipped += 1
            _place(layer, update)
            return
        self._applied_data[update.name] = data
        if self._creates(update, layer):
            self._layers[update.name] = self._add(update)
        else:
            self._replace(layer, update)
        self.n_applied += 1

    def _add(self, update: _Update) -> Any:
        spec, kind = update.layer, update.layer.kind
        common = {
            "name": update.name,
            "translate": update.translate,
            "scale": update.scale,
            "metadata": {LIVE_MARKER: True},
        }
        adders: dict[str, Callable[[], Any]] = {
            "labels": lambda: self.viewer.add_layer(_preview_labels(spec.data, **common)),
            "image": lambda: self.viewer.add_image(
                spec.data, rgb=spec.rgb, blending="additive", **self._image_style(spec), **common
            ),
            "points": lambda: self.viewer.add_points(
                spec.data, size=spec.sizes, face_color="yellow", border_width=0, **common
            ),
            "vectors": lambda: self.viewer.add_vectors(
                spec.data, edge_color="cyan", edge_width=1, **common
            ),
            "shapes": lambda: self.viewer.add_shapes(
                (spec.data, "rectangle") if spec.data else None,
                edge_color="orange",
                face_color="transparent",
                edge_width=1,
                **common,
            ),
        }
        with _keep_selection(self.viewer):
            return adders[kind]()

    @staticmethod
    def _image_style(spec: PreviewLayer) -> dict[str, Any]:
        style = dict(_IMAGE_STYLE.get(spec.key, {}))
        if spec.rgb:
            style.pop("colormap", None)
            style.pop("contrast_limits", None)
        return style

    def _replace(self, layer: Any, update: _Update) -> None:
        spec = update.layer
        _place(layer, update)
        if spec.kind == "shapes":
            layer.data = (spec.data, "rectangle") if spec.data else []
        elif spec.kind == "points":
            layer.data = spec.data
            layer.size = spec.sizes
        else:
            layer.data = spec.data
        if spec.kind == "image" and "contrast_limits" not in _IMAGE_STYLE.get(spec.key, {}):
            layer.reset_contrast_limits()
