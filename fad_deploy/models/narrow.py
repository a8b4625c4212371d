"""A trained FAN cut to narrower ARNet blocks: the start of a fine-tune into a faster
configuration (issue 18) that keeps what the wider network learned.

Each block whose hidden width shrinks keeps whole groups of its group convolution, those that
carry the most of the block's output on sample inputs, and its projection is refitted by least
squares so that the narrow block's output follows the wide one's, fed what the already narrowed
blocks before it produce (channel pruning with reconstruction, as in He et al. 2017, "Channel
Pruning for Accelerating Very Deep Neural Networks"). Every other weight is copied."""
from __future__ import annotations

import dataclasses

import torch

from ..errors import FadError
from .fan import FAN, ARNetBlock, FANConfig

# what narrowing may change; every other setting must be the wider network's
NARROWED_SETTINGS = ("hidden", "group_width", "min_hidden", "expansions")
RIDGE = 1e-6  # least-squares regulariser, relative to the mean energy of the kept channels


def narrow(source: FAN, target: FAN, noisy: torch.Tensor, refit: bool = True) -> None:
    """Fill ``target`` from ``source``. ``target``'s config differs from ``source``'s only in the
    ARNet widths (:data:`NARROWED_SETTINGS`), each block no wider and its hidden width a multiple
    of the wider block's group width; ``noisy``: sample inputs, as the networks take them.
    ``refit=False`` copies the kept channels' projection instead (benchmarks/narrow_init.py)."""
    check_narrowing(source.config, target.config)
    wide, narrow_ = arnet_blocks(source), arnet_blocks(target)
    changed = {name: block for name, block in narrow_.items()
               if block.group.weight.shape != wide[name].group.weight.shape}
    for name, block in changed.items():
        check_block(wide[name], block)
    target.load_state_dict({k: v for k, v in source.state_dict().items()
                            if not any(k.startswith(name + ".") for name in changed)}, strict=False)
    wide_in, wide_out = block_io(source, noisy, {name: wide[name] for name in changed})
    with torch.no_grad():
        for name, block in changed.items():  # in execution order: each fit sees the blocks narrowed before it
            narrow_in, _ = block_io(target, noisy, {name: block})
            narrow_block(wide[name], block, wide_in[name], wide_out[name], narrow_in[name], refit)


def check_narrowing(wide: FANConfig, narrow_: FANConfig) -> None:
    def same(setting: str) -> bool:  # a setting given for all levels equals the same one given per level
        a, b = getattr(wide, setting), getattr(narrow_, setting)
        per_level = all(isinstance(v, (int, tuple)) and not isinstance(v, bool) for v in (a, b))
        return a == b or per_level and len(wide.widths) == len(narrow_.widths) and all(
            wide.at(level, setting) == narrow_.at(level, setting) for level in range(len(wide.widths)))

    others = [f.name for f in dataclasses.fields(FANConfig) if f.name not in NARROWED_SETTINGS and not same(f.name)]
    if others:
        raise FadError(f"cannot narrow a FAN into one with other {', '.join(others)}: "
                       f"only {', '.join(NARROWED_SETTINGS)} may differ")


def check_block(wide: ARNetBlock, narrow_: ARNetBlock) -> None:
    hidden_wide, hidden = wide.group.out_channels, narrow_.group.out_channels
    size, per_group = hidden_wide // wide.group.groups, hidden // narrow_.group.groups
    if hidden > hidden_wide or hidden % size or per_group % size:
        raise FadError(f"cannot narrow an ARNet block of {hidden_wide} hidden channels in groups of {size} to "
                       f"{hidden} in groups of {per_group}: keep whole groups, no more than there are, and group "
                       f"them whole")


def arnet_blocks(model: FAN) -> dict[str, ARNetBlock]:
    """The ARNet blocks by module name, in the order the forward pass runs them."""
    side = 2 ** len(model.config.widths)
    zeros = torch.zeros(1, 4, side, side, device=next(model.parameters()).device)
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, ARNetBlock)}
    return {name: blocks[name] for name in block_io(model, zeros, blocks)[0]}


def block_io(model: FAN, noisy: torch.Tensor, blocks: dict[str, ARNetBlock]):
    """The inputs and outputs of ``blocks`` when ``model`` denoises ``noisy``."""
    inputs, outputs = {}, {}

    def record(name: str, args: tuple, out: torch.Tensor) -> None:  # a hook that returns nothing keeps the output
        inputs[name], outputs[name] = args[0], out

    hooks = [m.register_forward_hook(lambda m, args, out, name=name: record(name, args, out))
             for name, m in blocks.items()]
    try:
        with torch.no_grad():
            model(noisy)
    finally:
        for h in hooks:
            h.remove()
    return inputs, outputs


def narrow_block(wide: ARNetBlock, narrow_: ARNetBlock, wide_in: torch.Tensor, wide_out: torch.Tensor,
                 narrow_in: torch.Tensor, refit: bool) -> None:
    hidden_wide, hidden = wide.group.out_channels, narrow_.group.out_channels
    size, per_group = hidden_wide // wide.group.groups, hidden // narrow_.group.groups
    h = wide.act(wide.group(wide.act(wide.expand(wide_in))))
    # each group's share of the block's output: the energy of its channels through the projection
    project = wide.project.weight[:, :, 0, 0]
    share = torch.stack([torch.einsum("oc,nchw->nohw", project[:, g:g + size], h[:, g:g + size]).pow(2).sum()
                         for g in range(0, hidden_wide, size)])
    groups = share.argsort(descending=True)[: hidden // size].sort().values
    keep = (groups[:, None] * size + torch.arange(size, device=groups.device)).flatten()

    narrow_.expand.weight.copy_(wide.expand.weight[keep])
    narrow_.expand.bias.copy_(wide.expand.bias[keep])
    # narrow channel i reads the kept channels of its narrow group; of those, the ones of its wide group
    # keep their wide weights, the others start at zero
    inputs = keep.view(-1, per_group).repeat_interleave(per_group, 0)  # (hidden, per_group): wide channels read
    same_group = inputs // size == keep[:, None] // size
    narrow_.group.weight.copy_(wide.group.weight[keep[:, None], inputs % size] * same_group[..., None, None])
    narrow_.group.bias.copy_(wide.group.bias[keep])
    if not refit:
        narrow_.project.weight.copy_(wide.project.weight[:, keep])
        narrow_.project.bias.copy_(wide.project.bias)
        return

    # projection: least squares from the narrow block's hidden channels (on its own inputs) to the
    # wide block's output (less the narrow block's own residual input, which it adds back)
    x = narrow_.act(narrow_.group(narrow_.act(narrow_.expand(narrow_in))))
    y = wide_out - narrow_in if narrow_.residual else wide_out
    a = torch.cat([x, torch.ones_like(x[:, :1])], 1).permute(0, 2, 3, 1).reshape(-1, hidden + 1).double()
    b = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]).double()
    gram = a.T @ a
    gram += RIDGE * gram.diagonal().mean() * torch.eye(hidden + 1, dtype=gram.dtype, device=gram.device)
    solution = torch.linalg.solve(gram, a.T @ b)
    narrow_.project.weight.copy_(solution[:hidden].T.reshape(narrow_.project.weight.shape).float())
    narrow_.project.bias.copy_(solution[hidden].float())
