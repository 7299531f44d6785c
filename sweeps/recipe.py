"""What every sweep recipe has, whatever its task: the settings of the search, the resources, where runs
and checkpoints go, and a ``space`` of trial parameters; read from YAML, checked before anything starts.

A task's recipe (``sweeps.config.SweepConfig``, ``sweeps.detect_config.DetectSweepConfig``) subclasses
``Recipe``: it adds its own settings, names its trial config type, and checks what only it knows. The
settings are a schema pydantic validates (unknown keys, types, nested records, each problem with its key);
the rules between values are ``Recipe.__post_init__``'s; a ``space`` axis' syntax (a value, a list, a
range) is read here and its values checked against the trial config's field types, again by pydantic.
Command-line overrides and the smoke-test version are written once, here. Every problem is collected and
reported together, each naming the file (or flag), the key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
import typing
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from annotated_types import Ge
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from trainables.contracts import SPACE_PARAM_PREFIX
from trainables.registry import unknown_name_message

SEARCH_ALGORITHMS = ("tpe", "random", "grid")
RANGE_KINDS = ("loguniform", "uniform", "randint")
SWEEP_LEVEL = ("max_epochs", "seed")  # trial fields the sweep sets itself: ASHA's horizon and the one seed
SMOKE_TIMING_S = 0.2  # --smoke-test's timings: 30 runs still give a median


def _number(v: Any) -> Any:
    """YAML 1.1 reads 1e-3 (no dot) as text: a number written as text is taken as the number."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    return v


class Expect:
    """What a setting allows, in words, where its type does not say it (a refused value's message);
    ``{cls.<name>}`` is filled from the recipe class."""

    def __init__(self, text: str) -> None:
        self.text = text


# The schema's leaf types take only their own type ('32' is not an integer, 1 not true): pydantic's lax
# mode would convert both. Containers stay lax (a YAML list is read into a tuple, a mapping into a record).
Number = Annotated[float, Strict(), BeforeValidator(_number)]
SCHEMA = ConfigDict(extra="forbid")  # what every recipe dataclass is validated with (``__pydantic_config__``)


def expand_user(path: str) -> Path:
    """``path`` with its ``~`` or ``~user`` expanded; ValueError where this machine has no such home."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # pathlib's "Could not determine home directory", which names neither
        raise ValueError(f"{path!r}: this machine has no home directory {path.split('/')[0]!r}") from None


def _home_exists(path: str) -> str:
    expand_user(path)
    return path  # kept as written: the sweep's parameters show the recipe's own words


UserPath = Annotated[StrictStr, AfterValidator(_home_exists)]  # a path setting


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

    def distribution(self) -> Any:
        """This searched axis as an Optuna distribution (what ``suggest`` samples from)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        lo, hi = self.values[0], self.values[-1]
        if self.kind == "choice":
            return CategoricalDistribution(list(self.values))
        if self.kind == "randint":
            return IntDistribution(lo, hi)
        return FloatDistribution(lo, hi, log=self.kind == "loguniform")

    def draw(self, rng: Any) -> Any:
        """A random value of this axis (``rng``: a random.Random), log-uniform for a log range."""
        lo, hi = self.values[0], self.values[-1]
        if self.kind in ("fixed", "choice"):
            return rng.choice(self.values)
        if self.kind == "randint":
            return rng.randint(lo, hi)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return rng.uniform(lo, hi)

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
class Confirm:
    """The confirmation stage: once the search has ended, its ``top`` configurations that trained every
    epoch run again with ``seeds`` further seeds each (new initialisation and data order, same split)."""

    __pydantic_config__ = SCHEMA
    top: Annotated[StrictInt, Ge(0)] = 0
    seeds: Annotated[StrictInt, Ge(0)] = 0

    @property
    def trials(self) -> int:
        return self.top * self.seeds


def _no_confirm(v: Any) -> Any:
    return Confirm() if v is None else v


ConfirmSetting = Annotated[  # null: no confirmation
    Confirm,
    BeforeValidator(_no_confirm),
    Expect("a mapping like {{top: 2, seeds: 2}}, or null"),
]


def is_active(conditional: dict[str, When], trial_type: type, key: str, chosen: dict[str, Any]) -> bool:
    """Whether a trial parameter exists given the values chosen so far (a parameter left out has its
    default): conditional ones only where their condition, and their parent's, hold."""
    when = conditional.get(key)
    if when is None:
        return True
    value = chosen.get(when.parent, getattr(trial_type, when.parent))
    return when.holds(value) and is_active(conditional, trial_type, when.parent, chosen)


@dataclass(frozen=True)
class When:
    """The condition under which a trial parameter exists: ``parent`` has one of ``values`` (with ``negate``,
    none of them). Elsewhere the parameter is neither sampled nor recorded."""

    parent: str
    values: tuple[Any, ...]
    negate: bool = False

    def holds(self, value: Any) -> bool:
        return (value in self.values) != self.negate

    def describe(self) -> str:
        shown = " or ".join(map(repr, self.values))
        if not self.negate:
            return f"{self.parent} is {shown}"
        if len(self.values) == 1:
            return f"{self.parent} is not {shown}"
        return f"{self.parent} is none of {', '.join(map(repr, self.values))}"

    def fix(self) -> str:
        """How to give the parameter a trial it applies to."""
        if self.negate:
            return f"give {self.parent} a value other than {', '.join(map(repr, self.values))}"
        return f"add {' or '.join(map(repr, self.values))} to {self.parent}"

    def unused_note(self, flag: str) -> str:
        """Said when a command-line flag leaves the parameter no trial to apply to."""
        if self.negate:
            return f"{flag} has only values among {', '.join(map(repr, self.values))}"
        return f"{flag} has no {' or '.join(map(repr, self.values))}"


@dataclass(frozen=True)
class Recipe:
    """The settings every task's sweep has. Subclasses add fields (all with defaults) and set the
    class-level names below."""

    trial_type: ClassVar[type]  # the task's trial config dataclass: the space's keys are its fields
    trial_noun: ClassVar[str] = "trial parameter"  # in "unknown <noun>" messages
    row_key: ClassVar[str]  # the space key that names a row of the comparison (arch, model)
    points_one_per: ClassVar[str]  # points_to_evaluate: every row_key value with each axis' start
    conditional: ClassVar[dict[str, When]] = {}  # parameter -> when it exists
    smoke_settings: ClassVar[dict[str, Any]] = {}  # what --smoke-test shrinks besides trials and epochs

    __pydantic_config__ = SCHEMA

    experiment: StrictStr | None = None
    """MLflow experiment name; None: '<task>-<data name>'."""
    data: UserPath | None = None
    search: StrictStr = "tpe"
    """'tpe' (Optuna's TPE), 'random' (Optuna's RandomSampler) or 'grid' (every combination, Optuna's
    BruteForceSampler; needs a discrete space)."""
    num_samples: StrictInt | None = 16
    """Trials to run; None with search 'grid': the whole grid."""
    points_to_evaluate: Annotated[StrictStr | tuple[Any, ...], Expect("a list or {cls.points_one_per!r}")] = ""
    """Configs tried first: one per row_key value (the subclass' default), a list of partial configs, or []."""
    asha: StrictBool = True
    """Stop trials early that are behind their own family at the ASHA milestones (on the first objective)."""
    grace_period: StrictInt = 2
    """Epochs every trial gets before ASHA may stop it."""
    max_epochs: StrictInt = 4
    """Epochs per trial, unless ASHA stops it earlier."""
    seed: StrictInt = 0
    """Seeds the data split, the search and every trial of the search."""
    confirm: ConfirmSetting = Confirm()
    """After the search, its best ``top`` configurations again with ``seeds`` further seeds each (their
    rows show mean +/- std, and the winner is chosen by the mean); null or 0: no confirmation."""
    cpus_per_trial: Number = 1.0
    gpus_per_trial: Number = 0.0
    max_failures: StrictInt = 1
    """Times Ray Tune retries a crashed trial from its last checkpoint."""
    tracking_uri: StrictStr | None = None
    """MLflow tracking URI; None: MLflow's own resolution (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."""
    tracking_wait_s: Number = 900.0
    """How long the end of a sweep waits for a tracking server that went away to take the last writes."""
    storage_path: UserPath | None = None
    """Where Ray Tune keeps trial checkpoints; None: Ray's default (~/ray_results)."""
    output_dir: UserPath = "reports"
    """Where the comparison report is written, under <experiment>/<sweep> (also logged to the parent run)."""
    timing_s: Number = 1.0
    """Each latency and throughput timing of the comparison table runs at least this many seconds (and 30
    runs); --smoke-test: 0.2."""
    address: StrictStr | None = None
    """Ray cluster address ('auto' for the cluster this machine belongs to); None: $RAY_ADDRESS, else a
    `ray start` instance on this machine, else a Ray of the sweep's own, on 127.0.0.1 only."""
    space: dict[str, Dim] = field(default_factory=dict)
    """Trial parameters by name; those left out keep the trial config's defaults."""
    source: StrictStr = "<defaults>"
    """The recipe this config was read from, for messages and the sweep's parameters."""

    def __post_init__(self) -> None:
        if self.points_to_evaluate == "":  # the subclass' "one per row" keyword
            object.__setattr__(self, "points_to_evaluate", self.points_one_per)
        # Each setting on its own, then the task's own, then the space: every problem found is reported
        # together. Only then the checks that need all of them valid (grid size, start points).
        problems, wrong = self._check_settings()
        problems += _collect([self._check_task])
        checked = self
        if level := wrong & set(SWEEP_LEVEL):  # the space checked with the trial's own, not at every axis again
            checked = copy.copy(self)
            for k in level:
                object.__setattr__(checked, k, getattr(self.trial_type, k))
        problems += _collect([checked._check_space])
        if problems:
            raise ConfigError.of(problems)
        if late := _collect([self._check_grid, self.starting_points]):  # starting_points validates explicit points
            raise ConfigError.of(late)

    def _check_settings(self) -> tuple[list[str], set[str]]:
        problems: list[str] = []
        wrong: set[str] = set()

        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                problems.append(f"{key}: {message}")
                wrong.add(key)

        for n in ("max_epochs", "grace_period"):
            need(getattr(self, n) >= 1, n, f"must be >= 1, got {getattr(self, n)}")
        if self.asha and not wrong:
            need(
                self.grace_period <= self.max_epochs,
                "grace_period",
                f"({self.grace_period}) must not exceed max_epochs ({self.max_epochs})",
            )
        if self.num_samples is not None:
            need(self.num_samples >= 1, "num_samples", f"must be >= 1 or null, got {self.num_samples}")
        else:
            need(self.search == "grid", "num_samples", "null (the whole grid) needs search: grid; give a number")
        need(self.cpus_per_trial > 0, "cpus_per_trial", f"must be > 0, got {self.cpus_per_trial}")
        need(self.gpus_per_trial >= 0, "gpus_per_trial", f"must be >= 0, got {self.gpus_per_trial}")
        need(self.tracking_wait_s >= 0, "tracking_wait_s", f"must be >= 0 seconds, got {self.tracking_wait_s}")
        need(self.max_failures >= 0, "max_failures", f"must be >= 0, got {self.max_failures}")
        need(0 < self.timing_s < math.inf, "timing_s", f"must be > 0 seconds and finite, got {self.timing_s}")
        if self.storage_path is not None:
            need(
                "://" not in self.storage_path,
                "storage_path",
                f"{self.storage_path!r}: object-store URIs are not supported yet (the sweep keeps its recipe and "
                "resume file beside Tune's state as local files); give a directory, on a cluster one every node "
                "mounts (cluster.yaml mounts EFS at /mnt/shared)",
            )
        if self.search not in SEARCH_ALGORITHMS:
            problems.append(f"search: {unknown_name_message('search algorithm', self.search, SEARCH_ALGORITHMS)}")
        return problems, wrong

    def _check_task(self) -> None:
        """The task's own settings (a ConfigError with every problem)."""

    def _check_space(self) -> None:
        """Every value each axis can take makes a valid trial: each value on its own (with what the sweep
        sets), then, once all are valid, the fixed values together, then each searched value with them. A
        mistake is named once, at its own key, not again at every other axis checked beside it."""
        if misplaced := [k for k in self.space if k in SWEEP_LEVEL]:
            raise ConfigError.of([f"space.{k}: set by the sweep; use the top-level key {k!r}" for k in misplaced])

        def trials(given: dict[str, Any], searched_only: bool = False) -> list[str]:
            return _collect(
                functools.partial(_trial_check, self.trial_type, key, {**given, key: v})
                for key, dim in self.space.items()
                for v in (dim.candidates() if dim.searched or not searched_only else ())
            )

        constants = self.trial_constants()
        problems = trials({k: getattr(self, k) for k in SWEEP_LEVEL})
        if not problems and not (
            problems := _collect([functools.partial(_trial_check, self.trial_type, "", constants)])
        ):
            problems = trials(constants, searched_only=True)
        if problems:
            raise ConfigError.of(problems)

    def _check_grid(self) -> None:
        if self.search != "grid":
            return
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

    def dim(self, key: str) -> Dim:
        return self.space.get(key, Dim("fixed", (getattr(self.trial_type, key),)))

    @property
    def rows(self) -> tuple:
        """The values of the row key (architectures, models) the sweep compares."""
        return tuple(self.dim(self.row_key).candidates())

    def trial_constants(self) -> dict[str, Any]:
        """The fixed trial fields: the space's fixed axes plus what the sweep sets itself."""
        fixed = {k: d.values[0] for k, d in self.space.items() if not d.searched}
        return {**fixed, "max_epochs": self.max_epochs, "seed": self.seed}

    def active(self, key: str, chosen: dict[str, Any]) -> bool:
        """Whether a trial parameter exists given the values chosen so far (conditional ones may not)."""
        return is_active(self.conditional, self.trial_type, key, chosen)

    def ordered_keys(self) -> list[str]:
        """Space keys with every conditional parameter after the one it depends on."""

        def depth(k: str) -> int:
            return 0 if k not in self.conditional else 1 + depth(self.conditional[k].parent)

        return sorted(self.space, key=depth)

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

    def modes(self) -> list[str]:
        """'max' or 'min' for each objective, in order."""
        return ["max"]

    def starting_points(self) -> list[dict[str, Any]]:
        """The configs tried before the search proposes its own (validated against the space)."""
        if self.points_to_evaluate == self.points_one_per:
            points = []
            for row in self.rows:
                p: dict[str, Any] = {self.row_key: row}
                for key in self.ordered_keys():
                    if key != self.row_key and self.space[key].searched and self.active(key, p):
                        p[key] = self.space[key].start()
                points.append(p)
            return points
        if isinstance(self.points_to_evaluate, str):
            raise ConfigError(
                f"points_to_evaluate: {self.points_to_evaluate!r} is not allowed; "
                f"use {self.points_one_per!r}, a list of configs, or []"
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
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("space", "confirm")}
        d.update({f"confirm.{k}": v for k, v in dataclasses.asdict(self.confirm).items()})
        # Addresses can carry credentials (http://user:token@host): they stay out of the run.
        for secret_prone in ("tracking_uri", "address"):
            d.pop(secret_prone)
        d["points_to_evaluate"] = (
            self.points_to_evaluate if isinstance(self.points_to_evaluate, str) else len(self.points_to_evaluate)
        )
        return {**d, **{f"{SPACE_PARAM_PREFIX}{k}": v.describe() for k, v in self.space.items()}}

    def to_yaml_dict(self, addresses: bool = True) -> dict[str, Any]:
        """The config as a recipe again (the sweep logs it, so a run can be repeated from its record);
        ``addresses=False`` leaves out the tracking URI and Ray address, which can carry credentials."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("space", "source")}
        if not addresses:
            del d["tracking_uri"], d["address"]
        d = {k: list(v) if isinstance(v, tuple) and k != "points_to_evaluate" else v for k, v in d.items()}
        if not isinstance(self.points_to_evaluate, str):
            d["points_to_evaluate"] = [dict(p) for p in self.points_to_evaluate]
        d["confirm"] = dataclasses.asdict(self.confirm)
        return {**d, "space": {k: v.to_yaml() for k, v in self.space.items()}}

    # -- reading ---------------------------------------------------------------------------------------

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The top-level keys of a recipe, besides `space`."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("space", "source"))

    @classmethod
    def space_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls.trial_type)]

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>") -> Recipe:
        """A recipe's mapping -> the config; errors are ConfigErrors prefixed with ``source``."""
        try:
            if not isinstance(d, dict):
                raise ConfigError(f"expected a mapping of settings at the top level, got {type(d).__name__}")
            # The space's axes, then the settings (pydantic: every key at once), then how they fit together
            # (__post_init__'s problems, of the keys that could be read): one run shows every mistake.
            settings = {k: v for k, v in d.items() if k not in ("space", "source")}
            problems = [unknown_name_message("setting", "source", [*cls.settings(), "space"])] if "source" in d else []
            unread: set[str] = set()
            if "space" in d:
                settings["space"] = cls._read_space(d["space"], problems)
                unread = set(d["space"]) - set(settings["space"]) if isinstance(d["space"], dict) else {"space"}
            try:
                cfg = _schema(cls).validate_python({**settings, "source": source})
            except ValidationError as e:
                problems += _schema_problems(cls, e, settings)
                if bad := {str(err["loc"][0]) for err in e.errors() if err["loc"]}:  # the rules without them
                    unread |= bad
                    e = cls._rules_of({k: v for k, v in settings.items() if k not in bad}, source) or e
                rules = _rule_problems(e)
                # a rule that names a key not read would be about the default standing in for it
                problems += [m for m in rules if not any(re.search(rf"\b{re.escape(k)}\b", m) for k in unread)]
            if problems:
                raise ConfigError.of(problems)
            return cfg
        except ConfigError as e:
            raise ConfigError.of(e.problems, source) from None

    @classmethod
    def _rules_of(cls, settings: dict[str, Any], source: str) -> ValidationError | None:
        """How the settings that could be read fit together (the others at their defaults): the error
        __post_init__'s rules raise, or None."""
        try:
            _schema(cls).validate_python({**settings, "source": source})
        except ValidationError as e:
            return e
        return None

    @classmethod
    def _read_space(cls, raw: Any, problems: list[str]) -> dict[str, Dim]:
        """The ``space`` mapping -> its axes; each axis' mistake is added to ``problems``."""
        if not isinstance(raw, dict) or not raw:
            problems.append("space: expected a mapping of trial parameters to values, lists, ranges")
            return {}
        space = {}
        for key, axis in raw.items():
            try:
                space[key] = cls.parse_dim(key, axis)
            except ConfigError as e:
                problems.append(str(e))
        return space

    @classmethod
    def parse_dim(cls, key: str, raw: Any) -> Dim:
        """YAML -> Dim. ``value`` is fixed, ``[a, b]`` a choice, ``{loguniform|uniform|randint: [lo, hi]}`` a range."""
        if key not in cls.space_keys():
            raise ConfigError(f"space: {unknown_name_message(cls.trial_noun, str(key), cls.space_keys())}")
        if isinstance(raw, dict):
            if len(raw) != 1 or next(iter(raw)) not in RANGE_KINDS:
                raise ConfigError(
                    f"space.{key}: a range is one of {', '.join(f'{{{k}: [low, high]}}' for k in RANGE_KINDS)}, "
                    f"got {raw!r}"
                )
            kind, bounds = next(iter(raw.items()))
            kinds = set(typing.get_args(hint := _trial_hints(cls.trial_type)[key])) or {hint}
            if not kinds & {int, float}:
                raise ConfigError(f"space.{key}: {key} takes {_expected(hint, cls)}: a value or a list, not a range")
            if (kind == "randint") != (float not in kinds and int in kinds):  # a range of the field's own kind
                allowed = "{randint: [low, high]}" if int in kinds else "{uniform|loguniform: [low, high]}"
                raise ConfigError(f"space.{key}.{kind}: {key} takes {_expected(hint, cls)}; a range of it is {allowed}")
            if not (isinstance(bounds, list) and len(bounds) == 2):
                raise ConfigError(f"space.{key}.{kind}: expected [low, high], got {bounds!r}")
            lo, hi = (cls._coerce(key, b) for b in bounds)
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
            values = cls._values(key, [cls._coerce(key, v) for v in raw])
            if len(set(map(repr, values))) != len(values):
                raise ConfigError(f"space.{key}: a choice is listed twice in {raw!r}")
            return Dim("choice", tuple(values)) if len(values) > 1 else Dim("fixed", (values[0],))
        values = cls._values(key, [cls._coerce(key, raw)])
        return Dim("choice", tuple(values)) if len(values) > 1 else Dim("fixed", (values[0],))

    @classmethod
    def _values(cls, key: str, values: list[Any]) -> list[Any]:
        """A task's reading of an axis' values (presets expanded, paths resolved); as given by default."""
        return values

    @classmethod
    def _coerce(cls, key: str, v: Any) -> Any:
        """One value of an axis, checked against the trial config's type for ``key`` (by pydantic)."""
        hint = _trial_hints(cls.trial_type)[key]
        try:
            return _axis_type(hint).validate_python(v)
        except ValidationError:
            raise ConfigError(f"space.{key}: expected {_expected(hint, cls)}, got {v!r}") from None

    @classmethod
    def load(cls, path: str | Path, shipped: Path) -> Recipe:
        """Read and validate a YAML recipe. Errors name the file and the key; ``shipped``: the folder of
        this task's recipes, named when the file does not exist."""
        import yaml

        path = Path(path)
        if not path.is_file():
            names = ", ".join(sorted(p.name for p in shipped.glob("*.yaml")))
            raise ConfigError(f"{path}: no such config file (shipped recipes in {shipped}: {names})")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        return cls.from_dict(raw or {}, str(path))

    def with_overrides(self, settings: dict[str, Any], space: dict[str, Any], flags: dict[str, str]) -> Recipe:
        """Command-line values over a recipe: top-level ``settings`` and ``space`` axes (raw YAML-like
        values). ``flags`` maps each key to the flag it came from, for the error message."""
        if not settings and not space:
            return self
        d = self.to_yaml_dict()
        d.update(settings)
        d["space"] = {**d["space"], **space}
        # A flag that narrows a parent (say --freeze full, or --archs hog_svm) leaves the recipe's settings that
        # exist only under other values with nothing to apply to, and theirs in turn: they go, and the sweep says so.
        unused: dict[str, list[str]] = {}  # why -> the settings it leaves unused
        removed: set[str] = set()
        for _ in self.conditional:  # to a fixed point: a removed setting's own conditional settings go too
            for child, when in self.conditional.items():
                if child not in d["space"] or child in space:
                    continue
                if when.parent in removed:
                    why = f"the recipe's space.{when.parent} is not used"
                elif when.parent in space:
                    values = space[when.parent] if isinstance(space[when.parent], list) else [space[when.parent]]
                    if any(when.holds(v) for v in values):
                        continue
                    why = when.unused_note(flags[when.parent])
                else:
                    continue
                unused.setdefault(why, []).append(child)
                removed.add(child)
                del d["space"][child]
        for why, children in unused.items():
            names = ", ".join(f"space.{c}" for c in children)
            print(f"note: {why}: the recipe's {names} {'is' if len(children) == 1 else 'are'} not used")
        return self.from_dict(d, f"{self.source} with {' '.join(flags[k] for k in [*settings, *space])}")

    def smoke(self, given: Collection[str] = ()) -> Recipe:
        """A tiny version of the recipe (``shrunk``); the settings in ``given`` (set on the command line)
        stay as they are."""
        shrunk = {k: v for k, v in self.shrunk().items() if k not in given}
        if "grace_period" in given and "max_epochs" in shrunk:  # ASHA's first rung must fit in the epochs
            shrunk["max_epochs"] = max(shrunk["max_epochs"], self.grace_period)
        return dataclasses.replace(self, **shrunk)

    def shrunk(self) -> dict[str, Any]:
        """What --smoke-test sets: one trial per row, 2 epochs, the task's smaller data, timings of 0.2 s, and
        a confirmation (if the recipe has one) of the best configuration with one more seed."""
        return {
            "confirm": Confirm(1, 1) if self.confirm.trials else Confirm(),
            "num_samples": len(self.rows),
            "max_epochs": 2,
            "grace_period": 1,
            "points_to_evaluate": self.points_one_per,
            "timing_s": SMOKE_TIMING_S,
            **self.smoke_settings,
        }


@functools.cache
def _schema(recipe_type: type) -> TypeAdapter:
    """The recipe type's validator. Its settings must be typed strictly: a plain ``int`` would take '3'."""
    fields = _fields(recipe_type)
    if lax := [name for name, hint in fields.items() if name != "space" and _lax(hint)]:
        raise TypeError(
            f"{recipe_type.__name__}: type {', '.join(lax)} with StrictInt, StrictStr, StrictBool or "
            "sweeps.recipe.Number (pydantic converts '3' to a plain int, and 1 to a plain bool)"
        )
    return TypeAdapter(recipe_type)


def _lax(hint: Any) -> bool:
    """Whether a type lets pydantic convert a scalar: a plain int, float, bool or str in it, not made strict."""
    if metadata := getattr(hint, "__metadata__", ()):  # Annotated[T, ...]: Strict(), or Field(strict=True)
        return not any(getattr(m, "strict", False) for m in metadata) and _lax(hint.__origin__)
    return hint in _WORDS or any(_lax(arg) for arg in typing.get_args(hint))


@functools.cache
def _trial_hints(trial_type: type) -> dict[str, Any]:
    return typing.get_type_hints(trial_type)


@functools.cache
def _axis_type(hint: Any) -> TypeAdapter:
    """A trial field's type, strict (YAML's numbers as text, and whole floats for integers, excepted)."""
    kinds = set(typing.get_args(hint)) or {hint}

    def yaml_value(v: Any) -> Any:
        if float in kinds:
            return _number(v)
        return int(v) if int in kinds and isinstance(v, float) and v.is_integer() else v

    return TypeAdapter(Annotated[hint, BeforeValidator(yaml_value)], config=ConfigDict(strict=True))


_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected(hint: Any, recipe_type: type) -> str:
    """What a field allows, in words: its ``Expect``, else its type's ('an integer >= 0', 'a number or null')."""
    said = next((m.text for m in getattr(hint, "__metadata__", ()) if isinstance(m, Expect)), None)
    return said.format(cls=recipe_type) if said else _words(hint)


def _words(hint: Any) -> str:
    if extras := getattr(hint, "__metadata__", ()):  # Annotated[T, ...]
        return _words(hint.__origin__) + next((f" >= {m.ge}" for m in extras if isinstance(m, Ge)), "")
    if type(None) in (kinds := typing.get_args(hint)):
        return " or ".join(_words(k) for k in kinds if k is not type(None)) + " or null"
    return _WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _fields(record: type) -> dict[str, Any]:
    hints = typing.get_type_hints(record, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(record)}


def _rule_problems(e: ValidationError) -> list[str]:
    """The problems of the rules between settings (``__post_init__``'s), which pydantic reports without a key
    (a ConfigError, or a task's own check failing otherwise)."""
    found = (err.get("ctx", {}).get("error", err["msg"]) for err in e.errors() if not err["loc"])
    return [p for error in found for p in getattr(error, "problems", [str(error)])]


def _schema_problems(recipe_type: type, e: ValidationError, given: dict[str, Any]) -> list[str]:
    """pydantic's errors of the keys in this project's words, one per key: where, what is allowed, what was
    given (the rules between settings: ``_rule_problems``)."""
    fields = _fields(recipe_type)
    problems: list[str] = []
    for err in e.errors():
        loc = err["loc"]
        if not loc:
            continue
        key, hint, value = str(loc[0]), fields.get(str(loc[0])), given.get(loc[0])
        record = getattr(hint, "__origin__", hint)  # Annotated[Confirm, ...] -> Confirm
        if dataclasses.is_dataclass(record) and len(loc) > 1:  # a key of a nested record (confirm.top)
            inner = _fields(record)
            if loc[1] not in inner:
                problems.append(f"{key}: {unknown_name_message('key', str(loc[1]), list(inner))}")
                continue
            key, hint, value = f"{key}.{loc[1]}", inner[loc[1]], err["input"]
        if hint is None:
            problems.append(unknown_name_message("setting", key, [*recipe_type.settings(), "space"]))
        elif err["type"] == "value_error":  # a setting's own validator (UserPath) says what is wrong
            problems.append(f"{key}: {err['ctx']['error']}")
        elif value is None:
            problems.append(f"{key}: may not be null")
        else:
            problems.append(f"{key}: expected {_expected(hint, recipe_type)}, got {value!r}")
    return list(dict.fromkeys(problems))  # a union's members each report the same key


def _trial_check(trial_type: type, key: str, values: dict[str, Any]) -> None:
    try:
        trial_type(**values)
    except (ValueError, TypeError) as e:
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
