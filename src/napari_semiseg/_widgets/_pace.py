"""Spacing of expensive GUI-thread work: layer changes and full plot draws.

Each costs 30-150 ms in software GL. Two timers that fall due together run
back to back in one event-loop pass and freeze the viewer for their sum (a
plot draw then a layer creation: 330 ms measured). Users of one shared
:class:`GuiPace` ask how long to wait before their next expensive piece of
work and mark when they have done one, so the event loop (painting, input)
always gets a turn in between.
"""

from __future__ import annotations

import time


class GuiPace:
    """When the GUI thread last did expensive work, and when it may do more.

    Parameters
    ----------
    gap : float
        Seconds of ordinary event processing between two expensive pieces of
        work (enough for the repaint the first one caused).
    """

    def __init__(self, gap: float = 0.06) -> None:
        self.gap = gap
        self._last = -float("inf")

    def wait(self) -> float:
        """Seconds to wait before the next expensive piece of work (0 = go ahead)."""
        return max(0.0, self._last + self.gap - time.perf_counter())

    def mark(self) -> None:
        """Record that an expensive piece of work has just ended."""
        self._last = time.perf_counter()
