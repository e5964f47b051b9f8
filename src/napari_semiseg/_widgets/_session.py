"""State shared by the panels of one dock widget (one per viewer, never global)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from typing import Any

from psygnal import Signal

from ._layers import ROLES, annotation_name, find_layer, viewer_alive
from ._messages import notify_warning
from ._runner import Job, Runner, ThreadRunner


class Session:
    """The viewer, the runner, the current model and the running job.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer the widget is docked in.
    runner : Runner, optional
        Starts jobs (default: napari worker threads).
    """

    #: The trained model changed (a LoadedModel or None).
    model_changed = Signal(object)
    #: A job started or ended: (kind or "", running).
    busy_changed = Signal(str, bool)
    #: Someone (e.g. accept-as-annotation) asks the Train panel to continue training.
    train_requested = Signal()

    def __init__(self, viewer: Any, runner: Runner | None = None) -> None:
        self.viewer = viewer
        self.runner: Runner = runner or ThreadRunner()
        self.model: Any = None
        self.job: Job | None = None
        self.job_kind = ""
        self.closed = False
        #: Image layers to train on, in order (set by the Annotate panel).
        self.training_images: list[Any] = []
        #: Called by :meth:`shutdown` (panels register their own clean-up).
        self.shutdown_hooks: list[Callable[[], None]] = []
        self._picks: dict[tuple[int, str], tuple[Any, Any]] = {}

    # -- model -------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Replace the current model (None frees it)."""
        self.model = model
        self.model_changed.emit(model)

    # -- annotation layers of an image ---------------------------------------------
    def pick(self, image: Any, role: str, layer: Any) -> None:
        """Use ``layer`` (or None) as the ``role`` annotation layer of ``image``."""
        self._picks[(id(image), role)] = (image, layer)

    def annotation_layer(self, image: Any, role: str) -> Any | None:
        """The layer holding ``role`` (cells, background, regions) for ``image``.

        An explicit pick wins while that layer is in the viewer; otherwise the
        layer named ``"<image> <role>"``.
        """
        picked = self._picks.get((id(image), role))
        if picked is not None and picked[0] is image:
            layer = picked[1]
            if layer is None or layer in self.viewer.layers:
                return layer
        name = annotation_name(image.name, role)
        return find_layer(self.viewer, name)

    def annotation_layers(self, image: Any) -> dict[str, Any]:
        """Every role's layer (or None) for ``image``."""
        return {role: self.annotation_layer(image, role) for role in ROLES}

    @property
    def alive(self) -> bool:
        """Whether the widget and the viewer are still open."""
        return not self.closed and viewer_alive(self.viewer)

    # -- jobs ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.job is not None and self.job.is_running

    def run(
        self,
        kind: str,
        function: Callable[..., Generator[Any, Any, Any]],
        *args: Any,
        on_yielded: Callable[[Any], None],
        on_returned: Callable[[Any], None],
        on_errored: Callable[[BaseException], None],
        on_finished: Callable[[], None] | None = None,
    ) -> bool:
        """Start a job unless one is running; returns whether it started."""
        if self.busy:
            notify_warning(f"Wait until {self.job_kind} has finished (or stop it) first.")
            return False

        def finished() -> None:
            self.job, self.job_kind = None, ""
            if not self.alive:
                return
            if on_finished is not None:
                on_finished()
            self.busy_changed.emit("", False)

        def started(job: Job) -> None:
            self.job, self.job_kind = job, kind
            self.busy_changed.emit(kind, True)

        self.runner.start(
            function,
            *args,
            on_yielded=self._guard(on_yielded),
            on_returned=self._guard(on_returned),
            on_errored=self._guard(on_errored),
            on_finished=finished,
            on_started=started,
        )
        return True

    def _guard(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """Drop results that arrive after the widget was closed."""

        def guarded(value: Any) -> None:
            if self.alive:
                callback(value)

        return guarded

    def shutdown(self) -> None:
        """Quit the running job and free the model (widget or viewer closed)."""
        if self.closed:
            return
        self.closed = True
        for hook in self.shutdown_hooks:
            hook()
        if self.job is not None and self.job.is_running:
            self.job.quit()
            if self.job.is_paused:
                self.job.resume()
        self.job = None
        self.model = None
        self._picks.clear()
        self.training_images = []
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
