"""Per family, exactly which parameters receive gradients under each freeze strategy."""

import pytest
import torch

from trainables.freeze import BackboneHold, apply_freeze, coarse_groups, param_groups
from trainables.models import build_model

ARCHS = ["resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "convnext_atto"]
HEADS = {
    "resnet18": {"fc.weight", "fc.bias"},
    "efficientnet_b0": {"classifier.weight", "classifier.bias"},
    "vit_tiny_patch16_224": {"head.weight", "head.bias"},
    "convnext_atto": {"head.norm.weight", "head.norm.bias", "head.fc.weight", "head.fc.bias"},
}
LAST_STAGE = {  # a parameter of each model's last stage, and one of its first
    "resnet18": ("layer4.1.conv2.weight", "layer1.0.conv1.weight"),
    "efficientnet_b0": ("blocks.6.0.conv_pw.weight", "blocks.0.0.conv_dw.weight"),
    "vit_tiny_patch16_224": ("blocks.11.mlp.fc2.weight", "blocks.0.attn.qkv.weight"),
    "convnext_atto": ("stages.3.blocks.1.conv_dw.weight", "stages.0.blocks.0.conv_dw.weight"),
}


def _params_with_grad(model: torch.nn.Module) -> set[str]:
    model.zero_grad(set_to_none=True)
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    return {n for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ARCHS)
def test_frozen_trains_only_the_head_and_keeps_batchnorm_statistics(arch):
    model = build_model(arch, 5, 32)
    tp = apply_freeze(model, "frozen")
    assert set(tp.head) == HEADS[arch] and tp.backbone == []
    stats_before = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    assert _params_with_grad(model) == HEADS[arch]
    for k, v in model.state_dict().items():  # a training-mode forward pass moved no BN statistic
        if k in stats_before:
            assert torch.equal(v, stats_before[k]), k


@pytest.mark.parametrize("arch", ARCHS)
def test_partial_trains_the_last_stages_and_the_head(arch):
    last, first = LAST_STAGE[arch]
    model = build_model(arch, 5, 32)
    apply_freeze(model, "partial", unfreeze_stages=1)
    got = _params_with_grad(model)
    assert HEADS[arch] <= got and last in got and first not in got
    # one more stage unfrozen trains strictly more
    model2 = build_model(arch, 5, 32)
    apply_freeze(model2, "partial", unfreeze_stages=2)
    assert got < _params_with_grad(model2)


@pytest.mark.parametrize("arch", ARCHS)
def test_full_trains_everything_with_a_lower_backbone_rate(arch):
    model = build_model(arch, 5, 32)
    tp = apply_freeze(model, "full")
    assert _params_with_grad(model) == {n for n, _ in model.named_parameters()}
    groups = param_groups(model, tp, lr=1e-3, backbone_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 1e-3 and by_name["backbone"]["lr"] == pytest.approx(1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_the_last_coarse_group_is_the_classifier_for_every_family():
    for arch in ARCHS:
        assert set(coarse_groups(build_model(arch, 3, 32))[-1]) == HEADS[arch]


def _bn_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def _grads_after_a_training_step(model: torch.nn.Module, hold: BackboneHold) -> set[str]:
    """What the engine does at the start of each epoch (train mode, then the hold's say), then one
    forward/backward pass."""
    model.zero_grad(set_to_none=True)
    model.train()
    hold.after_train_mode()
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ARCHS)
def test_gradual_trains_the_head_alone_while_held_then_everything(arch):
    torch.manual_seed(0)
    model = build_model(arch, 5, 32)
    tp = apply_freeze(model, "gradual")
    all_params = {n for n, _ in model.named_parameters()}
    # built like 'full': every parameter is in the optimizer's groups, the backbone at the lower rate
    assert set(tp.head) == HEADS[arch] and set(tp.backbone) == all_params - HEADS[arch]
    hold = BackboneHold(model, tp)
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert has_bn == (arch in ("resnet18", "efficientnet_b0"))

    hold.hold()
    before = _bn_stats(model)
    assert _grads_after_a_training_step(model, hold) == HEADS[arch]
    assert model.training  # the model itself is in training mode; only the held norms are not
    for k, v in _bn_stats(model).items():  # a training-mode forward pass moved no BN statistic
        assert torch.equal(v, before[k]), k

    hold.release()
    before = _bn_stats(model)
    assert _grads_after_a_training_step(model, hold) == all_params
    if has_bn:  # released: batch norm is back in training mode and its statistics follow the data
        moved = [k for k, v in _bn_stats(model).items() if "running_mean" in k and not torch.equal(v, before[k])]
        assert moved and len(moved) == sum("running_mean" in k for k in before)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradual_hold_leaves_the_backbone_unchanged_by_adamw_and_weight_decay(arch):
    torch.manual_seed(0)
    model = build_model(arch, 5, 32)
    tp = apply_freeze(model, "gradual")
    groups = param_groups(model, tp, lr=1e-2, backbone_lr_mult=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 1e-2 and by_name["backbone"]["lr"] == pytest.approx(1e-3)
    named = dict(model.named_parameters())
    assert {id(p) for p in by_name["backbone"]["params"]} == {id(named[n]) for n in named if n not in HEADS[arch]}
    opt = torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.5)  # large decay: any touch would show

    hold = BackboneHold(model, tp)
    hold.hold()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(2):
        _grads_after_a_training_step(model, hold)
        opt.step()
    now = dict(model.named_parameters())
    for n in start:
        if n in HEADS[arch]:
            assert not torch.equal(now[n], start[n]), f"head parameter {n} did not train"
        else:
            assert torch.equal(now[n], start[n]), f"held backbone parameter {n} changed"

    hold.release()  # the same optimizer, untouched, now moves the backbone too
    _grads_after_a_training_step(model, hold)
    # a parameter that is zero with a zero gradient (a bias behind a zero-initialised residual branch)
    # is a fixed point of AdamW; every other one must move
    movable = {n for n, p in model.named_parameters() if p.grad.any() or p.detach().any()}
    assert len(movable) > len(HEADS[arch]) and set(LAST_STAGE[arch]) <= movable
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, start[n])}
    assert changed == movable
