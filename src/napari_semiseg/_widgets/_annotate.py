"""Annotate panel: training images, their annotation layers, a "new cell" action, counts."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels, Shapes
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..data.layers import annotation_counts, next_label
from ._layers import (
    BACKGROUND,
    CELLS,
    LIVE_MARKER,
    REGIONS,
    ROLES,
    annotation_name,
    find_layer,
    image_shape,
)
from ._messages import notify_error
from ._reading import read_annotation
from ._session import Session

_ROLE_TYPES = {CELLS: Labels, BACKGROUND: Labels, REGIONS: Shapes}
_ROLE_HELP = {
    CELLS: "one id per annotated cell (0 = not annotated, not background)",
    BACKGROUND: "scribbles over pixels that are surely background",
    REGIONS: "rectangles inside which every cell is annotated",
}
NO_BACKGROUND = (
    "No background marked: paint a few background scribbles or draw a region (rectangle) "
    "in which every cell is annotated."
)


def training_image_layers(viewer: Any) -> list[Any]:
    """Image layers a user may train on (the live preview layers excluded)."""
    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image) and not layer.metadata.get(LIVE_MARKER)
    ]


class AnnotateWidget(QWidget):
    """Pick training images, create or pick their annotation layers, see what is known.

    Parameters
    ----------
    session : Session
        Shared state of the dock widget.
    """

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.viewer = session.viewer
        self._unticked: set[str] = set()
        layout = QVBoxLayout(self)
        self._build_images(layout)
        self._build_layers(layout)
        self._build_counts(layout)
        self._counts_timer = QTimer(self)
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(300)
        self._counts_timer.timeout.connect(self.update_counts)
        self.refresh_layers()

    # -- building ------------------------------------------------------------------
    def _build_images(self, layout: QVBoxLayout) -> None:
        label = QLabel("Images to train on (unannotated ones form the unlabelled pool):")
        label.setWordWrap(True)
        layout.addWidget(label)
        self.images = QListWidget()
        self.images.setMaximumHeight(90)
        self.images.itemChanged.connect(self._on_images_changed)
        layout.addWidget(self.images)

    def _build_layers(self, layout: QVBoxLayout) -> None:
        form = QFormLayout()
        self.current = QComboBox()
        self.current.currentIndexChanged.connect(self._on_current_image_changed)
        form.addRow("annotate", self.current)
        self.role_combos: dict[str, QComboBox] = {}
        for role in ROLES:
            combo = QComboBox()
            combo.setToolTip(_ROLE_HELP[role])
            combo.activated.connect(lambda _, r=role: self._on_role_layer_changed(r))
            self.role_combos[role] = combo
            form.addRow(role, combo)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.create_button = QPushButton("Create layers")
        self.create_button.setToolTip("Add the missing cells/background/regions layers")
        self.new_cell_button = QPushButton("New cell")
        self.new_cell_button.setToolTip("Paint the next free cell id in the cells layer")
        self.create_button.clicked.connect(self._on_create_clicked)
        self.new_cell_button.clicked.connect(self._on_new_cell_clicked)
        row.addWidget(self.create_button)
        row.addWidget(self.new_cell_button)
        layout.addLayout(row)

    def _build_counts(self, layout: QVBoxLayout) -> None:
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["image", "cells", "known px", "bg px"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setMaximumHeight(130)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #f0a040;")
        layout.addWidget(self.table)
        layout.addWidget(self.warning)
        layout.addStretch(1)

    # -- layer list changes ------------------------------------------------------------
    def refresh_layers(self) -> None:
        """Re-read the viewer's layers into the lists and combo boxes."""
        candidates = training_image_layers(self.viewer)
        self.images.blockSignals(True)
        self.images.clear()
        for layer in candidates:
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            ticked = layer.name not in self._unticked
            item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            self.images.addItem(item)
        self.images.blockSignals(False)
        self._fill_combo(self.current, [layer.name for layer in candidates], none=False)
        self._on_images_changed()

    @staticmethod
    def _fill_combo(combo: QComboBox, names: list[str], none: bool, current: str = "") -> None:
        current = current or combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems((["(none)"] if none else []) + names)
        if current in names:
            combo.setCurrentText(current)
        combo.blockSignals(False)

    def _on_images_changed(self, *_: Any) -> None:
        by_name = {layer.name: layer for layer in training_image_layers(self.viewer)}
        ticked = []
        for row in range(self.images.count()):
            item = self.images.item(row)
            if item.checkState() == Qt.CheckState.Checked:
                ticked.append(by_name[item.text()])
                self._unticked.discard(item.text())
            else:
                self._unticked.add(item.text())
        self.session.training_images = ticked
        self._on_current_image_changed()

    def current_image(self) -> Any | None:
        """The image whose annotation layers are shown."""
        name = self.current.currentText()
        return find_layer(self.viewer, name)

    def _on_current_image_changed(self, *_: Any) -> None:
        image = self.current_image()
        for role, combo in self.role_combos.items():
            names = []
            if image is not None:
                shape = image_shape(image)
                names = [
                    layer.name
                    for layer in self.viewer.layers
                    if isinstance(layer, _ROLE_TYPES[role])
                    and not layer.metadata.get(LIVE_MARKER)
                    and (role == REGIONS or tuple(layer.data.shape) == shape)
                ]
            chosen = self.session.annotation_layer(image, role) if image is not None else None
            self._fill_combo(combo, names, none=True, current=chosen.name if chosen else "(none)")
        self.schedule_counts()

    def _on_role_layer_changed(self, role: str) -> None:
        image = self.current_image()
        if image is None:
            return
        name = self.role_combos[role].currentText()
        layer = find_layer(self.viewer, name)
        self.session.pick(image, role, layer)
        self.schedule_counts()

    # -- actions -----------------------------------------------------------------------
    def _on_create_clicked(self) -> None:
        self.create_layers()

    def create_layers(self) -> dict[str, Any]:
        """Add the missing annotation layers of the current image (aligned with it)."""
        image = self.current_image()
        if image is None:
            notify_error(ValueError("open an image first"), "Creating annotation layers")
            return {}
        layers = self.session.annotation_layers(image)
        shape = image_shape(image)
        place = {"scale": image.scale[-2:], "translate": image.translate[-2:]}
        if layers[REGIONS] is None:
            layers[REGIONS] = self.viewer.add_shapes(
                name=annotation_name(image.name, REGIONS),
                ndim=2,
                edge_color="yellow",
                face_color="transparent",
                edge_width=2,
                **place,
            )
        if layers[BACKGROUND] is None:
            layers[BACKGROUND] = self.viewer.add_labels(
                np.zeros(shape, np.uint8),
                name=annotation_name(image.name, BACKGROUND),
                opacity=0.5,
                **place,
            )
        if layers[CELLS] is None:
            layers[CELLS] = self.viewer.add_labels(
                np.zeros(shape, np.uint16), name=annotation_name(image.name, CELLS), **place
            )
        for role, layer in layers.items():
            self.session.pick(image, role, layer)
        self._on_current_image_changed()
        return layers

    def _on_new_cell_clicked(self) -> None:
        self.new_cell()

    def new_cell(self) -> int:
        """Select the cells layer in paint mode with the next free id; returns the id."""
        image = self.current_image()
        cells = self.session.annotation_layer(image, CELLS) if image is not None else None
        if cells is None:
            cells = self.create_layers().get(CELLS)
            if cells is None:
                return 0
        label = next_label(np.asarray(cells.data))
        cells.selected_label = label
        self.viewer.layers.selection.active = cells
        cells.mode = "paint"
        return label

    # -- counts ------------------------------------------------------------------------------
    def schedule_counts(self, *_: Any) -> None:
        """Recount soon (annotation edits arrive as many small events)."""
        if self.session.alive:
            self._counts_timer.start()

    def update_counts(self) -> list[Any]:
        """Fill the table with cells / known / background per ticked image; warn if needed."""
        rows = []
        for image in self.session.training_images:
            try:
                labels, known = read_annotation(self.session, image)
            except ValueError as exc:  # shapes that do not match: shown at training time
                self.warning.setText(str(exc))
                return []
            rows.append((image.name, annotation_counts(labels, known)))
        self.table.setRowCount(len(rows))
        for row, (name, counts) in enumerate(rows):
            values = (name, counts.cells, counts.known_pixels, counts.background_pixels)
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(str(value)))
        if rows and not any(c.cells for _, c in rows):
            self.warning.setText("No cell annotated yet: press New cell and paint one.")
        elif rows and not any(c.has_background for _, c in rows):
            self.warning.setText(NO_BACKGROUND)
        else:
            self.warning.setText("")
        return [c for _, c in rows]
