"""The only place that starts threads: core generators run as napari workers.

A *runner* starts a generator function and reports what it yields, returns or
raises through callbacks on the main thread. :class:`ThreadRunner` uses
napari's ``create_worker`` (a ``QThreadPool`` thread); :class:`SyncRunner` runs
the generator in the calling thread, which makes widget tests deterministic.
Both return a job with ``pause``/``resume``/``quit``; pausing and quitting take
effect at the generator's next ``yield`` (the training loop yields every step).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator
from typing import Any, Protocol

Callback = Callable[..., Any]


class JobFailed(Exception):
    """A ``RuntimeError`` raised inside a job.

    superqt's worker treats a ``RuntimeError`` escaping the generator as "the
    worker was deleted" and silently drops it (no ``errored``, no
    ``finished``): a diverged training or a CUDA out-of-memory error would
    vanish and leave the widget waiting. Jobs re-raise them as this class.
    """


def guarded(
    function: Callable[..., Generator[Any, Any, Any]],
    *args: Any,
    torch_threads: int | None = None,
) -> Generator[Any, Any, Any]:
    """Run ``function(*args)`` as a generator, with RuntimeErrors made visible.

    Parameters
    ----------
    function : callable
        Generator function (e.g. the training job).
    *args
        Its arguments.
    torch_threads : int, optional
        CPU threads for torch while the job runs (restored afterwards); leaving
        a core free keeps the GUI thread responsive.

    Yields
    ------
    object
        What ``function`` yields.

    Returns
    -------
    object
        What ``function`` returns.
    """
    torch = sys.modules.get("torch")
    previous = None
    if torch_threads and torch is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(torch_threads)
    try:
        return (yield from function(*args))
    except RuntimeError as exc:
        raise JobFailed(str(exc) or type(exc).__name__) from exc
    finally:
        if previous is not None:
            torch.set_num_threads(previous)


class Job(Protocol):
    """A running generator: pause, resume or quit it at its next yield."""

    @property
    def is_running(self) -> bool: ...

    @property
    def is_paused(self) -> bool: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def quit(self) -> None: ...


class Runner(Protocol):
    """Starts generator functions and reports through callbacks."""

    def start(
        self,
        function: Callable[..., Generator[Any, Any, Any]],
        *args: Any,
        on_yielded: Callback,
        on_returned: Callback,
        on_errored: Callback,
        on_finished: Callback,
        on_started: Callback | None = None,
    ) -> Job: ...


class ThreadJob:
    """A napari ``GeneratorWorker`` seen as a :class:`Job`."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self._finished = False
        worker.finished.connect(self._on_worker_finished)

    def _on_worker_finished(self) -> None:
        self._finished = True

    @property
    def is_running(self) -> bool:
        """Whether the worker has not finished yet."""
        return not self._finished

    @property
    def is_paused(self) -> bool:
        """Whether the worker waits at a yield."""
        return bool(self.worker.is_paused)

    def pause(self) -> None:
        """Pause at the next yield."""
        self.worker.pause()

    def resume(self) -> None:
        """Resume a paused worker, or cancel a pause it has not reached yet.

        superqt's ``resume`` ignores a pause that is requested but not yet
        reached: the worker would stop at its next yield and never go on.
        """
        worker = self.worker
        if hasattr(worker, "_pause_requested"):  # private in superqt: guard it
            worker._pause_requested = False
        if worker.is_paused:
            worker.resume()

    def quit(self) -> None:
        """Abandon the job at its next yield (its return value is lost)."""
        self.worker.quit()


def default_torch_threads() -> int:
    """CPU threads for training: every core but one (for the GUI), at least one."""
    return max(1, (os.cpu_count() or 2) - 1)


class ThreadRunner:
    """Run jobs on napari worker threads.

    Parameters
    ----------
    torch_threads : int, optional
        torch CPU threads while a job runs (default: all cores but one).
    """

    def __init__(self, torch_threads: int | None = None) -> None:
        self.torch_threads = torch_threads or default_torch_threads()

    def start(
        self,
        function: Callable[..., Generator[Any, Any, Any]],
        *args: Any,
        on_yielded: Callback,
        on_returned: Callback,
        on_errored: Callback,
        on_finished: Callback,
        on_started: Callback | None = None,
    ) -> ThreadJob:
        """Start ``function(*args)`` on a worker thread; callbacks run on the main thread.

        ``on_started(job)`` is called before the thread starts.
        """
        from napari.qt.threading import create_worker
        from superqt.utils import GeneratorWorker  # public; superqt comes with napari

        # superqt's worker class (napari's workers are built on it): napari's own
        # subclass would also show a traceback notification for every error, next
        # to our one-line message, and a notification for every warning.
        worker = create_worker(
            guarded,
            function,
            *args,
            torch_threads=self.torch_threads,
            _worker_class=GeneratorWorker,
            _ignore_errors=True,
            _start_thread=False,
        )
        worker.yielded.connect(on_yielded)
        worker.returned.connect(on_returned)
        worker.errored.connect(on_errored)
        job = ThreadJob(worker)
        worker.finished.connect(on_finished)
        if on_started is not None:
            on_started(job)
        worker.start()
        return job


class SyncJob:
    """A generator driven in the calling thread (see :class:`SyncRunner`)."""

    def __init__(self, generator: Generator[Any, Any, Any], callbacks: dict[str, Callback]):
        self._generator = generator
        self._callbacks = callbacks
        self._pause_requested = self._paused = self._quit = False
        self._running = True

    @property
    def is_running(self) -> bool:
        """Whether the generator has not finished."""
        return self._running

    @property
    def is_paused(self) -> bool:
        """Whether iteration stopped at a yield until :meth:`resume`."""
        return self._paused

    def pause(self) -> None:
        """Stop iterating after the current yield."""
        self._pause_requested = True

    def resume(self) -> None:
        """Continue iterating (synchronously) after a pause, or cancel a pending one."""
        self._pause_requested = False
        if self._paused:
            self._paused = False
            self.run()

    def quit(self) -> None:
        """Stop iterating after the current yield, dropping the result."""
        self._quit = True
        if self._paused:
            self._paused = False
            self.run()

    def run(self) -> None:
        """Iterate until the generator ends, pauses or quits."""
        while self._running:
            if self._quit:
                self._generator.close()
                self._finish()
                return
            if self._pause_requested:
                self._pause_requested, self._paused = False, True
                return
            try:
                value = next(self._generator)
            except StopIteration as stop:
                self._callbacks["on_returned"](stop.value)
                self._finish()
                return
            except Exception as exc:  # noqa: BLE001 (reported like a worker error)
                self._callbacks["on_errored"](exc)
                self._finish()
                return
            self._callbacks["on_yielded"](value)

    def _finish(self) -> None:
        self._running = False
        self._callbacks["on_finished"]()


class SyncRunner:
    """Run jobs to completion in the calling thread (tests, scripts).

    Callbacks may call ``pause()``/``quit()`` on the job; they take effect
    after the current yield, as with a thread.
    """

    def __init__(self) -> None:
        self.jobs: list[SyncJob] = []

    def start(
        self,
        function: Callable[..., Generator[Any, Any, Any]],
        *args: Any,
        on_yielded: Callback,
        on_returned: Callback,
        on_errored: Callback,
        on_finished: Callback,
        on_started: Callback | None = None,
    ) -> SyncJob:
        """Run ``function(*args)`` now; returns once it ends or pauses.

        ``on_started(job)`` is called before the first step.
        """
        callbacks = {
            "on_yielded": on_yielded,
            "on_returned": on_returned,
            "on_errored": on_errored,
            "on_finished": on_finished,
        }
        job = SyncJob(guarded(function, *args), callbacks)
        self.jobs.append(job)
        if on_started is not None:
            on_started(job)
        job.run()
        return job
