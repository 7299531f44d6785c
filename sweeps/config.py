"""The typed configuration of a sweep: what to search over, on which data, with which resources.

Built from the command line (``sweeps/classify.py``) and validated here, before Ray starts, so a
mistake costs seconds, not a cluster's worth of failed trials.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trainables.augment import AUGMENT
from trainables.config import WEIGHTS
from trainables.freeze import FREEZE
from trainables.models import check_arch
from trainables.registry import unknown_name_message

# One small member of each family the product compares; all four train from scratch on CPU in seconds
# per epoch at 32 px (see BENCHMARKS.md for the measured times).
DEFAULT_ARCHS = ("resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "convnext_atto")


@dataclass(frozen=True)
class SearchSpace:
    archs: tuple[str, ...] = DEFAULT_ARCHS
    """timm model names to compare."""
    freeze: tuple[str, ...] = ("full", "partial", "frozen")
    """Freeze strategies to try (trainables.freeze)."""
    augment: tuple[str, ...] = ("none", "light", "randaugment", "trivialaugment")
    """Training-split augmentation policies to try (trainables.augment)."""
    lr_min: float = 3e-4
    """Lower end of the log-uniform head learning-rate range."""
    lr_max: float = 1e-2
    """Upper end of the log-uniform head learning-rate range."""

    def __post_init__(self) -> None:
        for name, allowed in (("freeze", FREEZE.names()), ("augment", AUGMENT.names())):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}: the list of choices is empty; allowed: {', '.join(allowed)}")
            for v in values:
                if v not in allowed:
                    raise ValueError(f"{name}: {unknown_name_message(name, v, allowed)}")
        if not self.archs:
            raise ValueError("archs: the list of architectures is empty")
        for a in self.archs:
            check_arch(a)
        if not 0 < self.lr_min <= self.lr_max:
            raise ValueError(f"lr range: need 0 < lr_min <= lr_max, got lr_min={self.lr_min}, lr_max={self.lr_max}")


@dataclass(frozen=True)
class SweepConfig:
    experiment: str | None = None
    """MLflow experiment name; None: 'classify-<data name>'."""
    data: str | None = None
    """ImageFolder directory (root/<class>/<image>); None: scikit-learn's bundled digits."""
    num_samples: int = 16
    """Trials to run (Optuna proposes them; the first ones are one known-good config per family)."""
    max_epochs: int = 4
    """Epochs per trial, unless ASHA stops it earlier."""
    img_size: int | None = 32
    """Input size in pixels for every model; None: each model's own pretrained size."""
    batch_size: int = 32
    weights: str = "none"
    """'none' (random init, offline) or 'imagenet' (timm's pretrained weights)."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    asha: bool = True
    """Stop trials early that are behind at the ASHA milestones."""
    grace_period: int = 2
    """Epochs every trial gets before ASHA may stop it."""
    max_failures: int = 1
    """Times Ray Tune retries a crashed trial from its last checkpoint."""
    seed: int = 0
    """Seeds the data split, the search and every trial."""
    val_frac: float = 0.15
    test_frac: float = 0.15
    train_limit: int | None = None
    """Use at most this many training images (stratified); None: all. For smoke tests."""
    tracking_uri: str | None = None
    """MLflow tracking URI; None: MLflow's own resolution (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."""
    storage_path: str | None = None
    """Where Ray Tune keeps trial checkpoints; None: Ray's default (~/ray_results)."""
    output_dir: str = "reports"
    """Where the comparison table is written (also logged to the sweep's MLflow run)."""
    address: str | None = None
    """Ray cluster address ('auto' for the cluster this machine belongs to); None: a local Ray."""
    space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self) -> None:
        for n in ("num_samples", "max_epochs", "batch_size", "grace_period"):
            if getattr(self, n) < 1:
                raise ValueError(f"{n}: must be >= 1, got {getattr(self, n)}")
        if self.cpus_per_trial <= 0:
            raise ValueError(f"cpus_per_trial: must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial: must be >= 0, got {self.gpus_per_trial}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights: {self.weights!r} is not one of {', '.join(WEIGHTS)}")
        if self.img_size is not None and self.img_size < 8:
            raise ValueError(f"img_size: must be >= 8 or None, got {self.img_size}")
        if not (0 < self.val_frac < 1 and 0 < self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            raise ValueError(f"val_frac/test_frac: each in (0, 1) and sum < 1, got {self.val_frac}, {self.test_frac}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures: must be >= 0, got {self.max_failures}")
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"train_limit: must be >= 1 or None, got {self.train_limit}")

    def flat(self) -> dict[str, object]:
        """Every setting as one flat dict of readable names, for the sweep's MLflow parameters."""
        d = dataclasses.asdict(self)
        space = d.pop("space")
        # Addresses can carry credentials (http://user:token@host): they stay out of the run.
        for secret_prone in ("tracking_uri", "address"):
            d.pop(secret_prone)
        return {**d, **{f"space.{k}": v for k, v in space.items()}}


# --smoke-test: one trial per family, two epochs, a few hundred training images.
SMOKE = dict(num_samples=4, max_epochs=2, grace_period=1, train_limit=300)
