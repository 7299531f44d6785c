"""Early stopping that compares like with like: one successive-halving state per group of trials.

Ray Tune's ASHA ranks every trial against every other at each rung. Learning curves of different
architecture families are not comparable early: a ResNet from random weights may be behind a ViT after
two epochs and ahead of it after eight, and one shared ranking stops it before it gets there.
``GroupedASHA`` keeps one ``AsyncHyperBandScheduler`` per group (by default the family of the trial's
architecture or model), so a trial is stopped only against trials of its own group, and every family
keeps its best configurations to the end. The searcher is not involved: Tune gives it every result.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from trainables.contracts import CONFIRM_STAGE, stage_of
from trainables.detection import MODEL_RE
from trainables.models import family_of

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController


def yolo_family(model: str) -> str:
    """'yolov8' | 'yolo11' | ... for a YOLO model name; any other name is its own family."""
    match = MODEL_RE.match(model)
    return match.group(1) if match else model


ROW_FAMILIES: dict[str, Callable[[str], str]] = {"arch": family_of, "model": yolo_family}  # row_key -> family


class PickledState:
    """``save``/``restore`` as Ray's own schedulers and searchers write theirs: every attribute, pickled,
    so a resumed sweep carries on with the rungs and trials it had."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class RowFamily:
    """A trial's group: the family of its row (``config[row_key]``: its architecture or model); a row
    whose family this project does not know is a group of its own. A confirmation trial (a seed other than
    the sweep's ``seed``) has no group: it is never stopped early, nor compared with the search's trials.
    A class, not a closure: Tune pickles the scheduler with the Tuner."""

    def __init__(self, row_key: str, seed: int | None = None) -> None:
        self.row_key = row_key
        self.seed = seed

    def __call__(self, config: dict[str, Any]) -> str | None:
        if self.seed is not None and stage_of(config, self.seed) == CONFIRM_STAGE:
            return None
        row = config[self.row_key]
        family = ROW_FAMILIES.get(self.row_key)
        return family(row) if family else str(row)


class GroupedASHA(PickledState, FIFOScheduler):
    """Asynchronous successive halving, one state per group of trials (``group_of(trial.config)``); a
    trial whose group is None runs to the end, first come first served.

    Each group's ``AsyncHyperBandScheduler`` is made on its first trial, a copy of one made here with
    the settings given (so Ray checks them now, and ``set_search_properties`` reaches every group). Every
    trial event goes to its group's scheduler. A ``FIFOScheduler``, as Ray's ASHA is: trials start in
    submission order."""

    def __init__(
        self,
        group_of: Callable[[dict[str, Any]], str],
        *,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 2,
        brackets: int = 1,
        stop_last_trials: bool = True,
    ) -> None:
        super().__init__()
        self._group_of = group_of
        # Never sees a trial: the empty rungs every group starts from, with Ray's checks of the settings.
        self._template = AsyncHyperBandScheduler(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            brackets=brackets,
            stop_last_trials=stop_last_trials,
        )
        self._groups: dict[str, AsyncHyperBandScheduler] = {}
        self._ungrouped = FIFOScheduler()

    @property
    def metric(self) -> str | None:
        return self._template.metric

    @property
    def groups(self) -> dict[str, AsyncHyperBandScheduler]:
        """Each group seen so far -> its scheduler."""
        return dict(self._groups)

    def group(self, trial: Trial) -> str | None:
        return self._group_of(trial.config)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if not self._template.set_search_properties(metric, mode, **spec):
            return False
        return all(s.set_search_properties(metric, mode, **spec) for s in self._groups.values())

    def _scheduler(self, trial: Trial) -> TrialScheduler:
        group = self.group(trial)
        if group is None:
            return self._ungrouped
        if group not in self._groups:
            self._groups[group] = copy.deepcopy(self._template)
        return self._groups[group]

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        self._scheduler(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        return self._scheduler(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        self._scheduler(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        self._scheduler(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        # Kept in its group: Tune adds a trial it retries again (on_trial_add) and ends one it does not.
        self._scheduler(trial).on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:
        lines = [f"{group}: {s.debug_string()}" for group, s in sorted(self._groups.items())]
        return "\n".join([f"Using GroupedASHA, one AsyncHyperBand per group ({len(lines)}):", *lines])
