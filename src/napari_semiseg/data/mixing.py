"""Copy-paste mixing of patches (BCP, METHODS.md S10).

One rectangle ``R`` of ``floor(β H) x floor(β W)`` pixels (β = 2/3) is drawn
at a uniformly random position per iteration and shared over the batch. Here
the mask is 1 inside ``R`` (the BCP code uses the inverse convention).
Images, targets and loss weights are mixed with the same mask, so the label
of every mixed pixel comes from the patch its intensities come from.
"""

from __future__ import annotations

import torch


def copy_paste_box(
    shape: tuple[int, int], ratio: float = 2.0 / 3.0, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """Draw the copy-paste rectangle ``R`` inside a patch.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` of the patch.
    ratio : float
        Side of ``R`` as a fraction β of the patch side (2/3 in BCP).
    generator : torch.Generator, optional
        Random source (the global torch generator when None).

    Returns
    -------
    tuple of int
        ``(y0, x0, y1, x1)``: ``R`` is ``[y0, y1) x [x0, x1)``, with
        ``y1 - y0 = floor(ratio * Y)`` and offsets uniform in
        ``[0, Y - floor(ratio * Y))`` (0 when ``R`` fills the patch).
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], not {ratio}")
    h, w = (max(int(ratio * s), 1) for s in shape)
    y0 = int(torch.randint(max(shape[0] - h, 1), (1,), generator=generator))
    x0 = int(torch.randint(max(shape[1] - w, 1), (1,), generator=generator))
    return y0, x0, y0 + h, x0 + w


def box_mask(
    shape: tuple[int, int], box: tuple[int, int, int, int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Float mask that is 1 inside a rectangle and 0 elsewhere.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)``.
    box : tuple of int
        ``(y0, x0, y1, x1)`` as returned by :func:`copy_paste_box`.
    device : torch.device or str
        Where the mask lives.

    Returns
    -------
    torch.Tensor
        ``(Y, X)`` float32.

    Examples
    --------
    >>> box_mask((3, 4), (1, 1, 3, 3)).int().tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    """
    mask = torch.zeros(shape, dtype=torch.float32, device=device)
    mask[box[0] : box[2], box[1] : box[3]] = 1.0
    return mask


def mix(inside: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Copy-paste ``M ⊙ inside + (1 − M) ⊙ outside`` for images, targets or weights.

    Parameters
    ----------
    inside : torch.Tensor
        ``(B, C, Y, X)`` images or ``(B, Y, X)`` targets/weights; kept where
        ``mask`` is 1.
    outside : torch.Tensor
        Same layout; kept where ``mask`` is 0.
    mask : torch.Tensor
        ``(Y, X)`` binary mask shared over the batch.

    Returns
    -------
    torch.Tensor
        Same layout and dtype as ``inside`` (integer targets are selected,
        never interpolated).
    """
    if inside.shape != outside.shape:
        raise ValueError(f"cannot mix shapes {tuple(inside.shape)} and {tuple(outside.shape)}")
    return torch.where(mask.bool().expand_as(inside), inside, outside)
