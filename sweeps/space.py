"""A sweep config's space as Optuna sees it, and the search algorithm and scheduler that explore it.

Every search mode runs through Ray Tune's ``OptunaSearch`` with a define-by-run space, so conditional
parameters (``unfreeze_stages`` only for ``partial``, ``gradual_epochs`` only for ``gradual``) are
sampled, and recorded, only where they exist; the modes differ only in Optuna's sampler. Early stopping
is ASHA within each family (``sweeps/schedulers.py``).
"""

from __future__ import annotations

import math
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
from sweeps.schedulers import GroupedASHA, PickledState, RowFamily
from trainables.config import epochs_planned
from trainables.contracts import SEARCH_STAGE, stage_of


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
    """OptunaSearch that starts each configuration at most once.

    TPE proposes again what it believes good, and in a small discrete space it does so often (a third
    of 24 trials in benchmarks/search_efficiency.py); so it does, in any space, for a row with nothing
    continuous to vary (a baseline such as hog_svm, the best row on the digits, was proposed 8 times in 16
    trials). A repeat trains the same model on the same split from the same seed, for the same numbers. It
    is answered from the study instead, as Optuna advises for duplicates (the value the configuration
    already has; pruned while it is still running), and the sampler is asked again. After ``MAX_REPEATS``
    repeats in a row an untried configuration (a discrete space) or a random draw from the space (any
    other) is enqueued, so the search always moves on (a discrete space runs at most as many trials as it
    has configurations: ``num_trials``)."""

    MAX_REPEATS = 20

    def __init__(self, cfg: SweepConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cfg = cfg
        self._keys = [k for k in cfg.ordered_keys() if cfg.space[k].searched]
        self._untried = [tuple(c.get(k) for k in self._keys) for c in cfg.grid()] if cfg.discrete else []
        self._rng = random.Random(cfg.seed)
        self._started: dict[tuple, str] = {}  # configuration -> the trial that runs it
        self.repeats = 0  # proposals answered from the study instead of trained again

    def suggest(self, trial_id: str) -> dict | str | None:
        for attempt in range(self.MAX_REPEATS + 1):
            if attempt == self.MAX_REPEATS and self._untried:
                point = self._untried[self._rng.randrange(len(self._untried))]
                optuna_compat.enqueue(self, {k: v for k, v in zip(self._keys, point, strict=True) if v is not None})
            elif attempt == self.MAX_REPEATS and not self._cfg.discrete:
                optuna_compat.enqueue(self, self._random_point())
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
        return Searcher.FINISHED if self._cfg.discrete and not self._untried else None

    def _random_point(self) -> dict[str, Any]:
        """Every searched axis that exists given the others, drawn uniformly (log-uniformly for log ranges)."""
        chosen = self._cfg.trial_constants()
        for key in self._keys:
            if self._cfg.active(key, chosen):
                chosen[key] = self._cfg.space[key].draw(self._rng)
        return {k: chosen[k] for k in self._keys if k in chosen}

    def _answer(self, repeat: optuna.trial.Trial, earlier_id: str) -> None:
        earlier = optuna_compat.record(self, earlier_id)
        study = optuna_compat.study(self)
        if earlier.state == TrialState.COMPLETE:
            study.tell(repeat, earlier.values if len(earlier.values) > 1 else earlier.value)
        else:  # still running (or failed): no value to give yet
            study.tell(repeat, state=TrialState.PRUNED)


class Confirmation(PickledState, Searcher):
    """The search (``search``, which proposes the search's trials), then the confirmation stage: once every
    search trial has ended, the ``cfg.confirm.top`` best of those that trained every epoch (by the best
    value of the first objective they reported) are proposed again, once with each of ``cfg.confirm.seeds``
    further seeds (``cfg.seed + 1``, ...). Confirmation results do not reach the search's sampler: they
    are the same configurations, not new points. The whole state is pickled with the sweep (resume)."""

    def __init__(self, search: Searcher, cfg: SweepConfig) -> None:
        super().__init__(metric=search.metric, mode=search.mode)
        self.search = search
        self.planned = num_trials(cfg)  # search trials still to be proposed, at most
        self.confirm = cfg.confirm
        self.seed, self.max_epochs = cfg.seed, cfg.max_epochs
        self.objective, self.sign = cfg.objectives[0], 1 if cfg.modes()[0] == "max" else -1
        self.configs: dict[str, dict] = {}  # search trial -> its config
        self.best: dict[str, tuple[float, int]] = {}  # search trial -> (best objective x sign, epochs reported)
        self.ended: set[str] = set()  # search trials that ended (finished, stopped or failed for good)
        self.failed: set[str] = set()
        self.queue: list[dict] | None = None  # the confirmation trials not yet proposed; None: not chosen yet

    def set_search_properties(self, metric, mode, config, **spec) -> bool:  # noqa: ANN001 - Ray's signature
        return self.search.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | str | None:
        if len(self.configs) < self.planned:
            config = self.search.suggest(trial_id)
            if config == Searcher.FINISHED:
                self.planned = len(self.configs)  # a discrete space ran out of configurations
            elif isinstance(config, dict):
                self.configs[trial_id] = config
                return config
            else:
                return config
        if len(self.ended) < len(self.configs):
            return None  # the confirmation waits for the whole search
        if self.queue is None:
            self.queue = self.chosen()
        return self.queue.pop(0) if self.queue else Searcher.FINISHED

    def chosen(self) -> list[dict]:
        """The confirmation trials: the best search configurations that ran every epoch, each with every
        further seed."""
        full = [
            t
            for t in self.configs
            if t not in self.failed and ran_every_epoch(self.best.get(t, (0, 0))[1], self.configs[t], self.max_epochs)
        ]
        top = sorted(full, key=lambda t: -self.best[t][0])[: self.confirm.top]  # stable: ties to the earlier
        seeds = range(self.seed + 1, self.seed + 1 + self.confirm.seeds)
        return [{**self.configs[t], "seed": s} for t in top for s in seeds]

    def _seen(self, trial_id: str, result: dict | None) -> None:
        if result and self.objective in result:
            best, _ = self.best.get(trial_id, (-math.inf, 0))
            self.best[trial_id] = (max(best, self.sign * result[self.objective]), result.get("training_iteration", 0))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.configs:
            return  # a confirmation trial
        self._seen(trial_id, result)
        self.search.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.configs:
            return
        self._seen(trial_id, result)  # a trial's last result comes here instead when the scheduler stops it
        self.ended.add(trial_id)
        if error:
            self.failed.add(trial_id)
        self.search.on_trial_complete(trial_id, result=result, error=error)


def search_algorithm(cfg: SweepConfig) -> Searcher:
    """The search, followed by its confirmation stage when the recipe has one. Its Optuna study lives in
    memory, pickled with the sweep's state; ``sweeps.study`` keeps a record of it that Optuna's tools open."""
    search = _search(cfg)
    return Confirmation(search, cfg) if cfg.confirm.trials else search


def _search(cfg: SweepConfig) -> OptunaSearch:
    modes = cfg.modes()
    single = len(cfg.objectives) == 1
    kwargs = dict(
        space=DefineByRun(cfg),
        metric=cfg.objectives[0] if single else list(cfg.objectives),
        mode=modes[0] if single else modes,
        points_to_evaluate=cfg.starting_points() or None,
        sampler=sampler(cfg),
    )
    if cfg.search != "grid":  # the grid's sampler never repeats
        return NoRepeats(cfg, **kwargs)
    return OptunaSearch(**kwargs)


REDUCTION_FACTOR = 2  # ASHA keeps the best 1/2 at each rung; rungs at grace_period * 2**k


def scheduler(cfg: SweepConfig) -> TrialScheduler:
    """ASHA within each family of the recipe's rows (architectures, YOLO models): a trial is stopped
    only against learning curves it is comparable with, and every family keeps its best to the end."""
    if not cfg.asha:
        return FIFOScheduler()
    return GroupedASHA(
        RowFamily(cfg.row_key, cfg.seed),
        time_attr="training_iteration",
        metric=cfg.objectives[0],
        mode=cfg.modes()[0],
        max_t=cfg.max_epochs,
        grace_period=cfg.grace_period,
        reduction_factor=REDUCTION_FACTOR,
    )


def stop_epochs(cfg: SweepConfig) -> tuple[int, ...]:
    """The epochs after which ``scheduler(cfg)`` may stop a trial early: ASHA's rungs below ``max_epochs``
    (``grace_period`` times powers of ``REDUCTION_FACTOR``, where Ray's ``AsyncHyperBandScheduler`` decides).
    A trial also ends after its last epoch; it makes its evidence for the driver at these epochs and that one."""
    if not cfg.asha:
        return ()
    epochs, t = [], cfg.grace_period
    while t < cfg.max_epochs:
        epochs.append(int(t))
        t *= REDUCTION_FACTOR
    return tuple(epochs)


def num_trials(cfg: SweepConfig) -> int:
    """How many trials the search starts: the config's number, or for a grid without one, the whole grid;
    a search of a discrete space runs each configuration once, so at most the grid's size. The
    confirmation stage adds at most ``cfg.confirm.trials``."""
    if cfg.num_samples is None:
        return cfg.grid_size()
    return min(cfg.num_samples, cfg.grid_size()) if cfg.discrete else cfg.num_samples


def ran_every_epoch(epochs: int, config: dict[str, Any], max_epochs: int) -> bool:
    """Whether a search trial of this config that reported ``epochs`` can be confirmed: it was not stopped
    early (a baseline plans one report)."""
    return epochs >= epochs_planned({"max_epochs": max_epochs, **config})


def trials_planned(cfg: SweepConfig, trials: list) -> int:
    """How many trials the sweep has once it ends, given Tune's ``trials`` so far: the search's, and a
    confirmation trial per further seed of each of the best search trials that ran every epoch."""
    if not cfg.confirm.trials:
        return num_trials(cfg)
    search = [t for t in trials if stage_of(t.config, cfg.seed) == SEARCH_STAGE]
    full = [
        t
        for t in search
        if t.status == "TERMINATED"
        and ran_every_epoch(t.last_result.get("training_iteration", 0), t.config, cfg.max_epochs)
    ]
    return num_trials(cfg) + min(cfg.confirm.top, len(full)) * cfg.confirm.seeds
