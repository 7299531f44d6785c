import math
import random

import pytest
import torch
from PIL import Image

from trainables import metrics as M
from trainables.augment import AUGMENT, eval_transform, train_transform
from trainables.config import TrialConfig
from trainables.data import limit_train, load_digits
from trainables.engine import build, fit
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


def test_random_erasing_makes_even_the_none_policy_random(vit_and_resnet_configs):
    dc = vit_and_resnet_configs["resnet18"]
    img = load_digits().train.load(0)
    plain = train_transform("none", dc)
    reference = plain(img)
    assert torch.equal(reference, plain(img))  # 'none' alone is deterministic
    torch.manual_seed(0)
    erasing = train_transform("none", dc, random_erasing=1.0)
    a, b = erasing(img), erasing(img)
    assert a.shape == reference.shape == (3, 32, 32)
    assert not torch.equal(a, b)  # a fresh rectangle of fresh noise on every call
    for out in (a, b):  # one rectangle (at most a third of the image) erased; the rest is the plain image
        same = (out == reference).all(0).float().mean().item()
        assert 0.6 <= same < 1.0


def test_random_erasing_zero_adds_nothing(vit_and_resnet_configs):
    dc = vit_and_resnet_configs["resnet18"]
    img = load_digits().train.load(3)
    torch.manual_seed(0)
    assert torch.equal(train_transform("none", dc, random_erasing=0.0)(img), train_transform("none", dc)(img))
    _seed(1)
    a = train_transform("light", dc, random_erasing=0.0)(img)
    _seed(1)
    assert torch.equal(a, train_transform("light", dc)(img))  # same random streams, same output


def _seed(s: int) -> None:
    random.seed(s)  # timm's crops draw from Python's random, the colour jitter from torch's
    torch.manual_seed(s)


@pytest.fixture(scope="module")
def tiny_digits():
    return limit_train(load_digits(), 64, seed=0)


def _cfg(**kw) -> TrialConfig:
    base = dict(arch="resnet18", img_size=32, max_epochs=1, warmup_epochs=0.5, batch_size=16, augment="none")
    return TrialConfig(**{**base, **kw})


def test_the_trials_training_images_are_erased_when_asked(tiny_digits):
    """random_erasing reaches the trial's training split (and only it): the same training image comes out
    different on every read, while validation images stay fixed."""
    cpu = torch.device("cpu")
    plain = build(_cfg(), tiny_digits, cpu).loaders
    assert torch.equal(plain["train"].dataset[0][0], plain["train"].dataset[0][0])
    erased = build(_cfg(random_erasing=1.0), tiny_digits, cpu).loaders
    assert not torch.equal(erased["train"].dataset[0][0], erased["train"].dataset[0][0])
    assert torch.equal(erased["val"].dataset[0][0], erased["val"].dataset[0][0])


def test_mixup_and_cutmix_train_an_epoch_with_a_finite_loss(tiny_digits):
    cpu = torch.device("cpu")
    mixed = [r.metrics for r in fit(_cfg(mixup=0.8, cutmix=1.0), tiny_digits, cpu)]
    assert [m[M.EPOCH] for m in mixed] == [1]
    assert math.isfinite(mixed[0][M.TRAIN_LOSS]) and mixed[0][M.TRAIN_LOSS] > 0
    assert 0 <= mixed[0][M.VAL_ACC] <= 1
    # mixing changes what is trained on: same seed, same data, a different training loss
    unmixed = next(iter(fit(_cfg(), tiny_digits, cpu))).metrics
    assert mixed[0][M.TRAIN_LOSS] != pytest.approx(unmixed[M.TRAIN_LOSS], rel=1e-6)


@pytest.mark.parametrize("mix", [{"mixup": 0.2}, {"cutmix": 1.0}])
def test_mixing_needs_an_even_batch_size(mix):
    with pytest.raises(ValueError, match=r"batch_size: .*even size, got 15"):
        TrialConfig(batch_size=15, **mix)
    TrialConfig(batch_size=16, **mix)  # even: fine
    TrialConfig(batch_size=15)  # odd without mixing: fine


@pytest.mark.parametrize("size", [32, 96])
@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "convnext_atto"])
def test_without_augmentation_evaluation_sees_exactly_what_training_sees(arch, size):
    """'none' trains on the whole image resized to img_size; validation and test must see it at that scale,
    not resized larger and centre-cropped (each model's crop_pct), which at 32 px cuts the digit's edges.
    Whatever the input size."""
    cfg = TrialConfig(arch=arch, augment="none", img_size=size)
    model = build_model(arch, 10, size)
    pieces_dc = {**data_config(model, size), "crop_pct": cfg.eval_crop_pct}
    image = load_digits().val.load(0)
    assert torch.equal(train_transform("none", pieces_dc)(image), eval_transform(pieces_dc)(image))


@pytest.mark.parametrize("policy", ["light", "randaugment", "trivialaugment"])
def test_with_random_resized_crops_evaluation_zooms_as_much_as_training_does_on_average(policy):
    """The crops of an area range [0.5, 1] show objects at a mean side of ~0.86 of the image: the eval crop
    matches it, whatever the model's own crop_pct; a recipe can still ask for another."""
    assert TrialConfig(augment=policy).eval_crop_pct == pytest.approx(0.862, abs=1e-3)
    assert TrialConfig(augment=policy, eval_crop_pct=0.875).eval_crop_pct == 0.875
    with pytest.raises(ValueError, match="eval_crop_pct"):
        TrialConfig(eval_crop_pct=1.2)


def test_the_trial_evaluates_and_records_the_crop_its_policy_implies(tiny_digits):
    pieces = build(_cfg(), tiny_digits, torch.device("cpu"))  # augment none
    assert pieces.info["crop_pct"] == 1.0 and pieces.data_config["crop_pct"] == 1.0
