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
from collections.abc import Callable


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

    def mark(self, after: float = 0.0) -> None:
        """Record that an expensive piece of work has just ended.

        Parameters
        ----------
        after : float
            Seconds of further work it has already scheduled (a deferred
            repaint): the gap is counted from their end.
        """
        self._last = time.perf_counter() + after


class WorkerHold:
    """Mixin: ask the training worker to wait at its next step before expensive GUI work.

    Work on the GUI thread (creating a layer, repainting, a full plot draw)
    takes about twice as long while the worker competes for the processor.
    The owner sets :attr:`hold` (ask the worker to wait; returns whether it
    waits) and :attr:`release`; :meth:`_worker_waits` is polled until the
    worker waits or :attr:`hold_timeout` seconds have passed, and
    :meth:`_let_go` ends the hold. Call :meth:`_init_hold` in ``__init__``.
    """

    def _init_hold(self) -> None:
        #: Ask the worker to wait at its next step; returns whether it waits.
        self.hold: Callable[[], bool] | None = None
        #: Let a held worker go on.
        self.release: Callable[[], None] | None = None
        #: Seconds to wait for a held worker before doing the work anyway.
        self.hold_timeout = 3.0
        self._hold_since: float | None = None

    def _worker_waits(self, now: float | None = None) -> bool:
        """Hold the worker; whether it waits (or there is none, or the wait timed out)."""
        if self.hold is None:
            return True
        now = time.perf_counter() if now is None else now
        if self._hold_since is None:
            self._hold_since = now
        return self.hold() or now - self._hold_since > self.hold_timeout

    def _let_go(self) -> None:
        """End the hold (if any)."""
        if self._hold_since is not None:
            self._hold_since = None
            if self.release is not None:
                self.release()
