"""Behaviour specific to the semi-supervised methods (mean teacher + BCP, ConfKD, co-training)."""

import numpy as np
import pytest
import torch

from napari_semiseg.data.annotations import IGNORE
from napari_semiseg.engine import PreviewUpdated, TrainConfig, train
from napari_semiseg.methods import build_method
from napari_semiseg.models import UNetConfig

TINY = UNetConfig(base_channels=4, depth=2, dropout=0.0)
P = 24


def _batch(labelled_value=1.0, known_rows=P, batch_size=2):
    """Labelled patches of constant ``labelled_value`` (interior where known), dark unlabelled."""
    target = torch.full((batch_size, P, P), IGNORE, dtype=torch.long)
    target[:, :known_rows] = 1
    known = (target != IGNORE).float()
    return {
        "image": torch.full((batch_size, 1, P, P), labelled_value),
        "target": target,
        "weight": known.clone(),
        "labels": (target == 1).long(),
        "known": known,
        "unlabelled_image": torch.zeros(batch_size, 1, P, P),
        "unlabelled_target": torch.full((batch_size, P, P), IGNORE, dtype=torch.long),
        "unlabelled_weight": torch.zeros(batch_size, P, P),
        "unlabelled_labels": torch.zeros(batch_size, P, P, dtype=torch.long),
        "unlabelled_known": torch.zeros(batch_size, P, P),
    }


def _method(name, **config):
    torch.manual_seed(0)
    method = build_method(name, config, TINY, 1, "cpu")
    method.train()
    return method


def _box_mask(box):
    y0, x0, y1, x1 = (int(v) for v in box)
    mask = np.zeros((P, P), bool)
    mask[y0:y1, x0:x1] = True
    return mask


# -- mean teacher + BCP ------------------------------------------------------------------


def test_bcp_mixes_annotation_inside_and_pseudo_labels_outside():
    method = _method("mean-teacher", unlabelled_weight=0.5, min_area_fraction=0.0)
    method.progress = 0.5  # after pre-training
    out = method.training_step(_batch(), 0)
    assert torch.isfinite(out.loss)
    assert out.terms["pseudo"] > 0
    previews = method.batch_previews
    boxes = previews["mix_boxes"]
    assert boxes.shape == (1, 4)  # one rectangle per step, shared by the batch
    assert boxes[0, 2] - boxes[0, 0] == int(2 / 3 * P) == boxes[0, 3] - boxes[0, 1]
    inside = _box_mask(boxes[0])
    # X_A: annotated patch (value 1) inside R, unlabelled patch (0) outside
    np.testing.assert_array_equal(previews["mixed_image"][0], inside.astype(np.float32))
    assert (previews["mixed_target"][inside] == 1).all()
    assert (previews["mixed_target"][~inside] != IGNORE).all()  # teacher pseudo-labels
    np.testing.assert_allclose(previews["mixed_weight"], np.where(inside, 1.0, 0.5))


def test_bcp_unknown_pixels_of_annotated_patches():
    batch = _batch(known_rows=P // 2)  # bottom half of the annotated patch unknown
    hybrid = _method("mean-teacher", min_area_fraction=0.0)
    hybrid.progress = 0.5
    hybrid.training_step(batch, 0)
    inside = _box_mask(hybrid.batch_previews["mix_boxes"][0])
    unknown = inside.copy()
    unknown[: P // 2] = False
    assert (hybrid.batch_previews["mixed_weight"][unknown] == 0.5).all()  # pseudo, weight α
    assert (hybrid.batch_previews["mixed_target"][unknown] != IGNORE).all()

    ignored = _method("mean-teacher", min_area_fraction=0.0, pseudo_label_unknown=False)
    ignored.progress = 0.5
    ignored.training_step(batch, 0)
    inside = _box_mask(ignored.batch_previews["mix_boxes"][0])
    unknown = inside.copy()
    unknown[: P // 2] = False
    assert (ignored.batch_previews["mixed_weight"][unknown] == 0.0).all()
    assert (ignored.batch_previews["mixed_target"][unknown] == IGNORE).all()


def test_bcp_pretraining_phase_then_self_training():
    method = _method("mean-teacher", pretrain_fraction=0.3)
    method.progress = 0.1
    out = method.training_step(_batch(), 0)
    assert out.terms["pseudo"] == 0.0
    assert (method.batch_previews["mixed_weight"] <= 1.0).all()
    assert set(np.unique(method.batch_previews["mixed_weight"])) <= {0.0, 1.0}
    method.progress = 0.4
    assert method.training_step(_batch(), 1).terms["pseudo"] > 0
    method.progress = 0.1  # never back to pre-training once self-training started
    assert method.training_step(_batch(), 2).terms["pseudo"] > 0


class _ConstantTeacher(torch.nn.Module):
    """A teacher that gives every pixel class ``k`` (4 outputs: 3 classes + depth)."""

    updates = 1  # a teacher that has been trained

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        logits = torch.zeros(len(x), 4, *x.shape[-2:])
        logits[:, self.k] = 10.0
        return logits


@pytest.mark.parametrize("teacher_class", [0, 1, 2])
def test_bcp_reports_the_share_of_pseudo_labels_that_are_cell_interior(teacher_class):
    method = _method("mean-teacher", min_area_fraction=0.0)
    method.teacher_ema = _ConstantTeacher(teacher_class)
    method.progress = 0.5
    out = method.training_step(_batch(), 0)
    assert out.terms["pseudo_cells"] == float(teacher_class == 1)
    assert (
        method.batch_previews["mixed_target"][method.batch_previews["mixed_weight"] == 0.5]
        == teacher_class
    ).all()


def test_bcp_resumed_teacher_skips_pretraining():
    method = _method("mean-teacher", pretrain_fraction=0.5)
    method.after_optimizer_step(0)  # a teacher that has been trained before
    method.progress = 0.0
    assert method.training_step(_batch(), 0).terms["pseudo"] > 0


def test_bcp_strong_view_scales_the_student_input_only():
    seen = []
    method = _method(
        "mean-teacher", strong_view="on", student_min_contrast=0.25, min_area_fraction=0.0
    )
    method.teacher_ema.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    method.progress = 0.5
    method.training_step(_batch(batch_size=4), 0)
    assert float(seen[0].max()) == 1.0  # the teacher labels the unscaled patches
    student = method.batch_previews["mixed_image"]  # first patch as the student saw it
    assert 0.25 <= float(student.max()) < 1.0
    plain = _method("mean-teacher", strong_view="off", min_area_fraction=0.0)
    plain.progress = 0.5
    plain.training_step(_batch(batch_size=4), 0)
    assert float(plain.batch_previews["mixed_image"].max()) == 1.0


def test_bcp_strong_view_about_the_median_keeps_the_background():
    method = _method(
        "mean-teacher", strong_view="on", student_min_contrast=0.2, contrast_about_median=True
    )
    x = torch.full((4, 1, 8, 8), 0.8)  # bright background (brightfield) ...
    x[:, :, :2, :2] = 0.1  # ... with a dark cell
    view = method._strong_view(x)
    torch.testing.assert_close(view[:, :, 4:, 4:], x[:, :, 4:, 4:])
    cell = view[:, 0, 0, 0]
    assert bool(((cell > 0.1) & (cell <= 0.8 - 0.2 * 0.7 + 1e-6)).all())  # fades, not erased


FLUORESCENCE = {"image_level": 0.02, "background_level": 0.04, "cell_level": 0.56}
BRIGHTFIELD = {"image_level": 0.93, "background_level": 0.38, "cell_level": -0.04}


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (FLUORESCENCE, True),
        (BRIGHTFIELD, False),
        ({"image_level": 0.50, "background_level": 0.24, "cell_level": 0.68}, False),  # EM
        ({"image_level": 0.05, "background_level": 0.30, "cell_level": 0.10}, False),  # dark cells
        ({"image_level": 0.05}, True),  # no annotation statistics: the image level decides
        ({}, False),  # nothing known: leave the student's input alone
        ({"image_level": None}, False),  # unknown is not "dark"
    ],
)
def test_bcp_auto_strong_view_is_for_dark_images_with_bright_cells(summary, expected):
    from napari_semiseg.methods.base import looks_like_fluorescence

    assert looks_like_fluorescence(summary) is expected
    method = _method("mean-teacher")  # strong_view = "auto" by default
    assert not method.uses_strong_view  # undecided until the engine gives the data
    method.on_training_data(summary)
    assert method.uses_strong_view is expected
    x = torch.ones(8, 1, 4, 4)
    changed = not torch.equal(method._strong_view(x), x)
    assert changed is expected
    for setting, on in (("on", True), ("off", False)):
        fixed = _method("mean-teacher", strong_view=setting)
        fixed.on_training_data(BRIGHTFIELD if on else FLUORESCENCE)  # the data cannot override
        assert fixed.uses_strong_view is on


def test_bcp_strong_view_setting_must_be_a_known_choice():
    from napari_semiseg.errors import SemisegInputError

    with pytest.raises(SemisegInputError, match="strong_view = 'sometimes' is not one of"):
        _method("mean-teacher", strong_view="sometimes")


def test_training_data_intensity_levels_describe_dark_background_and_bright_cells():
    from napari_semiseg.data.datasets import TrainingData

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 10, (64, 64))  # dark background ...
    labels = np.zeros((64, 64), np.int32)
    for i, (y, x) in enumerate([(10, 10), (40, 20), (20, 45)], 1):
        image[y : y + 10, x : x + 10] += 200  # ... bright cells
        labels[y : y + 10, x : x + 10] = i
    data = TrainingData.from_arrays([image, image.copy()], [labels, None], [None, None])
    levels = data.summary()
    assert levels["image_level"] < 0.1
    assert levels["cell_level"] > 0.8
    assert levels["background_level"] < levels["cell_level"]
    inverted = TrainingData.from_arrays([255 - image], [labels], [None]).summary()
    assert inverted["image_level"] > 0.8  # brightfield-like: bright background
    assert inverted["cell_level"] < inverted["background_level"]


def test_bcp_teacher_follows_student_and_predicts():
    method = _method("mean-teacher", ema_decay=0.5)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(0.1)
    method.teacher_ema.warmup = False
    method.after_optimizer_step(0)
    method.eval()
    with torch.no_grad():
        teacher, student = method.predict(x), method.model(x)
    assert not torch.allclose(teacher, student)
    torch.testing.assert_close(teacher, method.teacher_ema(x))
    assert not method.teacher_ema.training  # no dropout, averaged BatchNorm statistics
    by_student = _method("mean-teacher", predict_with_teacher=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(by_student.predict(x), by_student.model(x))


# -- ConfKD ------------------------------------------------------------------------------


def test_confkd_consistency_only_on_unknown_pixels_and_ramped():
    method = _method("confkd")
    method.progress = 1.0
    full = method.training_step(_batch(), 0)
    # unlabelled patches are unknown: KL and entropy count there
    assert full.terms["kl"] > 0
    assert full.terms["entropy"] > 0
    assert full.terms["ramp"] == 1.0
    batch = _batch()
    batch["unlabelled_target"] = batch["target"].clone()  # nothing unknown anywhere
    none = method.training_step(batch, 1)
    assert none.terms["kl"] == 0.0
    assert none.terms["entropy"] == 0.0
    method.progress = 0.0
    assert method.training_step(_batch(), 2).terms["ramp"] < 0.01


def test_confkd_strong_branch_learns_on_exhaustive_regions_only():
    method = _method("confkd", strong_radius=3)
    batch = _batch()
    batch["target"][:, :, 0] = IGNORE  # thin unknown column: its neighbourhood is not strong
    method.progress = 0.5
    method.training_step(batch, 0)
    region = method.batch_previews["strong_region"]
    assert region.shape == (P, P)
    assert (region[:, :1] == 0).all()
    assert (region[:, 7:] == 1).all()


def test_confkd_preview_maps():
    method = _method("confkd").eval()
    with torch.no_grad():
        maps = method.preview(torch.randn(1, 1, 20, 20))
    for key in ("entropy", "kl", "strong_foreground", "pseudo_labels", "confidence"):
        assert maps[key].shape == (20, 20)
    assert maps["entropy"].min() >= 0
    assert maps["entropy"].max() <= 1 + 1e-6
    assert (maps["kl"] >= -1e-6).all()


# -- co-training ---------------------------------------------------------------------------


@pytest.mark.parametrize(("threshold", "expected"), [(0.3, 1.0), (0.999999, 0.0)])
def test_co_training_hard_labels_need_peer_confidence(threshold, expected):
    method = _method("co-training", confidence_threshold=threshold)
    method.progress = 1.0
    out = method.training_step(_batch(), 0)
    # share of unknown pixels with a confident peer pseudo-label
    assert out.terms["confident_1"] == pytest.approx(expected)
    assert out.terms["confident_2"] == pytest.approx(expected)


def test_co_training_soft_loss_only_on_unknown_pixels():
    method = _method("co-training")
    batch = _batch()
    batch["unlabelled_target"] = batch["target"].clone()
    out = method.training_step(batch, 0)
    assert out.terms["soft_1"] == 0.0
    assert out.terms["soft_2"] == 0.0
    assert out.terms["confident_1"] == 0.0


def test_co_training_networks_differ_and_averaged_first_predicts():
    method = _method("co-training")
    first = dict(method.model_1.named_parameters())
    assert any(not torch.equal(p, first[n]) for n, p in method.model_2.named_parameters())
    method.eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(method.predict(x), method.model_1_ema(x))
        maps = method.preview(x)
    assert maps["disagreement"].shape == (16, 16)
    assert maps["disagreement"].min() >= 0
    assert maps["disagreement"].max() <= 1 + 1e-6


def test_co_training_second_view_is_flipped_and_noisy():
    method = _method("co-training", view_noise=0.1)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    dims, view = method._view(x)
    residual = view - torch.flip(x, dims)
    assert 0.02 < residual.std() < 0.3
    torch.testing.assert_close(torch.flip(torch.flip(x, dims), dims), x)


# -- live evidence through the engine --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "image_keys", "batch_keys"),
    [
        ("mean-teacher", {"pseudo_labels", "confidence", "disagreement"}, {"mixed_image"}),
        ("confkd", {"entropy", "kl", "pseudo_labels"}, {"strong_region"}),
        ("co-training", {"disagreement", "pseudo_labels", "confidence"}, {"view_2"}),
    ],
)
def test_previews_reach_the_training_events(name, image_keys, batch_keys, toy_data):
    config = TrainConfig(
        method=name,
        steps=2,
        model=TINY,
        batch_size=2,
        patch_size=32,
        device="cpu",
        preview_every=1e-6,
        method_config={"pretrain_fraction": 0.0} if name == "mean-teacher" else {},
    )
    previews = [e for e in train(toy_data, config) if isinstance(e, PreviewUpdated)]
    image = next(e for e in previews if e.kind == "image").arrays
    batch = next(e for e in previews if e.kind == "batch").arrays
    assert image_keys <= set(image)
    assert batch_keys <= set(batch)
    if name == "mean-teacher":
        assert batch["mix_boxes"].shape == (1, 4)
        assert batch["mixed_target"].dtype == np.uint8


def test_co_training_uniform_peer_gives_no_soft_pull():
    method = _method("co-training")
    logits = torch.randn(2, 3, P, P)
    target = torch.full((2, P, P), IGNORE, dtype=torch.long)
    _, terms = method._loss(logits, target, torch.zeros(2, 3, P, P), ramp=1.0)
    assert terms["soft"] == 0.0  # a uniform peer carries no information
    unweighted = _method("co-training", weight_soft_by_confidence=False)
    _, terms = unweighted._loss(logits, target, torch.zeros(2, 3, P, P), ramp=1.0)
    assert terms["soft"] > 0.0
