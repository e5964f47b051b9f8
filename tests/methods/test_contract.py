"""The shared contract every registered method passes (STYLE.md section 5)."""

import numpy as np
import pytest
import torch

from napari_semiseg.data import PatchSampler, SamplerConfig
from napari_semiseg.engine import TrainConfig, train
from napari_semiseg.engine.loop import _to_tensors
from napari_semiseg.methods import METHODS
from napari_semiseg.methods._template import TemplateMethod
from napari_semiseg.models import UNetConfig

# every registered method, plus the documented template (kept working by this test)
CLASSES = {**METHODS, TemplateMethod.name: TemplateMethod}
# settings that change a method's outputs are held to the same contract
CASES = {name: (cls, {}) for name, cls in CLASSES.items()}
CASES["unet-depth_head"] = (METHODS["unet"], {"depth_head": False})
CASES["mean-teacher-depth_head"] = (METHODS["mean-teacher"], {"depth_head": False})

TINY = UNetConfig(base_channels=4, depth=2, dropout=0.0)


def _batch(method, data, seed=0):
    sampler = PatchSampler(data, SamplerConfig(patch_size=32, margin=4))
    rng = np.random.default_rng(seed)
    batch = _to_tensors(sampler.labelled_batch(rng, 2), torch.device("cpu"))
    if method.uses_unlabelled:
        batch.update(
            _to_tensors(sampler.unlabelled_batch(rng, 2), torch.device("cpu"), "unlabelled_")
        )
    return batch


@pytest.fixture(params=sorted(CASES))
def method(request, toy_data, monkeypatch):
    cls, settings = CASES[request.param]
    monkeypatch.setitem(METHODS, cls.name, cls)
    torch.manual_seed(0)
    return cls.build(settings, TINY, toy_data.in_channels, "cpu")


def test_two_steps_give_finite_losses(method, toy_data):
    method.train()
    for step in range(2):
        out = method.training_step(_batch(method, toy_data, step), step)
        assert out.loss.dim() == 0
        assert torch.isfinite(out.loss)
        assert all(np.isfinite(v) for v in out.terms.values())
        out.loss.backward()
        method.after_optimizer_step(step)


def test_predict_shape(method):
    method.eval()
    with torch.no_grad():
        logits = method.predict(torch.zeros(2, 1, 40, 36))
    assert logits.shape == (2, method.n_outputs, 40, 36)
    probs = method.output_probabilities(logits)
    assert probs.shape == logits.shape
    torch.testing.assert_close(probs[:, : method.n_classes].sum(1), torch.ones(2, 40, 36))
    assert float(probs.min()) >= 0
    assert float(probs.max()) <= 1


def test_state_round_trip_keeps_predictions(method, toy_data):
    method.eval()
    x = torch.from_numpy(toy_data.images[0].image[None, :, :48, :48])
    with torch.no_grad():
        before = method.predict(x)
    clone = type(method).build(method.config, TINY, toy_data.in_channels, "cpu")
    clone.load_state_dict(method.state_dict())
    clone.eval()
    with torch.no_grad():
        after = clone.predict(x)
    torch.testing.assert_close(before, after)


def test_preview_maps(method, toy_data):
    method.eval()
    x = torch.from_numpy(toy_data.images[0].image[None, :, :48, :48])
    with torch.no_grad():
        maps = method.preview(x)
    assert maps
    layouts = {"_points": (3,), "_vectors": (2, 2), "_boxes": (4,)}  # engine/events.py
    for name, value in maps.items():
        assert isinstance(value, np.ndarray)
        suffix = next((s for s in layouts if name.endswith(s)), None)
        if suffix is None:
            assert value.shape[-2:] == (48, 48)
        else:
            assert value.ndim == 1 + len(layouts[suffix])
            assert value.shape[1:] == layouts[suffix]


def test_loss_falls_on_toy_task(method, toy_data):
    config = TrainConfig(
        method=method.name,
        method_config=method.config.to_dict(),
        steps=40,
        model=TINY,
        batch_size=4,
        patch_size=32,
        lr=3e-3,
        device="cpu",
        preview_every=0,
        seed=0,
    )
    generator = train(toy_data, config)
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            result = stop.value
            break
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
