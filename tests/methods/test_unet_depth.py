"""The supervised U-Net's optional depth output (``SupervisedConfig.depth_head``)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_semiseg.data.annotations import relative_depth
from napari_semiseg.engine import train
from napari_semiseg.engine.checkpoint import load_checkpoint
from napari_semiseg.inference import run, segment
from napari_semiseg.methods import build_method
from napari_semiseg.methods.supervised import depth_target
from napari_semiseg.models import UNetConfig
from tests._synthetic import disks

TINY = UNetConfig(base_channels=4, depth=2, dropout=0.0)


def _run(generator):
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def test_depth_target_is_the_relative_depth_of_each_patch():
    labels = np.stack([disks((20, 20), ((10, 10),), 6), np.zeros((20, 20), int)])
    target = depth_target(torch.from_numpy(labels).long())
    assert target.shape == (2, 20, 20)
    assert target.dtype == torch.float32
    np.testing.assert_allclose(target[0].numpy(), relative_depth(labels[0]))
    assert float(target[0, 10, 10]) == pytest.approx(1.0)
    assert float(target[1].abs().max()) == 0.0


def test_depth_loss_counts_known_pixels_only():
    method = build_method("unet", {"depth_head": True}, TINY, 1)
    assert method.n_outputs == 4
    labels = torch.from_numpy(disks((32, 32), ((16, 16),), 8)).long()[None]
    known = torch.zeros(1, 32, 32)
    known[:, :, :16] = 1.0
    target = torch.where(known > 0, (labels > 0).long(), torch.full_like(labels, 255))
    image = torch.randn(1, 1, 32, 32, requires_grad=True)
    batch = {"image": image, "labels": labels, "known": known, "target": target,
             "weight": known.clone()}  # fmt: skip
    out = method.training_step(batch, 0)
    assert "depth" in out.terms
    assert np.isfinite(out.terms["depth"])
    # turning the depth term off changes the loss by exactly that term
    plain = build_method("unet", {"depth_head": True, "depth_weight": 0.0}, TINY, 1)
    plain.load_state_dict(method.state_dict())
    rest = plain.training_step(batch, 0).loss
    assert float((out.loss - rest).detach()) == pytest.approx(out.terms["depth"], rel=1e-4)


def test_depth_model_saves_predicts_and_previews(toy_data, tiny_config, tmp_path):
    config = replace(tiny_config, method_config={"depth_head": True})
    path = tmp_path / "depth.pt"
    result = _run(train(toy_data, config, out=path))
    loaded = load_checkpoint(path)
    assert loaded.method.config.depth_head
    assert loaded.method.n_outputs == 4
    seg = run(segment(loaded.method, toy_data.images[1].image, 100.0))
    probs = seg.maps["probabilities"]
    assert probs.shape == (4, *toy_data.images[1].shape)
    np.testing.assert_allclose(probs[:3].sum(0), 1.0, atol=1e-5)
    assert probs[3].min() >= 0.0
    assert probs[3].max() <= 1.0
    x = torch.from_numpy(toy_data.images[0].image[None, :, :48, :48])
    with torch.no_grad():
        maps = result.model.method.preview(x)
    np.testing.assert_array_equal(maps["cell_depth"], maps["probabilities"][3])


@pytest.mark.parametrize("method", ["unet", "mean-teacher"])
def test_the_split_setting_travels_with_the_model(method, toy_data, tiny_config, tmp_path):
    config = replace(
        tiny_config, method=method, method_config={"depth_head": True, "depth_prominence": 0.0}
    )
    _run(train(toy_data, config, out=tmp_path / "m.pt"))
    assert load_checkpoint(tmp_path / "m.pt").postprocess().depth_prominence == 0.0
    # without the depth head the setting has nothing to split and is left out
    plain = build_method(method, {"depth_head": False, "depth_prominence": 0.0}, TINY, 1)
    assert plain.postprocess_settings() == {}
    default = {"unet": 0.3, "mean-teacher": 0.0}[method]
    assert build_method(method, {"depth_head": True}, TINY, 1).postprocess_settings() == {
        "depth_prominence": pytest.approx(default)
    }


@pytest.mark.parametrize(("method", "split"), [("unet", 0.3), ("mean-teacher", 0.0)])
def test_the_depth_head_is_on_by_default_and_older_files_read_without_it(
    method, split, toy_data, tiny_config, tmp_path
):
    config = replace(tiny_config, method=method, method_config={"depth_head": False})
    _run(train(toy_data, config, out=tmp_path / "old.pt"))
    default = build_method(method, {}, TINY, 1)
    assert default.n_outputs == 4
    assert default.postprocess_settings() == {"depth_prominence": pytest.approx(split)}
    # a file written before the depth head existed has neither setting
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    del payload["method_config"]["depth_head"], payload["method_config"]["depth_prominence"]
    torch.save(payload, tmp_path / "older.pt")
    loaded = load_checkpoint(tmp_path / "older.pt").method
    assert not loaded.config.depth_head
    assert loaded.n_outputs == 3
