"""A sweep config's space as Optuna sees it, and the search algorithm and scheduler that explore it.

Every search mode runs through Ray Tune's ``OptunaSearch`` with a define-by-run space, so conditional
parameters (``unfreeze_stages`` only for ``partial``, ``gradual_epochs`` only for ``gradual``) are
sampled, and recorded, only where they exist; the modes differ only in Optuna's sampler.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from sweeps.config import SweepConfig
from trainables import metrics as M


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


def search_algorithm(cfg: SweepConfig) -> OptunaSearch:
    modes = [M.OBJECTIVES[o] for o in cfg.objectives]
    single = len(cfg.objectives) == 1
    return OptunaSearch(
        space=DefineByRun(cfg),
        metric=cfg.objectives[0] if single else list(cfg.objectives),
        mode=modes[0] if single else modes,
        points_to_evaluate=cfg.starting_points() or None,
        sampler=sampler(cfg),
    )


def scheduler(cfg: SweepConfig) -> TrialScheduler:
    if not cfg.asha:
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=cfg.objectives[0],
        mode=M.OBJECTIVES[cfg.objectives[0]],
        max_t=cfg.max_epochs,
        grace_period=cfg.grace_period,
        reduction_factor=2,
    )


def num_trials(cfg: SweepConfig) -> int:
    """How many trials Tune starts: the config's number, or for a grid without one, the whole grid."""
    return cfg.grid_size() if cfg.num_samples is None else cfg.num_samples
