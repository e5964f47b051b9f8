import pytest
import torch

from napari_semiseg.models import UNet, UNetConfig, build_model
from napari_semiseg.models.unet import valid_output_size


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(32, 32), (37, 50)])
@pytest.mark.parametrize("channels", [1, 3])
def test_same_padding_keeps_any_size(depth, size, channels):
    net = UNet(channels, 3, UNetConfig(base_channels=4, depth=depth)).eval()
    out = net(torch.zeros(2, channels, *size))
    assert out.shape == (2, 3, *size)


def test_valid_padding_matches_paper_arithmetic():
    config = UNetConfig(base_channels=2, depth=4, padding="valid")
    assert valid_output_size(config, 572) == 388
    net = UNet(1, 2, config).eval()
    size = net.input_size_for(36)
    out = net(torch.zeros(1, 1, size, size))
    assert out.shape[-1] == valid_output_size(config, size) >= 36


def test_dropout_sits_at_end_of_contracting_path():
    net = UNet(1, 3, UNetConfig(base_channels=4, depth=2, dropout=0.5))
    dropouts = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Dropout2d)]
    assert dropouts == ["encoder.blocks.2.6"]


def test_registry_and_bad_config():
    assert isinstance(build_model(1, 3), UNet)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model(1, 3, architecture="vit")
    with pytest.raises(ValueError, match="padding"):
        UNetConfig(padding="full")
