"""Building blocks of the semi-supervised methods: EMA, copy-paste, pseudo-labels, regions."""

import math

import pytest
import torch
from torch import nn

from napari_semiseg.data.annotations import IGNORE
from napari_semiseg.data.mixing import box_mask, copy_paste_box, mix
from napari_semiseg.losses import entropy_map, kl_map
from napari_semiseg.losses.pseudo import (
    certainty,
    class_disagreement,
    confident_pseudo_labels,
    exhaustive_mask,
    median_instance_area,
    pseudo_target,
    region_loss,
    remove_small_regions,
)
from napari_semiseg.models import ModelEMA, UNetConfig
from napari_semiseg.models.dual import DualDecoderUNet

# -- EMA ------------------------------------------------------------------------------


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))


def test_ema_update_with_known_decay():
    student = _net()
    ema = ModelEMA(student, decay=0.99, warmup=False)
    before = ema.module[0].weight.clone()
    with torch.no_grad():
        student[0].weight.add_(1.0)
        student[1].running_mean.fill_(2.0)
    student[1].num_batches_tracked.fill_(7)
    ema.update(student)
    torch.testing.assert_close(ema.module[0].weight, 0.99 * before + 0.01 * student[0].weight)
    # float buffers are averaged, integer buffers copied
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((2,), 0.02))
    assert int(ema.module[1].num_batches_tracked) == 7
    assert int(ema.updates) == 1


def test_ema_warmup_follows_the_student_first():
    student = _net()
    ema = ModelEMA(student, decay=0.99, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    before = ema.module[0].bias.clone()
    with torch.no_grad():
        student[0].bias.fill_(1.0)
    ema.update(student)
    torch.testing.assert_close(ema.module[0].bias, 0.1 * before + 0.9, atol=1e-6, rtol=0)
    assert ema.current_decay() == pytest.approx(2 / 11)
    for _ in range(2000):
        ema.updates += 1
    assert ema.current_decay() == 0.99


def test_ema_copy_is_frozen_and_independent():
    student = _net()
    ema = ModelEMA(student, decay=0.5)
    assert not any(p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        student[0].weight.add_(1.0)
    assert not torch.equal(ema.module[0].weight, student[0].weight)


# -- copy-paste -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(96, 96), (64, 48), (3, 3)])
def test_copy_paste_box_is_two_thirds_and_inside(shape):
    torch.manual_seed(0)
    corners = set()
    for _ in range(200):
        y0, x0, y1, x1 = copy_paste_box(shape)
        assert (y1 - y0, x1 - x0) == (int(2 / 3 * shape[0]), int(2 / 3 * shape[1]))
        assert y0 >= 0
        assert y1 <= shape[0]
        assert x0 >= 0
        assert x1 <= shape[1]
        corners.add((y0, x0))
    if shape[0] > 3:
        assert len(corners) > 10  # the position is random


def test_copy_paste_box_position_is_uniform_over_offsets():
    torch.manual_seed(1)
    tops = [copy_paste_box((30, 30))[0] for _ in range(3000)]
    assert min(tops) == 0
    assert max(tops) == 9
    counts = torch.bincount(torch.tensor(tops), minlength=10).float()
    assert counts.min() > 0.6 * counts.mean()


def test_copy_paste_box_rejects_bad_ratio():
    with pytest.raises(ValueError, match="ratio"):
        copy_paste_box((8, 8), 0.0)


def test_mix_images_targets_weights_with_one_mask():
    mask = box_mask((4, 4), (1, 1, 3, 3))
    assert mask.sum() == 4
    inside = torch.ones(3, 2, 4, 4)
    outside = torch.zeros(3, 2, 4, 4)
    mixed = mix(inside, outside, mask)
    for image in mixed:  # the same rectangle for every element of the batch
        for channel in image:
            torch.testing.assert_close(channel, mask)
    target_in = torch.full((3, 4, 4), 2, dtype=torch.long)
    target_out = torch.full((3, 4, 4), IGNORE, dtype=torch.long)
    target = mix(target_in, target_out, mask)
    assert target.dtype == torch.long
    assert set(target[0, 1:3, 1:3].unique().tolist()) == {2}
    assert (target[:, 0] == IGNORE).all()
    weight = mix(torch.full((3, 4, 4), 0.5), torch.ones(3, 4, 4), mask)
    assert weight[0, 1, 1] == 0.5
    assert weight[0, 0, 0] == 1.0
    with pytest.raises(ValueError, match="cannot mix"):
        mix(inside, outside[:, :1], mask)


# -- pseudo-labels ---------------------------------------------------------------------


def test_confident_pseudo_labels_keep_only_confident_pixels():
    probs = torch.tensor([[0.95, 0.6, 0.02], [0.03, 0.3, 0.97], [0.02, 0.1, 0.01]])
    probs = probs.reshape(1, 3, 1, 3)
    labels, confidence = confident_pseudo_labels(probs, 0.9)
    assert labels.tolist() == [[[0, IGNORE, 1]]]
    torch.testing.assert_close(confidence, torch.tensor([[[0.95, 0.6, 0.97]]]))
    everything, _ = confident_pseudo_labels(probs, 0.0)
    assert everything.tolist() == [[[0, 0, 1]]]


def test_remove_small_regions_drops_small_cells_only():
    classes = torch.zeros(2, 8, 8, dtype=torch.long)
    classes[0, :4, :4] = 1  # 16 px cell
    classes[0, 0, 4] = 2  # border touching it: same region (4-connected)
    classes[0, 6:, 6:] = 1  # 4 px speck
    classes[1, 3, 3] = 2
    classes[1, 0, 0] = IGNORE
    cleaned = remove_small_regions(classes, 5)
    assert (cleaned[0, :4, :4] == 1).all()
    assert cleaned[0, 0, 4] == 2
    assert (cleaned[0, 6:, 6:] == 0).all()
    assert cleaned[1, 3, 3] == 0
    assert cleaned[1, 0, 0] == IGNORE
    assert torch.equal(remove_small_regions(classes, 0), classes)


def test_pseudo_target_only_fills_unknown_pixels():
    target = torch.tensor([[0, 1, IGNORE, IGNORE]])
    pseudo = torch.tensor([[2, 2, 1, IGNORE]])
    assert pseudo_target(target, pseudo).tolist() == [[IGNORE, IGNORE, 1, IGNORE]]


def test_region_loss_empty_region_and_perfect_prediction():
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    empty = region_loss(logits, torch.full((1, 4, 4), IGNORE))
    assert empty.item() == 0.0
    empty.backward()  # still differentiable
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    good = torch.full((1, 3, 4, 4), -20.0)
    good[:, 0][target == 0] = 20.0
    good[:, 1][target == 1] = 20.0
    assert region_loss(good, target).item() < 1e-3
    uniform = region_loss(torch.zeros(1, 3, 4, 4), target)
    assert uniform.item() > 0.5 * math.log(3)


def test_median_instance_area_counts_per_patch_ids():
    labels = torch.zeros(2, 5, 5, dtype=torch.long)
    labels[0, :2, :2] = 1  # 4
    labels[0, 3:, 3:] = 2  # 4
    labels[1, :3, :3] = 1  # 9 (same id, other patch)
    assert median_instance_area(labels) == 4.0
    assert median_instance_area(torch.zeros(1, 3, 3, dtype=torch.long)) == 0.0


def test_class_disagreement_bounds():
    a = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    b = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    assert class_disagreement(a, a).item() == 0.0
    assert class_disagreement(a, b).item() == 1.0


# -- ConfKD ---------------------------------------------------------------------------


def test_exhaustive_mask_keeps_squares_drops_scribbles():
    known = torch.zeros(1, 20, 20)
    known[0, 2:12, 2:12] = 1  # exhaustive rectangle
    known[0, 16, :] = 1  # 1-px scribble
    region = exhaustive_mask(known, 2)
    assert (region[0, 2:12, 2:12] == 1).all()  # opening keeps the whole rectangle
    assert (region[0, 16] == 0).all()
    assert (region <= known).all()
    # beyond the patch edge counts as known: a rectangle at the edge survives
    edge = torch.zeros(1, 10, 10)
    edge[0, :4, :] = 1
    assert (exhaustive_mask(edge, 2)[0, :4] == 1).all()
    torch.testing.assert_close(exhaustive_mask(known, 0), known)


def test_entropy_and_kl_on_confkd_scale():
    uniform = torch.full((1, 3, 2, 2), 1 / 3)
    torch.testing.assert_close(entropy_map(uniform, normalized=True), torch.ones(1, 2, 2))
    teacher = torch.tensor([2.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    q = torch.softmax(teacher, 1)
    expected = (q * (q.log() - math.log(1 / 3))).sum()
    torch.testing.assert_close(kl_map(teacher, torch.zeros(1, 3, 1, 1))[0, 0, 0], expected)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_dual_decoder_branches(padding):
    torch.manual_seed(0)
    net = DualDecoderUNet(1, 3, UNetConfig(base_channels=4, depth=2, padding=padding)).eval()
    size = 44 if padding == "valid" else 36
    x = torch.randn(2, 1, size, size)
    strong, weak = net.forward_both(x)
    assert strong.shape == weak.shape
    torch.testing.assert_close(net(x), weak)
    torch.testing.assert_close(net.forward_strong(x), strong)
    assert not torch.allclose(strong, weak)  # separate decoders


def test_certainty_is_zero_for_uniform_and_one_for_one_hot():
    uniform = torch.full((1, 3, 2, 2), 1 / 3)
    torch.testing.assert_close(certainty(uniform), torch.zeros(1, 2, 2))
    one_hot = torch.zeros(1, 3, 1, 1)
    one_hot[0, 2] = 1.0
    assert certainty(one_hot).item() == pytest.approx(1.0)
    binary = torch.tensor([0.8, 0.2]).reshape(1, 2, 1, 1)
    assert certainty(binary).item() == pytest.approx(abs(2 * 0.8 - 1))  # S7 for K = 2
