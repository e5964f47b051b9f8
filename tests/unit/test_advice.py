"""Advice about what an annotation does not show the network (``TrainingData.advice``)."""

import numpy as np

from napari_semiseg.data import TrainingData
from napari_semiseg.engine import TrainingStarted, train
from napari_semiseg.inference import run


def _brightfield_like(known_includes_empty_background: bool):
    """Dark cells on a bright empty background; the annotated square is a dense cluster.

    Inside the square the background between the cells is mid-grey (a halo); outside it
    the image is bright and empty, like most of a brightfield image.
    """
    rng = np.random.default_rng(0)
    image = rng.normal(230, 3, (96, 96))
    labels = np.zeros((96, 96), np.int32)
    image[8:40, 8:40] = rng.normal(120, 3, (32, 32))  # halo around the cluster
    for i, (y, x) in enumerate([(10, 10), (10, 26), (26, 10), (26, 26)], 1):
        image[y : y + 12, x : x + 12] = rng.normal(30, 3, (12, 12))
        labels[y : y + 12, x : x + 12] = i
    known = np.zeros((96, 96), bool)
    known[8:40, 8:40] = True
    if known_includes_empty_background:
        known[8:40, 40:60] = True
    return TrainingData.from_arrays([image, image[::-1].copy()], [labels, None], [known, None])


def test_advice_when_most_pixels_look_like_nothing_annotated():
    data = _brightfield_like(known_includes_empty_background=False)
    unseen = data.unseen_intensity()
    assert unseen is not None
    assert unseen["image_level"] > unseen["background_high"] > unseen["cell_high"]
    (text,) = data.advice()
    assert "look like neither the background you marked" in text
    assert "Mark some empty background as known" in text


def test_no_advice_when_the_known_background_covers_the_typical_pixel():
    data = _brightfield_like(known_includes_empty_background=True)
    assert data.unseen_intensity() is None
    assert data.advice() == []


def test_no_advice_for_the_toy_fluorescence_set(toy_data):
    assert toy_data.unseen_intensity() is None
    assert toy_data.advice() == []


def test_training_start_carries_the_advice(tiny_config):
    data = _brightfield_like(known_includes_empty_background=False)
    started = next(train(data, tiny_config.replace(steps=1)))
    assert isinstance(started, TrainingStarted)
    assert started.advice == tuple(data.advice()) != ()


def test_mean_teacher_leaves_its_depth_head_out_where_most_pixels_are_unseen(
    tiny_config, toy_data
):
    from napari_semiseg.methods.mean_teacher_bcp import MeanTeacherBCP

    unseen = _brightfield_like(known_includes_empty_background=False)
    assert unseen.summary()["unseen_typical_pixel"] is True
    assert MeanTeacherBCP.settings_for_data({}, unseen.summary()) == {"depth_head": False}
    keep = {"depth_head_on_unseen": True}
    assert MeanTeacherBCP.settings_for_data(keep, unseen.summary()) == keep
    assert MeanTeacherBCP.settings_for_data({}, toy_data.summary()) == {}

    config = tiny_config.replace(method="mean-teacher", steps=1)
    result = run(train(unseen, config))
    assert result.model.method.n_outputs == 3  # the classes only
    assert result.model.train_config.method_config["depth_head"] is False  # saved so
    result = run(train(toy_data, config))
    assert result.model.method.n_outputs == 4  # the classes and the depth


def test_the_command_line_prints_the_advice_as_notes():
    import io

    from napari_semiseg.cli import ProgressPrinter

    stream = io.StringIO()
    started = TrainingStarted("unet", "cpu", 10, None, 0, 1000, {}, advice=("mark X", "mark Y"))
    ProgressPrinter(stream)(started)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("training unet on cpu")
    assert lines[1:] == ["note: mark X", "note: mark Y"]


def test_ppn_auxnet_does_not_rescale_where_most_pixels_are_unseen(tiny_config, toy_data):
    from napari_semiseg.methods.ppn_auxnet import PPNAuxNet

    unseen = _brightfield_like(known_includes_empty_background=False).summary()
    assert PPNAuxNet.settings_for_data({}, unseen) == {"rescale": False}
    keep = {"rescale_on_unseen": True}
    assert PPNAuxNet.settings_for_data(keep, unseen) == keep
    assert PPNAuxNet.settings_for_data({"rescale": False}, unseen) == {"rescale": False}
    assert PPNAuxNet.settings_for_data({}, toy_data.summary()) == {}


def test_dimmed_patches_where_images_look_like_fluorescence(tiny_config, toy_data):
    from dataclasses import replace

    from napari_semiseg.data.augment import AugmentConfig
    from napari_semiseg.methods import build_method
    from napari_semiseg.models import UNetConfig

    tiny = UNetConfig(base_channels=4, depth=2, dropout=0.0)
    method = build_method("ppn-auxnet", {}, tiny, 1)
    plain = AugmentConfig()
    assert plain.min_contrast == 1.0
    fluorescence = toy_data.summary()  # bright cells on a dark background
    assert method.augment_for_data(plain, fluorescence).min_contrast == 0.2
    bright = _brightfield_like(known_includes_empty_background=True).summary()
    assert method.augment_for_data(plain, bright) == plain
    stronger = replace(plain, min_contrast=0.1)  # the user's own stronger setting stays
    assert method.augment_for_data(stronger, fluorescence) == stronger
    off = build_method("ppn-auxnet", {"dim_contrast": 1.0}, tiny, 1)
    assert off.augment_for_data(plain, fluorescence) == plain
    # the U-Net has the same setting and default; methods without it keep the user's augmentation
    unet = build_method("unet", {}, tiny, 1)
    assert unet.augment_for_data(plain, fluorescence).min_contrast == 0.2
    assert unet.augment_for_data(plain, bright) == plain
    assert (
        build_method("unet", {"dim_contrast": 1.0}, tiny, 1).augment_for_data(plain, fluorescence)
        == plain
    )
    # not when the annotation already holds a cell as faint as the dimming would make one
    assert fluorescence["dimmest_cell_contrast"] > 0.2
    faint = {**fluorescence, "dimmest_cell_contrast": 0.15}
    assert unet.augment_for_data(plain, faint) == plain
    assert method.augment_for_data(plain, faint).min_contrast == 0.2  # PPN-auxnet keeps it
    unknown = {**fluorescence, "dimmest_cell_contrast": float("nan")}  # no cell to measure
    assert unet.augment_for_data(plain, unknown).min_contrast == 0.2
    # the user is told when the setting is not applied, and only then
    (note,) = unet.data_notes(plain, faint)
    assert "dim contrast 0.2" in note
    assert "0.15" in note
    assert unet.data_notes(plain, fluorescence) == []
    assert method.data_notes(plain, faint) == []
    assert unet.data_notes(plain, bright) == []
    teacher = build_method("mean-teacher", {}, tiny, 1)
    assert teacher.augment_for_data(plain, fluorescence) == plain
    # the engine trains with it and saves it with the model
    result = run(train(toy_data, tiny_config.replace(method="ppn-auxnet", steps=1)))
    assert result.model.train_config.augment.min_contrast == 0.2


def test_no_dimmed_patches_for_the_unet_when_a_faint_cell_is_annotated(tiny_config):
    rng = np.random.default_rng(0)
    image = rng.normal(5, 1, (96, 96))  # fluorescence: dark background, bright cells
    labels = np.zeros((96, 96), np.int32)
    for i, ((y, x), level) in enumerate(
        zip([(10, 10), (10, 50), (50, 10), (50, 50)], [200, 180, 190, 20], strict=True), 1
    ):
        image[y : y + 14, x : x + 14] += level  # the last cell a tenth as bright
        labels[y : y + 14, x : x + 14] = i
    data = TrainingData.from_arrays([image, image.T.copy()], [labels, None], [None, None])
    assert data.dimmest_cell_contrast() < 0.2
    events = train(data, tiny_config.replace(method="unet", steps=1))
    started = next(events)
    assert any("dimmed training patches" in text for text in started.advice)
    result = run(events)
    assert result.model.train_config.augment.min_contrast == 1.0
