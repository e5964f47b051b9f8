"""Loss curves on matplotlib's Qt canvas, cheap enough to update while training.

A full matplotlib draw costs tens of milliseconds of the GUI thread (more while
the worker competes for the GIL), so the axes are drawn only when their limits
change (x doubles, y grows or shrinks a lot) and the curves are otherwise
blitted onto a saved background, at most every ``redraw_interval`` seconds
and only while the plot is visible.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._pace import GuiPace, WorkerHold

#: napari's dark theme colours.
BACKGROUND, FOREGROUND = "#262930", "#d1d2d4"


class LossPlot(QWidget, WorkerHold):
    """Loss terms against the step, appended cheaply and drawn on a timer.

    Parameters
    ----------
    redraw_interval : float
        Seconds between updates of the canvas while new values arrive.
    parent : QWidget, optional
        Owner.
    pace : GuiPace, optional
        Shared with the live layers: an update waits for the next tick when
        other expensive GUI work has just run.

    Notes
    -----
    A full draw (axes, ticks, legend) cost 50-85 ms of the GUI thread here with
    the worker waiting, up to 140 ms while it trained beside it.
    With :attr:`hold` and :attr:`release` set, a full draw first asks the
    worker to wait at its next step (as the live layers do for a creation);
    blits of the curves alone are cheap and never wait.
    """

    #: Milliseconds between two checks whether the worker has stopped.
    HOLD_POLL_MS = 20

    def __init__(
        self,
        redraw_interval: float = 2.0,
        parent: QWidget | None = None,
        pace: GuiPace | None = None,
    ) -> None:
        super().__init__(parent)
        self.pace = pace or GuiPace()
        self.figure = Figure(figsize=(3.2, 2.0), facecolor=BACKGROUND)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        self.axes = self.figure.add_subplot()
        self.figure.subplots_adjust(left=0.16, right=0.97, top=0.95, bottom=0.2)
        self._style()
        self.steps: list[float] = []
        self.values: dict[str, list[float]] = {}
        self.lines: dict[str, Any] = {}
        self.n_draws = 0
        self.n_blits = 0
        self._dirty = False
        self._background: Any = None
        self.canvas.mpl_connect("draw_event", self._on_canvas_draw)
        self._timer = QTimer(self)
        self._timer.setInterval(int(redraw_interval * 1000))
        self._timer.timeout.connect(self._on_timer_timeout)
        self._init_hold()
        self._poll = QTimer(self)
        self._poll.setSingleShot(True)
        self._poll.timeout.connect(self._on_timer_timeout)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)

    def _style(self) -> None:
        axes = self.axes
        axes.set_facecolor(BACKGROUND)
        axes.tick_params(colors=FOREGROUND, labelsize=7)
        for spine in axes.spines.values():
            spine.set_color(FOREGROUND)
        axes.set_xlabel("step", color=FOREGROUND, fontsize=8)
        axes.set_ylabel("loss", color=FOREGROUND, fontsize=8)
        axes.set_xlim(0, 10)
        axes.set_ylim(0, 1)

    # -- data ---------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every curve."""
        self.steps.clear()
        self.values.clear()
        for line in self.lines.values():
            line.remove()
        self.lines.clear()
        legend = self.axes.get_legend()
        if legend is not None:
            legend.remove()
        self.axes.set_xlim(0, 10)
        self.axes.set_ylim(0, 1)
        self.draw()

    def add(self, step: int, losses: dict[str, float]) -> None:
        """Append one step's loss terms (shown at the next timer tick)."""
        n = len(self.steps)
        self.steps.append(float(step))
        for name, value in losses.items():
            series = self.values.setdefault(name, [math.nan] * n)
            series.append(float(value))
        for series in self.values.values():
            if len(series) < n + 1:
                series.append(math.nan)
        self._dirty = True
        if not self._timer.isActive():
            self._timer.start()

    # -- drawing ------------------------------------------------------------------
    def _on_timer_timeout(self) -> None:
        if not self._dirty:
            self._timer.stop()
            return
        if not self.isVisible():  # hidden: updated when shown
            return
        wait = self.pace.wait()
        if wait > 0:
            if self._hold_since is not None:  # a full draw is waiting: do not lose it
                self._poll.start(int(wait * 1000) + 1)
            return
        if self.update_plot():
            self.pace.mark()

    def showEvent(self, event: Any) -> None:
        """Catch up on values that arrived while hidden."""
        super().showEvent(event)
        if self._dirty:
            self.update_plot()

    def _limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Axis limits for the data, with head room so that they rarely change."""
        (x0, x1), (y0, y1) = self.axes.get_xlim(), self.axes.get_ylim()
        if self.steps:
            first, last = self.steps[0], self.steps[-1]
            if last > x1 or first < x0:
                x0, x1 = first, first + 2 * max(last - first, 5.0)
        recent = [v for s in self.values.values() for v in s[-50:] if math.isfinite(v)]
        if recent:
            high, low = max(recent), min(0.0, min(recent))
            if high > y1 or low < y0 or high < 0.3 * y1:
                y0, y1 = low, (1.25 * high if high > 0 else 1.0)
        return (x0, x1), (y0, y1)

    def update_plot(self) -> bool:
        """Show the new values: blit the curves, or redraw all when the axes change.

        Returns False when a full draw waits for the worker to hold (it is
        tried again shortly).
        """
        xlim, ylim = self._limits()
        full = (
            any(name not in self.lines for name in self.values)
            or self._background is None
            or xlim != self.axes.get_xlim()
            or ylim != self.axes.get_ylim()
        )
        if full and not self._worker_waits():
            self._poll.start(self.HOLD_POLL_MS)  # ask again soon; the values stay dirty
            return False
        self._dirty = False
        self._sync_lines()
        if full:
            self.axes.set_xlim(*xlim)
            self.axes.set_ylim(*ylim)
            self.draw()
            self._let_go()
            return True
        self.canvas.restore_region(self._background)
        for line in self.lines.values():
            self.axes.draw_artist(line)
        self.canvas.blit(self.axes.bbox)
        self.n_blits += 1
        return True

    def _sync_lines(self) -> bool:
        created = False
        for name, series in self.values.items():
            line = self.lines.get(name)
            if line is None:
                width = 1.6 if name == "loss" else 0.9
                (line,) = self.axes.plot([], [], label=name, linewidth=width, animated=True)
                self.lines[name] = line
                created = True
            line.set_data(self.steps, series)
        if created:
            legend = self.axes.legend(fontsize=7, loc="upper right", frameon=False)
            for text in legend.get_texts():
                text.set_color(FOREGROUND)
        return created

    def draw(self) -> None:
        """Redraw everything now (axes, then the curves on top)."""
        self._sync_lines()
        self.canvas.draw()
        self.n_draws += 1

    def _on_canvas_draw(self, event: Any) -> None:
        """After any full draw (also on resize): save the background, add the curves.

        The curves are rendered into the canvas buffer, which the paint that
        follows every draw shows (blitting here would repaint inside a paint).
        """
        self._background = self.canvas.copy_from_bbox(self.axes.bbox)
        for line in self.lines.values():
            self.axes.draw_artist(line)

    def stop(self) -> None:
        """Show what is pending and stop the timers (training ended)."""
        self._poll.stop()
        self._let_go()
        hold, self.hold = self.hold, None  # the worker has ended: nothing to wait for
        try:
            if self._dirty:
                self.update_plot()
        finally:
            self.hold = hold
        self._timer.stop()
