"""The typed configuration of a detection sweep, read from a YAML recipe (default
``sweeps/configs/detect/default.yaml``): Ultralytics YOLO trials over model family and size, image size,
learning rate, optimizer and augmentation strength.

The space's keys are ``trainables.detection.DetectTrialConfig`` fields; values are written as in a
classification recipe (a value, a list of choices, or ``{loguniform|uniform|randint: [low, high]}``),
and every mistake is reported at once, naming the file and the key, before anything starts.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweeps.config import RANGE_KINDS, SEARCH_ALGORITHMS, SMOKE_TIMING_S, ConfigError, Dim
from trainables import detection as D
from trainables.latency import LATENCY_MIN_SECONDS
from trainables.registry import unknown_name_message

DETECT_CONFIG = Path(__file__).resolve().parent / "configs" / "detect" / "default.yaml"
POINTS_ONE_PER_MODEL = "one_per_model"
_TRIAL_TYPES = {f.name: str(f.type) for f in dataclasses.fields(D.DetectTrialConfig)}


@dataclass(frozen=True)
class DetectSweepConfig:
    experiment: str | None = None
    """MLflow experiment name; None: 'detect-<data name>'."""
    data: str | None = None
    """A YOLO dataset's data.yaml; None: the generated shapes dataset (trainables/shapes.py)."""
    shapes_train: int = 240
    """Images in the generated dataset's train split (val and test get a quarter each)."""
    data_cache: str = "~/.cache/cvsweep/datasets"
    """Where each node writes the generated dataset (once; the same settings give the same files)."""
    search: str = "tpe"
    num_samples: int | None = 12
    points_to_evaluate: str | tuple[dict[str, Any], ...] = POINTS_ONE_PER_MODEL
    asha: bool = True
    grace_period: int = 4
    max_epochs: int = 12
    seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 1
    tracking_uri: str | None = None
    tracking_wait_s: float = 900.0
    timing_s: float = LATENCY_MIN_SECONDS  # each timing of the comparison table, seconds at least
    storage_path: str | None = None
    output_dir: str = "reports"
    address: str | None = None
    space: dict[str, Dim] = field(default_factory=lambda: {"model": Dim("choice", ("yolov8n", "yolo11n"))})
    source: str = "<defaults>"

    objectives = (D.SEARCH_METRIC,)  # the search maximises validation mAP50-95; ASHA compares it too

    def __post_init__(self) -> None:
        problems: list[str] = []
        for key in ("max_epochs", "grace_period", "shapes_train"):
            if getattr(self, key) < 1:
                problems.append(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.num_samples is not None and self.num_samples < 1:
            problems.append(f"num_samples: must be >= 1 or null, got {self.num_samples}")
        if self.search not in SEARCH_ALGORITHMS:
            problems.append(f"search: {unknown_name_message('search algorithm', self.search, SEARCH_ALGORITHMS)}")
        if self.search == "grid" and not self.discrete:
            ranges = [k for k, d in self.space.items() if not d.discrete]
            problems.append(f"search: grid needs lists, not ranges: space.{', space.'.join(ranges)}")
        if not 0 < self.timing_s < float("inf"):
            problems.append(f"timing_s: must be > 0 seconds and finite, got {self.timing_s}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            problems.append("cpus_per_trial must be > 0 and gpus_per_trial >= 0")
        if self.data is not None and not Path(self.data).expanduser().is_file():
            problems.append(f"data: {self.data}: no such file (expected a YOLO dataset's data.yaml)")
        if self.grace_period > self.max_epochs:
            problems.append(f"grace_period ({self.grace_period}) must not exceed max_epochs ({self.max_epochs})")
        for key, dim in self.space.items():  # every value each axis can take makes a valid trial
            for value in dim.candidates():
                try:
                    D.DetectTrialConfig(**{**self.trial_constants(), key: value})
                except (ValueError, TypeError) as e:
                    problems.append(f"space.{key}: {e}")
                    break
        if problems:
            raise ConfigError.of(problems)

    # -- the space, as sweeps.space reads it (no conditional parameters here) --------------------------

    def dim(self, key: str) -> Dim:
        return self.space.get(key, Dim("fixed", (getattr(D.DetectTrialConfig, key),)))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.dim("model").candidates())

    def trial_constants(self) -> dict[str, Any]:
        fixed = {k: d.values[0] for k, d in self.space.items() if not d.searched}
        return {**fixed, "max_epochs": self.max_epochs, "seed": self.seed}

    @staticmethod
    def active(key: str, chosen: dict[str, Any]) -> bool:
        return True

    def ordered_keys(self) -> list[str]:
        return list(self.space)

    def grid(self) -> list[dict[str, Any]]:
        keys = self.ordered_keys()
        return [dict(zip(keys, c, strict=True)) for c in itertools.product(*(self.space[k].candidates() for k in keys))]

    def grid_size(self) -> int:
        return len(self.grid())

    @property
    def discrete(self) -> bool:
        return all(d.discrete for d in self.space.values())

    def modes(self) -> list[str]:
        return ["max"]

    def starting_points(self) -> list[dict[str, Any]]:
        if self.points_to_evaluate == POINTS_ONE_PER_MODEL:
            return [
                {"model": m, **{k: d.start() for k, d in self.space.items() if d.searched and k != "model"}}
                for m in self.models
            ]
        if isinstance(self.points_to_evaluate, str):
            raise ConfigError(f"points_to_evaluate: use {POINTS_ONE_PER_MODEL!r}, a list of configs, or []")
        return [dict(p) for p in self.points_to_evaluate]

    # -- records -------------------------------------------------------------------------------------

    def flat(self) -> dict[str, object]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "space"}
        for secret_prone in ("tracking_uri", "address"):  # URIs can carry credentials
            d.pop(secret_prone)
        if not isinstance(self.points_to_evaluate, str):
            d["points_to_evaluate"] = len(self.points_to_evaluate)
        return {**d, **{f"space.{k}": v.describe() for k, v in self.space.items()}}

    def to_yaml_dict(self, addresses: bool = True) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("space", "source")}
        if not addresses:
            del d["tracking_uri"], d["address"]
        if not isinstance(self.points_to_evaluate, str):
            d["points_to_evaluate"] = [dict(p) for p in self.points_to_evaluate]
        return {**d, "space": {k: v.to_yaml() for k, v in self.space.items()}}


_FIELDS = {f.name: f for f in dataclasses.fields(DetectSweepConfig) if f.name not in ("space", "source")}
SETTINGS = tuple(_FIELDS)


def parse_dim(key: str, raw: Any) -> Dim:
    """YAML -> Dim: a value (fixed), a list (choice), or {loguniform|uniform|randint: [low, high]}."""
    if key not in _TRIAL_TYPES or key in ("max_epochs", "seed"):
        names = [k for k in _TRIAL_TYPES if k not in ("max_epochs", "seed")]
        raise ConfigError(f"space: {unknown_name_message('detection trial parameter', key, names)}")
    if isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in RANGE_KINDS:
            raise ConfigError(f"space.{key}: a range is {{loguniform|uniform|randint: [low, high]}}, got {raw!r}")
        kind, bounds = next(iter(raw.items()))
        if not (isinstance(bounds, list) and len(bounds) == 2):
            raise ConfigError(f"space.{key}.{kind}: expected [low, high], got {bounds!r}")
        lo, hi = (_coerce(key, b) for b in bounds)
        if not lo < hi or (kind == "loguniform" and lo <= 0):
            raise ConfigError(f"space.{key}.{kind}: need 0 < low < high for loguniform, low < high otherwise")
        return Dim(kind, (lo, hi))
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"space.{key}: the list of choices is empty")
        values = tuple(_coerce(key, v) for v in raw)
        if len(set(values)) != len(values):
            raise ConfigError(f"space.{key}: a choice is listed twice in {raw!r}")
        return Dim("choice", values) if len(values) > 1 else Dim("fixed", values)
    return Dim("fixed", (_coerce(key, raw),))


def _coerce(key: str, v: Any) -> Any:
    t = _TRIAL_TYPES[key]
    if v is None and "None" in t:
        return None
    if t.startswith("int") and isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
        return int(v)
    if t.startswith("float") and not isinstance(v, bool):
        try:
            return float(v)
        except (TypeError, ValueError):
            pass
    if t == "bool" and isinstance(v, bool) or t == "str" and isinstance(v, str):
        return v
    raise ConfigError(f"space.{key}: expected {t.replace(' | None', ' or null')}, got {v!r}")


def _setting(key: str, v: Any) -> Any:
    t = str(_FIELDS[key].type)
    if v is None:
        if "None" in t:
            return None
        raise ConfigError(f"{key}: may not be null")
    if key == "points_to_evaluate":
        if isinstance(v, str) or isinstance(v, list):
            return v if isinstance(v, str) else tuple(v)
    elif t == "bool":
        if isinstance(v, bool):
            return v
    elif t.startswith("int"):
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    elif t.startswith("float"):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    elif isinstance(v, str):
        return str(Path(v).expanduser().resolve()) if key == "data" else v
    raise ConfigError(f"{key}: expected {t.replace(' | None', ' or null')}, got {v!r}")


def config_from_dict(d: Any, source: str = "<dict>") -> DetectSweepConfig:
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    if not isinstance(d, dict):
        raise ConfigError.of([f"expected a mapping of settings, got {type(d).__name__}"], source)
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
            elif k in _FIELDS:
                kwargs[k] = _setting(k, v)
            else:
                problems.append(unknown_name_message("setting", k, [*_FIELDS, "space"]))
        except ConfigError as e:
            problems.append(str(e))
    try:
        if problems:
            raise ConfigError.of(problems)
        return DetectSweepConfig(**kwargs, source=source)
    except ConfigError as e:
        raise ConfigError.of(e.problems, source) from None


def load_config(path: str | Path) -> DetectSweepConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such recipe (the default is {DETECT_CONFIG})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return config_from_dict(raw or {}, str(path))


def with_overrides(cfg: DetectSweepConfig, settings: dict[str, Any], space: dict[str, Any], flags: list[str]):
    if not settings and not space:
        return cfg
    d = cfg.to_yaml_dict()
    d.update(settings)
    d["space"] = {**d["space"], **space}
    return config_from_dict(d, f"{cfg.source} with {' '.join(flags)}")


def smoke(cfg: DetectSweepConfig) -> DetectSweepConfig:
    """A tiny version: one trial per model, 2 epochs, 48 generated training images."""
    return dataclasses.replace(
        cfg,
        num_samples=len(cfg.models),
        max_epochs=2,
        grace_period=1,
        shapes_train=48,
        points_to_evaluate=POINTS_ONE_PER_MODEL,
        timing_s=SMOKE_TIMING_S,
    )
