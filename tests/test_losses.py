"""Losses of the paper's section 3.2: Charbonnier, distillation, Feature Matching, RGB perceptual."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fad_deploy.errors import FadError
from fad_deploy.models.registry import build
from fad_deploy.train.losses import (
    CHARBONNIER_EPS,
    VGG16_LAYERS,
    FeatureMatchingLoss,
    RGBPerceptualLoss,
    charbonnier,
    distillation_l1,
    gram,
)

TINY_TEACHER = {"widths": [4, 8], "convs_per_level": 1}
pytestmark = pytest.mark.usefixtures("one_thread")


def test_charbonnier_matches_the_formula():
    assert CHARBONNIER_EPS == 1e-6  # the paper's c
    pred, target = torch.tensor([0.5, 0.2, 0.0, 1.0]), torch.tensor([0.1, 0.2, -0.3, 1.0])
    d = [0.4, 0.0, 0.3, 0.0]
    expected = sum((x * x + 1e-12) ** 0.5 for x in d) / 4
    assert charbonnier(pred, target).item() == pytest.approx(expected, rel=1e-6)
    assert charbonnier(target, target).item() == pytest.approx(1e-6, rel=1e-3)  # floor at c, not 0


def test_distillation_is_l1_and_trains_only_the_student():
    student = torch.rand(2, 4, 8, 8, requires_grad=True)
    teacher = torch.rand(2, 4, 8, 8, requires_grad=True)
    assert distillation_l1(student, student.detach().clone()).item() == 0.0
    loss = distillation_l1(student, teacher)
    assert loss.item() == pytest.approx((student - teacher).abs().mean().item())
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_gram_matrix_normalisation():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2).repeat(1, 2, 1, 1)
    f[:, 1] *= -1
    # entries: <f_i, f_j> / (c * h * w) with c=2, h*w=4, |f_0|^2 = 30
    assert torch.allclose(gram(f), torch.tensor([[[30.0, -30.0], [-30.0, 30.0]]]) / 8)
    assert torch.allclose(gram(torch.ones(3, 5, 6, 7)), torch.full((3, 5, 5), 1 / 5))


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    return build("teacher", TINY_TEACHER)


def test_feature_matching_zero_for_identical_inputs_and_positive_otherwise(teacher):
    loss = FeatureMatchingLoss(teacher, style_weight=1.0)
    target = torch.rand(2, 4, 12, 12)
    assert loss(target.clone(), target).item() == 0.0
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    target.requires_grad_(True)
    value = loss(pred, target)
    assert value.item() > 0
    value.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_feature_matching_style_weight(teacher):
    target = torch.rand(1, 4, 12, 12)
    pred = target + 0.2 * torch.randn_like(target)
    content = FeatureMatchingLoss(teacher, style_weight=0.0)(pred, target)
    both = FeatureMatchingLoss(teacher, style_weight=1.0)(pred, target)
    double = FeatureMatchingLoss(teacher, style_weight=2.0)(pred, target)
    assert both > content
    assert (double - content).item() == pytest.approx(2 * (both - content).item(), rel=1e-2)


def test_feature_matching_needs_a_teacher_with_features():
    with pytest.raises(FadError, match="multi-scale features"):
        FeatureMatchingLoss(build("fan", {"widths": [8, 8], "expansions": [1, 1]}))


# ---- RGB perceptual (VGG16) -----------------------------------------------------------------


def random_vgg16_state() -> dict:
    """torchvision's VGG16 ``features.N`` layout with random weights up to relu4_3, plus keys
    the loss must ignore: a later layer (stand-in shape) and the classifier."""
    state, c_in, index = {}, 3, 0
    for v in VGG16_LAYERS:
        if v == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = 0.05 * torch.randn(v, c_in, 3, 3)
        state[f"features.{index}.bias"] = torch.zeros(v)
        c_in, index = v, index + 2  # conv, relu
    state["features.24.weight"] = torch.zeros(1)  # conv5_1 in torchvision's file: beyond relu4_3
    state["classifier.0.weight"] = torch.zeros(2, 2)
    return state


def isp_batch(n: int) -> dict:
    return {"red_gain": torch.full((n,), 2.0), "blue_gain": torch.full((n,), 1.7),
            "cam2rgb": torch.eye(3).expand(n, 3, 3).contiguous()}


def test_rgb_perceptual_missing_weights_is_a_clear_error(tmp_path):
    path = tmp_path / "vgg16-397923af.pth"
    with pytest.raises(FadError, match=f"{path}: VGG16 weights not found"):
        RGBPerceptualLoss(path)


def test_rgb_perceptual_rejects_files_that_are_not_vgg16(tmp_path):
    wrong_shape = tmp_path / "small.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, wrong_shape)
    with pytest.raises(FadError, match=f"{wrong_shape}: not VGG16 weights"):
        RGBPerceptualLoss(wrong_shape)
    not_a_dict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), not_a_dict)
    with pytest.raises(FadError, match=f"{not_a_dict}: not VGG16 weights"):
        RGBPerceptualLoss(not_a_dict)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(FadError, match=f"{garbage}: cannot read VGG16 weights"):
        RGBPerceptualLoss(garbage)


def test_rgb_perceptual_runs_with_user_supplied_weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vgg16.pth"
    torch.save(random_vgg16_state(), path)
    loss = RGBPerceptualLoss(path, style_weight=1.0)
    assert not any(p.requires_grad for p in loss.parameters())
    clean = 0.3 * torch.rand(2, 4, 8, 8) + 0.1
    assert loss(clean.clone(), clean, isp_batch(2)).item() == pytest.approx(0.0, abs=1e-9)
    pred = (clean + 0.05 * torch.randn_like(clean)).clamp(0, 1).requires_grad_(True)
    value = loss(pred, clean, isp_batch(2))
    assert torch.isfinite(value) and value.item() > 0
    value.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_psnr_drop_is_each_images_drop_in_any_scale():
    from fad_deploy.train.losses import psnr_drop

    torch.manual_seed(0)
    clean = torch.rand(3, 4, 8, 8)
    reference = clean + 0.01 * torch.randn_like(clean)
    pred = reference + 0.01 * torch.randn_like(clean)
    assert float(psnr_drop(reference, reference, clean)) == 0.0
    loss = float(psnr_drop(pred, reference, clean))
    assert loss == pytest.approx(float(psnr_drop(7 * pred, 7 * reference, 7 * clean)), rel=1e-5)
    per_image = [float(torch.log1p(((p - r) ** 2).mean() / ((r - c) ** 2).mean())) for p, r, c in
                 zip(pred, reference, clean)]
    assert loss == pytest.approx(np.mean(per_image), rel=1e-5)
