import pytest
import torch
from PIL import Image

from trainables.augment import AUGMENT, eval_transform, train_transform
from trainables.data import load_digits
from trainables.models import build_model, data_config


@pytest.fixture(scope="module")
def vit_and_resnet_configs():
    return {a: data_config(build_model(a, 10, 32), 32) for a in ("vit_tiny_patch16_224", "resnet18")}


def _val_tensors(transform) -> torch.Tensor:
    s = load_digits()
    return torch.stack([transform(s.val.load(i)) for i in range(len(s.val))])


def test_eval_transform_is_deterministic_over_the_whole_val_split(vit_and_resnet_configs):
    tf = eval_transform(vit_and_resnet_configs["resnet18"])
    first, second = _val_tensors(tf), _val_tensors(tf)
    assert first.shape == (270, 3, 32, 32) and torch.equal(first, second)


def test_preprocessing_follows_the_model(vit_and_resnet_configs):
    """A ViT that expects mean/std 0.5 gets them; a ResNet gets ImageNet's."""
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    vit = eval_transform(vit_and_resnet_configs["vit_tiny_patch16_224"])(white)
    res = eval_transform(vit_and_resnet_configs["resnet18"])(white)
    assert torch.allclose(vit, torch.ones_like(vit))  # (1 - 0.5) / 0.5
    assert res[0].mean().item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-4)


@pytest.mark.parametrize("policy", [p for p in AUGMENT.names() if p != "none"])
def test_training_policies_are_random_and_none_is_not(policy, vit_and_resnet_configs):
    dc = vit_and_resnet_configs["resnet18"]
    img = load_digits().train.load(0)
    torch.manual_seed(0)
    outs = [train_transform(policy, dc)(img) for _ in range(6)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:]), policy
    plain = train_transform("none", dc)
    assert torch.equal(plain(img), plain(img))
