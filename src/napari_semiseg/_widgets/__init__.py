"""The napari front end: the only package that imports Qt, napari and magicgui."""

from ._main import SemisegWidget

__all__ = ["SemisegWidget"]
