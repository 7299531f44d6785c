"""Freeze strategies: which parameters train, and at which learning rate.

Stages come from timm's own ``group_matcher(coarse=True)``, which every timm model defines (stem,
each stage or transformer block, head), so one implementation serves ResNet, EfficientNet, ViT and
ConvNeXt alike. The last coarse group is the classifier head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from timm.models import group_parameters
from timm.utils import freeze as timm_freeze

from trainables.registry import Registry


@dataclass(frozen=True)
class TrainableParams:
    head: list[str]  # parameter names at the head learning rate
    backbone: list[str]  # trainable backbone parameter names, at lr * backbone_lr_mult


def coarse_groups(model: torch.nn.Module) -> list[list[str]]:
    """Parameter names per coarse group, in forward order: [stem, stage 1, ..., stage N, head]."""
    groups = group_parameters(model, model.group_matcher(coarse=True))
    return [groups[k] for k in sorted(groups)]


FREEZE: Registry[Callable[[list[list[str]], int], int]] = Registry("freeze strategy")


# Each strategy answers: how many coarse groups, counted from the end (the head is one), train?
@FREEZE.register("full")
def _full(groups: list[list[str]], unfreeze_stages: int) -> int:
    return len(groups)


@FREEZE.register("partial")
def _partial(groups: list[list[str]], unfreeze_stages: int) -> int:
    return min(len(groups), 1 + unfreeze_stages)


@FREEZE.register("frozen")
def _frozen(groups: list[list[str]], unfreeze_stages: int) -> int:
    return 1


# 'gradual' builds like 'full' (every parameter in the optimizer, the backbone at the lower rate); the
# engine holds the backbone still for the first `gradual_epochs` with `hold_backbone`, then lets it go.
@FREEZE.register("gradual")
def _gradual(groups: list[list[str]], unfreeze_stages: int) -> int:
    return len(groups)


def apply_freeze(model: torch.nn.Module, strategy: str, unfreeze_stages: int = 1) -> TrainableParams:
    """Freeze in place everything the strategy leaves out, batch-norm running statistics included
    (timm swaps those layers for FrozenBatchNorm2d), and say which parameters train."""
    groups = coarse_groups(model)
    n_train = FREEZE.get(strategy)(groups, unfreeze_stages)
    trainable = {name for g in groups[len(groups) - n_train :] for name in g}
    frozen_modules = _fully_frozen_modules(model, trainable)
    if frozen_modules:
        timm_freeze(model, frozen_modules)
    head = groups[-1]
    backbone = [n for n, p in model.named_parameters() if p.requires_grad and n not in set(head)]
    return TrainableParams(head=list(head), backbone=backbone)


def _fully_frozen_modules(model: torch.nn.Module, trainable: set[str]) -> list[str]:
    """The outermost modules none of whose parameters train (freezing works on modules)."""
    out: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(o + ".") for o in out):
            continue
        params = [f"{name}.{p}" for p, _ in module.named_parameters()]
        if params and not any(p in trainable for p in params):
            out.append(name)
    # Parameters held directly by the root (ViT's cls_token, pos_embed) belong to no child module.
    for pname, p in model.named_parameters(recurse=False):
        if pname not in trainable:
            p.requires_grad = False
    return out


class BackboneHold:
    """Head-only warm-up for the 'gradual' strategy: the backbone's parameters get no gradient and its
    normalisation layers keep their running statistics, exactly as under 'frozen'; ``release()`` lets
    the whole backbone train. Works by ``requires_grad`` and eval mode instead of swapping modules, so
    the optimizer keeps the same parameters (AdamW skips those without a gradient)."""

    def __init__(self, model: torch.nn.Module, tp: TrainableParams) -> None:
        backbone = set(tp.backbone)
        self.params = [p for n, p in model.named_parameters() if n in backbone]
        self.norms = [
            m
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            and all(f"{name}.{pn}" in backbone for pn, _ in m.named_parameters())
        ]
        self.held = False

    def hold(self) -> None:
        for p in self.params:
            p.requires_grad_(False)
        self.held = True

    def release(self) -> None:
        for p in self.params:
            p.requires_grad_(True)
        self.held = False

    def after_train_mode(self) -> None:
        """Call after ``model.train()``: held batch-norm layers stay in eval mode (statistics fixed)."""
        if self.held:
            for m in self.norms:
                m.eval()


def param_groups(model: torch.nn.Module, tp: TrainableParams, lr: float, backbone_lr_mult: float) -> list[dict]:
    """Optimizer groups: the head at ``lr``, the trainable backbone at ``lr * backbone_lr_mult``."""
    named = dict(model.named_parameters())
    groups = [{"params": [named[n] for n in tp.head], "lr": lr, "name": "head"}]
    if tp.backbone:
        groups.append({"params": [named[n] for n in tp.backbone], "lr": lr * backbone_lr_mult, "name": "backbone"})
    return groups
