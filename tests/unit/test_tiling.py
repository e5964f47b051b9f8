import numpy as np
import pytest
import torch

from napari_semiseg.inference import TilingConfig, predict_tiled, run
from napari_semiseg.inference.tiling import plan_tiles
from napari_semiseg.models import UNet, UNetConfig


def _net():
    torch.manual_seed(0)
    return UNet(1, 3, UNetConfig(base_channels=4, depth=2, dropout=0.0)).eval()


def _forward(net):
    def f(batch):
        with torch.no_grad():
            return net(torch.from_numpy(batch)).numpy()

    return f


def test_tile_and_stitch_equals_whole_image_forward():
    net = _net()
    image = np.random.default_rng(0).random((1, 120, 88)).astype(np.float32)
    config = TilingConfig(tile_size=96, halo=32, blend=8)  # halo > receptive radius (~22)
    _, starts, _ = plan_tiles(image.shape[1:], config, multiple=4)
    assert len(starts) > 1
    tiled = run(predict_tiled(_forward(net), image, 3, config, multiple=4))
    padded = np.pad(image, [(0, 0), (32, 32), (32, 32)], mode="symmetric")
    whole = _forward(net)(padded[None])[0][:, 32:-32, 32:-32]
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_default_tiling_close_to_whole_image():
    net = _net()
    image = np.random.default_rng(1).random((1, 300, 260)).astype(np.float32)
    tiled = run(predict_tiled(_forward(net), image, 3, TilingConfig(128, 16, 16), multiple=4))
    padded = np.pad(image, [(0, 0), (16, 16), (16, 16)], mode="symmetric")
    whole = _forward(net)(padded[None])[0][:, 16:-16, 16:-16]
    assert np.mean(np.abs(tiled - whole)) < 0.05 * np.mean(np.abs(whole))


def test_tiles_report_progress_and_cover_small_images():
    image = np.ones((1, 20, 30), np.float32)
    events = []
    gen = predict_tiled(lambda b: b[:, :1].repeat(2, 1), image, 2, TilingConfig(64, 8, 8))
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            out = stop.value
            break
    assert out.shape == (2, 20, 30)
    assert np.allclose(out, 1.0)
    assert events[-1].index == events[-1].total


def test_bad_tiling_refused():
    with pytest.raises(ValueError, match="tile_size"):
        TilingConfig(tile_size=64, halo=32, blend=8)
