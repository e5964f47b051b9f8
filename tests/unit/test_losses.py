import math

import pytest
import torch

from napari_semiseg.losses import (
    entropy_map,
    focal_loss,
    kl_map,
    linear_soft_loss,
    soft_dice,
    supervised_loss,
    weighted_cross_entropy,
)


def test_ce_of_uniform_logits_is_log_k():
    logits = torch.zeros(1, 3, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    assert float(weighted_cross_entropy(logits, target)) == pytest.approx(math.log(3))


def test_ce_ignores_unknown_and_zero_weight_pixels():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 0] = 10.0  # confident and right at (0, 0)
    target = torch.tensor([[[1, 255], [0, 0]]])
    weight = torch.tensor([[[1.0, 5.0], [0.0, 0.0]]])
    expected = -torch.log_softmax(logits[0, :, 0, 0], 0)[1]
    assert float(weighted_cross_entropy(logits, target, weight)) == pytest.approx(float(expected))


def test_ce_weighting_is_a_weighted_mean():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 0]]])
    weight = torch.tensor([[[3.0, 1.0]]])
    ce = -torch.log_softmax(logits, 1)[0, 0, 0]
    expected = (3 * ce[0] + ce[1]) / 4
    assert float(weighted_cross_entropy(logits, target, weight)) == pytest.approx(float(expected))


def test_dice_perfect_and_worst():
    target = torch.tensor([[[0, 1], [1, 0]]])
    onehot = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
    assert float(soft_dice(onehot, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_dice(1 - onehot, target)) == pytest.approx(1.0, abs=1e-4)


def test_dice_masks_unknown():
    probs = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # predicts class 0 then 1
    target = torch.tensor([[[0, 255]]])  # second pixel unknown
    assert float(soft_dice(probs, target)) < 0.51  # class 1 absent under the mask


def test_focal_with_gamma_zero_is_ce():
    logits = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 5, 5), generator=torch.Generator().manual_seed(1))
    ce = weighted_cross_entropy(logits, target)
    assert float(focal_loss(logits, target, gamma=0.0)) == pytest.approx(float(ce), rel=1e-5)
    assert float(focal_loss(logits, target, gamma=2.0)) < float(ce)


def test_entropy_and_kl_values():
    uniform = torch.full((1, 4, 2, 2), 0.25)
    assert torch.allclose(entropy_map(uniform), torch.full((1, 2, 2), math.log(4)))
    assert torch.allclose(entropy_map(uniform, normalized=True), torch.ones(1, 2, 2))
    logits = torch.randn(1, 3, 2, 2)
    assert torch.allclose(kl_map(logits, logits), torch.zeros(1, 2, 2), atol=1e-6)
    q = torch.tensor([0.9, 0.1]).log().view(1, 2, 1, 1)
    p = torch.tensor([0.5, 0.5]).log().view(1, 2, 1, 1)
    expected = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert float(kl_map(q, p)) == pytest.approx(expected, rel=1e-5)


def test_kl_gradient_reaches_student_only():
    teacher = torch.randn(1, 3, 2, 2, requires_grad=True)
    student = torch.randn(1, 3, 2, 2, requires_grad=True)
    kl_map(teacher, student).sum().backward()
    assert teacher.grad is None
    assert student.grad is not None


def test_linear_soft_loss_values():
    s = torch.tensor([0.2, 0.8])
    q = torch.tensor([1.0, 0.5])
    # q=1: weight 1, loss 1 - s = 0.8 ; q=0.5: weight 0 -> mean 0.4
    assert float(linear_soft_loss(s, q)) == pytest.approx(0.4)


def test_supervised_loss_terms_finite_with_empty_mask():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.full((1, 4, 4), 255)
    loss, terms = supervised_loss(logits, target)
    assert torch.isfinite(loss)
    assert set(terms) == {"ce", "dice"}
