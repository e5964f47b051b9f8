"""Overlap-tile prediction for images of any size (METHODS.md S11).

The image is mirror-padded by ``halo`` pixels, cut into overlapping tiles whose
starts are multiples of the network's pooling factor, and each tile's output
is blended into the result with a window that is 0 on the ``halo`` band at
the tile's edge (where zero padding inside the network distorts the output),
ramps up linearly over ``blend`` pixels and is 1 in the centre. When ``halo``
covers the network's receptive field the stitched result equals a
whole-image forward pass. Peak memory of the forward pass is bounded by the
tile size; only the output accumulators scale with the image.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from ..errors import SemisegInputError

#: Smallest tile side, in units of the network's pooling factor ``2**depth``.
MIN_TILES_PER_POOLING = 4


@dataclass(frozen=True)
class TilingConfig:
    """How an image is cut into tiles.

    Parameters
    ----------
    tile_size : int
        Side of the tiles fed to the network (before any valid-padding margin).
    halo : int
        Band at each tile edge whose output is discarded.
    blend : int
        Width of the linear blending ramp inside the kept region.
    batch_size : int
        Tiles per forward pass.
    flip_tta : bool
        Average over the 4 flips (test-time augmentation; 4x slower).
    amp : bool
        Run the network in reduced precision where the device has it (bfloat16
        on CPUs with bfloat16 hardware, float16 on CUDA; see
        :func:`~napari_semiseg.models.precision.mixed_precision_dtype`);
        probabilities are float32 either way. A 4096 x 4096 image took 20-22 s
        instead of 34-36 s on a CPU with AMX, and AP50 moved by at most 0.002
        on nine benchmark models. ``ppn-auxnet`` always predicts in float32.
    """

    tile_size: int = 512
    halo: int = 32
    blend: int = 32
    batch_size: int = 1
    flip_tta: bool = False
    amp: bool = True

    def __post_init__(self) -> None:
        if self.halo < 0 or self.blend < 0 or self.batch_size < 1:
            raise SemisegInputError(
                f"tiling halo {self.halo}, blend {self.blend} and batch_size "
                f"{self.batch_size} are out of range",
                "use halo >= 0, blend >= 0 and batch_size >= 1",
            )
        if self.tile_size <= 2 * self.halo + self.blend:
            raise SemisegInputError(
                f"tile_size {self.tile_size} must exceed 2 * halo + blend "
                f"({2 * self.halo + self.blend})",
                "use a larger tile size or a smaller halo and blend",
            )


def min_tile_size(multiple: int = 1) -> int:
    """Smallest tile side accepted by :func:`fit_tiling` for a pooling factor.

    Parameters
    ----------
    multiple : int
        Pooling factor of the network (``2**depth``).

    Returns
    -------
    int
        ``4 * multiple``: with the halo and blend of :func:`fit_tiling` the
        tiles then overlap, so every pixel gets a positive blending weight.

    Examples
    --------
    >>> min_tile_size(16)
    64
    """
    return MIN_TILES_PER_POOLING * int(multiple)


def fit_tiling(
    tile_size: int, multiple: int = 1, flip_tta: bool = False, batch_size: int = 1
) -> TilingConfig:
    """Tiling for a tile side chosen by the user (e.g. ``--tile-size``).

    The side is checked, rounded up to a multiple of the network's pooling
    factor (so every tile sees the pooling grid of the whole image), and the
    halo and blend are ``min(32, side // 8)``.

    Parameters
    ----------
    tile_size : int
        Requested tile side in pixels.
    multiple : int
        Pooling factor of the network (``2**depth``).
    flip_tta : bool
        Average over the 4 flips.
    batch_size : int
        Tiles per forward pass.

    Returns
    -------
    TilingConfig

    Raises
    ------
    SemisegInputError
        If ``tile_size`` is not an integer of at least :func:`min_tile_size`.

    Examples
    --------
    >>> fit_tiling(100, 16).tile_size
    112
    """
    smallest = min_tile_size(multiple)
    if (
        isinstance(tile_size, bool)
        or not isinstance(tile_size, int | np.integer)
        or tile_size < smallest
    ):
        raise SemisegInputError(
            f"tile size {tile_size!r} is too small for this model (its network pools "
            f"{multiple}-fold; tiles need at least {smallest} pixels)",
            f"use a tile size of at least {smallest} pixels, e.g. --tile-size 512 (the default)",
        )
    size = -(-int(tile_size) // multiple) * multiple
    margin = min(32, size // 8)
    return TilingConfig(
        tile_size=size, halo=margin, blend=margin, batch_size=batch_size, flip_tta=flip_tta
    )


@dataclass(frozen=True)
class TileDone:
    """Progress event of tiled prediction: tile ``index`` (1-based) of ``total``."""

    index: int
    total: int


def _ramp(length: int, halo: int, blend: int) -> np.ndarray:
    """1D blending window: 0 on the halo, linear ramp over ``blend``, 1 inside."""
    w = np.ones(length, dtype=np.float32)
    w[:halo] = 0.0
    w[length - halo :] = 0.0
    if blend > 0:
        ramp = np.arange(1, blend + 1, dtype=np.float32) / (blend + 1)
        w[halo : halo + blend] = ramp
        w[length - halo - blend : length - halo] = ramp[::-1]
    return w


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts 0, stride, 2*stride, ... until a tile reaches ``length``."""
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(starts[-1] + stride)
    return starts


def plan_tiles(
    shape: tuple[int, int], config: TilingConfig, multiple: int = 1
) -> tuple[tuple[int, int], list[tuple[int, int]], tuple[int, int]]:
    """Tile positions for an image.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` of the image.
    config : TilingConfig
        Tile size, halo and blend.
    multiple : int
        Tile starts are multiples of this (the network's pooling factor), and
        so are tile sizes when ``config.tile_size`` is (:func:`fit_tiling`
        rounds it up), so every tile sees the same pooling grid as the whole
        image.

    Returns
    -------
    tile : tuple of int
        ``(ty, tx)`` tile size (smaller than ``tile_size`` for small images).
    starts : list of tuple of int
        Top-left corners in the padded image.
    padded : tuple of int
        ``(Py, Px)`` size of the padded image (halo on both sides plus the
        remainder at the end).
    """
    tile = []
    stride = []
    for n in shape:
        needed = n + 2 * config.halo
        t = min(config.tile_size, -(-needed // multiple) * multiple)
        s = max((t - 2 * config.halo - config.blend) // multiple * multiple, multiple)
        tile.append(t)
        stride.append(s)
    ys = _starts(shape[0] + 2 * config.halo, tile[0], stride[0])
    xs = _starts(shape[1] + 2 * config.halo, tile[1], stride[1])
    for starts, t, s in ((ys, tile[0], stride[0]), (xs, tile[1], stride[1])):
        if len(starts) > 1 and s > t - 2 * config.halo:
            raise SemisegInputError(
                f"tiles of {config.tile_size} pixels with a halo of {config.halo} leave gaps "
                f"for a network that pools {multiple}-fold",
                f"use tiles of at least {2 * config.halo + config.blend + multiple} pixels "
                "(or a smaller halo and blend)",
            )
    padded = (ys[-1] + tile[0], xs[-1] + tile[1])
    return (tile[0], tile[1]), [(y, x) for y in ys for x in xs], padded


def _pad(image: np.ndarray, before: int, after: tuple[int, int]) -> np.ndarray:
    pad = [(0, 0)] * (image.ndim - 2) + [(before, after[0]), (before, after[1])]
    return np.pad(image, pad, mode="symmetric")


def predict_tiled(
    predict: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    n_outputs: int,
    config: TilingConfig | None = None,
    multiple: int = 1,
    margin: int = 0,
) -> Generator[TileDone, None, np.ndarray]:
    """Predict an image tile by tile and blend the tiles.

    Parameters
    ----------
    predict : callable
        Maps tiles ``(B, C, ty + 2 margin, tx + 2 margin)`` float32 to outputs
        ``(B, K, ty, tx)`` float32 (probabilities or any per-pixel maps).
    image : numpy.ndarray
        ``(C, Y, X)`` float32.
    n_outputs : int
        K, the number of output channels.
    config : TilingConfig, optional
        Tiling settings.
    multiple : int
        Pooling factor of the network (tile starts are multiples of it).
    margin : int
        Extra context for valid-padding networks (their output is smaller).

    Yields
    ------
    TileDone
        After every batch of tiles.

    Returns
    -------
    numpy.ndarray
        ``(K, Y, X)`` float32 blended outputs.
    """
    config = config or TilingConfig()
    height, width = image.shape[1:]
    tile, starts, padded = plan_tiles((height, width), config, multiple)
    halo = config.halo
    after = (padded[0] - height - halo + margin, padded[1] - width - halo + margin)
    source = _pad(image.astype(np.float32, copy=False), halo + margin, after)
    window = np.outer(_ramp(tile[0], halo, config.blend), _ramp(tile[1], halo, config.blend))
    total = np.zeros((n_outputs, padded[0], padded[1]), dtype=np.float32)
    weight = np.zeros(padded, dtype=np.float32)
    for first in range(0, len(starts), config.batch_size):
        chunk = starts[first : first + config.batch_size]
        batch = np.stack(
            [
                source[:, y : y + tile[0] + 2 * margin, x : x + tile[1] + 2 * margin]
                for y, x in chunk
            ]
        )
        outputs = predict(batch)
        for (y, x), out in zip(chunk, outputs, strict=True):
            total[:, y : y + tile[0], x : x + tile[1]] += out * window
            weight[y : y + tile[0], x : x + tile[1]] += window
        yield TileDone(min(first + config.batch_size, len(starts)), len(starts))
    inner = (slice(halo, halo + height), slice(halo, halo + width))
    result = total[(slice(None), *inner)]
    result /= np.maximum(weight[inner], 1e-6)
    return result
