"""File input/output: images in, TIFF instance masks out (never half-written)."""

from ._files import atomic_write
from .tiff import (
    existing_outputs,
    labels_dtype,
    list_images,
    match_by_name,
    read_image,
    write_labels,
    write_tiff,
)

__all__ = [
    "atomic_write",
    "existing_outputs",
    "labels_dtype",
    "list_images",
    "match_by_name",
    "read_image",
    "write_labels",
    "write_tiff",
]
