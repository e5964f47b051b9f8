"""Loss curves drawn with matplotlib's Qt canvas, redrawn at most every few seconds."""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

#: napari's dark theme colours.
BACKGROUND, FOREGROUND = "#262930", "#d1d2d4"


class LossPlot(QWidget):
    """Loss terms against the step, appended cheaply and drawn on a timer.

    Parameters
    ----------
    redraw_interval : float
        Seconds between redraws while new values arrive (a draw costs tens of
        milliseconds of the GUI thread).
    """

    def __init__(self, redraw_interval: float = 2.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(int(redraw_interval * 1000))
        self._timer.timeout.connect(self._on_timer_timeout)
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

    def clear(self) -> None:
        """Forget every curve."""
        self.steps.clear()
        self.values.clear()
        for line in self.lines.values():
            line.remove()
        self.lines.clear()
        self.draw()

    def add(self, step: int, losses: dict[str, float]) -> None:
        """Append one step's loss terms (drawn at the next timer tick)."""
        n = len(self.steps)
        self.steps.append(float(step))
        for name, value in losses.items():
            series = self.values.setdefault(name, [float("nan")] * n)
            series.append(float(value))
        for series in self.values.values():
            if len(series) < n + 1:
                series.append(float("nan"))
        self._dirty = True
        if not self._timer.isActive():
            self._timer.start()

    def _on_timer_timeout(self) -> None:
        if self._dirty:
            self.draw()
        else:
            self._timer.stop()

    def draw(self) -> None:
        """Update the lines and redraw the canvas now."""
        self._dirty = False
        for name, series in self.values.items():
            line = self.lines.get(name)
            if line is None:
                width = 1.6 if name == "loss" else 0.9
                (line,) = self.axes.plot([], [], label=name, linewidth=width)
                self.lines[name] = line
                legend = self.axes.legend(fontsize=7, loc="upper right", frameon=False)
                for text in legend.get_texts():
                    text.set_color(FOREGROUND)
            line.set_data(self.steps, series)
        self.axes.relim()
        self.axes.autoscale_view()
        self.canvas.draw()
        self.n_draws += 1

    def stop(self) -> None:
        """Draw what is pending and stop the timer (training ended)."""
        if self._dirty:
            self.draw()
        self._timer.stop()
