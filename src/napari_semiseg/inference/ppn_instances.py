"""Instance masks from position proposals, tile by tile (METHODS.md section 6, inference).

A proposal model gives, for an image tile, the local maxima of its position
score (decoded centres and scores) and each proposal's mask logits inside a
square window around its centre. This module

1. cuts the image into overlapping tiles whose halo holds a whole window plus
   context, and keeps each proposal only from the tile whose central
   (non-overlapping) region contains its centre;
2. merges proposals closer than ``min_distance`` over the whole image (the
   higher score wins);
3. labels each pixel with the proposal of the highest mask logit when that
   logit exceeds the threshold (``argmax_k z_k``, ``max_k m_k > 0.5``);
4. joins touching instances that look like one convex cell cut in pieces.

Every step sees the same numbers whatever the tiling, so a large image gives
the same instances tiled as in one piece.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

from .postprocess import fill_object_holes, join_cut_objects, remove_small_objects
from .proposals import merge_close
from .tiling import TileDone, TilingConfig, plan_tiles


@dataclass
class TileProposals:
    """Proposals found in one tile, in the tile's pixel coordinates.

    Parameters
    ----------
    centres : numpy.ndarray
        ``(N, 2)`` float decoded centres.
    scores : numpy.ndarray
        ``(N,)`` position scores.
    windows : numpy.ndarray
        ``(N, W, W)`` float32 mask logits; window ``k`` starts at
        ``round(centres[k]) - W // 2``.
    foreground : numpy.ndarray, optional
        ``(ty, tx)`` foreground probabilities of the tile, used to tell a
        cell cut in pieces from cells with a gap between them (the join).
    """

    centres: np.ndarray
    scores: np.ndarray
    windows: np.ndarray
    foreground: np.ndarray | None = None


def assemble_instances(
    origins: np.ndarray, windows: np.ndarray, shape: tuple[int, int], threshold: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Label each pixel with the proposal of highest mask logit (argmax over proposals).

    Parameters
    ----------
    origins : numpy.ndarray
        ``(N, 2)`` int top-left pixel of each window (may lie outside).
    windows : numpy.ndarray
        ``(N, W, W)`` mask logits, in priority order (ties go to the first).
    shape : tuple of int
        ``(Y, X)`` of the image.
    threshold : float
        A pixel is a cell when its highest logit exceeds this (0 = probability 0.5).

    Returns
    -------
    labels : numpy.ndarray
        ``(Y, X)`` int32: ``k + 1`` for proposal ``k``, 0 = background.
    best : numpy.ndarray
        ``(Y, X)`` float32 highest logit (``-inf`` where no window reaches).

    Examples
    --------
    >>> w = np.array([[[1.0, 2.0], [-1.0, 3.0]], [[2.0, 0.5], [-2.0, 0.0]]])
    >>> assemble_instances(np.array([[0, 0], [0, 1]]), w, (2, 3))[0]
    array([[1, 1, 2],
           [0, 1, 0]], dtype=int32)
    """
    h, w = shape
    best = np.full(shape, -np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    size = windows.shape[-1] if len(windows) else 0
    for k, ((oy, ox), window) in enumerate(zip(origins, windows, strict=True)):
        y0, x0 = max(int(oy), 0), max(int(ox), 0)
        y1, x1 = min(int(oy) + size, h), min(int(ox) + size, w)
        if y1 <= y0 or x1 <= x0:
            continue
        part = window[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        region = best[y0:y1, x0:x1]
        better = part > region
        region[better] = part[better]
        labels[y0:y1, x0:x1][better] = k + 1
    labels[best <= threshold] = 0
    return labels, best


def keep_largest_fragment(labels: np.ndarray) -> np.ndarray:
    """Keep only the largest connected piece of every instance.

    The argmax over overlapping windows can leave a thin sliver of a mask on
    the far side of a neighbour; such slivers are removed.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Y, X)`` int instance ids.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)``, a copy.

    Examples
    --------
    >>> keep_largest_fragment(np.array([[1, 1, 0, 1]]))
    array([[1, 1, 0, 0]])
    """
    labels = labels.copy()
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == index
        pieces, n = ndi.label(own)
        if n > 1:
            sizes = np.bincount(pieces.ravel())[1:]
            labels[box][own & (pieces != 1 + int(np.argmax(sizes)))] = 0
    return labels


def tile_geometry(
    shape: tuple[int, int], window_radius: int, multiple: int, tiling: TilingConfig | None
) -> tuple[TilingConfig, tuple[int, int]]:
    """Tiling with a halo that holds a whole window, and the stride of the owned regions.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` image size.
    window_radius : int
        Half-width of the mask windows.
    multiple : int
        Tile starts are multiples of this (pooling factor and grid stride).
    tiling : TilingConfig, optional
        Requested tile size and halo (both raised when too small).

    Returns
    -------
    config : TilingConfig
        Effective tiling (no blending).
    strides : tuple of int
        Distance between tile starts along Y and X.
    """
    tiling = tiling or TilingConfig()
    halo = max(tiling.halo, window_radius + 2 * multiple)
    size = max(tiling.tile_size, 2 * halo + 4 * multiple)
    size = -(-size // multiple) * multiple
    config = TilingConfig(tile_size=size, halo=halo, blend=0, batch_size=1)
    _, starts, _ = plan_tiles(shape, config, multiple)
    strides = []
    for axis in range(2):
        values = sorted({s[axis] for s in starts})
        strides.append(values[1] - values[0] if len(values) > 1 else max(shape[axis], 1))
    return config, (strides[0], strides[1])


def segment_from_proposals(
    propose: Callable[[np.ndarray], TileProposals],
    image: np.ndarray,
    window_radius: int,
    multiple: int = 1,
    tiling: TilingConfig | None = None,
    min_distance: float = 0.0,
    threshold: float = 0.0,
    min_area: float = 0.0,
    fill_holes: bool = True,
    border_reach: float = 0.0,
    join_contact: float = 0.0,
    join_convex_contact: float | None = None,
) -> Generator[TileDone, None, tuple[np.ndarray, np.ndarray]]:
    """Instance masks of a whole image from a tile-wise proposal model.

    Parameters
    ----------
    propose : callable
        Maps a tile ``(C, ty, tx)`` float32 to its :class:`TileProposals`
        (all local maxima, not yet merged).
    image : numpy.ndarray
        ``(C, Y, X)`` float32 normalised image.
    window_radius : int
        Half-width of the mask windows (``W = 2 R + 1``).
    multiple : int
        Tile starts are multiples of this.
    tiling : TilingConfig, optional
        Requested tile size and halo.
    min_distance : float
        Proposals closer than this are merged.
    threshold : float
        Mask-logit threshold of a cell pixel.
    min_area : float
        Instances smaller than this are removed.
    fill_holes : bool
        Fill holes inside instances.
    border_reach : float
        Proposals whose centre lies up to this many pixels outside the image
        are kept (owned by the tile of the nearest image pixel): a cell cut
        by the image border, mirrored by the padding, has its centre on the
        border line or just beyond it, and its mask inside.
    join_contact : float
        Touching instances that look like one convex cell cut in pieces are
        joined (:func:`.postprocess.join_cut_objects` with this
        ``min_contact``; 0 = never): two score peaks on one large nucleus.
        When the tiles give a ``foreground`` map, it is stitched from each
        tile's central region and the join uses it.
    join_convex_contact : float, optional
        The join's shorter shared border for a union at least 0.9 convex
        (``convex_contact`` of :func:`.postprocess.join_cut_objects`).

    Yields
    ------
    TileDone
        After every tile.

    Returns
    -------
    instances : numpy.ndarray
        ``(Y, X)`` int32, 1..N.
    foreground : numpy.ndarray
        ``(Y, X)`` float32 highest mask probability.
    """
    height, width = image.shape[1:]
    config, strides = tile_geometry((height, width), window_radius, multiple, tiling)
    tile, starts, padded = plan_tiles((height, width), config, multiple)
    halo = config.halo
    pad = [(0, 0), (halo, padded[0] - height - halo), (halo, padded[1] - width - halo)]
    source = np.pad(image.astype(np.float32, copy=False), pad, mode="symmetric")
    n_tiles = (len({s[0] for s in starts}), len({s[1] for s in starts}))
    centres, scores, windows = [], [], []
    support = None
    for index, (y, x) in enumerate(starts, start=1):
        found = propose(np.ascontiguousarray(source[:, y : y + tile[0], x : x + tile[1]]))
        if found.foreground is not None:
            if support is None:
                support = np.zeros((height, width), np.float32)
            _paste_owned(support, found.foreground, (y, x), strides, n_tiles, halo)
        shifted = found.centres + np.array([y - halo, x - halo], dtype=np.float64)
        pixel = np.round(shifted).astype(np.int64)
        inside = (pixel[:, 0] >= -border_reach) & (pixel[:, 0] < height + border_reach)
        inside &= (pixel[:, 1] >= -border_reach) & (pixel[:, 1] < width + border_reach)
        pixel = np.clip(pixel, 0, [height - 1, width - 1])  # the nearest image pixel
        owner_y = np.minimum(pixel[:, 0] // strides[0], n_tiles[0] - 1) * strides[0]
        owner_x = np.minimum(pixel[:, 1] // strides[1], n_tiles[1] - 1) * strides[1]
        own = inside & (owner_y == y) & (owner_x == x)
        centres.append(shifted[own])
        scores.append(found.scores[own])
        windows.append(found.windows[own])
        yield TileDone(index, len(starts))
    size = 2 * window_radius + 1
    all_centres = np.concatenate(centres) if centres else np.zeros((0, 2))
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_windows = np.concatenate(windows) if windows else np.zeros((0, size, size), np.float32)
    keep = merge_close(all_centres, all_scores, min_distance)
    origins = np.round(all_centres[keep]).astype(np.int64) - window_radius
    labels, best = assemble_instances(origins, all_windows[keep], (height, width), threshold)
    labels = keep_largest_fragment(labels)
    labels = join_cut_objects(
        labels, join_contact, foreground=support, convex_contact=join_convex_contact
    )
    labels = remove_small_objects(labels, min_area)
    if fill_holes:
        labels = fill_object_holes(labels)
    labels, _, _ = relabel_sequential(labels)
    foreground = 1.0 / (1.0 + np.exp(-np.clip(best, -30.0, 30.0)))
    return labels.astype(np.int32), foreground.astype(np.float32)


def _paste_owned(
    target: np.ndarray,
    tile_map: np.ndarray,
    start: tuple[int, int],
    strides: tuple[int, int],
    n_tiles: tuple[int, int],
    halo: int,
) -> None:
    """Copy the part of a tile's map that the tile owns into the whole-image map.

    The tile starting at ``start`` (padded coordinates, the halo first) owns
    the image pixels ``start .. start + stride`` on each axis (the last tile
    the rest of the image), as it owns the proposals whose centres lie there.

    Parameters
    ----------
    target : numpy.ndarray
        ``(Y, X)`` whole-image map, written in place.
    tile_map : numpy.ndarray
        ``(ty, tx)`` map of the tile.
    start : tuple of int
        Tile start in padded coordinates.
    strides, n_tiles : tuple of int
        Tile strides and the number of tiles per axis.
    halo : int
        Halo (padding) in pixels.
    """
    box = []
    for axis in range(2):
        first = start[axis]
        last = strides[axis] * (n_tiles[axis] - 1)
        stop = target.shape[axis] if first >= last else first + strides[axis]
        box.append((first, min(stop, target.shape[axis])))
    (y0, y1), (x0, x1) = box
    off_y, off_x = halo - start[0], halo - start[1]
    target[y0:y1, x0:x1] = tile_map[y0 + off_y : y1 + off_y, x0 + off_x : x1 + off_x]
