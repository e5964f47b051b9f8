"""Mixed precision: bfloat16 forward passes on CPUs that have it, float32 losses."""

from dataclasses import dataclass

import pytest
import torch

from napari_semiseg.engine import train
from napari_semiseg.engine.loop import _Trainer
from napari_semiseg.inference import run
from napari_semiseg.methods import METHODS
from napari_semiseg.models import precision as device_module
from napari_semiseg.models.precision import (
    as_float32,
    autocast,
    float32_outputs,
    mixed_precision_dtype,
)

CPU = torch.device("cpu")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend this CPU has bfloat16 hardware (the path then runs anywhere, emulated)."""
    monkeypatch.setattr(device_module, "cpu_bfloat16_supported", lambda: True)


@pytest.fixture
def plain_cpu(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_bfloat16_supported", lambda: False)


def test_precision_per_device(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_bfloat16_supported", lambda: True)
    assert mixed_precision_dtype(CPU, True) is torch.bfloat16
    assert mixed_precision_dtype(CPU, False) is None
    assert mixed_precision_dtype(torch.device("cuda"), True) is torch.float16
    assert mixed_precision_dtype(torch.device("mps"), True) is None
    monkeypatch.setattr(device_module, "cpu_bfloat16_supported", lambda: False)
    assert mixed_precision_dtype(CPU, True) is None  # emulated bfloat16 would be slower


def test_hardware_probe_answers_a_bool():
    assert isinstance(device_module.cpu_bfloat16_supported(), bool)


@dataclass
class _Out:
    a: torch.Tensor
    n: int


def test_as_float32_casts_nested_outputs_only_where_reduced():
    half = torch.ones(2, dtype=torch.bfloat16)
    ints = torch.ones(2, dtype=torch.int64)
    double = torch.ones(2, dtype=torch.float64)
    out = as_float32({"x": [half, (half, ints)], "d": double, "o": _Out(half, 3), "s": "keep"})
    assert out["x"][0].dtype == torch.float32
    assert out["x"][1][0].dtype == torch.float32
    assert out["x"][1][1].dtype == torch.int64
    assert out["d"].dtype == torch.float64
    assert out["o"].a.dtype == torch.float32
    assert out["o"].n == 3
    assert out["s"] == "keep"


def test_network_outputs_are_float32_under_autocast(bf16_cpu):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    x = torch.randn(1, 1, 8, 8)
    with autocast(CPU, True):
        assert net(x).dtype == torch.bfloat16  # what autocast alone gives
    float32_outputs(net)
    float32_outputs(net)  # idempotent: one hook
    assert len(net._forward_hooks) == 1
    with autocast(CPU, True):
        y = net(x)
    assert y.dtype == torch.float32
    # bfloat16 keeps about 3 significant digits
    torch.testing.assert_close(y, net(x), rtol=0.02, atol=0.02)


def test_trainer_precision_follows_config_and_hardware(toy_data, tiny_config, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_bfloat16_supported", lambda: True)
    trainer = _Trainer(toy_data, tiny_config, None)
    assert trainer.precision is torch.bfloat16
    assert not trainer.scaler.is_enabled()  # no loss scaling for bfloat16
    assert _Trainer(toy_data, tiny_config.replace(amp=False), None).precision is None
    monkeypatch.setattr(device_module, "cpu_bfloat16_supported", lambda: False)
    assert _Trainer(toy_data, tiny_config, None).precision is None


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_in_bfloat16(method, toy_data, tiny_config, bf16_cpu):
    config = tiny_config.replace(method=method, steps=4, seed=1, preview_every=1e-9)
    result = run(train(toy_data, config))
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 4
    assert all(torch.isfinite(torch.tensor(v)) for v in losses)
    assert result.model.train_config.amp is True


def test_bfloat16_training_stays_close_to_float32(toy_data, tiny_config, monkeypatch):
    """Same seed, same batches: the first losses agree to bfloat16's precision."""
    config = tiny_config.replace(steps=3, seed=2)
    monkeypatch.setattr(device_module, "cpu_bfloat16_supported", lambda: False)
    full = [h["loss"] for h in run(train(toy_data, config)).history]
    monkeypatch.setattr(device_module, "cpu_bfloat16_supported", lambda: True)
    mixed = [h["loss"] for h in run(train(toy_data, config)).history]
    assert full != mixed  # the reduced precision did run
    assert mixed[0] == pytest.approx(full[0], rel=0.02)


def test_bfloat16_training_is_reproducible(toy_data, tiny_config, bf16_cpu):
    config = tiny_config.replace(seed=3)
    a = [h["loss"] for h in run(train(toy_data, config)).history]
    b = [h["loss"] for h in run(train(toy_data, config)).history]
    assert a == b


def test_training_started_says_the_precision(toy_data, tiny_config, bf16_cpu):
    from napari_semiseg.engine import TrainingStarted

    first = next(train(toy_data, tiny_config))
    assert isinstance(first, TrainingStarted)
    assert first.precision == "bfloat16"
    assert first.where == "cpu (bfloat16)"
    full = next(train(toy_data, tiny_config.replace(amp=False)))
    assert (full.precision, full.where) == ("float32", "cpu")


def test_prediction_in_bfloat16_stays_close_to_float32(toy_data, tiny_config, bf16_cpu):
    import numpy as np

    from napari_semiseg.inference import TilingConfig
    from napari_semiseg.inference.predict import predict_probabilities

    model = run(train(toy_data, tiny_config.replace(steps=5))).model
    image = toy_data.images[1].image
    maps = {}
    for amp in (False, True):
        tiling = TilingConfig(tile_size=64, halo=8, blend=8, amp=amp)
        maps[amp] = run(predict_probabilities(model.method, image, tiling))
    assert maps[True].dtype == maps[False].dtype == np.float32
    assert not np.array_equal(maps[True], maps[False])  # the reduced precision did run
    np.testing.assert_allclose(maps[True], maps[False], atol=0.03)
    np.testing.assert_allclose(maps[True][:3].sum(0), 1.0, atol=1e-5)
