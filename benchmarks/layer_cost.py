"""What creating and updating a napari layer costs on the GUI thread.

Run under a display (``xvfb-run -a python benchmarks/layer_cost.py``). In a
viewer with the sample data and the plugin docked, each row adds a layer (or
changes one) and reports the time of the call itself and of the event
processing right after it (layer list, controls, the first paint). Used to
decide what the live layers can and cannot do within the 150 ms target of
``ui_latency.py``: creation costs the same whatever the data, updates do not.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512, help="side of the layer data")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_semiseg._widgets import SemisegWidget

    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-semiseg", "nuclei")
    viewer.window.add_dock_widget(SemisegWidget(viewer), name="semiseg")
    app = QApplication.instance()

    def settle() -> None:
        for _ in range(15):
            app.processEvents()
            time.sleep(0.02)

    settle()
    rng = np.random.default_rng(0)
    image = rng.random((args.size, args.size), dtype=np.float32)
    labels = rng.integers(0, 30, (args.size, args.size)).astype(np.int32)
    viewer.layers._activate_on_insert = False  # as the live layers are added
    style = {"colormap": "magma", "contrast_limits": (0, 1), "blending": "additive"}
    rows: dict[str, list[tuple[float, float]]] = {}

    def measure(name: str, action) -> None:
        started = time.perf_counter()
        action()
        called = time.perf_counter()
        app.processEvents()
        done = time.perf_counter()
        rows.setdefault(name, []).append(((called - started) * 1e3, (done - called) * 1e3))
        settle()

    tiny = np.zeros((1, 1), np.float32)
    for i in range(args.repeats):
        measure("add image", lambda i=i: viewer.add_image(image, name=f"a{i}", **style))
        measure("add 1 x 1 image", lambda i=i: viewer.add_image(tiny, name=f"b{i}", **style))
        measure("  then set its data", lambda i=i: setattr(viewer.layers[f"b{i}"], "data", image))
        measure(
            "add hidden image",
            lambda i=i: viewer.add_image(image, name=f"c{i}", visible=False, **style),
        )
        measure("  then show it", lambda i=i: setattr(viewer.layers[f"c{i}"], "visible", True))
        measure("add labels", lambda i=i: viewer.add_labels(labels, name=f"l{i}"))
        measure(
            "replace labels data",
            lambda i=i: setattr(viewer.layers[f"l{i}"], "data", (labels + 1) % 30),
        )
    print(f"Layer cost, {args.size} x {args.size} data, {args.repeats} repeats (min-max, ms)\n")
    print("| action | call | events after |")
    print("| --- | --- | --- |")
    for name, values in rows.items():
        call, events = np.array(values).T
        spans = [f"{a.min():.0f}-{a.max():.0f}" for a in (call, events)]
        print(f"| {name} | {spans[0]} | {spans[1]} |")
    viewer.close()


if __name__ == "__main__":
    main()
