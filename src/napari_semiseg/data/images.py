"""Image checks, channel handling and robust intensity normalisation.

Every image that enters training or prediction goes through
:func:`prepare_image`, which turns a 2D grey, 2D multi-channel or RGB(A) array of
any numeric dtype into a float32 array of layout ``(C, Y, X)`` scaled by robust
percentiles. 3D stacks, NaN and constant images are refused with a message that
says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SemisegInputError

#: The largest axis that is taken for channels when no channel axis is given.
MAX_CHANNELS = 4


@dataclass(frozen=True)
class Normalization:
    """Robust per-image, per-channel percentile normalisation.

    ``(x - P_low) / (P_high - P_low)``, computed on each image separately, so a
    model trained on one microscope's gain still works on another's.

    Parameters
    ----------
    low, high : float
        Percentiles mapped to 0 and 1.
    gamma : float
        Power applied after the percentile scaling (``sign(y) * |y| ** gamma``);
        1 leaves the scaling linear, values below 1 lift dim signal (fluorescence
        whose objects range from barely above the background to saturated).
    """

    low: float = 1.0
    high: float = 99.8
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 4.0:
            raise SemisegInputError(
                f"intensity gamma {self.gamma} is out of range",
                "give a value in (0, 4]: 1 keeps intensities linear, 0.5 lifts dim objects",
            )

    def to_dict(self) -> dict[str, float]:
        """Plain dictionary for checkpoints."""
        return {"low": float(self.low), "high": float(self.high), "gamma": float(self.gamma)}


def _channel_axis_guess(shape: tuple[int, ...]) -> int | None:
    """Return the axis that looks like channels in a 3D shape, or None for a stack."""
    last, first = shape[-1], shape[0]
    if last <= MAX_CHANNELS and min(shape[:-1]) > 4 * MAX_CHANNELS:
        return 2
    if first <= MAX_CHANNELS and min(shape[1:]) > 4 * MAX_CHANNELS:
        return 0
    return None


def _constant(channel: np.ndarray) -> bool:
    """Return whether a ``(Y, X)`` channel holds one value (NaN-safe)."""
    finite = channel[np.isfinite(channel)] if channel.dtype.kind == "f" else channel
    return finite.size == 0 or bool(finite.min() == finite.max())


def to_channels_first(
    image: np.ndarray, channel_axis: int | None = None, source: str | None = None
) -> np.ndarray:
    """Bring a 2D image to layout ``(C, Y, X)``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X)`` grey, ``(Y, X, C)`` or ``(C, Y, X)`` multi-channel (RGB and
        RGBA included). A fourth channel is dropped when it is constant (the
        alpha of an RGBA picture); a fourth channel with content is kept.
    channel_axis : int, optional
        Which axis holds channels. Detected when None: an axis of at most 4
        entries next to two large axes. Giving one for a grey image is an error.
    source : str, optional
        File or layer name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``(C, Y, X)``, same dtype as ``image``.

    Raises
    ------
    SemisegInputError
        For 1D arrays, 3D stacks, 4D+ arrays and non-numeric dtypes.
    """
    image = np.asarray(image)
    if image.dtype == bool or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise SemisegInputError(
            f"image has dtype {image.dtype}, not a number type",
            "save the image as an integer or float TIFF",
            source,
        )
    if image.ndim == 2:
        if channel_axis is not None:
            raise SemisegInputError(
                f"channel axis {channel_axis} was given, but the image is grey {image.shape} "
                "and has no channel axis",
                "leave the channel axis out (--channel-axis / channel_axis=None) for grey images",
                source,
            )
        return image[None]
    if image.ndim != 3:
        raise SemisegInputError(
            f"image has {image.ndim} dimensions {image.shape}; napari-semiseg segments 2D images",
            "give a 2D image (Y, X) or a 2D multi-channel image (Y, X, C)",
            source,
        )
    axis = channel_axis if channel_axis is not None else _channel_axis_guess(image.shape)
    if axis is None:
        raise SemisegInputError(
            f"image of shape {image.shape} looks like a 3D stack of {image.shape[0]} slices; "
            "3D segmentation is not supported yet",
            "split the stack into 2D images (one file per slice), or pass the channel axis "
            "(--channel-axis) if it is a multi-channel image",
            source,
        )
    if not -3 <= axis < 3:
        raise SemisegInputError(
            f"channel axis {axis} does not exist in an image of shape {image.shape}",
            "give a channel axis of 0, 1 or 2",
            source,
        )
    image = np.moveaxis(image, axis, 0)
    if image.shape[0] == 4 and _constant(image[3]):  # RGBA with a flat alpha: no signal
        image = image[:3]
    return image


def normalize(
    image: np.ndarray, norm: Normalization | None = None, source: str | None = None
) -> np.ndarray:
    """Scale each channel by robust percentiles.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, Y, X)``, any numeric dtype.
    norm : Normalization, optional
        Percentiles; defaults to 1 and 99.8.
    source : str, optional
        File or layer name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``(C, Y, X)`` float32, mostly in [0, 1].

    Raises
    ------
    SemisegInputError
        If the image holds NaN/inf values or is constant.

    Examples
    --------
    >>> x = np.arange(100, dtype=np.uint8).reshape(1, 10, 10)
    >>> y = normalize(x, Normalization(0, 100))
    >>> float(y.min()), float(y.max())
    (0.0, 1.0)
    """
    norm = norm or Normalization()
    image = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(image)):
        raise SemisegInputError(
            "image contains NaN or infinite values",
            "replace them (e.g. with 0) or re-export the image from the acquisition software",
            source,
        )
    out = np.empty_like(image)
    constant = 0
    for c in range(image.shape[0]):
        channel = image[c]
        low, high = np.percentile(channel, [norm.low, norm.high])
        if high - low <= 1e-8:  # fall back to the full range for very sparse signal
            low, high = float(channel.min()), float(channel.max())
        if high - low <= 1e-8:
            constant += 1
            out[c] = 0.0
            continue
        out[c] = (channel - low) / (high - low)
        if norm.gamma != 1.0:
            out[c] = np.sign(out[c]) * np.abs(out[c]) ** norm.gamma
    if constant == image.shape[0]:
        raise SemisegInputError(
            "image is constant (every pixel has the same value), there is nothing to segment",
            "check the file (a blank or saturated frame?) and leave it out",
            source,
        )
    return out


def prepare_image(
    image: np.ndarray,
    channel_axis: int | None = None,
    norm: Normalization | None = None,
    source: str | None = None,
) -> np.ndarray:
    """Check, reorder and normalise one image for the network.

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X)``, ``(Y, X, C)`` or ``(C, Y, X)``.
    channel_axis : int, optional
        Channel axis; detected when None.
    norm : Normalization, optional
        Percentile normalisation.
    source : str, optional
        File or layer name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``(C, Y, X)`` float32.
    """
    image = to_channels_first(image, channel_axis, source)
    if min(image.shape[1:]) < 8:
        raise SemisegInputError(
            f"image of shape {image.shape[1:]} is too small to segment",
            "give images of at least 8 x 8 pixels",
            source,
        )
    return normalize(image, norm, source)


def spatial_shape(image: np.ndarray, channel_axis: int | None = None) -> tuple[int, int]:
    """Return the ``(Y, X)`` shape of an image as :func:`to_channels_first` reads it.

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X)``, ``(Y, X, C)`` or ``(C, Y, X)``.
    channel_axis : int, optional
        Channel axis; detected when None.

    Returns
    -------
    tuple of int
        ``(Y, X)``.
    """
    shape = to_channels_first(image, channel_axis).shape
    return int(shape[1]), int(shape[2])
