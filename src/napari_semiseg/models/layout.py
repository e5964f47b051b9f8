"""Where and in which memory layout a network runs."""

from __future__ import annotations

import torch

from .precision import float32_outputs


def place_network(net: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """Move ``net`` to ``device`` in the memory layout that runs fastest there.

    On the CPU the convolution weights go channels-last (NHWC): oneDNN's
    convolutions then skip a layout conversion per layer. The maths is the same;
    a training step of the ``small`` U-Net (4 x 192 x 192, one thread) takes
    0.79-0.85 s instead of 1.08-1.11 s, a 512 x 512 forward pass 0.51 s instead
    of 0.75 s. Other devices keep torch's default layout. The network also
    returns float32 under mixed precision (:func:`.precision.float32_outputs`).

    Parameters
    ----------
    net : torch.nn.Module
        Network to move (in place).
    device : torch.device or str
        Target device.

    Returns
    -------
    torch.nn.Module
        ``net``.
    """
    float32_outputs(net)  # float32 outputs when it runs under autocast
    device = torch.device(device)
    if device.type == "cpu":
        return net.to(device, memory_format=torch.channels_last)
    return net.to(device)
