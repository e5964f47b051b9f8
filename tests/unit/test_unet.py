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


def test_cpu_networks_run_channels_last_with_the_same_results():
    from napari_semiseg.methods import build_method
    from napari_semiseg.models.layout import place_network

    torch.manual_seed(0)
    plain = UNet(2, 3, UNetConfig(base_channels=4, depth=2)).eval()
    fast = place_network(UNet(2, 3, UNetConfig(base_channels=4, depth=2)), "cpu").eval()
    fast.load_state_dict(plain.state_dict())  # copies keep the channels-last layout
    weight = fast.encoder.blocks[0][0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    x = torch.randn(2, 2, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)

    method = build_method("unet", None, UNetConfig(base_channels=4, depth=2), 1, "cpu")
    net = next(iter(method.networks().values()))
    assert net.encoder.blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    # saved weights are in torch's default layout, whatever the device ran
    assert all(t.is_contiguous() for s in method.state_dict().values() for t in s.values())
