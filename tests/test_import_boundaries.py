import subprocess
import sys

CORE = [
    "napari_semiseg",
    "napari_semiseg.api",
    "napari_semiseg.cli",
    "napari_semiseg.data",
    "napari_semiseg.models",
    "napari_semiseg.losses",
    "napari_semiseg.methods",
    "napari_semiseg.engine",
    "napari_semiseg.inference",
    "napari_semiseg.io",
    "napari_semiseg.evaluation",
    "napari_semiseg._sample_data",
]
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")


def test_core_never_imports_gui():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {GUI!r})\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_package_import_is_light():
    code = "import sys, napari_semiseg; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
