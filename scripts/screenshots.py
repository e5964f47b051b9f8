"""Screenshots of the plugin in use, taken from the real napari viewer.

Opens the bundled sample, then walks through the label -> train -> predict ->
export loop with the dock widget and saves one window screenshot per step to
``docs/images/`` (used by ``docs/user_guide.md`` and the README)::

    xvfb-run -a python scripts/screenshots.py            # ~1-2 min on a laptop CPU
    xvfb-run -a python scripts/screenshots.py --seconds 20 --out /tmp/shots
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    parser.add_argument("--model-size", default="small")
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    return parser.parse_args(argv)


def settle(app, seconds: float = 0.5) -> None:
    """Let Qt process events (paints, timers) for a while."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def shoot(viewer, app, path: Path) -> None:
    settle(app)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def annotate_step(viewer, widget, app, out: Path) -> None:
    widget.tabs.setCurrentIndex(0)
    widget.annotate.current.setCurrentText("nuclei_a")
    widget.annotate._on_current_image_changed()
    widget.annotate.new_cell()
    widget.annotate.update_counts()
    viewer.scene.camera.center = (60, 90)  # the annotated square of nuclei_a
    viewer.scene.camera.zoom = 3.5
    shoot(viewer, app, out / "annotate.png")


def train_step(viewer, widget, app, out: Path, seconds: float, model_size: str) -> None:
    from napari_semiseg.engine import model_preset

    widget.tabs.setCurrentIndex(1)
    train = widget.train
    train.settings["time_budget"].value = seconds
    train.settings["steps"].value = 2000
    train.settings["preview_every"].value = 5.0
    train.config_overrides = {"model": model_preset(model_size), "device": "cpu"}
    train.start(resume=False)
    while widget.session.busy or train.sync.pending:
        settle(app, 0.2)
    for name in ("nuclei_a regions", "nuclei_a cells"):
        viewer.layers[name].visible = False
    viewer.reset_view()
    viewer.layers.selection.active = viewer.layers["live instances"]
    shoot(viewer, app, out / "train.png")


def predict_step(viewer, widget, app, out: Path) -> None:
    from napari_semiseg._widgets._layers import LIVE_NAMES

    widget.tabs.setCurrentIndex(2)
    for name in LIVE_NAMES.values():
        if name in viewer.layers:
            viewer.layers[name].visible = False
    widget.predict.predict(widget.annotate.session.training_images)
    while widget.session.busy:
        settle(app, 0.2)
    widget.predict.image.setCurrentText("nuclei_b")
    viewer.layers.selection.active = viewer.layers["nuclei_b prediction"]
    viewer.layers["nuclei_b prediction"].mode = "paint"
    shoot(viewer, app, out / "predict.png")


def export_step(viewer, widget, app, out: Path) -> None:
    widget.tabs.setCurrentIndex(3)
    export = widget.export
    folder = Path(tempfile.mkdtemp()) / "masks"
    export.folder.value = folder
    export._on_export_all_clicked()
    export.layer.setCurrentText("nuclei_b prediction")
    shoot(viewer, app, out / "export.png")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_semiseg._widgets import SemisegWidget
    from napari_semiseg._widgets._runner import ThreadRunner

    args.out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="napari-semiseg")
    width, height = (int(v) for v in args.size.split("x"))
    viewer.window._qt_window.resize(width, height)
    viewer.open_sample("napari-semiseg", "nuclei")
    widget = SemisegWidget(viewer, runner=ThreadRunner())
    dock = viewer.window.add_dock_widget(widget, name="Semi-supervised segmentation", area="right")
    viewer.window._qt_window.resizeDocks([dock], [460], Qt.Orientation.Horizontal)
    app = QApplication.instance()
    settle(app, 1.0)
    annotate_step(viewer, widget, app, args.out)
    train_step(viewer, widget, app, args.out, args.seconds, args.model_size)
    predict_step(viewer, widget, app, args.out)
    export_step(viewer, widget, app, args.out)
    viewer.close()


if __name__ == "__main__":
    main()
