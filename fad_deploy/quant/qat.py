"""int8 quantization of a trained checkpoint: quantization-aware fine-tuning (QAT) or
calibration only (PTQ), with torch.fx graph-mode quantization.

The result is an ordinary :class:`Checkpoint`: ``state_dict`` holds the (fine-tuned) float
weights under the network's own keys, and ``extra["quantization"]`` every quantizer's
scale and zero point as plain numbers, so :func:`fake_quant_model` rebuilds exactly the
fake-quant network that the exporters reproduce.

The quantized network is the residual core (``extra["quantization"]["output"] ==
"residual"``): its output quantizer covers the noise-sized residual, and the runner adds
it in float to the input or, with ``extra["quantization"]["base"] == "quantized input"``
(the recipe's default), to the int8 input the network saw (see :func:`quantized_input`).
Checkpoints quantized before that (no "output") keep their full network.
"""
from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections import Counter
from itertools import chain
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from torch.ao.quantization import (FakeQuantize, disable_fake_quant, disable_observer, enable_fake_quant,
                                   enable_observer)

from ..data.dataset import NoisyPatches, load_patch_cache
from ..data.noise import to_anchor
from ..errors import FadError
from ..models.registry import Checkpoint
from ..runners.base import QUANTIZED_BASE, RESIDUAL_OUTPUT, from_network_input, input_map_of, network_input
from ..runners.torch_runner import TorchRunner
from ..train.config import DataConfig, ScheduleConfig, TrainConfig
from ..train.losses import charbonnier, psnr_drop, rmse
from ..train.trainer import batch_noise, level_weights, lr_at, resolve_cache, sample_batch
from .graph import Core, Padded
from .learned import LearnedFakeQuantize, init_ranges, learned, stop_learning
from .qconfig import ACT_INT8_SHIFT, WEIGHT_QMIN, backend_config, qconfig_mapping
from .recipe import PTQConfig, QATConfig, stored_qat_config
from .split import SPLIT_KEY, single_checkpoint, split_checkpoint, split_core

QUANT_FORMAT = "fad-deploy-fx-int8/1"
WEIGHT_GRID_KEY = "weights_on_grid"  # Checkpoint.extra of a float checkpoint made by weight-only QAT
WEIGHT_GRID = "conv weights on TFLite's int8 grid: per output channel scale max|w| / 127, levels [-127, 127]"
STATE_EVERY_S = 30.0  # how often an interrupted QAT's resume file is written


# ---- preparing and freezing ---------------------------------------------------------------

def prepare(net: nn.Module, calibrate_only: bool = False, residual: bool = True,
            learned_ranges: bool = False, weight_qmin: int = WEIGHT_QMIN) -> fx.GraphModule:
    """The network's core (residual output unless ``residual`` is False) with fake quantizers
    inserted (conv + activation fused); ``weight_qmin`` -127: TFLite's narrow weight grid.

    The weights are shared with ``net``; padding and cropping stay outside (see :class:`Padded`).
    torch.fx's preparation takes seconds (it builds quantizers to check every node against the
    backend), so a network of the same structure gets a copy of the first one's prepared core,
    holding its own weights.
    """
    first = next(net.parameters())
    key = (structure(net), first.device, first.dtype, calibrate_only, residual, learned_ranges, weight_qmin)
    if key not in _PREPARED:
        template = copy.deepcopy(net)
        gm = prepare_traced(template, calibrate_only, residual, learned_ranges, weight_qmin)
        names = {id(t): name for name, t in chain(template.named_parameters(), template.named_buffers())}
        _PREPARED[key] = gm, {name: names[id(t)] for name, t in chain(gm.named_parameters(remove_duplicate=False),
                                                                       gm.named_buffers(remove_duplicate=False))
                              if id(t) in names}
    template, shared = _PREPARED[key]
    gm = copy.deepcopy(template)
    own = dict(chain(net.named_parameters(), net.named_buffers()))
    for name, source in shared.items():
        module, _, attr = name.rpartition(".")
        setattr(gm.get_submodule(module), attr, own[source])
    net.train()
    return gm


_PREPARED: dict[tuple, tuple[fx.GraphModule, dict[str, str]]] = {}  # prepare()'s: core, {its tensor: the net's}


def structure(net: nn.Module) -> tuple:
    """What tracing a network sees besides its weights' values: each module's type, settings
    and plain attributes (a plain tensor's by value: tracing copies it into the graph)."""
    return tuple((name, type(m), m.extra_repr(),
                  repr(sorted((k, v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in vars(m).items()
                              if not k.startswith("_") and k != "training")))
                 for name, m in net.named_modules())


def prepare_traced(net: nn.Module, calibrate_only: bool, residual: bool, learned_ranges: bool,
                   weight_qmin: int) -> fx.GraphModule:
    """torch.fx's QAT preparation of the network's core (see :func:`prepare`); torch's random
    numbers stay as they were (its QAT modules draw initial weights that are then replaced), so
    a prepared copy and a new preparation leave the same random state."""
    core = Core(net, residual).train()
    example = (torch.zeros(1, 4, core.multiple, core.multiple),)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice; the FX path works on 2.13
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        return prepare_qat_fx(core, qconfig_mapping(calibrate_only, learned_ranges, weight_qmin), example,
                              backend_config=backend_config())


def quantizers(gm: nn.Module) -> dict[str, FakeQuantize]:
    """Every distinct fake quantizer by its first name (shared ones appear once)."""
    return {name: m for name, m in gm.named_modules() if isinstance(m, FakeQuantize)}


def enable_quantizers(gm: nn.Module, activations: str) -> None:
    """Fake quant on for every quantizer, or (``activations == "float"``) for the weights only."""
    for name, m in gm.named_modules():
        if isinstance(m, FakeQuantize):
            on = activations == "int8" or name.endswith("weight_fake_quant")
            (enable_fake_quant if on else disable_fake_quant)(m)


def on_weight_grid(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every conv weight rounded onto TFLite's symmetric int8 grid of its output channel:
    scale max|w| / 127, levels [-127, 127]. A converter that quantizes weights so (TFLite 16x8)
    then keeps exactly these values."""
    out = {}
    for k, v in state.items():
        if k.endswith("weight") and v.dim() == 4:
            scale = v.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
            v = torch.round(v / scale).clamp(-127, 127) * scale
        out[k] = v
    return out


def freeze(gm: nn.Module) -> nn.Module:
    """Observers off, fake quant on, eval mode: the model the exports must reproduce."""
    gm.apply(disable_observer)
    gm.apply(enable_fake_quant)
    return gm.eval()


def quant_state(gm: nn.Module) -> dict:
    """Scales and zero points of every quantizer as plain numbers (for ``Checkpoint.extra``)."""
    state = {}
    for name, fq in quantizers(gm).items():
        per_channel = fq.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
        state[name] = {"scale": fq.scale.flatten().tolist(), "zero_point": fq.zero_point.flatten().tolist(),
                       "quant_min": fq.quant_min, "quant_max": fq.quant_max,
                       "axis": fq.ch_axis if per_channel else None}
    return state


def set_levels(fq: FakeQuantize, quant_min: int, quant_max: int) -> None:
    """A quantizer's integer range (torch's forward reads its observer's, exporters its own)."""
    fq.quant_min, fq.quant_max = quant_min, quant_max
    fq.activation_post_process.quant_min, fq.activation_post_process.quant_max = quant_min, quant_max


def weight_grid(gm: nn.Module) -> tuple[int, int]:
    """The int8 levels of the weights, (quant_min, quant_max), the same for every conv."""
    grids = {(fq.quant_min, fq.quant_max) for name, fq in quantizers(gm).items() if name.endswith("weight_fake_quant")}
    if len(grids) != 1:
        raise FadError(f"the weight quantizers do not share one int8 grid: {sorted(grids)}")
    return grids.pop()


def load_quant_state(gm: nn.Module, state: dict) -> nn.Module:
    fqs = quantizers(gm)
    if set(fqs) != set(state):
        raise FadError("the checkpoint's quantization ranges do not match this network's quantizers "
                       f"({len(state)} stored, {len(fqs)} in the network)")
    for name, fq in fqs.items():
        s = state[name]
        set_levels(fq, s["quant_min"], s["quant_max"])  # as made (older weights: [-128, 127])
        fq.scale = torch.tensor(s["scale"], dtype=torch.float32)
        fq.zero_point = torch.tensor(s["zero_point"], dtype=torch.int32)
        if s["axis"] is None:  # 0-d: ONNX QuantizeLinear needs scalar per-tensor scales
            fq.scale, fq.zero_point = fq.scale.reshape(()), fq.zero_point.reshape(())
    return freeze(gm)


def float_state(gm: nn.Module, net: nn.Module) -> dict[str, torch.Tensor]:
    """The network's state_dict (its own keys) read back from the QAT graph."""
    named = dict(gm.named_parameters()) | dict(gm.named_buffers())
    return {k: named[f"net.{k}"].detach().clone() for k in net.state_dict()}


def is_quantized(ckpt: Checkpoint) -> bool:
    return bool(ckpt.extra.get("quantization"))


def outputs_residual(ckpt: Checkpoint) -> bool:
    """Whether a quantized checkpoint's network outputs the residual (see the module doc)."""
    return ckpt.extra.get("quantization", {}).get("output") == RESIDUAL_OUTPUT


def require_residual(ckpt: Checkpoint) -> None:
    """Exports and runners add the input back in float: they need a residual-output quantization."""
    if not outputs_residual(ckpt):
        raise FadError(f"{ckpt.name}: quantized before exports output the residual; quantize the float "
                       "checkpoint again")


def quantized_base_grid(ckpt: Checkpoint, gm: fx.GraphModule | None = None) -> dict | None:
    """The int8 input grid of a quantized checkpoint whose residual is added to the quantized
    input (None: to the input), with its ``input_map`` where that is not linear (see
    :func:`fad_deploy.runners.base.network_input`); ``gm``, its fake-quant core, is built when
    not given."""
    q = ckpt.extra.get("quantization", {})
    if q.get("base") != QUANTIZED_BASE:
        return None
    g = grid(io_quantizers(gm if gm is not None else fake_quant_core(ckpt)[0])[0])
    if q.get("input_map", "linear") != "linear":
        g["input_map"] = q["input_map"]
    if q.get(SPLIT_KEY):
        g["split"] = q[SPLIT_KEY]
    return g


def fake_quant_core(ckpt: Checkpoint) -> tuple[fx.GraphModule, nn.Module]:
    """The frozen fake-quant core of a quantized checkpoint, and the float network it wraps."""
    q = ckpt.extra.get("quantization")
    if not q or q.get("format") != QUANT_FORMAT:
        raise FadError(f"checkpoint {ckpt.name!r} holds no int8 quantization ranges ({QUANT_FORMAT})")
    net = ckpt.build()
    gm = load_quant_state(prepare(net, residual=outputs_residual(ckpt)), q["fake_quant"])
    return (split_core(gm, q[SPLIT_KEY]) if q.get(SPLIT_KEY) else gm), net


def fake_quant_model(ckpt: Checkpoint) -> nn.Module:
    """The frozen fake-quant network of a quantized checkpoint, any input size (its output is
    the residual when :func:`outputs_residual`)."""
    gm, net = fake_quant_core(ckpt)
    return Padded(gm, net.pad).eval()


@torch.no_grad()
def full_range_weights(model: nn.Module) -> nn.Module:
    """``model`` (a frozen fake-quant network) with its narrow-grid weight quantizers written
    as full-range ones: each weight first clamped into [-127 s, 127 s], so quantizing it on
    [-128, 127] gives the same level. For exporters that take only the full signed range
    (torch's ONNX QuantizeLinear)."""
    for mod in model.modules():
        fq = getattr(mod, "weight_fake_quant", None)
        if fq is not None and fq.quant_min == -fq.quant_max:
            bound = (fq.scale * fq.quant_max).reshape(-1, *([1] * (mod.weight.dim() - 1)))
            mod.weight.copy_(torch.maximum(torch.minimum(mod.weight, bound), -bound))
            set_levels(fq, fq.quant_max - 255, fq.quant_max)
    return model


def io_quantizers(gm: fx.GraphModule) -> tuple[FakeQuantize, FakeQuantize]:
    """The quantizers of the network input and output (their scales define int8 I/O)."""
    nodes = list(gm.graph.nodes)
    first = next(u for u in nodes[0].users)
    last = nodes[-1].args[0]
    mods = dict(gm.named_modules(remove_duplicate=False))
    if not (isinstance(mods.get(first.target), FakeQuantize) and isinstance(mods.get(last.target), FakeQuantize)):
        raise FadError("the quantized network's input and output are not both quantized")
    return mods[first.target], mods[last.target]


def grid(fq: FakeQuantize) -> dict:
    """A per-tensor quantizer as TFLite int8 sees it: scale, zero point and real range."""
    scale, zp = float(fq.scale), int(fq.zero_point) + ACT_INT8_SHIFT
    return {"scale": scale, "zero_point": zp, "min": (-128 - zp) * scale, "max": (127 - zp) * scale}


class FakeQuantRunner(TorchRunner):
    """PyTorch running a quantized checkpoint's fake-quant network (the int8 reference)."""

    backend = "torch-int8"

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu", batch: int = 16):
        super().__init__(checkpoint, device, batch)
        self.model = fake_quant_model(checkpoint).to(device)
        self.residual = outputs_residual(checkpoint)
        self.base_grid = quantized_base_grid(checkpoint, self.model.core)


# ---- QAT and PTQ --------------------------------------------------------------------------------

def training_patches(ckpt: Checkpoint, crop: int, seed: int, cache: str | None) -> NoisyPatches:
    """The same patch cache and noise sampling as fad-train, over the checkpoint's noise range."""
    path = resolve_cache(TrainConfig(data=DataConfig(cache=cache)))
    return NoisyPatches(load_patch_cache(path), crop, ckpt.shot_range, seed)


SPLIT_QUANTILE = 0.999  # the share of the QAT's network inputs a split int8 input's grid covers
SPLIT_SAMPLE_BATCHES = 160  # QAT batches that quantile is taken over


def input_widening(q: Checkpoint, cfg: QATConfig) -> float:
    """How much a split int8 input's grid widens the learned one (at least 1): to the
    SPLIT_QUANTILE of the network inputs of the first SPLIT_SAMPLE_BATCHES batches of ``cfg``'s
    QAT (its patches, crop and seed; noise over ``q``'s range), as bright as its last cycle's
    (``cfg.last_exposure``), whose ranges the network keeps."""
    g = quantized_base_grid(q)
    data = training_patches(q, cfg.crop, cfg.seed, cfg.cache)
    data.exposure, data.exposure_share = cfg.last_exposure, cfg.last_exposure_share
    inputs = [network_input(anchor_pair(sample_batch(data, step, cfg.batch, cfg.seed), q.anchor)[0],
                            input_map_of(g)).numpy().ravel() for step in range(SPLIT_SAMPLE_BATCHES)]
    return round(max(1.0, float(np.quantile(np.concatenate(inputs), SPLIT_QUANTILE)) / g["max"]), 3)


def split_input(q: Checkpoint, cfg: QATConfig) -> Checkpoint:
    """``q`` (made by a QAT with ``cfg``) with the split int8 input ``cfg.input_split`` asks for,
    its grid widened to the inputs that QAT saw (:func:`input_widening`)."""
    return split_checkpoint(q, cfg.input_split, input_widening(q, cfg))


def anchor_pair(batch: dict, anchor) -> tuple[torch.Tensor, torch.Tensor]:
    noise = batch_noise(batch)
    return to_anchor(batch["noisy"], noise, anchor), to_anchor(batch["clean"], noise, anchor)


def check_crop(crop: int, multiple: int) -> None:
    if crop % multiple:
        raise FadError(f"quantization crop {crop} must be a multiple of the network's {multiple}")


def quantized_checkpoint(ckpt: Checkpoint, gm: nn.Module, net: nn.Module, method: str, details: dict,
                         residual: bool = True, base: str = "input", input_map: str = "linear") -> Checkpoint:
    """``base``: what the runner adds the residual to, "input" or "quantized" (see
    :func:`quantized_input`); ``input_map``: how the network's input is made from the anchor-space
    input (see :func:`fad_deploy.runners.base.network_input`; only with base "quantized")."""
    card = {**ckpt.card, "quantization": {"method": method, "source": ckpt.name, **details}}
    base = QUANTIZED_BASE if residual and base == "quantized" else "input"
    if input_map != "linear" and base != QUANTIZED_BASE:
        raise FadError(f"an int8 input map ({input_map}) needs the residual added to the quantized input")
    mapped = {} if input_map == "linear" else {"input_map": input_map}  # older checkpoints: linear
    extra = {**ckpt.extra, "quantization": {
        "format": QUANT_FORMAT, "method": method, "output": RESIDUAL_OUTPUT if residual else "denoised", "base": base,
        **mapped,
        "weights": "int8 per-output-channel symmetric [{} s, {} s]".format(*weight_grid(gm)),
        "activations": "8-bit per-tensor affine (quint8 grid; TFLite int8 = zero point - 128)",
        "fake_quant": quant_state(gm)}}
    return dataclasses.replace(ckpt, state_dict=float_state(gm, net), card=card, extra=extra)


def quantized_input(gm: nn.Module, u: torch.Tensor, input_map: str = "linear") -> torch.Tensor:
    """What the residual is added to when the base is the quantized input: the network's int8
    input as it saw it (dequantized, through the inverse ``input_map``), and the input itself
    where it lies outside the int8 range. The input's rounding error then reaches the network,
    which removes it as it removes noise; added to the float input instead, it would pass to
    the output untouched (step^2 / 12 of error at every pixel). Call after
    ``gm(network_input(u, ...))``, which sets a learned quantizer's scale."""
    fq = io_quantizers(gm)[0]
    x = network_input(u, input_map)
    if not fq.fake_quant_enabled[0]:
        return from_network_input(x, input_map)
    with torch.no_grad():
        level = torch.round(x / fq.scale) + fq.zero_point
        inside = (level >= fq.quant_min) & (level <= fq.quant_max)
    quantized = fq.quantize(x) if isinstance(fq, LearnedFakeQuantize) else torch.fake_quantize_per_tensor_affine(
        x, fq.scale, fq.zero_point, fq.quant_min, fq.quant_max)
    return torch.where(inside, from_network_input(quantized, input_map), u)


QAT_LOSSES = {"charbonnier": charbonnier, "rmse": rmse}


def qat_loss(gm: nn.Module, u: torch.Tensor, target: torch.Tensor, clean: torch.Tensor, weight,
             cfg: QATConfig) -> torch.Tensor:
    """``cfg.loss`` in anchor space on base + residual (the add in float, as the runners do;
    the base is the input or the quantized input, ``cfg.base``): Charbonnier or RMSE against
    ``target`` with each image's errors times ``weight`` (see
    :func:`fad_deploy.train.trainer.level_weights`), or each image's PSNR drop against the
    float network's output ``target`` given its error against ``clean`` (:func:`psnr_drop`)."""
    if not cfg.residual:
        pred = gm(u)
    else:
        r = gm(network_input(u, cfg.input_map))
        pred = r + (quantized_input(gm, u, cfg.input_map) if cfg.base == "quantized" else u)
    if cfg.loss == "drop":
        return psnr_drop(pred, target, clean)
    return QAT_LOSSES[cfg.loss](weight * pred, weight * target)


class FeatureTaps:
    """Feature-map distillation: the convs of the fake-quant core that no activation follows
    (block projections, Feature-Align's gamma and beta, skips, upsampling, the head) read
    after their output quantizer, against the same convs of the float ``reference``. Hooks
    keep each forward's maps; :meth:`loss` is their relative RMSE averaged over the maps."""

    def __init__(self, gm: fx.GraphModule, reference: nn.Module):
        mods = dict(gm.named_modules(remove_duplicate=False))
        ref = dict(reference.named_modules())
        calls = Counter(id(mods[n.target]) for n in gm.graph.nodes if n.op == "call_module")
        self.quantized: dict[str, torch.Tensor] = {}
        self.float: dict[str, torch.Tensor] = {}
        self.handles = []
        for node in gm.graph.nodes:
            name = node.target if node.op == "call_module" else None
            if type(mods.get(name)) is not torch.ao.nn.qat.Conv2d:  # fused conv + activation excluded
                continue
            tap = next(iter(node.users))  # the conv's output quantizer, unless it is shared (a concat's)
            tapped = mods.get(tap.target) if tap.op == "call_module" else None
            if not isinstance(tapped, FakeQuantize) or calls[id(tapped)] > 1:
                tapped = mods[name]
            key = name.removeprefix("net.")
            self.handles += [tapped.register_forward_hook(self.keep(self.quantized, key)),
                             ref[key].register_forward_hook(self.keep(self.float, key))]

    @staticmethod
    def keep(store: dict, key: str):
        def hook(module, inputs, output):
            store[key] = output
        return hook

    def loss(self) -> torch.Tensor:
        terms = [torch.sqrt(((self.quantized[k] - f) ** 2).mean() / (f ** 2).mean().clamp_min(1e-12) + 1e-8)
                 for k, f in self.float.items()]  # 1e-8: a finite gradient where the maps agree (observation steps)
        return torch.stack(terms).mean()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# The memory layout QAT runs in. Measured (benchmarks/results/conv_layout.md, AVX2 EPYC): in
# channels-last a step's convs run 1.47x faster but a whole QAT only 1.02x, so QAT keeps NCHW
# (and the numerics of the shipped checkpoints). Checkpoints are NCHW either way.
MEMORY_FORMAT = torch.contiguous_format


class QATState:
    """Resume file of an interrupted QAT: the fake-quant network, its optimiser, the step and
    the seconds the earlier runs spent (``earlier_s`` once loaded), written atomically every
    :data:`STATE_EVERY_S` seconds and removed when the run ends."""

    def __init__(self, path: Path | None):
        self.path, self.saved_at, self.started, self.earlier_s = path, time.time(), time.time(), 0.0

    def load(self, gm: nn.Module, opt: torch.optim.Optimizer, fingerprint: dict, device="cpu") -> int:
        self.started = time.time()
        if self.path is None or not self.path.is_file():
            return 0
        state = torch.load(self.path, map_location=device, weights_only=True)
        if stored_qat_config(state["fingerprint"]) != fingerprint:  # (a file of before a recipe field: as it ran)
            return 0  # another checkpoint or recipe: start over
        if state["learning"]:
            init_learning(gm)
        gm.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        self.earlier_s = state.get("elapsed_s", 0.0)  # files of before this field: their time is lost
        return state["step"]

    def save(self, gm: nn.Module, opt, step: int, fingerprint: dict) -> None:
        if self.path is None or time.time() - self.saved_at < STATE_EVERY_S:
            return
        from ..fileio import atomic_path

        with atomic_path(self.path) as tmp:
            torch.save({"fingerprint": fingerprint, "step": step, "model": gm.state_dict(),
                        "opt": opt.state_dict(), "learning": any(q.learning for q in learned(gm)),
                        "elapsed_s": self.earlier_s + time.time() - self.started}, tmp)
        self.saved_at = time.time()

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def init_learning(gm: nn.Module) -> None:
    """Learned quantizers as after their MSE start (on resume, the stored scales follow)."""
    for q in learned(gm):
        q.learning = True
        q.log_scale.requires_grad_(True)


def qat_settings(q: Checkpoint) -> QATConfig:
    """The QAT settings the int8 checkpoint ``q`` was made with, as its card records them."""
    fields = dataclasses.asdict(QATConfig())
    return QATConfig(**{k: v for k, v in stored_qat_config(q.card["quantization"]).items() if k in fields})


def made_with(q: Checkpoint, cfg: QATConfig) -> bool:
    """Whether the int8 checkpoint ``q`` was made by a QAT with settings ``cfg``."""
    return "quantization" in q.card and qat_settings(q) == cfg


def weight_sum(ckpt: Checkpoint) -> float:
    """The sum of a checkpoint's float tensors: which weights a QAT resume file belongs to."""
    return sum(float(v.double().sum()) for v in ckpt.state_dict.values() if v.is_floating_point())


def resume_learning(gm: nn.Module) -> None:
    """Learned quantizers learning again from their present scales (a later cycle's start)."""
    with torch.no_grad():
        for q in learned(gm):
            q.log_scale.copy_(q.scale.reshape(()).log())
    init_learning(gm)


def quantization_aware_training(ckpt: Checkpoint, cfg: QATConfig = QATConfig(), progress: bool = True,
                                state: QATState | None = None, position: int = 0, device: str = "cpu",
                                start: Checkpoint | None = None) -> Checkpoint:
    """Fine-tune a float checkpoint with fake quantization. Loss: ``cfg.loss`` on base +
    residual (see :func:`qat_loss`) against the clean patch or (``cfg.target == "float"``) the
    float network's own output, plus ``cfg.feature_distil`` times the feature maps' (see
    :class:`FeatureTaps`). Noise is sampled over the checkpoint's own shot range (a sub-range
    model's sub-range). ``cfg.adapt_steps`` float steps come first (the network learning its
    ``cfg.input_map`` before any rounding). With ``state`` an interrupted run resumes where
    it stopped (``state.earlier_s``: the seconds the runs before took). ``position``: the
    progress bar's line, for QATs run side by side. ``device``: where the networks train
    (batches are made on the CPU; the result is on the CPU). ``cfg.restarts`` later cycles of
    ``cfg.continue_steps`` follow the first (see :class:`QATConfig`); ``start``, an int8
    checkpoint of ``ckpt`` made by the recipe one cycle shorter (``cfg.previous()``), lets the
    last cycle begin from it."""
    from tqdm import tqdm

    if is_quantized(ckpt):
        raise FadError(f"checkpoint {ckpt.name!r} is already quantized")
    if start is not None and not (cfg.continue_steps and start.card.get("quantization", {}).get("source") == ckpt.name
                                  and made_with(start, cfg.previous())):
        raise FadError(f"{start.name}: a later QAT cycle starts only from an int8 checkpoint of {ckpt.name!r} made "
                       "by the recipe one cycle shorter")
    torch.manual_seed(cfg.seed)
    net = (start or ckpt).build().train()
    reference = ckpt.build().eval().requires_grad_(False) if cfg.target == "float" else None
    int8 = cfg.activations == "int8"
    gm = prepare(net, residual=cfg.residual, learned_ranges=int8 and cfg.ranges == "learned",
                 weight_qmin=cfg.weight_qmin)
    if start is not None:  # (the ranges its QAT learned: a split's widened input grid taken off)
        load_quant_state(gm, single_checkpoint(start).extra["quantization"]["fake_quant"]).train()
    for m in (gm, reference):
        if m is not None:
            m.to(device, memory_format=MEMORY_FORMAT)
    if (cfg.feature_distil or cfg.loss == "drop") and reference is None:
        raise FadError("feature-map distillation and the drop loss need the float network as the target "
                       "(target='float')")
    taps = FeatureTaps(gm, reference) if cfg.feature_distil else None
    check_crop(cfg.crop, Core(net).multiple)
    data = training_patches(ckpt, cfg.crop, cfg.seed, cfg.cache)
    scales = [q.log_scale for q in learned(gm)]
    weights = [p for p in gm.parameters() if all(p is not s for s in scales)]
    opt = torch.optim.Adam([{"params": weights, "lr": cfg.lr}, {"params": scales, "lr": cfg.scale_lr}])
    schedule = ScheduleConfig(steps=cfg.steps, lr=cfg.lr, min_lr=cfg.min_lr, warmup=0)
    freeze_step = max(cfg.observe_steps, int(cfg.freeze_observers_at * cfg.steps))
    refreeze_step = int(cfg.freeze_observers_at * cfg.continue_steps)  # in each later cycle
    fingerprint = {"source": ckpt.name, "params": weight_sum(ckpt), **dataclasses.asdict(cfg),
                   "start": None if start is None else weight_sum(start)}
    adapt = cfg.adapt_steps  # float steps first (fake quant and observers off), then the QAT's own steps
    later = adapt + cfg.steps  # where the later cycles (if any) begin
    total = later + cfg.restarts * cfg.continue_steps

    def cycle_step(step: int) -> int:  # the step within a later cycle (-1 before them)
        return (step - later) % cfg.continue_steps if later <= step < total else -1

    resume = state or QATState(None)
    last = later + (cfg.restarts - 1) * cfg.continue_steps  # where the last cycle begins
    start_step = max(resume.load(gm, opt, fingerprint, device), last if start is not None else 0)
    adapt_schedule = ScheduleConfig(steps=max(adapt, 1), lr=cfg.lr, min_lr=cfg.min_lr, warmup=0)
    later_schedule = ScheduleConfig(steps=max(cfg.continue_steps, 1), lr=cfg.continue_lr, min_lr=cfg.min_lr,
                                    warmup=0)
    if start_step - adapt < cfg.observe_steps:
        gm.apply(disable_fake_quant)
    else:
        enable_quantizers(gm, cfg.activations)
    if start_step < adapt or start_step - adapt >= freeze_step:
        gm.apply(disable_observer)
    if freeze_step <= start_step - adapt < cfg.steps or cycle_step(start_step) >= refreeze_step:
        stop_learning(gm)
    bar = tqdm(range(start_step, total), desc=f"QAT {ckpt.name}", unit="step", disable=not progress,
               mininterval=2.0, initial=start_step, total=total, position=position)
    for step in bar:
        q = step - adapt  # the QAT step (negative while adapting)
        c = cycle_step(step)
        if q == 0:
            gm.apply(enable_observer)
        if q == cfg.observe_steps:
            init_ranges(gm)
            enable_quantizers(gm, cfg.activations)
        if q == freeze_step:
            gm.apply(disable_observer)
            stop_learning(gm)
        if c == 0:
            opt.state.clear()
            resume_learning(gm)
        if c == refreeze_step:
            stop_learning(gm)
        lr = lr_at(step, adapt_schedule) if q < 0 else lr_at(q, schedule) if c < 0 else lr_at(c, later_schedule)
        opt.param_groups[0]["lr"] = lr
        opt.param_groups[1]["lr"] = cfg.scale_lr * lr / cfg.lr
        data.exposure, data.exposure_share = (cfg.last_exposure, cfg.last_exposure_share) if step >= last else (1, 1)
        batch = sample_batch(data, step, cfg.batch, cfg.seed, device=device)
        noise = batch_noise(batch)
        u, clean = (x.contiguous(memory_format=MEMORY_FORMAT) for x in anchor_pair(batch, ckpt.anchor))
        target = clean
        if reference is not None:
            with torch.no_grad():
                target = reference(u)
        weight = level_weights(noise, ckpt.anchor, cfg.level_weighting)
        if step >= last and cfg.last_level_tilt:
            weight = weight * (noise.shot / ckpt.shot_range[0]) ** cfg.last_level_tilt
        loss = qat_loss(gm, u, target, clean, weight, cfg)
        if taps is not None:
            loss = loss + cfg.feature_distil * taps.loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if q < 0 or q >= cfg.observe_steps:  # the observation samples are not kept: redo those steps
            resume.save(gm, opt, step + 1, fingerprint)
    bar.close()
    gm.to("cpu", memory_format=torch.contiguous_format)
    if taps is not None:
        taps.remove()
    if cfg.steps <= cfg.observe_steps:  # never past watching: the ranges from everything observed
        init_ranges(gm)
        stop_learning(gm)
    resume.clear()
    if not int8:  # a float network whose weights the 16x8 converter keeps as they are
        details = {"method": "qat-weights", "source": ckpt.name, **dataclasses.asdict(cfg)}
        return dataclasses.replace(ckpt, state_dict=on_weight_grid(float_state(gm, net)),
                                   card={**ckpt.card, "quantization": details},
                                   extra={**ckpt.extra, WEIGHT_GRID_KEY: {"grid": WEIGHT_GRID, **details}})
    freeze(gm)
    q = quantized_checkpoint(ckpt, gm, net, "qat", dataclasses.asdict(cfg), cfg.residual, cfg.base, cfg.input_map)
    return split_input(q, cfg) if cfg.input_split else q


@torch.no_grad()
def calibration_inputs(ckpt: Checkpoint, size: tuple[int, int], cfg: PTQConfig = PTQConfig()) -> list[np.ndarray]:
    """``cfg.batches`` network inputs of packed ``size`` for a converter that calibrates its own
    ranges (TFLite 16x8): each a mosaic of ``cfg.crop`` training patches (fad-train's cache,
    noise over the checkpoint's range, k-sigma mapped to its anchor), (1, 4, h, w) float32."""
    crop = cfg.crop
    data = training_patches(ckpt, crop, cfg.seed, cfg.cache)
    h, w = size
    rows, cols = -(-h // crop), -(-w // crop)
    inputs = []
    for step in range(cfg.batches):
        u = anchor_pair(sample_batch(data, step, rows * cols, cfg.seed), ckpt.anchor)[0]
        mosaic = u.reshape(rows, cols, 4, crop, crop).permute(2, 0, 3, 1, 4).reshape(1, 4, rows * crop, cols * crop)
        inputs.append(mosaic[..., :h, :w].numpy().astype(np.float32))
    return inputs


@torch.no_grad()
def post_training_quantization(ckpt: Checkpoint, cfg: PTQConfig = PTQConfig(), progress: bool = True) -> Checkpoint:
    """Calibrate min/max ranges on seeded training patches; weights unchanged."""
    from tqdm import tqdm

    if is_quantized(ckpt):
        raise FadError(f"checkpoint {ckpt.name!r} is already quantized")
    net = ckpt.build()
    gm = prepare(net, calibrate_only=True).eval()
    check_crop(cfg.crop, Core(net).multiple)
    data = training_patches(ckpt, cfg.crop, cfg.seed, cfg.cache)
    gm.apply(disable_fake_quant)  # observe the float network's own ranges
    for step in tqdm(range(cfg.batches), desc=f"PTQ {ckpt.name}", unit="batch", disable=not progress):
        gm(anchor_pair(sample_batch(data, step, cfg.batch, cfg.seed), ckpt.anchor)[0])
    freeze(gm)
    return quantized_checkpoint(ckpt, gm, net, "ptq", dataclasses.asdict(cfg), base=cfg.base)
