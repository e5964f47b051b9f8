"""The napari front end: the only package that imports Qt, napari and magicgui."""
