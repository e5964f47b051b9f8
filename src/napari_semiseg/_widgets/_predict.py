"""Predict panel: predict images into editable Labels layers, accept corrections as annotation."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..data.layers import (
    box_to_rectangle,
    fingerprint,
    merge_prediction,
    prediction_name,
    to_pixel_vertices,
)
from ..errors import SemisegInputError
from ..inference import TilingConfig
from ._annotate import AnnotateWidget, training_image_layers
from ._jobs import PredictProgress, predict_job
from ._layers import CELLS, REGIONS, find_layer, image_shape, pick_prediction
from ._messages import notify_error, notify_info
from ._reading import image_array
from ._session import Session

PREDICTING = "prediction"
#: Key in a prediction layer's ``metadata``: fingerprint of the data the plugin wrote.
WRITTEN = "napari_semiseg_written"


def _written_by_us(layer: Any) -> bool:
    """Whether a Labels layer still holds exactly what the plugin last wrote to it."""
    written = layer.metadata.get(WRITTEN)
    return written is not None and written == fingerprint(np.asarray(layer.data))


class PredictWidget(QWidget):
    """Predict the current or every image; accept a corrected prediction as annotation.

    Parameters
    ----------
    session : Session
        Shared state of the dock widget.
    annotate : AnnotateWidget
        The Annotate panel (to create annotation layers when accepting).
    """

    def __init__(
        self, session: Session, annotate: AnnotateWidget, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.viewer = session.viewer
        self.annotate = annotate
        self.tiling = TilingConfig(tile_size=512, halo=32, blend=32)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.image = QComboBox()
        form.addRow("image", self.image)
        layout.addLayout(form)
        self.tta_box = QCheckBox("average over flips (3-4x slower)")
        self.tta_box.setToolTip(
            "Test-time augmentation: the network sees each tile in 4 flips and the "
            "probabilities are averaged. Not for ppn-auxnet."
        )
        layout.addWidget(self.tta_box)
        row = QHBoxLayout()
        self.predict_button = QPushButton("Predict image")
        self.predict_all_button = QPushButton("Predict all images")
        row.addWidget(self.predict_button)
        row.addWidget(self.predict_all_button)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        layout.addWidget(self.progress)
        layout.addWidget(
            QLabel(
                "Correct the prediction layer (paint, erase, fill), then accept it: its objects "
                "join your cells as new ids where you have none, and the whole image becomes "
                "known."
            )
        )
        layout.itemAt(layout.count() - 1).widget().setWordWrap(True)
        self.accept_button = QPushButton("Accept as annotation")
        self.continue_box = QCheckBox("continue training after accepting")
        self.continue_box.setChecked(True)
        layout.addWidget(self.accept_button)
        layout.addWidget(self.continue_box)
        layout.addStretch(1)
        self.predict_button.clicked.connect(self._on_predict_clicked)
        self.predict_all_button.clicked.connect(self._on_predict_all_clicked)
        self.accept_button.clicked.connect(self._on_accept_clicked)
        session.model_changed.connect(self._update_buttons)
        session.busy_changed.connect(self._update_buttons)
        self.refresh_layers()

    def refresh_layers(self) -> None:
        """Re-read the image layers into the combo box."""
        current = self.image.currentText()
        names = [layer.name for layer in training_image_layers(self.viewer)]
        self.image.blockSignals(True)
        self.image.clear()
        self.image.addItems(names)
        if current in names:
            self.image.setCurrentText(current)
        self.image.blockSignals(False)
        self._update_buttons()

    def _update_buttons(self, *_: Any) -> None:
        ready = self.session.model is not None and not self.session.busy
        self.predict_button.setEnabled(ready and self.image.count() > 0)
        self.predict_all_button.setEnabled(ready and self.image.count() > 0)
        self.accept_button.setEnabled(not self.session.busy)

    def current_image(self) -> Any | None:
        """The selected image layer."""
        name = self.image.currentText()
        return find_layer(self.viewer, name)

    # -- predicting -----------------------------------------------------------------------
    def _on_predict_clicked(self) -> None:
        image = self.current_image()
        self.predict([image] if image is not None else [])

    def _on_predict_all_clicked(self) -> None:
        self.predict(training_image_layers(self.viewer))

    def predict(self, images: list[Any]) -> bool:
        """Predict ``images`` on the worker; results go to ``"<image> prediction"`` layers."""
        if self.session.model is None:
            notify_error(
                SemisegInputError("there is no trained model", "train or load one first"),
                "Prediction",
            )
            return False
        if not images:
            return False
        items = [(layer.name, np.array(image_array(layer), copy=True)) for layer in images]
        self.progress.setValue(0)
        return self.session.run(
            PREDICTING,
            predict_job,
            self.session.model,
            items,
            dataclasses.replace(self.tiling, flip_tta=self.tta_box.isChecked()),
            on_yielded=self._on_worker_yielded,
            on_returned=self._on_worker_returned,
            on_errored=lambda exc: notify_error(exc, "Prediction"),
        )

    def _on_worker_yielded(self, progress: PredictProgress) -> None:
        done = progress.index + progress.tile / max(progress.tiles, 1)
        self.progress.setValue(int(1000 * done / max(progress.total, 1)))
        self.progress.setFormat(f"{progress.name}: tile {progress.tile}/{progress.tiles}")

    def _on_worker_returned(self, results: list[tuple[str, np.ndarray]]) -> None:
        for name, instances in results:
            if name not in self.viewer.layers:
                continue  # the image was removed meanwhile
            self.show_prediction(self.viewer.layers[name], instances)
        self.progress.setValue(1000)
        self.progress.setFormat(f"{len(results)} image(s) predicted")

    def show_prediction(self, image: Any, instances: np.ndarray) -> Any:
        """Put ``instances`` in the image's prediction layer (aligned with the image).

        The layer ``"<image> prediction"`` is reused while it holds what the
        plugin last wrote there. Once the user has edited it (paint, fill,
        erase, or it was never written by the plugin), it is kept as it is and
        the prediction goes to a new layer ``"<image> prediction (2)"`` (or the
        next free number), with a message saying so.
        """
        kept = []
        number = 1
        while (name := prediction_name(image.name, number)) in self.viewer.layers:
            layer = self.viewer.layers[name]
            if _written_by_us(layer):
                self._write(layer, instances)
                return layer
            kept.append(name)
            number += 1
        layer = self.viewer.add_labels(
            instances, name=name, scale=image.scale[-2:], translate=image.translate[-2:]
        )
        self._write(layer, None)
        if kept:
            notify_info(
                f"Kept your edits in '{kept[-1]}'; the new prediction is in '{layer.name}'."
            )
        return layer

    @staticmethod
    def _write(layer: Any, instances: np.ndarray | None) -> None:
        """Replace the layer's data (None: keep it) and remember what was written."""
        if instances is not None:
            layer.data = instances
        layer.metadata[WRITTEN] = fingerprint(np.asarray(layer.data))

    # -- accepting ----------------------------------------------------------------------------
    def _on_accept_clicked(self) -> None:
        self.accept()

    def accept(self, image: Any | None = None) -> int:
        """Merge the (corrected) prediction of ``image`` into its cells; returns cells added.

        User cells are never changed: predicted objects become new ids where
        the user has no cell. The whole image is then known (an exhaustive
        region covering it is added), and training continues if asked.
        """
        image = image or self.current_image()
        name = None
        if image is not None:
            name = pick_prediction(image.name, self._layer_names(), self._selected_names())
        if image is None or name is None:
            notify_error(
                SemisegInputError("this image has no prediction", "press Predict image first"),
                "Accepting",
            )
            return 0
        self.annotate.current.setCurrentText(image.name)
        layers = self.annotate.create_layers()
        cells = layers[CELLS]
        try:
            prediction = np.asarray(self.viewer.layers[name].data)
            merged, added = merge_prediction(np.asarray(cells.data), prediction)
        except SemisegInputError as exc:
            notify_error(exc, "Accepting")
            return 0
        cells.data = merged
        self._add_whole_image_region(image, layers[REGIONS])
        self.annotate.schedule_counts()
        notify_info(
            f"Added {added} predicted cells from '{name}' to {cells.name}; the image is now known."
        )
        if self.continue_box.isChecked() and self.session.model is not None:
            self.session.train_requested.emit()
        return added

    def _layer_names(self) -> list[str]:
        return [layer.name for layer in self.viewer.layers]

    def _selected_names(self) -> list[str]:
        return [layer.name for layer in self.viewer.layers.selection]

    @staticmethod
    def _add_whole_image_region(image: Any, regions: Any) -> None:
        height, width = image_shape(image)
        rectangle = box_to_rectangle((0, 0, height - 1, width - 1), pixels=True)
        # image pixels -> the regions layer's data coordinates
        rectangle = to_pixel_vertices(
            rectangle, image.scale, image.translate, regions.scale, regions.translate
        )
        if not any(np.allclose(np.asarray(r), rectangle) for r in regions.data if len(r) == 4):
            regions.add_rectangles(rectangle)
