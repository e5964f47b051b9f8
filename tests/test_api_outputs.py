"""The public API never writes half-way and never replaces a file without being asked."""

import json

import numpy as np
import pytest
import tifffile
import torch

import napari_semiseg.api as api
from napari_semiseg.engine import LoadedModel, TrainConfig, load_checkpoint, save_checkpoint
from napari_semiseg.errors import SemisegInputError
from napari_semiseg.methods import build_method
from napari_semiseg.models import UNetConfig

IMAGE = (np.arange(48 * 48) % 251).reshape(48, 48).astype(np.uint8)
FAST = {
    "model_size": "tiny",
    "steps": 1,
    "patch_size": 32,
    "batch_size": 2,
    "device": "cpu",
    "preview_every": 0,
}


def _model(in_channels=1):
    torch.manual_seed(0)
    config = UNetConfig(base_channels=4, depth=2, dropout=0.0)
    method = build_method("unet", None, config, in_channels, "cpu")
    method.eval()
    return LoadedModel(method, TrainConfig(model=config, device="cpu"), metadata={})


def _images(tmp_path, **later):
    """An image folder whose first file is fine and whose later files are as given."""
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "a_good.tif", IMAGE)
    for name, content in later.items():
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            tifffile.imwrite(folder / name, content)
    return folder


def _written(out):
    return sorted(p.name for p in out.rglob("*")) if out.exists() else []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((12, 48, 48), np.uint8) + IMAGE, "3D stack"),
        (np.full((48, 48), np.nan, np.float32), "NaN"),
        (np.stack([IMAGE, IMAGE.T, IMAGE[::-1]], axis=-1), "3-channel"),
        (b"this is not a TIFF", "cannot read"),
    ],
)
def test_predict_refuses_a_later_bad_image_before_writing(tmp_path, bad, message):
    model = _model(3) if message == "3-channel" else _model()
    if message == "3-channel":  # the first image is RGB, the later one grey
        folder = tmp_path / "images"
        folder.mkdir()
        tifffile.imwrite(folder / "a_good.tif", bad)
        tifffile.imwrite(folder / "z_bad.tif", IMAGE)
    else:
        folder = _images(tmp_path, **{"z_bad.tif": bad})
    out = tmp_path / "masks"
    with pytest.raises(SemisegInputError, match=message.replace("3-", "")) as info:
        api.predict(model, folder, out)
    assert "z_bad.tif" in str(info.value)
    assert not out.exists()


def test_predict_leaves_nothing_when_a_later_image_fails(tmp_path, monkeypatch):
    folder = _images(tmp_path, **{"b.tif": IMAGE, "c.tif": IMAGE})
    out = tmp_path / "masks"
    real = api.segment_array
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) % 3 == 0:
            raise MemoryError("out of memory on the third image")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "segment_array", failing)
    with pytest.raises(MemoryError):
        api.predict(_model(), folder, out)
    assert not out.exists()  # no masks, no staging folder, not even the new folder
    out.mkdir()
    with pytest.raises(MemoryError):
        api.predict(_model(), folder, out)
    assert _written(out) == []  # a folder that was there stays


def test_predict_writes_every_mask_and_no_staging_folder(tmp_path):
    folder = _images(tmp_path, **{"b.tif": IMAGE.T})
    out = tmp_path / "masks"
    masks = api.predict(_model(), folder, out)
    assert _written(out) == ["a_good.tif", "b.tif"]
    np.testing.assert_array_equal(tifffile.imread(out / "b.tif"), masks[1])


def test_predict_refuses_two_images_with_one_output_name(tmp_path):
    from skimage import io as skio

    folder = _images(tmp_path, **{"b.tif": IMAGE})
    skio.imsave(folder / "b.png", IMAGE, check_contrast=False)
    out = tmp_path / "masks"
    with pytest.raises(
        SemisegInputError, match=r"images b\.png and b\.tif would both be written as b\.tif"
    ) as info:
        api.predict(_model(), folder, out)
    assert "b.tif" in str(info.value)
    assert _written(out) == []


def test_predict_tile_size_is_checked_and_rounded(tmp_path):
    with pytest.raises(SemisegInputError, match=r"tile size 3 is too small.*at least 16"):
        api.predict(_model(), IMAGE, tile_size=3)
    mask = api.predict(_model(), IMAGE, tile_size=21)[0]  # rounded up to 24
    assert mask.shape == IMAGE.shape


def _existing(path, content=b"old"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_train_refuses_to_replace_a_model_file(tmp_path, toy_data):
    path = _existing(tmp_path / "model.pt")
    with pytest.raises(SemisegInputError, match="overwrite=True") as info:
        api.train(toy_data, out=path, **FAST)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"old"


def test_train_replaces_when_asked_and_keeps_periodic_checkpoints(tmp_path, toy_data):
    path = _existing(tmp_path / "model.pt")
    api.train(toy_data, out=path, overwrite=True, **FAST)
    assert load_checkpoint(path).metadata["steps"] == 1
    # periodic checkpoints replace their own file during training
    fresh = tmp_path / "periodic.pt"
    result = api.train(toy_data, out=fresh, **{**FAST, "steps": 2}, checkpoint_every=1e-9)
    assert result.checkpoint == str(fresh)
    # continuing a model into its own file is allowed without overwrite
    api.train(toy_data, out=fresh, resume=fresh, **FAST)
    assert load_checkpoint(fresh).metadata["steps"] == 3


def test_save_checkpoint_refuses_when_asked_not_to_overwrite(tmp_path):
    path = _existing(tmp_path / "model.pt")
    model = _model()
    with pytest.raises(SemisegInputError, match="overwrite=True"):
        save_checkpoint(path, model.method, model.train_config, {}, overwrite=False)
    assert path.read_bytes() == b"old"
    save_checkpoint(path, model.method, model.train_config, {})  # the default replaces
    assert load_checkpoint(path).method.name == "unet"


@pytest.mark.parametrize("existing", ["model.pt", "masks/nuclei_b.tif", "report.md"])
def test_run_demo_refuses_any_earlier_output(tmp_path, existing):
    path = _existing(tmp_path / "demo" / existing)
    with pytest.raises(SemisegInputError, match=existing.replace(".", r"\.")):
        api.run_demo(tmp_path / "demo", steps=1, device="cpu")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in (tmp_path / "demo").rglob("*") if p.is_file()) == [path.name]


def test_demo_report_says_device_and_precision(tmp_path):
    api.run_demo(tmp_path / "demo", steps=2, device="cpu")
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["device"] == "cpu"
    assert report["precision"] in ("float32", "bfloat16")
    text = (tmp_path / "demo" / "report.md").read_text()
    assert f"on cpu in {report['precision']}" in text
