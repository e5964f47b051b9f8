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


def test_flip_averaging_makes_the_prediction_flip_equivariant():
    from napari_semiseg.inference.predict import predict_probabilities
    from napari_semiseg.methods import build_method

    torch.manual_seed(0)
    method = build_method("unet", None, UNetConfig(base_channels=4, depth=2), 1, "cpu")
    image = np.random.default_rng(0).random((1, 64, 64), dtype=np.float32)
    # one tile covering the image: the tile layout itself is then flip-symmetric
    tta = TilingConfig(tile_size=64, halo=0, blend=0, flip_tta=True)
    plain = TilingConfig(tile_size=64, halo=0, blend=0)
    probs = run(predict_probabilities(method, image, tta))
    flipped = run(predict_probabilities(method, np.ascontiguousarray(image[..., ::-1]), tta))
    np.testing.assert_allclose(flipped[..., ::-1], probs, atol=1e-5)
    np.testing.assert_allclose(probs[:3].sum(0), 1.0, atol=1e-5)  # classes, then depth
    assert probs.shape == (4, 64, 64)
    # without the averaging an untrained net is not equivariant: the check can fail
    raw = run(predict_probabilities(method, image, plain))
    raw_flipped = run(predict_probabilities(method, np.ascontiguousarray(image[..., ::-1]), plain))
    assert np.abs(raw_flipped[..., ::-1] - raw).max() > 1e-4


def test_proposal_methods_refuse_flip_averaging():
    from napari_semiseg.errors import SemisegInputError
    from napari_semiseg.inference.predict import segment
    from napari_semiseg.methods import build_method

    method = build_method("ppn-auxnet", None, UNetConfig(base_channels=4, depth=2), 1, "cpu")
    image = np.zeros((1, 64, 64), np.float32)
    with pytest.raises(SemisegInputError, match="flip averaging"):
        run(
            segment(
                method, image, 50.0, TilingConfig(tile_size=64, halo=8, blend=8, flip_tta=True)
            )
        )
