"""Losses of the paper's section 3.2: Charbonnier, simple knowledge distillation,
Feature Matching (teacher activations, content + style) and RGB perceptual (VGG16).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import FadError
from ..isp.process import process

CHARBONNIER_EPS = 1e-6  # the paper's c


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps**2).mean()


def rmse(pred: torch.Tensor, target: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """Root mean squared error: minimised where MSE (and so PSNR) is, with gradients of L1's size
    (plain MSE's are tiny at the small errors of a nearly converged network, below Adam's eps);
    ``eps`` keeps the gradient finite where pred == target (a distillation's first steps)."""
    return torch.sqrt(((pred - target) ** 2).mean() + eps**2)


def psnr_drop(pred: torch.Tensor, reference: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The mean over images of log(1 + MSE(pred, reference) / MSE(reference, clean)): each
    image's PSNR drop (in units of ln 10 / 10 dB) of ``pred`` against ``reference`` when their
    errors are independent. Every image counts by its dB, as a mean PSNR does, so a smooth
    image the reference denoises to a tiny error weighs as much as a textured one; and the
    ratio is the same in any scale (anchor space's per-level scaling cancels)."""
    deviation = ((pred - reference) ** 2).flatten(1).mean(1)
    error = ((reference - clean) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return torch.log1p(deviation / error).mean()


def distillation_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Simple KD: L1 between the student's and the (frozen) teacher's outputs."""
    return (student - teacher.detach()).abs().mean()


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def content_style(feats_pred: list[torch.Tensor], feats_target: list[torch.Tensor], style_weight: float):
    """Johnson et al. perceptual loss: feature MSE plus Gram-matrix MSE, summed over scales."""
    content = sum(F.mse_loss(p, t.detach()) for p, t in zip(feats_pred, feats_target))
    style = sum(F.mse_loss(gram(p), gram(t.detach())) for p, t in zip(feats_pred, feats_target))
    return content + style_weight * style


class FeatureMatchingLoss(nn.Module):
    """Content and style distance between the teacher's multi-scale activations of the
    prediction and of the ground truth (the teacher replaces VGG as feature extractor)."""

    def __init__(self, teacher: nn.Module, style_weight: float = 1.0):
        super().__init__()
        if not hasattr(teacher, "features"):
            raise FadError("the Feature Matching loss needs a teacher network with multi-scale features")
        self.teacher = teacher.eval().requires_grad_(False)
        self.style_weight = style_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats_target = self.teacher.features(target)
        return content_style(self.teacher.features(pred), feats_target, self.style_weight)


# VGG16 "features" layout: (out_channels or "M" for max-pool); activations after relu1_2..relu4_3.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
VGG16_TAPS = (3, 8, 15, 22)  # indices in the Sequential of relu1_2, relu2_2, relu3_3, relu4_3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_features(weights: str | Path) -> nn.Sequential:
    """VGG16 conv layers loaded from a user-supplied state dict (torchvision's
    ``vgg16-*.pth`` layout, keys ``features.N.weight``). None is installable here."""
    layers, c_in = [], 3
    for v in VGG16_LAYERS:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
            c_in = v
    net = nn.Sequential(*layers)
    path = Path(weights)
    if not path.is_file():
        raise FadError(f"{path}: VGG16 weights not found (the RGB perceptual loss needs ImageNet VGG16 weights "
                       "you supply, e.g. torchvision's vgg16-397923af.pth; none can be installed here)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise FadError(f"{path}: cannot read VGG16 weights ({type(e).__name__})")
    if not isinstance(state, dict):
        raise FadError(f"{path}: not VGG16 weights (expected a state dict, got a {type(state).__name__})")
    state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    try:
        net.load_state_dict({k: v for k, v in state.items() if int(k.split(".")[0]) < len(net)})
    except (RuntimeError, ValueError) as e:
        raise FadError(f"{path}: not VGG16 weights ({str(e).splitlines()[0]})")
    return net.eval().requires_grad_(False)


class RGBPerceptualLoss(nn.Module):
    """Perceptual loss on sRGB after the minimal ISP (UPI's RGB loss, with VGG16 features)."""

    def __init__(self, vgg_weights: str | Path, style_weight: float = 1.0):
        super().__init__()
        self.vgg = vgg16_features(vgg_weights)
        self.style_weight = style_weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[:, None, None])
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[:, None, None])

    def _feats(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x, out = (rgb - self.mean) / self.std, []
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in VGG16_TAPS:
                out.append(x)
        return out

    def forward(self, pred_raw, clean_raw, batch) -> torch.Tensor:
        isp = lambda raw: process(raw, batch["red_gain"], batch["blue_gain"], batch["cam2rgb"])  # noqa: E731
        with torch.no_grad():
            target = self._feats(isp(clean_raw))
        return content_style(self._feats(isp(pred_raw)), target, self.style_weight)
