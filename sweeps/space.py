"""A sweep config's space as Optuna sees it, and the search algorithm and scheduler that explore it.

Every search mode runs through Ray Tune's ``OptunaSearch`` with a define-by-run space, so conditional
parameters (``unfreeze_stages`` only for ``partial``, ``gradual_epochs`` only for ``gradual``) are
sampled, and recorded, only where they exist; the modes differ only in Optuna's sampler. Early stopping
is ASHA within each family (``sweeps/schedulers.py``).
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sweeps import optuna_compat
from sweeps.config import SweepConfig
from sweeps.schedulers import GroupedASHA, RowFamily


class DefineByRun:
    """Optuna's define-by-run space: suggests each searched axis whose condition holds, and returns the
    fixed ones (Ray Tune merges both into the trial's config). A class, not a closure: Tune pickles the
    searcher with its state so a sweep can be resumed."""

    def __init__(self, cfg: SweepConfig) -> None:
        self.cfg = cfg

    def __call__(self, trial: Any) -> dict[str, Any]:
        cfg = self.cfg
        chosen = cfg.trial_constants()
        for key in cfg.ordered_keys():
            dim = cfg.space[key]
            if dim.searched and cfg.active(key, chosen):
                chosen[key] = dim.suggest(trial, key)
        return {k: v for k, v in cfg.trial_constants().items() if cfg.active(k, chosen)}


class GridSampler(optuna.samplers.BruteForceSampler):
    """Optuna's BruteForceSampler (each combination of a discrete, conditional space once), minus its
    ``study.stop()`` when the grid is exhausted: Ray Tune drives the study with ask/tell, where stop()
    raises, and Tune already stops at ``num_samples`` = the grid's size."""

    def after_trial(self, study, trial, state, values) -> None:  # noqa: ANN001 - Optuna's signature
        pass


def sampler(cfg: SweepConfig) -> optuna.samplers.BaseSampler:
    if cfg.search == "grid":
        with warnings.catch_warnings():  # "experimental since 3.1": stable in use, still labelled so
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return GridSampler(seed=cfg.seed)
    if cfg.search == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    return optuna.samplers.TPESampler(seed=cfg.seed)  # multi-objective too (MOTPE)


class NoRepeats(OptunaSearch):
    """OptunaSearch over a discrete space that starts each configuration at most once.

    TPE proposes again what it believes good, and in a small discrete space it does so often (a third
    of 24 trials in benchmarks/search_efficiency.py); a repeat trains the same model on the same split
    from the same seed, for the same numbers. A repeat is answered from the study instead, as Optuna
    advises for duplicates (the value the configuration already has; pruned while it is still running),
    and the sampler is asked again. After ``MAX_REPEATS`` repeats in a row an untried configuration is
    enqueued, so the search always moves on (the sweep runs at most as many trials as there are
    configurations: ``num_trials``)."""

    MAX_REPEATS = 20

    def __init__(self, cfg: SweepConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keys = [k for k in cfg.ordered_keys() if cfg.space[k].searched]
        self._untried = [tuple(c.get(k) for k in self._keys) for c in cfg.grid()]
        self._rng = random.Random(cfg.seed)
        self._started: dict[tuple, str] = {}  # configuration -> the trial that runs it
        self.repeats = 0  # proposals answered from the study instead of trained again

    def suggest(self, trial_id: str) -> dict | str | None:
        for attempt in range(self.MAX_REPEATS + 1):
            if attempt == self.MAX_REPEATS and self._untried:
                point = self._untried[self._rng.randrange(len(self._untried))]
                optuna_compat.enqueue(self, {k: v for k, v in zip(self._keys, point, strict=True) if v is not None})
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            key = tuple(config.get(k) for k in self._keys)
            if key not in self._started:
                self._started[key] = trial_id
                if key in self._untried:
                    self._untried.remove(key)
                return config
            self.repeats += 1
            self._answer(optuna_compat.forget(self, trial_id), self._started[key])
        return Searcher.FINISHED if not self._untried else None

    def _answer(self, repeat: optuna.trial.Trial, earlier_id: str) -> None:
        earlier = optuna_compat.record(self, earlier_id)
        study = optuna_compat.study(self)
        if earlier.state == TrialState.COMPLETE:
            study.tell(repeat, earlier.values if len(earlier.values) > 1 else earlier.value)
        else:  # still running (or failed): no value to give yet
            study.tell(repeat, state=TrialState.PRUNED)


def search_algorithm(cfg: SweepConfig) -> OptunaSearch:
    modes = cfg.modes()
    single = len(cfg.objectives) == 1
    kwargs = dict(
        space=DefineByRun(cfg),
        metric=cfg.objectives[0] if single else list(cfg.objectives),
        mode=modes[0] if single else modes,
        points_to_evaluate=cfg.starting_points() or None,
        sampler=sampler(cfg),
    )
    if cfg.search != "grid" and cfg.discrete:  # the grid's sampler never repeats; continuous spaces hardly
        return NoRepeats(cfg, **kwargs)
    return OptunaSearch(**kwargs)


def scheduler(cfg: SweepConfig) -> TrialScheduler:
    """ASHA within each family of the recipe's rows (architectures, YOLO models): a trial is stopped
    only against learning curves it is comparable with, and every family keeps its best to the end."""
    if not cfg.asha:
        return FIFOScheduler()
    return GroupedASHA(
        RowFamily(cfg.row_key),
        time_attr="training_iteration",
        metric=cfg.objectives[0],
        mode=cfg.modes()[0],
        max_t=cfg.max_epochs,
        grace_period=cfg.grace_period,
        reduction_factor=2,
    )


def num_trials(cfg: SweepConfig) -> int:
    """How many trials Tune starts: the config's number, or for a grid without one, the whole grid; a
    search of a discrete space runs each configuration once, so at most the grid's size."""
    if cfg.num_samples is None:
        return cfg.grid_size()
    return min(cfg.num_samples, cfg.grid_size()) if cfg.discrete else cfg.num_samples
