"""In-memory training data: normalised images with their sparse annotations.

A :class:`TrainingData` holds every image the user gave, annotated or not.
Annotated images carry instance labels, the known-pixel mask, the 3-class
target and the U-Net weight map; the others form the unlabelled pool that the
semi-supervised methods learn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import SemisegInputError
from .annotations import (
    BACKGROUND,
    IGNORE,
    cell_areas,
    cell_inradii,
    check_labels,
    known_mask,
    object_contrast,
    ring_width,
    semantic_target,
)
from .images import Normalization, prepare_image
from .weights import unet_weight_map


@dataclass
class TrainingImage:
    """One image with its (possibly absent) sparse annotation.

    Parameters
    ----------
    name : str
        File or layer name.
    image : numpy.ndarray
        ``(C, Y, X)`` float32, normalised.
    labels : numpy.ndarray, optional
        ``(Y, X)`` int32 instance ids, 0 = no annotated cell.
    known : numpy.ndarray, optional
        ``(Y, X)`` bool known-pixel mask.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray | None = None
    known: np.ndarray | None = None
    target: np.ndarray | None = field(default=None, repr=False)
    weight: np.ndarray | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(Y, X)`` of the image."""
        return int(self.image.shape[1]), int(self.image.shape[2])

    @property
    def is_annotated(self) -> bool:
        """Whether any pixel of this image has a known class."""
        return self.known is not None and bool(self.known.any())

    @property
    def n_cells(self) -> int:
        """Number of annotated cells."""
        return 0 if self.labels is None else len(cell_areas(self.labels))

    @property
    def n_known(self) -> int:
        """Number of known pixels."""
        return 0 if self.known is None else int(self.known.sum())


class TrainingData:
    """Images for training, annotated and unannotated.

    Parameters
    ----------
    images : sequence of TrainingImage
        Normalised images; those with labels are annotated.
    w0, sigma : float
        U-Net weight map parameters (METHODS.md S2).
    normalization : Normalization, optional
        How the images were normalised (stored with the model).

    Raises
    ------
    SemisegInputError
        When no cell is annotated, when no pixel is known to be background,
        or when images have different channel counts.
    """

    def __init__(
        self,
        images: Sequence[TrainingImage],
        w0: float = 10.0,
        sigma: float = 5.0,
        normalization: Normalization | None = None,
    ) -> None:
        self.images = list(images)
        self.normalization = normalization or Normalization()
        self.w0, self.sigma = w0, sigma
        self.core_depth = 0.0
        if not self.images:
            raise SemisegInputError("no images were given", "give at least one image")
        channels = {im.image.shape[0] for im in self.images}
        if len(channels) > 1:
            raise SemisegInputError(
                f"images have different numbers of channels {sorted(channels)}",
                "train on images of one kind (all grey or all RGB)",
            )
        for im in self.images:
            if im.labels is not None and im.known is not None:
                im.target = semantic_target(im.labels, im.known, self.core_depth)
        self._compute_weights()
        self._validate()

    def _compute_weights(self) -> None:
        for im in self.images:
            if im.target is not None:
                im.weight = unet_weight_map(im.labels, im.target, self.w0, self.sigma)

    def set_weight_map_parameters(self, w0: float, sigma: float, core_depth: float = 0.0) -> None:
        """Recompute the targets and U-Net weight maps if a parameter changed.

        Parameters
        ----------
        w0, sigma : float
            Weight map parameters (METHODS.md S2).
        core_depth : float
            Interior class = cell cores (see :func:`semantic_target`); 0 = thin borders.
        """
        if (w0, sigma, core_depth) == (self.w0, self.sigma, self.core_depth):
            return
        if core_depth != self.core_depth:
            for im in self.images:
                if im.labels is not None and im.known is not None:
                    im.target = semantic_target(im.labels, im.known, core_depth)
        self.w0, self.sigma, self.core_depth = w0, sigma, core_depth
        self._compute_weights()

    def _validate(self) -> None:
        if not any(im.n_cells for im in self.images):
            raise SemisegInputError(
                "no annotated cells: every labels image is empty",
                "annotate at least one cell (label ids 1, 2, ...) in one image",
            )
        if not any(
            im.target is not None and np.any(im.target == BACKGROUND) for im in self.images
        ):
            raise SemisegInputError(
                "no pixel is known to be background (only cells are annotated and the "
                "known-pixel mask covers nothing else)",
                "mark some background (a scribble or an exhaustively annotated rectangle), "
                "or give no mask so that every unlabelled pixel counts as background",
            )

    @classmethod
    def from_arrays(
        cls,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray | None] | None = None,
        masks: Sequence[np.ndarray | None] | None = None,
        names: Sequence[str] | None = None,
        channel_axis: int | None = None,
        norm: Normalization | None = None,
        w0: float = 10.0,
        sigma: float = 5.0,
    ) -> TrainingData:
        """Build training data from raw arrays.

        Parameters
        ----------
        images : sequence of numpy.ndarray
            ``(Y, X)`` or ``(Y, X, C)`` / ``(C, Y, X)`` raw images.
        labels : sequence of numpy.ndarray or None, optional
            ``(Y, X)`` instance ids per image; None = not annotated.
        masks : sequence of numpy.ndarray or None, optional
            ``(Y, X)`` known-pixel masks; None = the labels are exhaustive.
        names : sequence of str, optional
            Names used in messages.
        channel_axis : int, optional
            Channel axis of the raw images; detected when None.
        norm : Normalization, optional
            Intensity normalisation.
        w0, sigma : float
            Weight map parameters.

        Returns
        -------
        TrainingData
        """
        n = len(images)
        labels = list(labels) if labels is not None else [None] * n
        masks = list(masks) if masks is not None else [None] * n
        names = list(names) if names is not None else [f"image {i}" for i in range(n)]
        if not len(labels) == len(masks) == len(names) == n:
            raise SemisegInputError(
                "the numbers of images, labels, masks and names differ",
                "give one entry per image (None where there is none)",
            )
        items = []
        for raw, lab, mask, name in zip(images, labels, masks, names, strict=True):
            image = prepare_image(raw, channel_axis, norm, source=name)
            if lab is None and mask is not None:
                raise SemisegInputError(
                    "a known-pixel mask was given without labels",
                    "give a labels image for it (it may be all zero: then the mask marks "
                    "background), or remove the mask",
                    name,
                )
            if lab is None:
                items.append(TrainingImage(name, image))
                continue
            lab = check_labels(lab, image.shape[1:], source=name)
            known = known_mask(lab, mask, source=name)
            items.append(TrainingImage(name, image, lab, known))
        return cls(items, w0=w0, sigma=sigma, normalization=norm)

    @property
    def in_channels(self) -> int:
        """Number of image channels."""
        return int(self.images[0].image.shape[0])

    @property
    def annotated(self) -> list[TrainingImage]:
        """Images with at least one known pixel."""
        return [im for im in self.images if im.is_annotated]

    @property
    def has_unlabelled(self) -> bool:
        """Whether any pixel anywhere is unknown (the pool semi-supervised methods use)."""
        return any(im.known is None or not im.known.all() for im in self.images)

    def median_cell_area(self) -> float:
        """Median area of the annotated cells in pixels."""
        areas = np.concatenate(
            [cell_areas(im.labels) for im in self.images if im.labels is not None]
        )
        return float(np.median(areas)) if areas.size else 0.0

    def median_cell_inradius(self) -> float:
        """Median inscribed radius of the annotated cells in pixels (see ``cell_inradii``)."""
        radii = np.concatenate(
            [cell_inradii(im.labels) for im in self.images if im.labels is not None] or [[]]
        )
        return float(np.median(radii)) if radii.size else 0.0

    def annotated_contrast(self) -> list[float] | None:
        """Median contrast of the annotated cells to the known background around them.

        Each annotated cell's mean intensity minus that of the known background
        pixels within :func:`~napari_semiseg.data.annotations.ring_width` of it
        (:func:`~napari_semiseg.data.annotations.object_contrast`), per channel;
        the median over cells. The reference of the post-processing's
        ``min_contrast`` filter.

        Returns
        -------
        list of float or None
            ``C`` values, or None when no annotated cell has known background
            around it.
        """
        values = self._cell_contrasts()
        if values.shape[0] == 0:
            return None
        return [float(v) for v in np.median(values, 0)]

    def _cell_contrasts(self) -> np.ndarray:
        """``(N, C)`` contrast of each annotated cell to the known background around it."""
        width = ring_width(self.median_cell_area())
        rows = []
        for im in self.annotated:
            if im.target is None:
                continue
            _, contrast = object_contrast(im.image, im.labels, width, im.target == BACKGROUND)
            rows.append(contrast[np.isfinite(contrast).all(1)])
        return np.concatenate(rows) if rows else np.zeros((0, 1))

    def dimmest_cell_contrast(self) -> float:
        """Contrast of the dimmest annotated cell as a fraction of the median one.

        Each cell's contrast to the known background around it (as in
        :meth:`annotated_contrast`) is projected on the direction of the
        median contrast and divided by its length: 1 = every annotated cell
        stands out as much as the typical one; 0.1 = the annotation holds a
        cell ten times fainter (the few-label square of the CTC set: 0.11;
        that of DSB fluorescence: 0.69). Methods read it to decide whether
        dimmed training patches would show the network anything fainter than
        the annotation already does (:meth:`.methods.base.Method.augment_for_data`).

        Returns
        -------
        float
            NaN without annotated cells that have known background around them
            or when their median contrast is about 0.
        """
        values = self._cell_contrasts()
        if values.shape[0] == 0:
            return float("nan")
        reference = np.median(values, 0)
        length = float(np.linalg.norm(reference))
        if length < 1e-6:
            return float("nan")
        return float(np.min(values @ (reference / length)) / length)

    def intensity_levels(self, stride: int = 4) -> dict[str, float]:
        """Typical normalised intensities (mean over channels): image, background, cells.

        ``image_level`` is the median over images of each image's median pixel
        (every ``stride``-th pixel per axis): near 0 for fluorescence, where
        most of an image is dark background. ``background_level`` and
        ``cell_level`` are the medians over the pixels known to be background
        and over the annotated cells' pixels. NaN where there are none.

        Parameters
        ----------
        stride : int
            Subsampling of the images for ``image_level``.

        Returns
        -------
        dict
            ``image_level``, ``background_level``, ``cell_level`` (floats).
        """
        background, cells = self._known_intensities()

        def median(values: np.ndarray) -> float:
            return float(np.median(values)) if values.size else float("nan")

        return {
            "image_level": self._typical_pixel(stride),
            "background_level": median(background),
            "cell_level": median(cells),
        }

    def _typical_pixel(self, stride: int) -> float:
        """Median over images of each image's median grey value (every ``stride``-th pixel)."""
        return float(
            np.median([np.median(im.image[:, ::stride, ::stride].mean(0)) for im in self.images])
        )

    def _known_intensities(self) -> tuple[np.ndarray, np.ndarray]:
        """Grey values of the pixels known to be background and of the annotated cells."""
        background, cells = [], []
        for im in self.annotated:
            grey = im.image.mean(0)
            if im.target is not None:
                background.append(grey[im.target == BACKGROUND])
            cells.append(grey[im.labels > 0])
        return tuple(np.concatenate(v) if v else np.zeros(0) for v in (background, cells))

    def unseen_intensity(self, stride: int = 4) -> dict[str, float] | None:
        """Whether most pixels look like neither the known background nor the cells.

        The network learns background from the pixels known to be background
        and cells from the annotated cells. When the typical pixel of the
        images (``image_level`` of :meth:`intensity_levels`) lies outside the
        2-98 % intensity range of both, it has never been shown what most of
        the images look like, and what it calls them is arbitrary: on the DSB
        brightfield set the annotated square holds a dense cluster whose
        background is dark (0.02-0.79 normalised, 2-98 %) while the empty background
        everywhere else is at 0.93; few-label networks call up to 73 % of
        those pixels cell border, and a mean-teacher run can turn them into
        cells (``docs/benchmarks.md``).

        Parameters
        ----------
        stride : int
            Subsampling of the images for the typical pixel.

        Returns
        -------
        dict or None
            ``image_level`` and the ranges ``background_low``/``background_high``
            and ``cell_low``/``cell_high`` when the typical pixel is outside
            both ranges; None when it is inside one (or nothing is known).
        """
        background_values, cell_values = self._known_intensities()
        if not background_values.size or not cell_values.size:
            return None
        level = self._typical_pixel(stride)
        ranges = {}
        for name, values in (("background", background_values), ("cell", cell_values)):
            low, high = np.percentile(values, [2, 98])
            if low <= level <= high:
                return None
            ranges[f"{name}_low"], ranges[f"{name}_high"] = float(low), float(high)
        return {"image_level": level, **ranges}

    def advice(self) -> list[str]:
        """What the annotation does not show the network, as sentences for the user.

        Returns
        -------
        list of str
            Empty when nothing is amiss (see :meth:`unseen_intensity`).
        """
        unseen = self.unseen_intensity()
        if unseen is None:
            return []
        return [
            "most pixels of the images (typical intensity {image_level:.2f} after "
            "normalisation) look like neither the background you marked "
            "({background_low:.2f} to {background_high:.2f}) nor your cells "
            "({cell_low:.2f} to {cell_high:.2f}): the network has not been shown them and "
            "may call them cells. Mark some empty background as known too (annotate a "
            "region with empty background, or add it to the known-pixel mask)".format(**unseen)
        ]

    def summary(self) -> dict[str, int | float | bool]:
        """Counts shown to the user: images, annotated images, cells, known pixels.

        Also the median cell area and inradius, the intensity levels of
        :meth:`intensity_levels` and ``unseen_typical_pixel``
        (:meth:`unseen_intensity`), which methods read in ``settings_for_data``
        and ``on_training_data``.
        """
        known = sum(im.n_known for im in self.images)
        total = sum(im.shape[0] * im.shape[1] for im in self.images)
        background = sum(
            int(np.sum(im.target == BACKGROUND)) for im in self.images if im.target is not None
        )
        return {
            "images": len(self.images),
            "annotated_images": len(self.annotated),
            "cells": sum(im.n_cells for im in self.images),
            "known_pixels": known,
            "background_pixels": background,
            "unknown_pixels": total - known,
            "median_cell_area": self.median_cell_area(),
            "median_cell_inradius": self.median_cell_inradius(),
            **self.intensity_levels(),
            "dimmest_cell_contrast": self.dimmest_cell_contrast(),
            # most pixels look like neither the known background nor the cells
            "unseen_typical_pixel": self.unseen_intensity() is not None,
        }


def unknown_fraction(image: TrainingImage) -> float:
    """Fraction of the image's pixels whose class is unknown.

    Parameters
    ----------
    image : TrainingImage
        One training image.

    Returns
    -------
    float
        1.0 for unannotated images.
    """
    if image.target is None:
        return 1.0
    return float(np.mean(image.target == IGNORE))
