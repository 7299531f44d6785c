"""The recipe of a classification sweep, read from a YAML file under ``sweeps/configs/``.

A recipe says what to search over (``space``: any ``TrialConfig`` field, fixed or searched), how
(``search``: Optuna TPE, random or an exhaustive grid; ASHA on or off; one or several objectives),
on which data and with which resources. What every task's recipe has, and the reading and checking of
it, is ``sweeps.recipe.Recipe``; this adds the classification settings (the split, the objectives,
the registered model) and the checks only classification needs (conditional parameters, presets).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import StrictBool, StrictInt, StrictStr

from sweeps.recipe import (  # noqa: F401  (ConfigError: read from here by tests)
    RANGE_KINDS,
    SWEEP_LEVEL,
    ConfigError,
    Dim,
    Expect,
    Number,
    Recipe,
    UserPath,
    When,
    _check,
    _collect,
    _trial_check,
    expand_user,
    is_active,
)
from trainables import metrics as M
from trainables.config import (
    BASELINES,
    CLIP_BASELINES,
    CLIP_PROBE,
    CLIP_ZEROSHOT,
    HOG_SVM,
    WEIGHT_FILE_SUFFIXES,
    TrialConfig,
    is_weights_file,
)
from trainables.data import DECODE_CACHE_MB
from trainables.models import ARCH_PRESETS, expand_archs
from trainables.registry import unknown_name_message

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "quickstart.yaml"

POINTS_ONE_PER_ARCH = "one_per_arch"
# Trial parameters that only exist under some choices of another: sampled (and recorded) only then. The
# networks' training settings do not exist for a baseline, nor a baseline's settings for a network.
NETWORK_ONLY = (
    "weights", "freeze", "backbone_lr_mult", "augment", "head_init_std", "eval_crop_pct", "random_erasing",
    "mixup", "cutmix", "lr", "weight_decay", "batch_size", "warmup_epochs", "label_smoothing", "grad_clip",
    "num_workers", "amp",
)  # fmt: skip
CONDITIONAL = {
    **{k: When("arch", BASELINES, negate=True) for k in NETWORK_ONLY},
    **{k: When("arch", (HOG_SVM,)) for k in ("hog_orientations", "hog_cell", "hog_block", "svm_c", "svm_gamma")},
    **{k: When("arch", CLIP_BASELINES) for k in ("clip_model", "clip_pretrained")},
    "img_size": When("arch", CLIP_BASELINES, negate=True),  # CLIP takes the size its model was built for
    "clip_prompts": When("arch", (CLIP_ZEROSHOT,)),
    "probe_c": When("arch", (CLIP_PROBE,)),
    "unfreeze_stages": When("freeze", ("partial",)),
    "gradual_epochs": When("freeze", ("gradual",)),
}
SMOKE_TRAIN_LIMIT = 300  # --smoke-test's training images
Objectives = Annotated[tuple[StrictStr, ...], Expect(f"a list of metric names ({', '.join(M.OBJECTIVES)})")]


def active(key: str, chosen: dict[str, Any]) -> bool:
    """Whether a trial parameter exists given the values chosen so far (conditional ones may not)."""
    return is_active(CONDITIONAL, TrialConfig, key, chosen)


def trial_params(config: dict[str, Any]) -> dict[str, Any]:
    """Every parameter a trial ran with, TrialConfig's defaults included, conditional ones only where
    they exist: what its MLflow run records."""
    full = TrialConfig.from_dict(config).to_dict()
    return {k: v for k, v in full.items() if active(k, full)}


@dataclass(frozen=True)
class SweepConfig(Recipe):
    trial_type: ClassVar[type] = TrialConfig
    row_key: ClassVar[str] = "arch"
    points_one_per: ClassVar[str] = POINTS_ONE_PER_ARCH
    conditional: ClassVar[dict[str, When]] = CONDITIONAL
    smoke_settings: ClassVar[dict[str, Any]] = {"train_limit": SMOKE_TRAIN_LIMIT}

    data: UserPath | None = None
    """ImageFolder directory (root/<class>/<image>); None: scikit-learn's bundled digits."""
    val_frac: Number = 0.15
    test_frac: Number = 0.15
    train_limit: StrictInt | None = None
    """Use at most this many training images (stratified); None: all. For smoke tests."""
    skip_bad_images: StrictBool = False
    """Leave out files that cannot be read as images (listed in the sweep's run) instead of stopping."""
    decode_cache_mb: Number = DECODE_CACHE_MB
    """A folder's images, decoded by the up-front check, are kept in memory (Ray's object store, once per
    node) while they take at most this many megabytes; over it, or at 0, trials decode the files each epoch."""
    objectives: Objectives = (M.VAL_ACC,)
    """Metrics the search optimises; two or more make it multi-objective (e.g. val_acc and latency_ms)."""
    registered_model: StrictStr | None = None
    """Model Registry name under which the sweep's best model becomes the 'champion'; None: the experiment's."""
    space: dict[str, Dim] = field(default_factory=lambda: {"arch": Dim("choice", ARCH_PRESETS["tiny"])})
    """Trial parameters (TrialConfig fields) by name; those left out keep TrialConfig's defaults."""

    def _check_task(self) -> None:
        problems = []
        if not self.decode_cache_mb >= 0:
            problems.append(f"decode_cache_mb: must be >= 0 megabytes, got {self.decode_cache_mb}")
        if not (0 < self.val_frac < 1 and 0 < self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            problems.append(f"val_frac/test_frac: each in (0, 1) and sum < 1, got {self.val_frac}, {self.test_frac}")
        if self.train_limit is not None and self.train_limit < 1:
            problems.append(f"train_limit: must be >= 1 or null, got {self.train_limit}")
        problems += _collect([self._check_objectives])
        if problems:
            raise ConfigError.of(problems)

    def _check_objectives(self) -> None:
        _check(len(self.objectives) > 0, "objectives", f"need at least one of {', '.join(M.OBJECTIVES)}")
        for o in self.objectives:
            if o not in M.OBJECTIVES:
                raise ConfigError(f"objectives: {unknown_name_message('objective', o, list(M.OBJECTIVES))}")
        _check(len(set(self.objectives)) == len(self.objectives), "objectives", "each metric at most once")
        _check(
            self.objectives[0] in (M.VAL_ACC, M.VAL_F1) or not self.asha,
            "objectives",
            f"ASHA stops trials on the first objective, which must be a quality metric, not {self.objectives[0]!r}",
        )

    def _check_space(self) -> None:
        required = functools.partial(
            _check, "arch" in self.space, "space.arch", "the architectures to compare are required"
        )
        problems = _collect([required, super()._check_space])
        for child in self.unused_conditionals():
            when = CONDITIONAL[child]
            problems.append(
                f"space.{child}: only used when {when.describe()}, and space.{when.parent} never is "
                f"({self.dim(when.parent).describe()}); remove {child} or {when.fix()}"
            )
        if problems:
            raise ConfigError.of(problems)

    def check_batch_size(self, train_size: int) -> None:
        """Once the training split's size is known (after ``train_limit``): every batch size the space can
        give fits in it (as large is one full step). A larger batch is one step an epoch, or none under
        MixUp/CutMix, where the training DataLoader drops an incomplete batch (trainables.engine.make_loaders)."""
        if not any(self.active("batch_size", {"arch": arch}) for arch in self.archs):
            return  # baselines only: none trains in batches
        dim = self.dim("batch_size")
        key = "space.batch_size" if "batch_size" in self.space else f"batch_size (the default, {dim.values[0]})"
        if dim.kind in RANGE_KINDS:
            if dim.values[1] <= train_size:
                return
            what = f"{dim.describe()} reaches {dim.values[1]}, which is"
            fix = f"Lower the upper bound to at most {train_size}"
        else:
            over = [b for b in dim.values if b > train_size]
            if not over:
                return
            what = ", ".join(map(str, over)) + (" are" if len(over) > 1 else " is")
            fix = f"Give batch sizes of at most {train_size}"
        cut = self.train_limit is not None and train_size >= self.train_limit
        limited = f" (cut to train_limit {self.train_limit}; --smoke-test sets {SMOKE_TRAIN_LIMIT})" if cut else ""
        mixing = [d.values for d in map(self.dim, ("mixup", "cutmix"))]  # fixed, choices or (low, high)
        # No step fails the trial at its start (timm's scheduler asserts a schedule of at least one step).
        if any(min(v) > 0 for v in mixing):  # every trial mixes
            steps = "no step at all and fail at its start (under MixUp/CutMix the training loader drops an "
            steps += "incomplete batch)"
        elif any(max(v) > 0 for v in mixing):
            steps = (
                f"one step an epoch, on all {train_size} images; a trial with MixUp/CutMix none at all, and fail at "
                "its start (the training loader drops an incomplete batch there)"
            )
        else:
            steps = f"one step an epoch, on all {train_size} images"
        problem = (
            f"{key}: {what} more than the {train_size} images of the training split{limited}: a trial would "
            f"take {steps}. {fix} (space.batch_size, or --batch-size), or give the sweep more training images"
        )
        raise ConfigError.of([problem], self.source)

    def unused_conditionals(self) -> list[str]:
        """Conditional parameters in the space whose condition no choice can meet."""
        return [
            child
            for child, when in CONDITIONAL.items()
            if child in self.space and not any(when.holds(v) for v in self.dim(when.parent).candidates())
        ]

    @property
    def archs(self) -> tuple[str, ...]:
        return self.rows

    def modes(self) -> list[str]:
        """'max' or 'min' for each objective, in order."""
        return [M.OBJECTIVES[o] for o in self.objectives]

    @classmethod
    def _values(cls, key: str, values: list[Any]) -> list[Any]:
        if key == "arch":
            return list(_expand_archs(values))
        if key == "weights":
            return [_weights_path(v) for v in values]
        return values


def _expand_archs(names: list[Any]) -> tuple[str, ...]:
    try:
        return expand_archs([str(n) for n in names])
    except ValueError as e:
        raise ConfigError(f"space.{e}") from None


def _weights_path(v: Any) -> Any:
    """Local weight files must exist when the sweep starts; stored as absolute paths."""
    if not isinstance(v, str) or not is_weights_file(v) or not v.endswith(WEIGHT_FILE_SUFFIXES):
        return v  # TrialConfig's own check names what is allowed
    try:
        path = expand_user(v).resolve()
    except ValueError as e:
        raise ConfigError(f"space.weights: {e}") from None
    if not path.is_file():
        raise ConfigError(f"space.weights: no such file {str(path)!r}")
    return str(path)


def config_from_dict(d: dict[str, Any], source: str = "<dict>") -> SweepConfig:
    """A recipe's mapping -> SweepConfig; errors are ConfigErrors prefixed with ``source``."""
    return SweepConfig.from_dict(d, source)


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a YAML recipe. Errors name the file and the key."""
    return SweepConfig.load(path, CONFIG_DIR)


def smoke(cfg: SweepConfig) -> SweepConfig:
    """A tiny version of a recipe: one trial per architecture, 2 epochs, 300 training images, timings of 0.2 s."""
    return cfg.smoke()
