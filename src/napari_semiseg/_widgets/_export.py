"""Export panel: masks to TIFF (one layer or every prediction), save and load the model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import FileEdit
from napari.layers import Labels
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..data.annotations import check_labels
from ..data.layers import cast_labels, duplicate_stems, file_stem
from ..engine import load_checkpoint, resolve_device, save_checkpoint
from ..errors import SemisegInputError
from ..io import existing_outputs, labels_dtype, write_tiff
from ._annotate import training_image_layers
from ._layers import LIVE_MARKER, image_name_of, image_shape, pick_prediction
from ._messages import notify_error, notify_info
from ._session import Session

DTYPES = ("auto", "uint16", "uint32")


def ask_overwrite(parent: QWidget, text: str) -> bool:
    """Ask the user whether existing files may be replaced."""
    buttons = QMessageBox.StandardButton
    answer = QMessageBox.question(parent, "Overwrite files?", text, buttons.Yes | buttons.No)
    return answer == buttons.Yes


def ask_model_path(parent: QWidget, save: bool) -> str | None:
    """A model file chosen in a file dialog (None when cancelled)."""
    dialog = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
    path, _ = dialog(parent, "Save model" if save else "Load model", "", "Model (*.pt)")
    return path or None


class ExportWidget(QWidget):
    """Write masks as uint16/uint32 TIFF named after their images; save/load the model.

    Parameters
    ----------
    session : Session
        Shared state of the dock widget.
    confirm : callable, optional
        ``confirm(text) -> bool`` before overwriting (default: a QMessageBox).
    ask_path : callable, optional
        ``ask_path(save) -> str | None`` for model files (default: a file dialog).
    """

    def __init__(
        self,
        session: Session,
        confirm: Callable[[str], bool] | None = None,
        ask_path: Callable[[bool], str | None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.viewer = session.viewer
        self.confirm = confirm or (lambda text: ask_overwrite(self, text))
        self.ask_path = ask_path or (lambda save: ask_model_path(self, save))
        layout = QVBoxLayout(self)
        self._build_masks(layout)
        self._build_model(layout)
        layout.addStretch(1)
        session.model_changed.connect(self._update_buttons)
        session.busy_changed.connect(self._update_buttons)
        self.refresh_layers()

    def _build_masks(self, layout: QVBoxLayout) -> None:
        form = QFormLayout()
        self.layer = QComboBox()
        self.folder = FileEdit(mode="d", value=Path.cwd() / "masks")
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.dtype.setToolTip("auto: uint16, or uint32 when there are more than 65535 ids")
        form.addRow("labels layer", self.layer)
        form.addRow("folder", self.folder.native)
        form.addRow("type", self.dtype)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.export_button = QPushButton("Export layer")
        self.export_all_button = QPushButton("Export all predictions")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.export_all_button.clicked.connect(self._on_export_all_clicked)
        row.addWidget(self.export_button)
        row.addWidget(self.export_all_button)
        layout.addLayout(row)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

    def _build_model(self, layout: QVBoxLayout) -> None:
        row = QHBoxLayout()
        self.save_button = QPushButton("Save model...")
        self.load_button = QPushButton("Load model...")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.load_button.clicked.connect(self._on_load_clicked)
        row.addWidget(self.save_button)
        row.addWidget(self.load_button)
        layout.addLayout(row)

    def refresh_layers(self) -> None:
        """Re-read the Labels layers into the combo box."""
        current = self.layer.currentText()
        names = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and not layer.metadata.get(LIVE_MARKER)
        ]
        self.layer.clear()
        self.layer.addItems(names)
        if current in names:
            self.layer.setCurrentText(current)
        self._update_buttons()

    def _update_buttons(self, *_: Any) -> None:
        idle = not self.session.busy
        self.save_button.setEnabled(idle and self.session.model is not None)
        self.load_button.setEnabled(idle)

    # -- masks ------------------------------------------------------------------------------
    def _on_export_clicked(self) -> None:
        name = self.layer.currentText()
        if name in self.viewer.layers:
            self.export([self.viewer.layers[name]])

    def _on_export_all_clicked(self) -> None:
        layers = []
        names = [layer.name for layer in self.viewer.layers]
        selected = [layer.name for layer in self.viewer.layers.selection]
        for image in training_image_layers(self.viewer):
            name = pick_prediction(image.name, names, selected)  # selected, else the newest
            if name is not None:
                layers.append(self.viewer.layers[name])
        if not layers:
            notify_error(
                SemisegInputError("there are no predictions", "press Predict all images first"),
                "Export",
            )
            return
        self.export(layers)

    def export(self, layers: list[Any]) -> list[Path]:
        """Write each Labels layer to ``<folder>/<image name>.tif``; returns the files written."""
        try:
            self._check_distinct_files(layers)
            planned = [self._planned(layer) for layer in layers]
        except SemisegInputError as exc:
            notify_error(exc, "Export")
            self.status.setText("Nothing written.")
            return []
        clash = existing_outputs([path for path, _ in planned])
        if clash:
            names = ", ".join(p.name for p in clash[:3])
            if not self.confirm(f"{len(clash)} file(s) exist ({names}). Overwrite?"):
                self.status.setText("Nothing written.")
                return []
        written = []
        try:
            for path, masks in planned:
                written.append(write_tiff(path, masks, overwrite=True))
        except OSError as exc:
            notify_error(exc, "Export")
        self.status.setText(f"Wrote {len(written)} file(s) to {Path(str(self.folder.value))}")
        return written

    @staticmethod
    def _check_distinct_files(layers: list[Any]) -> None:
        """Refuse a batch in which two layers would be written to the same file.

        File names are made safe by :func:`~napari_semiseg.data.layers.file_stem`,
        so e.g. ``"img 1"`` and ``"img_1"`` or ``"a.tif"`` and ``"a.png"`` share one.
        """
        image_names = [image_name_of(layer.name) for layer in layers]
        clashes = duplicate_stems(image_names)
        if not clashes:
            return
        group = clashes[0]
        names = [
            layer.name for layer, image in zip(layers, image_names, strict=True) if image in group
        ]
        quoted = ", ".join(f"'{name}'" for name in names)
        more = f" (and {len(clashes) - 1} more such group(s))" if len(clashes) > 1 else ""
        raise SemisegInputError(
            f"layers {quoted} would all be written to {file_stem(group[0])}.tif{more}; "
            "nothing was written",
            "rename the layers or their images so that their names differ in letters or "
            "digits, or export them one at a time to different folders",
        )

    def _planned(self, layer: Any) -> tuple[Path, np.ndarray]:
        """Output path and cast masks of one layer, checked against its image's shape."""
        image_name = image_name_of(layer.name)
        labels = np.asarray(layer.data)
        if image_name in self.viewer.layers:
            labels = check_labels(labels, image_shape(self.viewer.layers[image_name]), layer.name)
        dtype = self.dtype.currentText()
        if dtype == "auto":
            dtype = labels_dtype(labels).name
        path = Path(str(self.folder.value)) / f"{file_stem(image_name)}.tif"
        return path, cast_labels(labels, dtype)

    # -- model -----------------------------------------------------------------------------
    def _on_save_clicked(self) -> None:
        path = self.ask_path(True)
        if path:
            self.save_model(path)

    def _on_load_clicked(self) -> None:
        path = self.ask_path(False)
        if path:
            self.load_model(path)

    def save_model(self, path: str | Path) -> Path | None:
        """Save the current model with the core checkpoint writer."""
        model = self.session.model
        if model is None:
            return None
        try:
            path = save_checkpoint(
                path,
                model.method,
                model.train_config,
                model.metadata,
                model.optimizer_state,
                model.normalization,
            )
        except OSError as exc:
            notify_error(exc, "Saving the model")
            return None
        notify_info(f"Model saved to {path}")
        return path

    def load_model(self, path: str | Path) -> bool:
        """Load a model file (no code runs from it) as the current model."""
        try:
            model = load_checkpoint(path, resolve_device("auto"))
        except SemisegInputError as exc:
            notify_error(exc, "Loading the model")
            return False
        self.session.set_model(model)
        steps = model.metadata.get("steps", 0)
        notify_info(f"Loaded a {model.method.name} model ({steps} steps).")
        return True
