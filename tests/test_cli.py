"""End-to-end command line on the bundled sample data, and its bad-input behaviour."""

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_semiseg._sample_data import sample_folders
from napari_semiseg.cli import main

TINY = ["--model-size", "tiny", "--steps", "4", "--patch-size", "48", "--batch-size", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folders = sample_folders()
    out = tmp_path_factory.mktemp("cli") / "model.pt"
    code = main(
        [
            "train",
            "--images",
            str(folders["images"]),
            "--labels",
            str(folders["annotations"]),
            "--masks",
            str(folders["known"]),
            "--out",
            str(out),
            "--device",
            "cpu",
            *TINY,
        ]
    )
    assert code == 0
    return out


def test_train_predict_evaluate(trained, tmp_path, capsys):
    folders = sample_folders()
    masks = tmp_path / "masks"
    assert (
        main(["predict", str(trained), "--images", str(folders["images"]), "--out", str(masks)])
        == 0
    )
    written = sorted(p.name for p in masks.iterdir())
    assert written == ["nuclei_a.tif", "nuclei_b.tif", "nuclei_c.tif"]
    for name in written:
        mask = tifffile.imread(masks / name)
        image = tifffile.imread(folders["images"] / name)
        assert mask.dtype == np.uint16
        assert mask.shape == image.shape
    assert not list(masks.glob("*.part"))
    report = tmp_path / "scores.json"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(masks),
                "--truth",
                str(folders["truth"]),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    scores = json.loads(report.read_text())
    assert 0.0 <= scores["ap50"] <= 1.0
    assert "ap50" in capsys.readouterr().out


def test_predict_with_flip_averaging(trained, tmp_path):
    folders = sample_folders()
    masks = tmp_path / "masks"
    args = ["predict", str(trained), "--images", str(folders["images"]), "--out", str(masks)]
    assert main([*args, "--tta"]) == 0
    for name in ("nuclei_a.tif", "nuclei_b.tif", "nuclei_c.tif"):
        mask = tifffile.imread(masks / name)
        assert mask.shape == tifffile.imread(folders["images"] / name).shape


def test_predict_refuses_to_overwrite(trained, tmp_path, capsys):
    folders = sample_folders()
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "nuclei_b.tif").write_bytes(b"keep me")
    code = main(["predict", str(trained), "--images", str(folders["images"]), "--out", str(masks)])
    assert code == 2
    assert "already exist" in capsys.readouterr().err
    assert (masks / "nuclei_b.tif").read_bytes() == b"keep me"
    assert not (masks / "nuclei_a.tif").exists()  # nothing written half-way


def _folders(tmp_path, image, labels=None, mask=None, name="a.tif"):
    for sub, array in (("images", image), ("labels", labels), ("masks", mask)):
        (tmp_path / sub).mkdir(exist_ok=True)
        if array is not None:
            tifffile.imwrite(tmp_path / sub / name, array)
    return tmp_path


def _train(tmp_path, *extra):
    return main(
        [
            "train",
            "--images",
            str(tmp_path / "images"),
            "--labels",
            str(tmp_path / "labels"),
            "--out",
            str(tmp_path / "m.pt"),
            "--device",
            "cpu",
            *TINY,
            *extra,
        ]
    )


IMAGE = (np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)
LABELS = np.zeros((64, 64), np.uint16)
LABELS[10:20, 10:20] = 1


@pytest.mark.parametrize(
    ("image", "labels", "mask", "message"),
    [
        (IMAGE, LABELS[:60], None, "shape"),
        (IMAGE, LABELS.astype(np.float32), None, "integer instance ids"),
        (IMAGE, np.zeros_like(LABELS), None, "no annotated cells"),
        (np.full((64, 64), 3, np.uint8), LABELS, None, "constant"),
        (np.full((64, 64), np.nan, np.float32), LABELS, None, "NaN"),
        (np.zeros((12, 64, 64), np.uint8) + IMAGE, LABELS, None, "3D stack"),
        (IMAGE, None, LABELS, "without labels"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, image, labels, mask, message):
    _folders(tmp_path, image, labels, mask)
    if mask is not None and labels is None:
        # a mask without labels: the mask file sits where the labels folder is empty
        code = main(
            [
                "train",
                "--images",
                str(tmp_path / "images"),
                "--labels",
                str(tmp_path / "labels"),
                "--masks",
                str(tmp_path / "masks"),
                "--out",
                str(tmp_path / "m.pt"),
                *TINY,
            ]
        )
    else:
        code = _train(tmp_path)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Fix:" in err
    assert not (tmp_path / "m.pt").exists()


def test_missing_folder(tmp_path, capsys):
    assert (
        main(
            [
                "predict",
                str(tmp_path / "m.pt"),
                "--images",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_model_of_another_kind(tmp_path, capsys):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    _folders(tmp_path, IMAGE)
    assert (
        main(
            [
                "predict",
                str(tmp_path / "other.pt"),
                "--images",
                str(tmp_path / "images"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "not a napari-semiseg model" in capsys.readouterr().err


def test_rgb_model_refuses_grey_image(tmp_path, capsys):
    rgb = np.stack([IMAGE, IMAGE[::-1], IMAGE.T], axis=-1)
    _folders(tmp_path, rgb, LABELS)
    assert _train(tmp_path) == 0
    grey = tmp_path / "grey"
    grey.mkdir()
    tifffile.imwrite(grey / "g.tif", IMAGE)
    code = main(
        ["predict", str(tmp_path / "m.pt"), "--images", str(grey), "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert "3-channel" in capsys.readouterr().err


def test_train_refuses_to_overwrite_model(tmp_path, capsys):
    _folders(tmp_path, IMAGE, LABELS)
    (tmp_path / "m.pt").write_bytes(b"old")
    assert _train(tmp_path) == 2
    assert (tmp_path / "m.pt").read_bytes() == b"old"


def test_previews_dumped(tmp_path):
    _folders(tmp_path, IMAGE, LABELS)
    assert _train(tmp_path, "--previews", str(tmp_path / "prev"), "--preview-every", "0.0001") == 0
    names = {p.name.split("_", 2)[-1] for p in (tmp_path / "prev").iterdir()}
    assert {"foreground.tif", "instances.tif", "sample_image.tif"} <= names


def test_gamma_is_saved_used_and_kept_when_resuming(tmp_path, capsys):
    from napari_semiseg.api import segment_array
    from napari_semiseg.engine import load_checkpoint

    _folders(tmp_path, IMAGE, LABELS)
    assert _train(tmp_path, "--gamma", "0.5") == 0
    model = load_checkpoint(tmp_path / "m.pt")
    assert model.normalization.gamma == 0.5
    assert segment_array(model, IMAGE).shape == IMAGE.shape[:2]
    # continuing keeps the model's gamma; asking for another one is refused
    out = ["--out", str(tmp_path / "m2.pt"), "--resume", str(tmp_path / "m.pt")]
    assert _train(tmp_path, *out) == 0
    assert load_checkpoint(tmp_path / "m2.pt").normalization.gamma == 0.5
    capsys.readouterr()
    out[1] = str(tmp_path / "m3.pt")
    assert _train(tmp_path, *out, "--gamma", "1") == 2
    assert "gamma" in capsys.readouterr().err
    assert not (tmp_path / "m3.pt").exists()
    assert _train(tmp_path, "--gamma", "0", "--overwrite") == 2
    assert "out of range" in capsys.readouterr().err


def test_predict_refuses_a_later_bad_image_and_writes_nothing(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", IMAGE)
    tifffile.imwrite(images / "b.tif", np.zeros((12, 64, 64), np.uint8) + IMAGE)
    out = tmp_path / "masks"
    code = main(["predict", str(trained), "--images", str(images), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "b.tif" in err
    assert "3D stack" in err
    assert not out.exists()


@pytest.mark.parametrize("size", ["0", "3", "-8"])
def test_predict_refuses_a_bad_tile_size(trained, tmp_path, capsys, size):
    folders = sample_folders()
    out = tmp_path / "masks"
    args = ["predict", str(trained), "--images", str(folders["images"]), "--out", str(out)]
    assert main([*args, "--tile-size", size]) == 2
    err = capsys.readouterr().err.strip()
    assert f"tile size {size} is too small" in err
    assert "Fix: use a tile size of at least" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def _score_folders(tmp_path):
    for sub in ("pred", "truth"):
        (tmp_path / sub).mkdir()
        tifffile.imwrite(tmp_path / sub / "a.tif", LABELS)
    return ["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]


def test_evaluate_with_no_predictions_says_so(tmp_path, capsys):
    args = _score_folders(tmp_path)
    (tmp_path / "empty").mkdir()
    args[2] = str(tmp_path / "empty")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"no predictions found in {tmp_path / 'empty'}" in err
    assert "ground truth" not in err


def test_evaluate_json_is_never_replaced_unasked(tmp_path, capsys):
    args = _score_folders(tmp_path)
    report = tmp_path / "scores.json"
    report.write_text("old")
    assert main([*args, "--json", str(report)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert report.read_text() == "old"
    assert main([*args, "--json", str(report), "--overwrite"]) == 0
    assert json.loads(report.read_text())["ap50"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred", "scores.json", "truth"]


def test_evaluate_json_in_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    args = _score_folders(tmp_path)
    target = tmp_path / "nowhere" / "scores.json"
    assert main([*args, "--json", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err
    assert len(err.splitlines()) == 1
    assert "Fix:" in err
    assert not target.parent.exists()


def test_resume_warns_that_method_and_size_of_the_checkpoint_are_used(tmp_path, capsys):
    from napari_semiseg.engine import load_checkpoint

    _folders(tmp_path, IMAGE, LABELS)
    assert _train(tmp_path) == 0  # unet, tiny
    capsys.readouterr()
    resume = ["--resume", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m2.pt")]
    assert _train(tmp_path, *resume, "--method", "mean-teacher", "--model-size", "large") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "--method mean-teacher and --model-size large ignored with --resume" in warnings[0]
    assert "method unet and architecture (tiny)" in warnings[0]
    assert load_checkpoint(tmp_path / "m2.pt").method.name == "unet"
    # the same method and size as the checkpoint: nothing to warn about
    resume[-1] = str(tmp_path / "m3.pt")
    assert _train(tmp_path, *resume, "--method", "unet") == 0
    assert "warning" not in capsys.readouterr().err
    # the network learnt one kind of interior: a resumed run keeps it
    resume[-1] = str(tmp_path / "m4.pt")
    assert _train(tmp_path, *resume, "--core-depth", "0.5") == 0
    assert "--core-depth 0.5 ignored with --resume" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "m4.pt").train_config.core_depth == 0.0


def test_core_depth_is_stored_with_the_model(tmp_path):
    from napari_semiseg.engine import load_checkpoint

    _folders(tmp_path, IMAGE, LABELS)
    assert _train(tmp_path, "--core-depth", "0.4") == 0
    assert load_checkpoint(tmp_path / "m.pt").postprocess().core_depth == 0.4


def test_float32_flag_turns_mixed_precision_off(tmp_path):
    from napari_semiseg.engine import load_checkpoint

    folders = sample_folders()
    common = ["--images", str(folders["images"]), "--labels", str(folders["annotations"])]
    common += ["--device", "cpu", *TINY]
    for flag, expected in ((["--float32"], False), ([], True)):
        out = tmp_path / f"m{len(flag)}.pt"
        assert main(["train", *common, "--out", str(out), *flag]) == 0
        assert load_checkpoint(out).train_config.amp is expected


def test_predict_float32_flag(trained, tmp_path):
    folders = sample_folders()
    masks = {}
    for flag in ([], ["--float32"]):
        out = tmp_path / f"masks{len(flag)}"
        args = ["predict", str(trained), "--images", str(folders["images"]), "--out", str(out)]
        assert main([*args, *flag]) == 0
        masks[len(flag)] = tifffile.imread(out / "nuclei_a.tif")
    assert masks[0].shape == masks[1].shape
    # the same cells either way (bfloat16 rounding moves a few boundary pixels at most)
    assert np.mean((masks[0] > 0) == (masks[1] > 0)) > 0.98
