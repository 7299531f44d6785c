"""The typed configuration of a sweep, read from a YAML recipe under ``sweeps/configs/``.

A recipe says what to search over (``space``: any ``TrialConfig`` field, fixed or searched), how
(``search``: Optuna TPE, random or an exhaustive grid; ASHA on or off; one or several objectives),
on which data and with which resources. ``load_config`` validates all of it before Ray starts, and
every error names the file, the key and what is allowed; command-line flags override the common
fields (``with_overrides``), with errors that name the flag.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainables import metrics as M
from trainables.config import WEIGHT_FILE_SUFFIXES, TrialConfig, is_weights_file
from trainables.data import DECODE_CACHE_MB
from trainables.latency import LATENCY_MIN_SECONDS
from trainables.models import ARCH_PRESETS, expand_archs
from trainables.registry import unknown_name_message

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "quickstart.yaml"

SEARCH_ALGORITHMS = ("tpe", "random", "grid")
POINTS_ONE_PER_ARCH = "one_per_arch"

# Trial parameters that only exist under one choice of another: sampled (and recorded) only then.
CONDITIONAL = {"unfreeze_stages": ("freeze", "partial"), "gradual_epochs": ("freeze", "gradual")}
# Trial fields the sweep sets itself: ASHA's horizon, and the one seed of the whole sweep.
SWEEP_LEVEL = ("max_epochs", "seed")
# --smoke-test's timings: 30 runs still give a median; 0.2 s instead of 1 s saves ~10 s of a 4-model report
SMOKE_TIMING_S = 0.2
SMOKE_TRAIN_LIMIT = 300  # --smoke-test's training images
RANGE_KINDS = ("loguniform", "uniform", "randint")


def active(key: str, chosen: dict[str, Any]) -> bool:
    """Whether a trial parameter exists given the values chosen so far (conditional ones may not)."""
    if key not in CONDITIONAL:
        return True
    parent, when = CONDITIONAL[key]
    return chosen.get(parent, getattr(TrialConfig, parent)) == when


def trial_params(config: dict[str, Any]) -> dict[str, Any]:
    """Every parameter a trial ran with, TrialConfig's defaults included, conditional ones only where
    they exist: what its MLflow run records."""
    full = TrialConfig.from_dict(config).to_dict()
    return {k: v for k, v in full.items() if active(k, full)}


class ConfigError(ValueError):
    """Mistakes in a sweep recipe or on the command line; the message names where and what, and
    ``problems`` holds each mistake on its own."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]

    @classmethod
    def of(cls, problems: list[str], where: str = "") -> ConfigError:
        at = [f"{where}: {p}" if where else p for p in problems]
        if len(at) == 1:
            return cls(at[0], at)
        head = f"{where}: {len(at)} problems:" if where else f"{len(at)} problems:"
        return cls(head + "".join(f"\n  {p}" for p in at), at)


@dataclass(frozen=True)
class Dim:
    """One axis of the search space: a fixed value, a list of choices, or a range."""

    kind: str  # "fixed" | "choice" | "loguniform" | "uniform" | "randint" (inclusive bounds)
    values: tuple  # fixed: (value,); choice: the choices; ranges: (low, high)

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"

    @property
    def discrete(self) -> bool:
        return self.kind in ("fixed", "choice", "randint")

    def candidates(self) -> tuple:
        """Every value a discrete axis can take (ranges: their two ends)."""
        if self.kind == "randint":
            return tuple(range(self.values[0], self.values[1] + 1))
        return self.values

    def contains(self, v: Any) -> bool:
        if self.kind in ("fixed", "choice"):
            return v in self.values
        return isinstance(v, (int, float)) and self.values[0] <= v <= self.values[1]

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial (define-by-run) for this axis' value."""
        lo, hi = self.values[0], self.values[-1]
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.values))
        if self.kind == "randint":
            return trial.suggest_int(name, lo, hi)
        return trial.suggest_float(name, lo, hi, log=self.kind == "loguniform")

    def start(self) -> Any:
        """A neutral starting value: the first choice, the middle of a range (geometric if log)."""
        lo, hi = self.values[0], self.values[-1]
        if self.kind in ("fixed", "choice"):
            return lo
        if self.kind == "loguniform":
            return math.sqrt(lo * hi)
        return (lo + hi) // 2 if self.kind == "randint" else (lo + hi) / 2

    def describe(self) -> str:
        if self.kind == "fixed":
            return repr(self.values[0])
        if self.kind == "choice":
            return "choice" + repr(list(self.values))
        return f"{self.kind}[{self.values[0]}, {self.values[1]}]"

    def to_yaml(self) -> Any:
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return list(self.values)
        return {self.kind: list(self.values)}


@dataclass(frozen=True)
class SweepConfig:
    experiment: str | None = None
    """MLflow experiment name; None: 'classify-<data name>'."""
    data: str | None = None
    """ImageFolder directory (root/<class>/<image>); None: scikit-learn's bundled digits."""
    val_frac: float = 0.15
    test_frac: float = 0.15
    train_limit: int | None = None
    """Use at most this many training images (stratified); None: all. For smoke tests."""
    skip_bad_images: bool = False
    """Leave out files that cannot be read as images (listed in the sweep's run) instead of stopping."""
    decode_cache_mb: float = DECODE_CACHE_MB
    """A folder's images, decoded by the up-front check, are kept in memory (Ray's object store, once per
    node) while they take at most this many megabytes; over it, or at 0, trials decode the files each epoch."""
    search: str = "tpe"
    """'tpe' (Optuna's TPE), 'random' (Optuna's RandomSampler) or 'grid' (every combination, Optuna's
    BruteForceSampler; needs a discrete space)."""
    num_samples: int | None = 16
    """Trials to run; None with search 'grid': the whole grid."""
    objectives: tuple[str, ...] = (M.VAL_ACC,)
    """Metrics the search optimises; two or more make it multi-objective (e.g. val_acc and latency_ms)."""
    points_to_evaluate: str | tuple[dict[str, Any], ...] = POINTS_ONE_PER_ARCH
    """Configs tried first: 'one_per_arch' (every architecture with each axis' starting value), a list
    of partial configs, or an empty list."""
    asha: bool = True
    """Stop trials early that are behind at the ASHA milestones (on the first objective)."""
    grace_period: int = 2
    """Epochs every trial gets before ASHA may stop it."""
    max_epochs: int = 4
    """Epochs per trial, unless ASHA stops it earlier."""
    seed: int = 0
    """Seeds the data split, the search and every trial."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 1
    """Times Ray Tune retries a crashed trial from its last checkpoint."""
    tracking_uri: str | None = None
    """MLflow tracking URI; None: MLflow's own resolution (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."""
    tracking_wait_s: float = 900.0
    """How long the end of a sweep waits for a tracking server that went away to take the last writes."""
    registered_model: str | None = None
    """Model Registry name under which the sweep's best model becomes the 'champion'; None: the experiment's."""
    storage_path: str | None = None
    """Where Ray Tune keeps trial checkpoints; None: Ray's default (~/ray_results)."""
    output_dir: str = "reports"
    """Where the comparison report is written, under <experiment>/<sweep> (also logged to the parent run)."""
    timing_s: float = LATENCY_MIN_SECONDS
    """Each latency and throughput timing of the comparison table runs at least this many seconds (and 30
    runs); --smoke-test: 0.2."""
    address: str | None = None
    """Ray cluster address ('auto' for the cluster this machine belongs to); None: $RAY_ADDRESS, else a
    `ray start` instance on this machine, else a Ray of the sweep's own, on 127.0.0.1 only."""
    space: dict[str, Dim] = field(default_factory=lambda: {"arch": Dim("choice", ARCH_PRESETS["tiny"])})
    """Trial parameters (TrialConfig fields) by name; those left out keep TrialConfig's defaults."""
    source: str = "<defaults>"
    """The recipe this config was read from, for messages and the sweep's parameters."""

    def __post_init__(self) -> None:
        # Each setting on its own, then the search, the objectives and the space: every problem found is
        # reported together. Only then the checks that need all of them valid (grid size, start points).
        problems: list[str] = []
        wrong: set[str] = set()

        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                problems.append(f"{key}: {message}")
                wrong.add(key)

        for n in ("max_epochs", "grace_period"):
            need(getattr(self, n) >= 1, n, f"must be >= 1, got {getattr(self, n)}")
        if self.num_samples is not None:
            need(self.num_samples >= 1, "num_samples", f"must be >= 1 or null, got {self.num_samples}")
        else:
            need(self.search == "grid", "num_samples", "null (the whole grid) needs search: grid; give a number")
        need(self.cpus_per_trial > 0, "cpus_per_trial", f"must be > 0, got {self.cpus_per_trial}")
        need(self.gpus_per_trial >= 0, "gpus_per_trial", f"must be >= 0, got {self.gpus_per_trial}")
        need(self.tracking_wait_s >= 0, "tracking_wait_s", f"must be >= 0 seconds, got {self.tracking_wait_s}")
        need(self.max_failures >= 0, "max_failures", f"must be >= 0, got {self.max_failures}")
        need(0 < self.timing_s < math.inf, "timing_s", f"must be > 0 seconds and finite, got {self.timing_s}")
        need(self.decode_cache_mb >= 0, "decode_cache_mb", f"must be >= 0 megabytes, got {self.decode_cache_mb}")
        if self.storage_path is not None:
            need(
                "://" not in self.storage_path,
                "storage_path",
                f"{self.storage_path!r}: object-store URIs are not supported yet (the sweep keeps its recipe and "
                "resume file beside Tune's state as local files); give a directory, on a cluster one every node "
                "mounts (cluster.yaml mounts EFS at /mnt/shared)",
            )
        ok = 0 < self.val_frac < 1 and 0 < self.test_frac < 1 and self.val_frac + self.test_frac < 1
        need(ok, "val_frac/test_frac", f"each in (0, 1) and sum < 1, got {self.val_frac}, {self.test_frac}")
        if self.train_limit is not None:
            need(self.train_limit >= 1, "train_limit", f"must be >= 1 or null, got {self.train_limit}")
        if self.search not in SEARCH_ALGORITHMS:
            problems.append(f"search: {unknown_name_message('search algorithm', self.search, SEARCH_ALGORITHMS)}")
        # The space is checked with the sweep-level values (max_epochs, seed): not when one of those is wrong,
        # or every axis would repeat that mistake.
        checks = (self._check_objectives,) if wrong & set(SWEEP_LEVEL) else (self._check_objectives, self._check_space)
        problems += _collect(checks)
        if problems:
            raise ConfigError.of(problems)
        if late := _collect([self._check_grid, self.starting_points]):  # starting_points validates explicit points
            raise ConfigError.of(late)

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

    def _check_grid(self) -> None:
        if self.search == "grid":
            not_discrete = [k for k, d in self.space.items() if not d.discrete]
            _check(
                not not_discrete,
                "search",
                f"'grid' needs every axis to be a value or a list of values; {', '.join(not_discrete)} "
                "is a continuous range (give a list, or use search: tpe / random)",
            )
            size = self.grid_size()
            if self.num_samples is not None:
                _check(
                    self.num_samples <= size,
                    "num_samples",
                    f"the grid has {size} configurations; set at most {size}, or null for all of them",
                )

    # -- the space -----------------------------------------------------------------------------------

    def _check_space(self) -> None:
        _check("arch" in self.space, "space.arch", "the architectures to compare are required")
        if misplaced := [k for k in self.space if k in SWEEP_LEVEL]:
            raise ConfigError.of([f"space.{k}: set by the sweep; use the top-level key {k!r}" for k in misplaced])
        sweep_set = {k: getattr(self, k) for k in SWEEP_LEVEL}
        constants = self.trial_constants()
        # Each value on its own; once all are valid, the fixed values together, then each searched value
        # with them (a misfit among the fixed values would otherwise repeat once per searched value).
        problems = _collect(
            functools.partial(_trial_check, key, {**sweep_set, key: v})
            for key, dim in self.space.items()
            for v in dim.values
        )
        if not problems and not (problems := _collect([functools.partial(_trial_check, "", constants)])):
            problems = _collect(
                functools.partial(_trial_check, key, {**constants, key: v})
                for key, dim in self.space.items()
                for v in (dim.values if dim.searched else ())
            )
        for child in self.unused_conditionals():
            parent, when = CONDITIONAL[child]
            problems.append(
                f"space.{child}: only used when {parent} is {when!r}, and space.{parent} never is "
                f"({self.dim(parent).describe()}); remove {child} or add {when!r} to {parent}"
            )
        if problems:
            raise ConfigError.of(problems)

    def check_batch_size(self, train_size: int) -> None:
        """Once the training split's size is known (after ``train_limit``): every batch size the space can
        give fits in it (as large is one full step). A larger batch is one step an epoch, or none under
        MixUp/CutMix, where the training DataLoader drops an incomplete batch (trainables.engine.make_loaders)."""
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
            for child, (parent, when) in CONDITIONAL.items()
            if child in self.space and when not in self.dim(parent).candidates()
        ]

    def dim(self, key: str) -> Dim:
        return self.space.get(key, Dim("fixed", (getattr(TrialConfig, key),)))

    @property
    def archs(self) -> tuple[str, ...]:
        return tuple(self.dim("arch").candidates())

    def trial_constants(self) -> dict[str, Any]:
        """The fixed trial fields: the space's fixed axes plus what the sweep sets itself."""
        fixed = {k: d.values[0] for k, d in self.space.items() if not d.searched}
        return {**fixed, "max_epochs": self.max_epochs, "seed": self.seed}

    @staticmethod
    def active(key: str, chosen: dict[str, Any]) -> bool:
        return active(key, chosen)

    def modes(self) -> list[str]:
        """'max' or 'min' for each objective, in order."""
        return [M.OBJECTIVES[o] for o in self.objectives]

    def ordered_keys(self) -> list[str]:
        """Space keys with every conditional parameter after the one it depends on."""
        return sorted(self.space, key=lambda k: k in CONDITIONAL)

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of a discrete space, conditional parameters only where they exist."""
        combos: list[dict[str, Any]] = [{}]
        for key in self.ordered_keys():
            values = self.space[key].candidates()
            combos = [{**c, key: v} for c in combos for v in (values if self.active(key, c) else (None,))]
        return [{k: v for k, v in c.items() if self.active(k, c)} for c in combos]

    def grid_size(self) -> int:
        return len(self.grid())

    @property
    def discrete(self) -> bool:
        """Every axis a value or a list: a finite number of configurations (``grid_size``)."""
        return all(d.discrete for d in self.space.values())

    def starting_points(self) -> list[dict[str, Any]]:
        """The configs tried before the search proposes its own (validated against the space)."""
        if self.points_to_evaluate == POINTS_ONE_PER_ARCH:
            points = []
            for arch in self.archs:
                p: dict[str, Any] = {"arch": arch}
                for key in self.ordered_keys():
                    if key != "arch" and self.space[key].searched and self.active(key, p):
                        p[key] = self.space[key].start()
                points.append(p)
            return points
        if isinstance(self.points_to_evaluate, str):
            raise ConfigError(
                f"points_to_evaluate: {self.points_to_evaluate!r} is not allowed; "
                f"use {POINTS_ONE_PER_ARCH!r}, a list of configs, or []"
            )
        for i, p in enumerate(self.points_to_evaluate):
            where = f"points_to_evaluate[{i}]"
            if not isinstance(p, dict):
                raise ConfigError(f"{where}: expected a mapping of space keys to values, got {p!r}")
            for k, v in p.items():
                if k not in self.space:
                    raise ConfigError(f"{where}: {unknown_name_message('space key', k, list(self.space))}")
                if not self.space[k].contains(v):
                    raise ConfigError(f"{where}.{k}: {v!r} is outside space.{k} ({self.space[k].describe()})")
        return [dict(p) for p in self.points_to_evaluate]

    # -- records ---------------------------------------------------------------------------------------

    def flat(self) -> dict[str, object]:
        """Every setting as one flat dict of readable names, for the sweep's MLflow parameters."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "space"}
        # Addresses can carry credentials (http://user:token@host): they stay out of the run.
        for secret_prone in ("tracking_uri", "address"):
            d.pop(secret_prone)
        d["points_to_evaluate"] = (
            self.points_to_evaluate if isinstance(self.points_to_evaluate, str) else len(self.points_to_evaluate)
        )
        return {**d, **{f"space.{k}": v.describe() for k, v in self.space.items()}}

    def to_yaml_dict(self, addresses: bool = True) -> dict[str, Any]:
        """The config as a recipe again (the sweep logs it, so a run can be repeated from its record);
        ``addresses=False`` leaves out the tracking URI and Ray address, which can carry credentials."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("space", "source")}
        if not addresses:
            del d["tracking_uri"], d["address"]
        d["objectives"] = list(self.objectives)
        if not isinstance(self.points_to_evaluate, str):
            d["points_to_evaluate"] = [dict(p) for p in self.points_to_evaluate]
        return {**d, "space": {k: v.to_yaml() for k, v in self.space.items()}}


def _trial_check(key: str, values: dict[str, Any]) -> None:
    try:
        TrialConfig(**values)
    except ValueError as e:
        raise ConfigError(f"space.{key}: {e}" if key else f"space: {e}") from None


def _collect(checks) -> list[str]:
    """Run every check; the problems of those that fail, in order."""
    problems: list[str] = []
    for check in checks:
        try:
            check()
        except ConfigError as e:
            problems += e.problems
    return problems


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


# -- reading recipes ---------------------------------------------------------------------------------------


def parse_dim(key: str, raw: Any) -> Dim:
    """YAML -> Dim. ``value`` is fixed, ``[a, b]`` a choice, ``{loguniform|uniform|randint: [lo, hi]}`` a range."""
    if key not in TrialConfig.field_names():
        raise ConfigError(f"space: {unknown_name_message('trial parameter', key, TrialConfig.field_names())}")
    if isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in RANGE_KINDS:
            raise ConfigError(
                f"space.{key}: a range is one of {', '.join(f'{{{k}: [low, high]}}' for k in RANGE_KINDS)}, got {raw!r}"
            )
        kind, bounds = next(iter(raw.items()))
        if not (isinstance(bounds, list) and len(bounds) == 2):
            raise ConfigError(f"space.{key}.{kind}: expected [low, high], got {bounds!r}")
        lo, hi = (_coerce(key, b) for b in bounds)
        if kind == "randint" and not all(isinstance(b, int) for b in (lo, hi)):
            raise ConfigError(f"space.{key}.randint: bounds must be integers, got {bounds!r}")
        if not lo < hi:
            raise ConfigError(f"space.{key}.{kind}: need low < high, got [{lo}, {hi}]")
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(f"space.{key}.loguniform: low must be > 0, got {lo}")
        return Dim(kind, (lo, hi))
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"space.{key}: the list of choices is empty; give at least one value")
        values = [_coerce(key, v) for v in raw]
        if key == "arch":
            values = list(_expand_archs(values))
        if key == "weights":
            values = [_weights_path(v) for v in values]
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"space.{key}: a choice is listed twice in {raw!r}")
        return Dim("choice", tuple(values)) if len(values) > 1 else Dim("fixed", (values[0],))
    value = _coerce(key, raw)
    if key == "arch":
        archs = _expand_archs([value])
        return Dim("choice", archs) if len(archs) > 1 else Dim("fixed", archs)
    if key == "weights":
        value = _weights_path(value)
    return Dim("fixed", (value,))


def _expand_archs(names: list[Any]) -> tuple[str, ...]:
    try:
        return expand_archs([str(n) for n in names])
    except ValueError as e:
        raise ConfigError(f"space.{e}") from None


def _weights_path(v: Any) -> Any:
    """Local weight files must exist when the sweep starts; stored as absolute paths."""
    if not isinstance(v, str) or not is_weights_file(v) or not v.endswith(WEIGHT_FILE_SUFFIXES):
        return v  # TrialConfig's own check names what is allowed
    path = Path(v).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"space.weights: no such file {str(path)!r}")
    return str(path)


_TYPES = {f.name: f.type for f in dataclasses.fields(TrialConfig)}


def _coerce(key: str, v: Any) -> Any:
    """YAML reads 1e-3 (no dot) as a string: numbers given as text are accepted; other types are not."""
    t = _TYPES[key]
    if v is None and "None" in t:
        return None
    if isinstance(v, bool):
        if t == "bool":
            return v
        raise ConfigError(f"space.{key}: expected {t}, got {v!r}")
    if t.startswith("int"):
        if isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
            return int(v)
        raise ConfigError(f"space.{key}: expected an integer{' or null' if 'None' in t else ''}, got {v!r}")
    if t.startswith("float"):
        if isinstance(v, (int, float)):
            return float(v)
        try:
            return float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"space.{key}: expected a number, got {v!r}") from None
    if t == "bool":
        raise ConfigError(f"space.{key}: expected true or false, got {v!r}")
    if not isinstance(v, str):
        raise ConfigError(f"space.{key}: expected a string, got {v!r}")
    return v


_SWEEP_FIELDS = {f.name: f for f in dataclasses.fields(SweepConfig) if f.name not in ("space", "source")}
SETTINGS = tuple(_SWEEP_FIELDS)  # the top-level keys of a recipe, besides `space`


def config_from_dict(d: dict[str, Any], source: str = "<dict>") -> SweepConfig:
    """A recipe's mapping -> SweepConfig; errors are ConfigErrors prefixed with ``source``."""
    try:
        if not isinstance(d, dict):
            raise ConfigError(f"expected a mapping of settings at the top level, got {type(d).__name__}")
        # Each key on its own first, every mistake collected: one run of the script shows them all.
        problems: list[str] = []
        allowed = [*_SWEEP_FIELDS, "space"]
        problems += [unknown_name_message("setting", k, allowed) for k in d if k not in allowed]
        kwargs: dict[str, Any] = {}
        for k, v in d.items():
            try:
                if k == "space":
                    if not isinstance(v, dict) or not v:
                        raise ConfigError("space: expected a mapping of trial parameters to values, lists or ranges")
                    space = {}
                    for key, raw in v.items():
                        try:
                            space[key] = parse_dim(key, raw)
                        except ConfigError as e:
                            problems.append(str(e))
                    kwargs["space"] = space
                elif k in _SWEEP_FIELDS:
                    kwargs[k] = _sweep_value(k, v)
            except ConfigError as e:
                problems.append(str(e))
        if problems:
            raise ConfigError.of(problems)
        return SweepConfig(**kwargs, source=source)  # then how the keys fit together
    except ConfigError as e:
        raise ConfigError.of(e.problems, source) from None


def _sweep_value(key: str, v: Any) -> Any:
    t = str(_SWEEP_FIELDS[key].type)
    if v is None:
        if "None" not in t:
            raise ConfigError(f"{key}: may not be null")
        return None
    if key == "objectives":
        if not isinstance(v, list) or not all(isinstance(o, str) for o in v):
            raise ConfigError(f"objectives: expected a list of metric names ({', '.join(M.OBJECTIVES)}), got {v!r}")
        return tuple(v)
    if key == "points_to_evaluate":
        return (
            v if isinstance(v, str) else tuple(v) if isinstance(v, list) else _bad(key, "a list or 'one_per_arch'", v)
        )
    if t == "bool":
        return v if isinstance(v, bool) else _bad(key, "true or false", v)
    if t.startswith("int"):
        return v if isinstance(v, int) and not isinstance(v, bool) else _bad(key, "an integer", v)
    if t.startswith("float"):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        try:
            return float(v)
        except (TypeError, ValueError):
            return _bad(key, "a number", v)
    return v if isinstance(v, str) else _bad(key, "a string", v)


def _bad(key: str, what: str, v: Any) -> Any:
    raise ConfigError(f"{key}: expected {what}, got {v!r}")


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a YAML recipe. Errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        shipped = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"{path}: no such config file (shipped recipes in {CONFIG_DIR}: {shipped})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return config_from_dict(raw or {}, str(path))


def with_overrides(
    cfg: SweepConfig, settings: dict[str, Any], space: dict[str, Any], flags: dict[str, str]
) -> SweepConfig:
    """Command-line values over a recipe: top-level ``settings`` and ``space`` axes (raw YAML-like
    values). ``flags`` maps each key to the flag it came from, for the error message."""
    if not settings and not space:
        return cfg
    d = cfg.to_yaml_dict()
    d.update(settings)
    d["space"] = {**d["space"], **space}
    # A flag that narrows freeze (say --freeze full) leaves the recipe's partial/gradual settings with
    # nothing to apply to: they go, and the sweep says so, instead of the recipe becoming an error.
    for child, (parent, when) in CONDITIONAL.items():
        if parent in space and child in d["space"] and child not in space:
            values = space[parent] if isinstance(space[parent], list) else [space[parent]]
            if when not in values:
                print(f"note: {flags[parent]} has no {when!r}: the recipe's space.{child} is not used")
                del d["space"][child]
    return config_from_dict(d, f"{cfg.source} with {' '.join(flags[k] for k in [*settings, *space])}")


def smoke(cfg: SweepConfig) -> SweepConfig:
    """A tiny version of a recipe: one trial per architecture, 2 epochs, 300 training images, timings of
    0.2 s."""
    return dataclasses.replace(
        cfg,
        num_samples=len(cfg.archs),
        max_epochs=2,
        grace_period=1,
        train_limit=SMOKE_TRAIN_LIMIT,
        points_to_evaluate=POINTS_ONE_PER_ARCH,
        timing_s=SMOKE_TIMING_S,
    )


def preset_help() -> str:
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in ARCH_PRESETS.items())
