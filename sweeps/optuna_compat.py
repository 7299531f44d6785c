"""The Optuna study inside Ray Tune's ``OptunaSearch``, which Ray keeps in private attributes: the study
(``_ot_study``) and the Optuna trial of each Tune trial it has started (``_ot_trials``). ``NoRepeats``
(``sweeps.space``) needs both to answer a repeated configuration from the study. Everything else is
Optuna's public ``Study`` API. ``tests/test_compat.py`` fails, naming the attribute and the versions,
when either moves or Ray or Optuna leaves ``CHECKED``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

# The attributes live in Ray's OptunaSearch, so Ray's version decides; Optuna's is the one they were read with.
CHECKED = {"ray": ">=2.60,<2.61", "optuna": ">=5.1,<5.2"}
STUDY = "_ot_study"  # optuna.Study, created by OptunaSearch once it has a metric and mode
TRIALS = "_ot_trials"  # Tune trial id -> the optuna.trial.Trial asked for it


def study(searcher: OptunaSearch) -> optuna.Study:
    return getattr(searcher, STUDY)


def enqueue(searcher: OptunaSearch, params: dict[str, Any]) -> None:
    """The next trial the study asks for takes ``params`` (and samples whatever they leave out)."""
    study(searcher).enqueue_trial(params)


def forget(searcher: OptunaSearch, trial_id: str) -> optuna.trial.Trial:
    """The Optuna trial of Tune trial ``trial_id``, which OptunaSearch then no longer tracks: the next
    ``suggest(trial_id)`` asks the study for a new one."""
    return getattr(searcher, TRIALS).pop(trial_id)


def record(searcher: OptunaSearch, trial_id: str) -> optuna.trial.FrozenTrial:
    """The study's record (state, values) of the Optuna trial that Tune trial ``trial_id`` runs."""
    return study(searcher).trials[getattr(searcher, TRIALS)[trial_id].number]
