"""The typed configuration of one trial.

Ray Tune hands the trainable a plain dict; ``TrialConfig.from_dict`` turns it into this dataclass on
the trainable's first line, rejecting unknown keys and impossible values with the field named.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.registry import unknown_name_message

WEIGHTS = ("none", "imagenet")  # or a path to a local weights file with one of WEIGHT_FILE_SUFFIXES
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# Named presets, one model of each family per size, smallest first. Any timm name works too; these are
# the ones the project compares by default and has measured (BENCHMARKS.md).
ARCH_PRESETS = {
    "tiny": ("resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "convnext_atto"),
    "small": ("resnet34", "efficientnet_b1", "vit_small_patch16_224", "convnext_nano"),
    "base": ("resnet50", "efficientnet_b2", "vit_base_patch16_224", "convnext_tiny"),
}
# Baselines a recipe can name as an arch beside timm models (trainables.baselines): fitted once, no epochs.
HOG_SVM = "hog_svm"
CLIP_ZEROSHOT, CLIP_PROBE = "clip_zeroshot", "clip_probe"  # open_clip's image and text towers; its image tower
CLIP_BASELINES = (CLIP_ZEROSHOT, CLIP_PROBE)
BASELINES = (HOG_SVM, *CLIP_BASELINES)
BASELINE_FAMILY = "baseline"  # the family column of every baseline's row (and its ASHA group)
PRETRAINED_BACKBONE_LR_MULT = 0.1  # the backbone's share of the head's rate when its weights are pretrained


def is_baseline(arch: str) -> bool:
    return arch in BASELINES


def epochs_planned(config: dict[str, Any]) -> int:
    """The epochs a classification trial reports when nothing stops it: one for a baseline, which fits
    once, ``max_epochs`` for a network."""
    return 1 if is_baseline(config.get("arch", "")) else int(config["max_epochs"])


def is_weights_file(weights: str) -> bool:
    return weights not in WEIGHTS


@dataclass(frozen=True)
class TrialConfig:
    arch: str = "resnet18"
    """timm model name, e.g. resnet18, efficientnet_b0, vit_tiny_patch16_224, convnext_atto."""
    weights: str = "none"
    """'none' (random init), 'imagenet' (timm's pretrained weights, from its hub cache or a download), or
    the path of a local weights file (.safetensors, or a torch state dict loaded with weights_only=True)."""
    img_size: int | None = 32
    """Square input size in pixels; None follows the model's pretrained config (e.g. 224)."""
    freeze: str = "full"
    """Freeze strategy name: see trainables.freeze.FREEZE."""
    unfreeze_stages: int = 1
    """For freeze='partial': how many of the last backbone stages train (the head always trains)."""
    gradual_epochs: int = 1
    """For freeze='gradual': epochs that train the head alone before the whole backbone is unfrozen."""
    backbone_lr_mult: float | None = None
    """Backbone learning rate = lr * this (discriminative fine-tuning); the head gets lr. None: 0.1 with
    pretrained weights (a lower rate protects their features), 1.0 with random ones (there it only slows the
    backbone: EfficientNet-B0 on the digits, 31% against 68%, benchmarks/recipe_parity.py). Resolved when
    the config is built, so the run records the value used."""
    augment: str = "light"
    """Training-split augmentation policy name: see trainables.augment.AUGMENT."""
    head_init_std: float | None = 0.02
    """The new classifier starts truncated-normal with this std and zero bias, the same in every family
    (timm's own init for ViT and ConvNeXt heads). None keeps each model's own init, which differs by family:
    EfficientNet's draws U(+-1/sqrt(num_classes)) and starts with large logits (from random weights on the
    digits 78% against 92% at 0.02, benchmarks/recipe_parity.py)."""
    eval_crop_pct: float | None = None
    """Validation/test/inference: resize to img_size / this, centre-crop img_size. None: the training
    policy's own scale (1.0 for 'none', which trains on the whole image; the mean zoom of the random-resized
    crop otherwise), so evaluation sees objects at the size training did; a number (e.g. timm's 0.875)
    asks for another."""
    random_erasing: float = 0.0
    """Probability of timm's RandomErasing on each training image, after any policy; 0 = off."""
    mixup: float = 0.0
    """MixUp alpha (timm.data.Mixup) on training batches; 0 = off."""
    cutmix: float = 0.0
    """CutMix alpha (timm.data.Mixup) on training batches; 0 = off. With mixup, one of the two per batch."""
    lr: float = 1e-3
    """Peak head learning rate for AdamW, per batch of `batch_size` images."""
    weight_decay: float = 0.05
    """AdamW decoupled weight decay."""
    batch_size: int = 64
    max_epochs: int = 6
    warmup_epochs: float = 1.0
    """Linear warm-up length, in epochs (fractions allowed), before the cosine decay."""
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    """Max global gradient norm; 0 turns clipping off."""
    seed: int = 0
    """Seeds weight init, data order and augmentation of this trial."""
    num_workers: int | None = None
    """DataLoader worker processes; 0 loads in the trial's own process. None: one per CPU Ray gives the
    trial beyond the first (`--cpus-per-trial 4` -> 3 loader workers, 1 -> 0)."""
    amp: bool = True
    """bfloat16 autocast on CUDA; ignored on CPU (recorded as the run's `amp_active`)."""
    hog_orientations: int = 9
    """hog_svm: orientation bins of each HOG cell's histogram."""
    hog_cell: int = 8
    """hog_svm: side of a HOG cell, in pixels of the img_size image."""
    hog_block: int = 2
    """hog_svm: cells per side of a HOG normalisation block."""
    svm_c: float = 10.0
    """hog_svm: the SVM's C (a larger C fits the training split more closely)."""
    svm_gamma: float | None = None
    """hog_svm: the RBF kernel's gamma on standardised features; None: scikit-learn's 'scale',
    1 / (features x their variance), recorded as a number in the run's weights_source."""
    clip_model: str = "ViT-B-32-quickgelu"
    """clip_zeroshot, clip_probe: an open_clip model name (open_clip.list_models(); 'cvsweep-tiny' is a 2-layer
    ViT at 32 px for tests and offline runs), or the path of an open_clip model config (.json)."""
    clip_pretrained: str = "openai"
    """clip_zeroshot, clip_probe: an open_clip pretrained tag for clip_model (open_clip.list_pretrained()),
    fetched from the Hugging Face hub or its cache; a local weights file; or 'none' for random weights."""
    clip_prompts: str = "a photo of a {}."
    """clip_zeroshot: prompt templates, '|'-separated, '{}' standing for the class name (each class's text
    embedding is the mean over its prompts)."""
    probe_c: float = 1.0
    """clip_probe: inverse L2 regularisation of the logistic regression on CLIP's image features."""

    def __post_init__(self) -> None:
        from trainables.augment import AUGMENT, policy_crop_pct
        from trainables.freeze import FREEZE

        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError(f"arch: expected a timm model name, got {self.arch!r}")
        if not isinstance(self.weights, str) or (
            self.weights not in WEIGHTS and not self.weights.endswith(WEIGHT_FILE_SUFFIXES)
        ):
            raise ValueError(
                f"weights: {self.weights!r} is neither {' nor '.join(WEIGHTS)} nor a weights file "
                f"({', '.join(WEIGHT_FILE_SUFFIXES)})"
            )
        if self.freeze not in FREEZE:
            raise ValueError(f"freeze: {unknown_name_message('freeze strategy', self.freeze, FREEZE.names())}")
        if self.augment not in AUGMENT:
            raise ValueError(f"augment: {unknown_name_message('augmentation policy', self.augment, AUGMENT.names())}")
        if self.backbone_lr_mult is None:  # frozen dataclass: the resolved default is set once, here
            object.__setattr__(self, "backbone_lr_mult", 1.0 if self.weights == "none" else PRETRAINED_BACKBONE_LR_MULT)
        if self.eval_crop_pct is None:
            object.__setattr__(self, "eval_crop_pct", round(policy_crop_pct(self.augment), 4))
        if not 0.0 < self.eval_crop_pct <= 1.0:
            raise ValueError(f"eval_crop_pct: must be in (0, 1], got {self.eval_crop_pct}")
        _positive(self, "lr", "batch_size", "max_epochs", "backbone_lr_mult")
        if self.head_init_std is not None:
            _positive(self, "head_init_std")
        _non_negative(self, "weight_decay", "warmup_epochs", "grad_clip", "unfreeze_stages", "mixup", "cutmix")
        if self.num_workers is not None:
            _non_negative(self, "num_workers")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing: a probability in [0, 1], got {self.random_erasing}")
        if self.mixes and self.batch_size % 2:
            raise ValueError(
                f"batch_size: MixUp/CutMix pair images within a batch; need an even size, got {self.batch_size}"
            )
        if self.freeze == "gradual" and not 1 <= self.gradual_epochs < self.max_epochs:
            raise ValueError(
                f"gradual_epochs: head-only epochs before unfreezing must be in [1, max_epochs), "
                f"got {self.gradual_epochs} with max_epochs={self.max_epochs}"
            )
        if self.img_size is not None and self.img_size < 8:
            raise ValueError(f"img_size: must be >= 8 pixels or None (follow the model), got {self.img_size}")
        _positive(self, "hog_orientations", "hog_cell", "hog_block", "svm_c", "probe_c")
        if not isinstance(self.clip_prompts, str) or any("{}" not in t for t in self.clip_prompts.split("|")):
            raise ValueError(
                f"clip_prompts: '|'-separated templates, each with '{{}}' for the class name, got {self.clip_prompts!r}"
            )
        if self.svm_gamma is not None:
            _positive(self, "svm_gamma")
        if self.arch == HOG_SVM and (self.img_size is None or self.hog_cell * self.hog_block > self.img_size):
            raise ValueError(
                f"hog_cell x hog_block: a HOG block of {self.hog_block} cells of {self.hog_cell} px must fit in "
                f"the {self.img_size} px image (img_size) hog_svm sees; lower them or raise img_size"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs >= self.max_epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be shorter than max_epochs ({self.max_epochs})"
            )

    @property
    def mixes(self) -> bool:
        """MixUp or CutMix is on."""
        return self.mixup > 0 or self.cutmix > 0

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        names = cls.field_names()
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError("; ".join(unknown_name_message("trial config key", k, names) for k in unknown))
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive(cfg: TrialConfig, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if not v > 0:
            raise ValueError(f"{n}: must be > 0, got {v!r}")


def _non_negative(cfg: TrialConfig, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if not v >= 0:
            raise ValueError(f"{n}: must be >= 0, got {v!r}")


def run_name(config: dict[str, Any]) -> str:
    """A name a person can read in the MLflow UI, e.g. ``convnext_atto-full-light-lr3e-3``. A parameter
    the recipe left out has its TrialConfig default here, as in the run's params."""
    cfg = TrialConfig.from_dict(config)
    if cfg.arch in CLIP_BASELINES:  # e.g. clip_probe-ViT-B-32-quickgelu-openai
        return f"{cfg.arch}-{Path(cfg.clip_model).stem}-{Path(cfg.clip_pretrained).name}"
    if is_baseline(cfg.arch):  # e.g. hog_svm-9o-8px-2b-C10
        gamma = "" if cfg.svm_gamma is None else f"-g{cfg.svm_gamma:.0e}".replace("e-0", "e-")
        return f"{cfg.arch}-{cfg.hog_orientations}o-{cfg.hog_cell}px-{cfg.hog_block}b-C{cfg.svm_c:g}{gamma}"
    lr = f"{cfg.lr:.0e}".replace("e-0", "e-")
    freeze = cfg.freeze
    if freeze == "partial":
        freeze += str(cfg.unfreeze_stages)
    if freeze == "gradual":
        freeze += str(cfg.gradual_epochs)
    return f"{cfg.arch}-{freeze}-{cfg.augment}-lr{lr}"
