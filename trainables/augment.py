"""Augmentation policies for the training split, and the one deterministic eval transform.

timm builds every transform from the model's data config, so resizing, interpolation and mean/std
follow the model; the policies differ only in what random augmentation they add on the training split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.data import create_transform
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from trainables.registry import Registry

Transform = Callable[[Any], Any]
AUGMENT: Registry[Callable[[dict[str, Any]], Transform]] = Registry("augmentation policy")

# Random-resized-crop area range for the 'light' policy: milder than timm's ImageNet default (0.08, 1),
# which can crop a small image down to a few pixels.
LIGHT_SCALE = (0.5, 1.0)
# The area range each policy crops its training images to; the eval crop matches its mean zoom.
TRAIN_CROP_AREA = {"none": (1.0, 1.0), "light": LIGHT_SCALE, "randaugment": LIGHT_SCALE, "trivialaugment": LIGHT_SCALE}


def policy_crop_pct(policy: str) -> float:
    """The eval crop_pct at which objects look as large as in the policy's training crops: the mean side of
    a crop whose area is uniform in the policy's range (E[sqrt(a)], a ~ U(lo, hi)), as FixRes (Touvron et
    al., 2019) matches train and test object sizes. 1.0 for 'none': it trains on the whole image."""
    lo, hi = TRAIN_CROP_AREA[policy]
    if hi == lo:
        return hi**0.5
    return (2 / 3) * (hi**1.5 - lo**1.5) / (hi - lo)


def _timm_train(dc: dict[str, Any], **kw) -> Transform:
    keys = ("input_size", "interpolation", "mean", "std")
    return create_transform(**{k: dc[k] for k in keys}, is_training=True, **kw)


@AUGMENT.register("none")
def _none(dc: dict[str, Any]) -> Transform:
    return _timm_train(dc, no_aug=True)  # resize + centre crop + normalise, nothing random


@AUGMENT.register("light")
def _light(dc: dict[str, Any]) -> Transform:
    return _timm_train(dc, scale=LIGHT_SCALE, hflip=0.5, color_jitter=0.4)


@AUGMENT.register("randaugment")
def _randaugment(dc: dict[str, Any]) -> Transform:
    # timm's RandAugment: 2 ops, magnitude 9 with std 0.5, on top of random-resized-crop and flip.
    return _timm_train(dc, auto_augment="rand-m9-mstd0.5", scale=LIGHT_SCALE)


@AUGMENT.register("trivialaugment")
def _trivialaugment(dc: dict[str, Any]) -> Transform:
    # timm has no TrivialAugment; torchvision's sits between timm's crop/flip and its tensor/normalise.
    crop_flip, _, to_tensor = _timm_train(dc, scale=LIGHT_SCALE, color_jitter=None, separate=True)
    return T.Compose([crop_flip, T.TrivialAugmentWide(), to_tensor])


def train_transform(policy: str, dc: dict[str, Any], random_erasing: float = 0.0) -> Transform:
    """The policy's transform; with ``random_erasing`` > 0, timm's RandomErasing (per-pixel noise, on
    the normalised tensor) after it, whatever the policy."""
    t = AUGMENT.get(policy)(dc)
    if random_erasing > 0:
        t = T.Compose([t, RandomErasing(probability=random_erasing, mode="pixel", device="cpu")])
    return t


EVAL_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")  # all the eval transform reads


def eval_config(dc: dict[str, Any]) -> dict[str, Any]:
    """The part of a model's data config that defines its eval transform, in plain JSON types: stored
    with every logged model, so inference rebuilds exactly this transform instead of re-typing it."""
    return {k: list(dc[k]) if isinstance(dc[k], tuple | list) else dc[k] for k in EVAL_KEYS}


def eval_transform(dc: dict[str, Any]) -> Transform:
    """Deterministic: resize, centre crop at the model's crop_pct, normalise. Used for val, test and
    inference alike."""
    return create_transform(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in eval_config(dc).items()}, is_training=False
    )
