"""Networks (FAN, ablations, teacher, baselines), their layers, and safe checkpoints."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from fad_deploy.errors import FadError
from fad_deploy.models.cycleisp import ChannelAttention, DualAttentionBlock, SpatialAttention
from fad_deploy.models.fan import ARNetBlock, FeatureAlign, SkipShrink
from fad_deploy.models.layers import HaarDown, HaarUp
from fad_deploy.models.narrow import arnet_blocks, narrow
from fad_deploy.models.registry import (
    ARCHITECTURES,
    Checkpoint,
    build,
    load_checkpoint,
    model_config,
    models_dir,
    resolve_model,
)

PAPER_PARAMS = 239_304  # FAN, paper Table 5
MAC_BUDGET_PER_MP = 2.7e9  # issue 3: at most 2.7 GMACs per megapixel of RAW
MEGAPIXEL_PACKED = (1, 4, 512, 512)  # one million RAW pixels, packed RGGB
TINY_FAN = {"widths": [8, 8, 16], "expansions": [1, 1, 1]}
pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def simple_macs(model: nn.Module, shape) -> int:
    """An independent, deliberately simple count: every Conv2d output element costs
    in_channels/groups * k*k MACs; Feature-Align adds one mul and one add per element.
    Shapes only (meta device), so a megapixel costs nothing to count."""
    total = 0

    def conv_hook(mod, _inp, out):
        nonlocal total
        total += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    def align_hook(_mod, _inp, out):  # on gamma's output: one element per modulated element
        nonlocal total
        total += 2 * out.numel()

    model = model.to("meta")
    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.gamma.register_forward_hook(align_hook) for m in model.modules() if isinstance(m, FeatureAlign)]
    with torch.no_grad():
        model(torch.zeros(shape, device="meta"))
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_keeps_the_input_shape(arch):
    torch.manual_seed(0)
    model = build(arch).eval()
    assert model.arch == arch
    for shape in [(1, 4, 18, 30), (2, 4, 64, 48), (1, 4, 5, 3), (1, 4, 32, 32)]:
        x = torch.rand(shape)
        with torch.no_grad():
            y = model(x)
        assert y.shape == x.shape, (arch, shape)
        assert torch.isfinite(y).all()


def test_fan_parameter_count_matches_the_paper():
    assert abs(n_params(build("fan")) - PAPER_PARAMS) <= 0.10 * PAPER_PARAMS


def test_fan_macs_per_megapixel_within_budget():
    macs = simple_macs(build("fan"), MEGAPIXEL_PACKED)
    assert MAC_BUDGET_PER_MP > macs > 1.5e9


def test_teacher_has_at_least_10x_the_student_macs():
    shape = (1, 4, 128, 128)
    assert simple_macs(build("teacher"), shape) >= 10 * simple_macs(build("fan"), shape)


def test_ablations_stay_near_the_student_mac_budget():
    shape = (1, 4, 128, 128)
    fan = simple_macs(build("fan"), shape)
    for arch in ("fan-noskip", "unet-plain", "unet-wavelet", "upi-lite", "cycleisp-lite"):
        assert 0.7 * fan < simple_macs(build(arch), shape) < 1.1 * MAC_BUDGET_PER_MP / 16, arch


def test_feature_align_starts_as_identity_modulation():
    align = FeatureAlign(channels=6, hidden=4)
    features, noisy = torch.randn(2, 6, 8, 8), torch.rand(2, 4, 8, 8)
    assert torch.equal(align(features, noisy), features)


def test_fresh_fan_equals_the_plain_unet_with_the_same_weights():
    """Feature-Align is the only difference and starts as the identity."""
    plain = build("unet-plain", TINY_FAN).eval()
    fan = build("fan", TINY_FAN).eval()
    missing, unexpected = fan.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("align" in k for k in missing)
    x = torch.rand(1, 4, 12, 20)
    with torch.no_grad():
        assert torch.allclose(fan(x), plain(x), atol=1e-6)


def test_haar_down_up_invert_each_other():
    x = torch.randn(2, 3, 8, 6)
    down, up = HaarDown(3), HaarUp(3)
    bands = down(x)
    assert bands.shape == (2, 12, 4, 3)
    assert torch.allclose(up(bands), x, atol=1e-6)
    assert torch.allclose(bands.pow(2).sum(), x.pow(2).sum(), rtol=1e-5)  # orthonormal
    assert not any(p.requires_grad for p in [*down.parameters(), *up.parameters()])  # fixed transform


def test_arnet_blocks_use_grouped_convs():
    model = build("fan")
    blocks = [m for m in model.modules() if isinstance(m, ARNetBlock)]
    assert len(blocks) == 2 * len(model.config.widths) - 1
    for b in blocks:
        hidden = b.group.in_channels
        assert b.group.groups == hidden // model.config.group_width > 1
        assert b.group.kernel_size == (3, 3)


def test_unet_plain_has_no_feature_align():
    assert not any(isinstance(m, FeatureAlign) for m in build("unet-plain").modules())
    assert sum(isinstance(m, FeatureAlign) for m in build("fan").modules()) == 2 * len(build("fan").config.widths) - 1


def test_feature_align_runs_from_align_min_level_and_keeps_checkpoint_keys():
    full, coarse = build("fan"), build("fan", {"align_min_level": 2})
    levels = [level for level, m in enumerate(coarse.enc_align) if isinstance(m, FeatureAlign)]
    assert levels == [2, 3, 4] and sum(isinstance(m, FeatureAlign) for m in coarse.dec_align) == 2
    assert set(coarse.state_dict()) < set(full.state_dict())  # the remaining modules keep their names
    with torch.no_grad():
        assert coarse(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    assert simple_macs(build("fan", {"align_min_level": 1}), MEGAPIXEL_PACKED) < simple_macs(full, MEGAPIXEL_PACKED)


def test_per_level_group_width_and_shared_feature_align_conditioning():
    model = build("fan", {"group_width": [1, 4, 4, 4, 4], "shared_align": True})
    assert model.enc[0].group.groups == model.enc[0].group.in_channels  # depthwise at full resolution
    assert model.dec[-1].group.groups == model.dec[-1].group.in_channels
    assert model.enc[1].group.groups == model.enc[1].group.in_channels // 4
    # one conditioning conv per level: the decoder's Feature-Aligns reuse the encoder's
    assert all(fa.shared is None for fa in model.dec_align) and all(fa.shared is not None for fa in model.enc_align)
    with torch.no_grad():
        assert model(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    full = build("fan")
    assert simple_macs(model, MEGAPIXEL_PACKED) < simple_macs(full, MEGAPIXEL_PACKED)
    level0 = build("fan", {"shared_align": [True, False, False, False, False]})  # shared at full resolution only
    assert level0.dec_align[-1].shared is None and all(fa.shared is not None for fa in level0.dec_align[:-1])
    with torch.no_grad():
        assert level0(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    assert simple_macs(model, MEGAPIXEL_PACKED) < simple_macs(level0, MEGAPIXEL_PACKED) < simple_macs(full,
                                                                                                    MEGAPIXEL_PACKED)


def test_min_hidden_widens_only_the_blocks_narrower_than_it():
    narrow, wide = (build("fan", {"group_width": 1, **extra}) for extra in ({}, {"min_hidden": 16}))
    # the first block reads the 4-plane RAW: max(c_in, 4 x group width) = 4 hidden channels unless min_hidden says more
    assert narrow.enc[0].expand.out_channels == 4 and wide.enc[0].expand.out_channels == 16
    assert wide.enc[0].group.groups == 16  # still depthwise
    assert all(a.expand.out_channels == b.expand.out_channels for a, b in zip(narrow.enc[1:], wide.enc[1:]))
    assert all(a.expand.out_channels == b.expand.out_channels for a, b in zip(narrow.dec, wide.dec))
    assert n_params(build("fan", {"min_hidden": 16})) == n_params(build("fan"))  # today's widths: no change


def test_extra_blocks_add_residual_depth_at_their_levels_only():
    plain, deep = build("fan"), build("fan", {"extra_blocks": [0, 0, 0, 1, 2]})
    assert plain.extra is None  # no new modules: checkpoints without extra blocks keep their keys
    assert [len(s) for s in deep.extra] == [0, 0, 0, 1, 2]
    assert all(b.residual and b.group.stride == (1, 1) for s in deep.extra for b in s)
    assert set(plain.state_dict()) < set(deep.state_dict())
    assert all(k.startswith("extra.") for k in set(deep.state_dict()) - set(plain.state_dict()))
    with torch.no_grad():
        assert deep(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    assert simple_macs(deep, MEGAPIXEL_PACKED) > simple_macs(plain, MEGAPIXEL_PACKED)


def test_group_kernel_sets_the_group_conv_size_per_level_and_keeps_the_resolution():
    model = build("fan", {"group_width": 1, "group_kernel": [5, 3, 3, 3, 3]})
    assert model.enc[0].group.kernel_size == (5, 5) and model.dec[-1].group.kernel_size == (5, 5)
    assert all(b.group.kernel_size == (3, 3) for b in [*model.enc[1:], *model.dec[:-1]])
    assert model.enc[0].group.groups == model.enc[0].group.in_channels  # still depthwise
    with torch.no_grad():
        assert model(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    torch.manual_seed(0)
    today = build("fan").state_dict()
    torch.manual_seed(0)
    same = build("fan", {"group_kernel": 3}).state_dict()  # the default is today's network, initial weights too
    assert same.keys() == today.keys() and all(torch.equal(same[k], today[k]) for k in today)


def test_hidden_sets_the_block_width_per_level_and_a_wide_group_makes_the_conv_dense():
    model = build("fan", {"hidden": [8, 12, 0, 0, 0], "group_width": [16, 16, 4, 4, 4]})
    for level0 in (model.enc[0], model.dec[-1]):
        assert level0.expand.out_channels == 8 and level0.group.groups == 1  # a dense 3x3 on 8 channels
    assert model.enc[1].expand.out_channels == 12 and model.enc[1].group.groups == 1
    today = build("fan")
    assert [b.expand.out_channels for b in model.enc[2:]] == [b.expand.out_channels for b in today.enc[2:]]
    assert [b.group.groups for b in model.enc[2:]] == [b.group.groups for b in today.enc[2:]]
    with torch.no_grad():
        assert model(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    assert n_params(build("fan", {"hidden": 0})) == n_params(today)  # 0: the rule, today's network


def test_head_kernel_sets_the_final_conv_and_the_default_keeps_todays_checkpoints():
    model, today = build("fan", {"head_kernel": 1}), build("fan")
    assert model.head.kernel_size == (1, 1) and today.head.kernel_size == (3, 3)
    assert n_params(today) - n_params(model) == 8 * today.head.in_channels * 4  # the 3x3's other 8 taps
    with torch.no_grad():
        assert model(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    shipped = load_checkpoint(Path(__file__).parents[1] / "models" / "fan-student.pt")  # saved before the knob
    assert "head_kernel" not in shipped.config and shipped.build().head.kernel_size == (3, 3)  # loads as it was


def test_separable_head_and_per_level_conditioning_set_their_convs_and_the_defaults_keep_todays_keys():
    model = build("fan", {"head_depthwise": True, "align_kernel": [1, 3, 3, 3, 3], "align_hidden": [4, 8, 8, 8, 8]})
    depthwise, pointwise = model.head
    assert depthwise.groups == depthwise.in_channels == 16 and depthwise.kernel_size == (3, 3)
    assert (pointwise.in_channels, pointwise.out_channels, pointwise.kernel_size) == (16, 4, (1, 1))
    level0, level1 = model.enc_align[0], model.enc_align[1]
    assert level0.shared.kernel_size == (1, 1) and level0.shared.out_channels == 4 and level0.gamma.in_channels == 4
    assert level1.shared.kernel_size == (3, 3) and level1.shared.out_channels == 8
    assert model.dec_align[-1].shared.kernel_size == (1, 1)  # the decoder's level 0 too
    with torch.no_grad():
        assert model(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    shared = build("fan", {"shared_align": True, "align_hidden": [4, 8, 8, 8, 8]})
    with torch.no_grad():  # the decoder's Feature-Align reads the encoder's 4 conditioning channels
        assert shared(torch.rand(1, 4, 20, 36)).shape == (1, 4, 20, 36)
    shipped = load_checkpoint(Path(__file__).parents[1] / "models" / "fan-student.pt")
    assert shipped.build().state_dict().keys() == build("fan").state_dict().keys()


def test_fan_noskip_has_no_skips():
    model = build("fan-noskip")
    assert model.skips is None
    assert not any(isinstance(m, SkipShrink) for m in model.modules())
    assert any(isinstance(m, FeatureAlign) for m in model.modules())


def test_unet_wavelet_samples_with_haar():
    model = build("unet-wavelet")
    assert any(isinstance(m, HaarDown) for m in model.modules())
    assert any(isinstance(m, HaarUp) for m in model.modules())


def test_teacher_features_are_multiscale():
    model = build("teacher", {"widths": [8, 16, 32]})
    feats = model.features(torch.rand(1, 4, 18, 18))  # padded to a multiple of 4: 20
    assert [f.shape[1:] for f in feats] == [(8, 20, 20), (16, 10, 10), (32, 5, 5)]


def test_build_rejects_unknown_arch_and_setting():
    with pytest.raises(FadError, match="unknown network 'resnet'.*fan"):
        build("resnet")
    with pytest.raises(FadError, match="no setting.*depth"):
        build("fan", {"depth": 3})


# ---- checkpoints -------------------------------------------------------------------------


def tiny_checkpoint(arch: str = "fan") -> Checkpoint:
    torch.manual_seed(0)
    model = build(arch, TINY_FAN)
    for p in model.parameters():  # move off the identity init so every weight matters
        p.data.add_(0.05 * torch.randn_like(p))
    return Checkpoint("tiny", arch, model_config(model), model.state_dict(), (1e-3, 1e-2),
                      card={"command": "fad-train x", "steps": 3}, extra={"note": [1, 2]})


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    ckpt = tiny_checkpoint()
    path = tmp_path / "m.pt"
    ckpt.save(path)
    loaded = load_checkpoint(path)
    assert (loaded.name, loaded.arch, loaded.config) == ("tiny", "fan", ckpt.config)
    assert loaded.shot_range == (1e-3, 1e-2)
    assert loaded.card == ckpt.card and loaded.extra == ckpt.extra
    assert loaded.anchor == ckpt.anchor
    x = torch.rand(1, 4, 18, 30)
    with torch.no_grad():
        assert torch.equal(ckpt.build()(x), loaded.build()(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind


def test_checkpoint_fp16_save(tmp_path):
    ckpt = tiny_checkpoint()
    ckpt.save(tmp_path / "full.pt")
    ckpt.save(tmp_path / "half.pt", half=True)
    half = load_checkpoint(tmp_path / "half.pt")
    assert all(v.dtype == torch.float16 for v in half.state_dict.values() if v.is_floating_point())
    assert (tmp_path / "half.pt").stat().st_size < 0.75 * (tmp_path / "full.pt").stat().st_size
    x = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        assert torch.allclose(half.build()(x), ckpt.build()(x), atol=1e-2)


def test_load_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FadError, match="nope.pt.*not found"):
        load_checkpoint(path)


def test_load_corrupted_checkpoint(tmp_path):
    path = tmp_path / "bad.pt"
    tiny_checkpoint().save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FadError, match=f"{path}.*not a readable"):
        load_checkpoint(path)


def test_load_torch_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2)}, path)
    with pytest.raises(FadError, match=f"{path}.*not a fad-deploy checkpoint"):
        load_checkpoint(path)


def test_load_checkpoint_with_missing_fields(tmp_path):
    path = tmp_path / "partial.pt"
    torch.save({"format": "fad-deploy-checkpoint/1", "name": "x"}, path)
    with pytest.raises(FadError, match=f"{path}.*missing"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this runs code (creates a file): weights_only loading must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_load_refuses_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "fad-deploy-checkpoint/1", "payload": _Payload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(FadError, match=str(path)):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)["payload"].close()  # the payload is live: unsafe loading runs it
    assert marker.exists()


def test_checkpoint_that_does_not_fit_its_network(tmp_path):
    ckpt = tiny_checkpoint()
    ckpt.config = {**ckpt.config, "widths": [8, 8, 24]}
    with pytest.raises(FadError, match="tiny"):
        ckpt.build()


def test_resolve_model_by_name_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("FAD_MODELS", str(tmp_path))
    tiny_checkpoint().save(tmp_path / "fan-tiny.pt")
    assert resolve_model("fan-tiny") == tmp_path / "fan-tiny.pt"
    assert resolve_model(str(tmp_path / "fan-tiny.pt")) == tmp_path / "fan-tiny.pt"
    with pytest.raises(FadError, match="unknown model 'fan-huge'.*fan-tiny"):
        resolve_model("fan-huge")
    with pytest.raises(FadError, match="gone.pt.*not found"):
        resolve_model(str(tmp_path / "gone.pt"))
    monkeypatch.setenv("FAD_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(FadError, match=r"unknown model 'fan-tiny' \(FAD_MODELS=.*nowhere: no such folder\)"):
        resolve_model("fan-tiny")
    monkeypatch.setenv("FAD_MODELS", "")  # set but empty: the shipped models, not the current folder's
    assert models_dir() == Path(__file__).resolve().parents[1] / "models"


def test_a_broken_checkpoint_is_named_by_its_file(tmp_path):
    ckpt = tiny_checkpoint()
    ckpt.arch = "gone-net"
    ckpt.save(tmp_path / "other.pt")
    with pytest.raises(FadError, match=r"other.pt: a checkpoint of an unknown network 'gone-net' \(this fad-deploy"):
        load_checkpoint(tmp_path / "other.pt")
    tiny_checkpoint().save(tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:2000])
    with pytest.raises(FadError, match=r"cut.pt: not a readable fad-deploy checkpoint \(truncated or damaged\?"):
        load_checkpoint(tmp_path / "cut.pt")


def test_cycleisp_lite_keeps_full_resolution_with_dual_attention():
    model = build("cycleisp-lite")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.stride == (1, 1) for m in convs)  # no down-sampling anywhere
    blocks = [m for m in model.modules() if isinstance(m, DualAttentionBlock)]
    assert len(blocks) == model.config.groups * model.config.blocks_per_group
    assert all(isinstance(b.channel, ChannelAttention) and isinstance(b.spatial, SpatialAttention) for b in blocks)
    # Spatial attention scales every channel of a pixel by one factor in (0, 1).
    x = torch.rand(2, 6, 5, 7) + 0.5
    with torch.no_grad():
        factor = SpatialAttention(6, 3)(x) / x
    assert torch.allclose(factor, factor[:, :1].expand_as(factor), atol=1e-6)
    assert ((factor > 0) & (factor < 1)).all() and factor.std() > 0


# ---- narrowing -----------------------------------------------------------------------------


def perturbed_fan(**config) -> nn.Module:
    torch.manual_seed(0)
    model = build("fan", {**TINY_FAN, **config})
    for p in model.parameters():  # move off the identity init so every weight matters
        p.data.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("refit", [True, False])
def test_narrowing_keeps_the_groups_that_carry_the_output(refit):
    """Blocks whose dropped groups carry nothing narrow without changing the network's output:
    the kept groups' weights are copied (into a dense conv), the rest of the network too."""
    wide = perturbed_fan()
    narrow_ = build("fan", {**TINY_FAN, "hidden": [4, 4, 8], "group_width": [4, 4, 8]}).eval()
    narrowed = arnet_blocks(narrow_)
    cut = [b for name, b in arnet_blocks(wide).items() if b.group.out_channels != narrowed[name].group.out_channels]
    assert len(cut) == 5  # levels 0 and 1 (encoder and decoder): 2 groups of 4 to 4; level 2: 4 groups of 4 to 8
    for i, b in enumerate(cut):
        for g in range(1 - i % 2, b.group.groups, 2):  # every other group carries nothing
            b.project.weight.data[:, 4 * g:4 * g + 4] = 0
    x = torch.rand(4, 4, 32, 32)
    narrow(wide, narrow_, x, refit=refit)
    with torch.no_grad():  # (the least squares' ridge moves the refitted output by ~3e-4 of ~2)
        assert torch.allclose(narrow_(x), wide(x), atol=1e-3 if refit else 1e-5)
    assert torch.equal(narrow_.head.weight, wide.head.weight)


def test_the_refitted_projections_follow_the_wide_network_closer_than_the_copied_ones():
    wide = perturbed_fan()
    x = torch.rand(4, 4, 32, 32)
    errors = {}
    for refit in (True, False):  # (the group kernel given per level is the same setting)
        narrow_ = build("fan", {**TINY_FAN, "hidden": [4, 4, 0], "group_kernel": [3, 3, 3]}).eval()
        narrow(wide, narrow_, x, refit=refit)
        with torch.no_grad():
            errors[refit] = (narrow_(x) - wide(x)).pow(2).mean()
    assert errors[True] < 0.5 * errors[False]


@pytest.mark.parametrize("config, message", [
    ({"widths": [8, 8, 8]}, "other widths: only hidden"),
    ({"hidden": [6, 4, 0]}, "8 hidden channels in groups of 4 to 6 in groups of 6"),
    ({"hidden": [16, 4, 0]}, "to 16 in groups of 4: keep whole groups"),
    ({"group_width": [2, 4, 4]}, "8 hidden channels in groups of 4 to 8 in groups of 2"),
    ({"group_kernel": [3, 3, 5]}, "other group_kernel"),
])
def test_narrowing_refuses_what_it_cannot_do(config, message):
    with pytest.raises(FadError, match=message):
        narrow(perturbed_fan(), build("fan", {**TINY_FAN, **config}), torch.rand(1, 4, 16, 16))
