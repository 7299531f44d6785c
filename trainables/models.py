"""Models by timm name, the family each belongs to, where their weights come from, and the
preprocessing each one expects."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import timm
import torch

from trainables.baselines import BASELINE_FAMILY, BASELINES, build_baseline, from_state, is_baseline
from trainables.config import ARCH_PRESETS, is_weights_file  # noqa: F401  (ARCH_PRESETS: read from here too)

# The four families the product exists to compare, recognised from timm's model names.
FAMILY_PREFIXES = {
    "resnet": ("resnet", "resnetv2", "seresnet", "resnext", "wide_resnet"),
    "efficientnet": ("efficientnet", "tf_efficientnet", "efficientnetv2"),
    "vit": ("vit_", "deit"),
    "convnext": ("convnext",),
}


def expand_archs(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Preset names replaced by their models, duplicates dropped, order kept; every name checked."""
    out: list[str] = []
    for name in names:
        for arch in ARCH_PRESETS.get(name, (name,)):
            check_arch(arch)
            if arch not in out:
                out.append(arch)
    return tuple(out)


def family_of(arch: str) -> str:
    """'resnet' | 'efficientnet' | 'vit' | 'convnext', 'baseline' for the baselines (trainables.baselines),
    or 'other' for any other timm architecture."""
    if is_baseline(arch):
        return BASELINE_FAMILY
    for family, prefixes in FAMILY_PREFIXES.items():
        if arch.startswith(prefixes):
            return family
    return "other"


def check_arch(arch: str) -> None:
    """Fail before any trial starts if timm has no model of this name and no baseline has it."""
    if not timm.is_model(arch) and not is_baseline(arch):
        from trainables.registry import closest

        hint = closest(arch, timm.list_models(), n=5)
        did_you_mean = f" Closest timm names: {', '.join(hint)}." if hint else ""
        raise ValueError(
            f"arch: timm has no model named {arch!r}.{did_you_mean} See timm.list_models(), "
            f"or use a preset ({', '.join(ARCH_PRESETS)}) or a baseline ({', '.join(BASELINES)})."
        )


def needs_img_size(arch: str) -> bool:
    """Transformers with a learned position embedding are built for one input size; ConvNets are not."""
    return is_baseline(arch) or bool(timm.get_pretrained_cfg(arch).fixed_input_size)


def build_model(arch: str, num_classes: int, img_size: int | None, weights: str = "none") -> torch.nn.Module:
    """A timm model with a fresh ``num_classes`` head. ``weights``: 'none', 'imagenet' (timm's hub,
    cached under HF_HOME) or a local file, loaded by timm itself (safetensors, or torch.load with
    weights_only=True) and holding the whole backbone; its classifier, if any, is dropped whatever its size.
    ViTs are built for ``img_size``, and timm resamples pretrained position embeddings to it. A baseline's
    name gives it unfitted (its settings and what it learned come with the state dict it loads)."""
    check_arch(arch)
    if is_baseline(arch):
        return build_baseline(arch, num_classes)
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if img_size is not None and needs_img_size(arch):
        kwargs["img_size"] = img_size
    if weights == "none":
        return timm.create_model(arch, pretrained=False, **kwargs)
    if is_weights_file(weights):
        path = Path(weights).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights: no such file {str(path)!r} on {_host()}. On a cluster the file must exist at the same "
                "path on every node (shared storage), or be baked into the node image."
            )
        try:
            from timm.models import load_state_dict

            with torch.random.fork_rng(devices=[]), torch.device("meta"):  # its names only; the seed's head stays
                shape = timm.create_model(arch, **kwargs)
            _check_covers(shape, load_state_dict(str(path)))
            # timm drops the file's classifier where this model's class count differs from the one it takes
            # the file to have, the hub weights' (1000): told 0, it drops it always, of whatever size.
            overlay = {"file": str(path), "num_classes": 0}
            return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except Exception as e:  # noqa: BLE001 - a wrong or unsafe file reaches the user with the file named
            raise ValueError(f"weights: {str(path)!r} does not load into {arch!r}: {type(e).__name__}: {e}") from e
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - any download/cache failure reaches the user with the fix
        raise RuntimeError(
            f"weights=imagenet: could not load timm's pretrained weights for {arch!r} "
            f"({type(e).__name__}: {str(e)[:300]}). To fix: connect to the Hugging Face hub once so timm can "
            "cache them (HF_HOME, default ~/.cache/huggingface; unset HF_HUB_OFFLINE), copy a filled cache to "
            "this machine, point weights at a local file (.safetensors / .pth), or train from scratch with "
            "weights=none."
        ) from e


def load_model(arch: str, num_classes: int, img_size: int | None, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A model of this architecture holding ``state`` (a checkpoint's weights), in eval mode: a timm model of
    that shape, or a baseline rebuilt from what its state holds."""
    model = from_state(arch, num_classes, state) if is_baseline(arch) else build_model(arch, num_classes, img_size)
    model.load_state_dict(state)
    return model.eval()


def init_head(model: torch.nn.Module, std: float | None) -> None:
    """Start the new classifier the same way in every family: weights truncated-normal with ``std`` (cut at
    +-2, as timm initialises ViT and ConvNeXt heads), biases zero. None leaves the model's own init."""
    if std is None:
        return
    heads = model.get_classifier()
    for head in heads if isinstance(heads, tuple) else (heads,):
        for m in head.modules():
            if getattr(m, "weight", None) is not None and m.weight.dim() > 1:
                torch.nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)


def _check_covers(model: torch.nn.Module, state: dict) -> None:
    """The file's ``state`` must hold exactly the model's backbone. With a head of another size timm loads
    non-strictly (it drops the old classifier), so a file of another architecture would otherwise load
    nothing, or only the tensors whose names happen to match, and say nothing."""
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)

    def backbone(keys) -> set[str]:
        return {k for k in keys if not any(k.startswith(h + ".") for h in heads)}

    want, have = backbone(model.state_dict()), backbone(state)
    missing, extra = sorted(want - have), sorted(have - want)
    if missing or extra:
        raise ValueError(
            f"the file does not match the model's backbone: {len(missing)} of its {len(want)} tensors missing "
            f"(e.g. {', '.join(missing[:3]) or '-'}), {len(extra)} unexpected (e.g. {', '.join(extra[:3]) or '-'})"
        )


def weights_source(model: torch.nn.Module, weights: str) -> str:
    """Where a model's initial weights came from, for the run's parameters: the hub id and tag timm
    resolved, the file with its SHA-256 prefix, or random init."""
    if weights == "none":
        return "random init"
    if is_weights_file(weights):
        path = Path(weights).expanduser().resolve()
        return f"file:{path} sha256:{file_sha256(path)[:16]}"
    cfg = model.pretrained_cfg
    return f"hf-hub:{cfg.get('hf_hub_id') or cfg.get('url') or cfg.get('architecture')}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _host() -> str:
    import socket

    return socket.gethostname()


def data_config(model: torch.nn.Module, img_size: int | None) -> dict[str, Any]:
    """The model's own preprocessing (interpolation, crop, mean/std) from timm, at the trained size."""
    if hasattr(model, "outside_torch"):  # a baseline: its own, fixed
        from trainables.baselines import data_config as baseline_data_config

        return baseline_data_config(img_size)
    cfg = timm.data.resolve_model_data_config(model)
    if img_size is not None:
        cfg["input_size"] = (3, img_size, img_size)
    return cfg


def input_size_of(model: torch.nn.Module, img_size: int | None) -> int:
    return int(data_config(model, img_size)["input_size"][-1])
