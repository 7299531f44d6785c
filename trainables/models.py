"""Models by timm name, the family each belongs to, and the preprocessing each one expects."""

from __future__ import annotations

from typing import Any

import timm
import torch

# The four families the product exists to compare, recognised from timm's model names.
FAMILY_PREFIXES = {
    "resnet": ("resnet", "resnetv2", "seresnet", "resnext", "wide_resnet"),
    "efficientnet": ("efficientnet", "tf_efficientnet", "efficientnetv2"),
    "vit": ("vit_", "deit"),
    "convnext": ("convnext",),
}


def family_of(arch: str) -> str:
    """'resnet' | 'efficientnet' | 'vit' | 'convnext', or 'other' for any other timm architecture."""
    for family, prefixes in FAMILY_PREFIXES.items():
        if arch.startswith(prefixes):
            return family
    return "other"


def check_arch(arch: str) -> None:
    """Fail before any trial starts if timm has no model of this name."""
    if not timm.is_model(arch):
        from trainables.registry import closest

        hint = closest(arch, timm.list_models(), n=5)
        did_you_mean = f" Closest timm names: {', '.join(hint)}." if hint else ""
        raise ValueError(f"arch: timm has no model named {arch!r}.{did_you_mean} See timm.list_models().")


def needs_img_size(arch: str) -> bool:
    """Transformers with a learned position embedding are built for one input size; ConvNets are not."""
    return bool(timm.get_pretrained_cfg(arch).fixed_input_size)


def build_model(arch: str, num_classes: int, img_size: int | None, weights: str = "none") -> torch.nn.Module:
    """A timm model with a fresh ``num_classes`` head; ViTs are built for ``img_size`` (timm resamples
    pretrained position embeddings to it)."""
    check_arch(arch)
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if img_size is not None and needs_img_size(arch):
        kwargs["img_size"] = img_size
    try:
        return timm.create_model(arch, pretrained=weights == "imagenet", **kwargs)
    except Exception as e:  # noqa: BLE001 - any download/cache failure reaches the user with the fix
        if weights != "imagenet":
            raise
        raise RuntimeError(
            f"weights=imagenet: could not load timm's pretrained weights for {arch!r} ({type(e).__name__}: {e}). "
            "Connect to the Hugging Face hub once to fill the cache (HF_HOME), or run with weights=none."
        ) from e


def data_config(model: torch.nn.Module, img_size: int | None) -> dict[str, Any]:
    """The model's own preprocessing (interpolation, crop, mean/std) from timm, at the trained size."""
    cfg = timm.data.resolve_model_data_config(model)
    if img_size is not None:
        cfg["input_size"] = (3, img_size, img_size)
    return cfg


def input_size_of(model: torch.nn.Module, img_size: int | None) -> int:
    return int(data_config(model, img_size)["input_size"][-1])
