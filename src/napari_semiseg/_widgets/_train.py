"""Train panel: method and settings, Start/Continue, Pause, Stop, progress, loss plot."""

from __future__ import annotations

import contextlib
from typing import Any

from magicgui.widgets import ComboBox, Container
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..data.images import Normalization
from ..engine import (
    CheckpointSaved,
    PreviewUpdated,
    StepFinished,
    TrainConfig,
    TrainingControl,
    TrainingFinished,
    TrainingStarted,
    model_preset,
)
from ..errors import SemisegInputError
from ..methods import METHODS
from ._forms import form_values, method_form, training_settings
from ._jobs import training_job
from ._layers import LayerSync
from ._messages import notify_error, notify_info, notify_warning
from ._pace import GuiPace
from ._plot import LossPlot
from ._reading import snapshot
from ._session import Session

TRAINING = "training"


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class TrainWidget(QWidget):
    """Choose a method and its settings, train in the background, watch it learn.

    Parameters
    ----------
    session : Session
        Shared state of the dock widget.
    """

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        #: TrainConfig fields that override the form (scripts, tests, benchmarks).
        self.config_overrides: dict[str, Any] = {}
        self.pace = GuiPace()
        self.sync = LayerSync(session.viewer, parent=self, pace=self.pace)
        self.sync.hold = lambda: self._hold_worker("layers")
        self.sync.release = lambda: self._release_worker("layers")
        self._holders: set[str] = set()
        self.control: TrainingControl | None = None
        self.last_result: Any = None
        self._paused = False
        layout = QVBoxLayout(self)
        self._build_method(layout)
        self._build_settings(layout)
        self._build_controls(layout)
        self.plot = LossPlot(parent=self, pace=self.pace)
        self.plot.hold = lambda: self._hold_worker("plot")
        self.plot.release = lambda: self._release_worker("plot")
        layout.addWidget(self.plot)
        layout.addStretch(1)
        self._connect()
        session.shutdown_hooks.append(self.shutdown)
        self._on_method_changed()
        self._update_buttons()

    # -- building ------------------------------------------------------------------
    def _build_method(self, layout: QVBoxLayout) -> None:
        choices = [(cls.label or name, name) for name, cls in METHODS.items()]
        self.method = ComboBox(label="method", choices=choices, value=choices[0][1])
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.method_box = QGroupBox("Method settings")
        self.method_box.setLayout(QVBoxLayout())
        self.form: Container | None = None
        top = Container(widgets=[self.method], labels=True)
        layout.addWidget(top.native)
        layout.addWidget(self.description)
        layout.addWidget(self.method_box)

    def _build_settings(self, layout: QVBoxLayout) -> None:
        self.settings = training_settings()
        box = QGroupBox("Training")
        box.setLayout(QVBoxLayout())
        box.layout().addWidget(self.settings.native)
        layout.addWidget(box)

    def _build_controls(self, layout: QVBoxLayout) -> None:
        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.scratch_button = QPushButton("From scratch")
        self.scratch_button.setToolTip("Train a new model, forgetting the current one")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Finish after the current step and keep the model")
        buttons = (self.start_button, self.scratch_button, self.pause_button, self.stop_button)
        for button in buttons:
            row.addWidget(button)
        layout.addLayout(row)
        self.batches_box = QCheckBox("show training batches (more layer updates)")
        self.batches_box.toggled.connect(self._on_batches_toggled)
        layout.addWidget(self.batches_box)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("")
        self.status = QLabel("No model yet.")
        self.status.setWordWrap(True)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    def _connect(self) -> None:
        self.method.changed.connect(self._on_method_changed)
        self.start_button.clicked.connect(self._on_start_clicked)
        self.scratch_button.clicked.connect(self._on_scratch_clicked)
        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.session.model_changed.connect(self._on_model_changed)
        self.session.busy_changed.connect(self._on_busy_changed)
        self.session.train_requested.connect(self._on_train_requested)

    def _on_batches_toggled(self, checked: bool) -> None:
        self.sync.show_batches = checked

    # -- configuration ---------------------------------------------------------------
    @property
    def method_class(self) -> type:
        """The selected method's class."""
        return METHODS[self.method.value]

    def _on_method_changed(self, *_: Any) -> None:
        cls = self.method_class
        self.description.setText(cls.description)
        if self.form is not None:
            self.method_box.layout().removeWidget(self.form.native)
            self.form.native.setParent(None)
        self.form = method_form(cls.Config)
        self.method_box.layout().addWidget(self.form.native)
        self.method_box.setVisible(len(self.form) > 0)
        self._update_buttons()

    def train_config(self) -> TrainConfig:
        """The TrainConfig the form describes (plus :attr:`config_overrides`)."""
        values = self.settings.asdict()
        values.pop("gamma")
        budget = values.pop("time_budget")
        config = TrainConfig(
            method=self.method.value,
            method_config=form_values(self.form, self.method_class.Config),
            model=model_preset(values.pop("model_size")),
            time_budget=budget if budget > 0 else None,
            **values,
        )
        return config.replace(**self.config_overrides)

    def normalization(self) -> Normalization:
        """The intensity normalisation a new model gets (the gamma field)."""
        return Normalization(gamma=float(self.settings.gamma.value))

    def _can_continue(self) -> bool:
        model = self.session.model
        return model is not None and model.method.name == self.method.value

    # -- actions -----------------------------------------------------------------------
    def _on_start_clicked(self) -> None:
        self.start(resume=True)

    def _on_scratch_clicked(self) -> None:
        self.start(resume=False)

    def _on_train_requested(self) -> None:
        if not self.session.busy:
            self.start(resume=True)

    def start(self, resume: bool = True) -> bool:
        """Train on a snapshot of the annotations; continue the current model if ``resume``."""
        try:
            images = list(self.session.training_images)
            if not images:
                raise SemisegInputError(
                    "no image layer is ticked for training",
                    "open an image and tick it in the Annotate tab",
                )
            config = self.train_config()
            snapshots = snapshot(self.session, images)
        except SemisegInputError as exc:
            notify_error(exc, "Training")
            return False
        model = self.session.model if resume and self._can_continue() else None
        if resume and self.session.model is not None and model is None:
            notify_info(f"Training a new {self.method.value} model (the current one differs).")
        if model is not None and model.normalization.gamma != self.settings.gamma.value:
            notify_info(
                f"Continuing the model with its own intensity gamma {model.normalization.gamma:g} "
                "(start from scratch to change it)."
            )
        if model is not None and model.method.core_targets:
            own = model.train_config.core_depth
            if own != config.core_depth:
                notify_info(
                    f"Continuing the model with its own cell core depth {own:g} "
                    "(start from scratch to change it)."
                )
        if model is None:
            self.plot.clear()
        self.control = TrainingControl()
        self.sync.images = images
        self._paused = False
        return self.session.run(
            TRAINING,
            training_job,
            snapshots,
            config,
            model,
            self.control,
            self.normalization(),
            on_yielded=self._on_worker_yielded,
            on_returned=self._on_worker_returned,
            on_errored=self._on_worker_errored,
            on_finished=self._on_worker_finished,
        )

    def _on_pause_clicked(self) -> None:
        job = self.session.job
        if job is None or self.session.job_kind != TRAINING:
            return
        if self._paused:
            job.resume()
        else:
            job.pause()
        self._paused = not self._paused
        self._update_buttons()

    @property
    def _held(self) -> bool:
        """Whether some GUI work holds the worker (see :meth:`_hold_worker`)."""
        return bool(self._holders)

    def _hold_worker(self, who: str = "layers") -> bool:
        """Pause training at its next step while ``who`` does expensive GUI work.

        Creating a layer or redrawing the whole loss plot costs the GUI thread
        about twice as long while the worker competes for the interpreter.
        Returns whether the worker waits (or there is none).
        """
        job = self.session.job
        if job is None or not job.is_running or self.session.job_kind != TRAINING:
            return True
        if not self._paused:
            if not job.is_paused:  # also after the user resumed while a hold was on
                job.pause()
            self._holders.add(who)
        return job.is_paused

    def _release_worker(self, who: str = "layers") -> None:
        """Let training go on after :meth:`_hold_worker` (unless paused or held by another)."""
        if who not in self._holders:
            return
        self._holders.discard(who)
        job = self.session.job
        if not self._holders and job is not None and job.is_running and not self._paused:
            job.resume()
            # a pause reached in the instant of the resume would stay: look again
            QTimer.singleShot(200, self._resume_if_stuck)

    def _resume_if_stuck(self) -> None:
        job = self.session.job
        if job is None or self._paused or self._held or not job.is_running:
            return
        if job.is_paused:
            job.resume()

    def _on_stop_clicked(self) -> None:
        if self.control is not None:
            self.control.stop()
        job = self.session.job
        if self._paused and job is not None:
            self._paused = False
            job.resume()
        self.status.setText("Stopping after this step...")

    # -- worker callbacks -----------------------------------------------------------------
    def _on_worker_yielded(self, event: Any) -> None:
        if isinstance(event, StepFinished):
            self._on_step(event)
        elif isinstance(event, PreviewUpdated):
            self.sync.handle(event)
        elif isinstance(event, TrainingStarted):
            self.status.setText(
                f"Training {event.method} on {event.where}: {event.n_parameters:,} parameters, "
                f"{event.data_summary.get('cells', 0)} annotated cells."
            )
            for text in event.advice:
                notify_warning(f"Note: {text}.")
        elif isinstance(event, CheckpointSaved):
            self.status.setText(f"Saved {event.path}")
        elif isinstance(event, TrainingFinished):
            self.status.setText(f"Finished at step {event.step} ({event.reason}).")

    def _on_step(self, event: StepFinished) -> None:
        self.progress.setValue(int(event.progress * 1000))
        self.progress.setFormat(
            f"step {event.step}/{event.total_steps} · {event.steps_per_second:.1f} steps/s · "
            f"{_duration(event.remaining_seconds)} left"
        )
        self.plot.add(event.step, event.losses)

    def _on_worker_returned(self, result: Any) -> None:
        self.last_result = result
        self.session.set_model(result.model)
        self.status.setText(
            f"Trained {result.steps} steps in {_duration(result.elapsed)} ({result.reason}). "
            "Predict in the Predict tab, or correct and continue."
        )

    def _on_worker_errored(self, exc: BaseException) -> None:
        notify_error(exc, "Training")
        self.status.setText("Training stopped with an error (annotations are unchanged).")

    def _on_worker_finished(self) -> None:
        self.control = None
        self._paused = False
        self._holders.clear()
        self.plot.stop()

    # -- state ---------------------------------------------------------------------------
    def _on_model_changed(self, *_: Any) -> None:
        self._update_buttons()

    def _on_busy_changed(self, *_: Any) -> None:
        self._update_buttons()

    def _update_buttons(self) -> None:
        training = self.session.busy and self.session.job_kind == TRAINING
        idle = not self.session.busy
        self.start_button.setText("Continue" if self._can_continue() else "Start")
        self.start_button.setEnabled(idle)
        self.scratch_button.setEnabled(idle and self.session.model is not None)
        self.pause_button.setEnabled(training)
        self.pause_button.setText("Resume" if self._paused else "Pause")
        self.stop_button.setEnabled(training)

    def shutdown(self) -> None:
        """Stop training and drop pending layer updates (closing)."""
        if self.control is not None:
            self.control.stop()
        self.sync.clear()
        with contextlib.suppress(RuntimeError):  # Qt objects may be deleted already
            self.plot.stop()
