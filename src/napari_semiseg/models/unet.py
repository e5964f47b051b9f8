"""U-Net (Ronneberger et al., MICCAI 2015) with configurable depth and width.

Same padding is the default; valid padding reproduces the paper's arithmetic
(572 -> 388 for depth 4). Dropout sits at the end of the contracting path. The
encoder and decoder are separate modules so that methods with two decoders
(ConfKD) or extra heads (PPN) reuse them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBlock, UpBlock, init_he


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a U-Net.

    Parameters
    ----------
    base_channels : int
        Channels of the first level; doubled at every level (64 in the paper).
    depth : int
        Number of 2x2 poolings (4 in the paper).
    dropout : float
        Dropout at the end of the contracting path (0.5).
    padding : {"same", "valid"}
        Convolution padding.
    norm : {"batch", "group", "instance", "none"}
        Normalisation after each convolution.
    """

    base_channels: int = 32
    depth: int = 4
    dropout: float = 0.5
    padding: str = "same"
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', not {self.padding!r}")
        if not 1 <= self.depth <= 6:
            raise ValueError(f"depth must be between 1 and 6, not {self.depth}")
        if self.base_channels < 1:
            raise ValueError("base_channels must be positive")

    def to_dict(self) -> dict[str, object]:
        """Plain dictionary for checkpoints."""
        return asdict(self)


def valid_output_size(config: UNetConfig, size: int) -> int:
    """Output side of a U-Net for an input side.

    Same padding keeps the size; valid padding loses 4 pixels per block
    (572 -> 388 for depth 4).

    Parameters
    ----------
    config : UNetConfig
        Architecture.
    size : int
        Input side in pixels.

    Returns
    -------
    int
        Output side.

    Raises
    ------
    ValueError
        If a pooling would see an odd size or nothing is left.

    Examples
    --------
    >>> valid_output_size(UNetConfig(padding="valid", depth=4), 572)
    388
    """
    if config.padding == "same":
        return size
    s = size
    for _ in range(config.depth):
        s -= 4
        if s <= 0 or s % 2:
            raise ValueError(f"input side {size} does not fit a valid-padding U-Net")
        s //= 2
    s -= 4
    for _ in range(config.depth):
        s = 2 * s - 4
    if s <= 0:
        raise ValueError(f"input side {size} is too small for this U-Net")
    return s


#: Size presets offered in the GUI and the CLI.
PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(base_channels=8, depth=3),
    "small": UNetConfig(base_channels=16, depth=4),
    "medium": UNetConfig(base_channels=32, depth=4),
    "large": UNetConfig(base_channels=64, depth=4),
}


class UNetEncoder(nn.Module):
    """Contracting path.

    Parameters
    ----------
    in_channels : int
        Image channels.
    config : UNetConfig
        Architecture.

    Notes
    -----
    ``forward(x)`` takes ``(B, C, Y, X)`` and returns the list of ``depth + 1``
    feature maps, finest first; level ``i`` has ``base * 2**i`` channels.
    """

    def __init__(self, in_channels: int, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**i for i in range(config.depth + 1)]
        self.widths = widths
        self.blocks = nn.ModuleList()
        previous = in_channels
        for i, width in enumerate(widths):
            dropout = config.dropout if i == len(widths) - 1 else 0.0
            self.blocks.append(ConvBlock(previous, width, config.padding, config.norm, dropout))
            previous = width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode ``(B, C, Y, X)`` into ``depth + 1`` feature maps."""
        features = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            features.append(x)
        return features


class UNetDecoder(nn.Module):
    """Expanding path.

    Parameters
    ----------
    widths : list of int
        Encoder widths, finest first.
    config : UNetConfig
        Architecture.

    Notes
    -----
    ``forward(features)`` returns the list of decoder maps, coarsest first; the
    last one is at full resolution with ``widths[0]`` channels.
    """

    def __init__(self, widths: list[int], config: UNetConfig) -> None:
        super().__init__()
        self.ups = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], widths[i], config.padding, config.norm)
            for i in reversed(range(len(widths) - 1))
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decode encoder features (finest first) into maps (coarsest first)."""
        x = features[-1]
        outputs = []
        for up, skip in zip(self.ups, reversed(features[:-1]), strict=True):
            x = up(x, skip)
            outputs.append(x)
        return outputs


class UNet(nn.Module):
    """U-Net for semantic segmentation.

    Parameters
    ----------
    in_channels : int
        Image channels C.
    n_classes : int
        Output channels K.
    config : UNetConfig, optional
        Architecture; the "medium" preset when None.

    Notes
    -----
    ``forward(x)`` maps ``(B, C, Y, X)`` to logits ``(B, K, Y', X')``. With same
    padding ``Y' = Y`` for any Y (the input is mirror-padded internally to a
    multiple of ``2**depth`` and cropped back); with valid padding
    ``Y' = output_size(Y)``.
    """

    def __init__(self, in_channels: int, n_classes: int, config: UNetConfig | None = None):
        super().__init__()
        self.config = config or UNetConfig()
        self.in_channels, self.n_classes = in_channels, n_classes
        self.encoder = UNetEncoder(in_channels, self.config)
        self.decoder = UNetDecoder(self.encoder.widths, self.config)
        self.head = nn.Conv2d(self.encoder.widths[0], n_classes, 1)
        init_he(self)

    @property
    def multiple(self) -> int:
        """Input sizes must be a multiple of this (same padding)."""
        return 2**self.config.depth

    def pad_input(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Mirror-pad ``(B, C, Y, X)`` to a multiple of ``2**depth``; return the original size."""
        size = (x.shape[-2], x.shape[-1])
        if self.config.padding != "same":
            return x, size
        m = self.multiple
        py, px = (-size[0]) % m, (-size[1]) % m
        if py or px:
            mode = "reflect" if min(size) > max(py, px) else "replicate"
            x = F.pad(x, (0, px, 0, py), mode=mode)
        return x, size

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder maps (coarsest first) for an already padded input."""
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, Y', X')`` for images ``(B, C, Y, X)``."""
        x, size = self.pad_input(x)
        logits = self.head(self.features(x)[-1])
        if self.config.padding == "same":
            logits = logits[..., : size[0], : size[1]]
        return logits

    def output_size(self, size: int) -> int:
        """Output side for an input side (see :func:`valid_output_size`)."""
        return valid_output_size(self.config, size)

    def input_size_for(self, output: int) -> int:
        """Smallest input side whose output is at least ``output`` pixels.

        Parameters
        ----------
        output : int
            Wanted output side.

        Returns
        -------
        int
            Input side (equal to ``output`` rounded up to a multiple of
            ``2**depth`` for same padding).
        """
        if self.config.padding == "same":
            return -(-output // self.multiple) * self.multiple
        size = output
        while True:
            try:
                if self.output_size(size) >= output:
                    return size
            except ValueError:
                pass
            size += 1
