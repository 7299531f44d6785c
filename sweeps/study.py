"""The sweep's search as an Optuna study on disk, for Optuna's own tools (optuna-dashboard, ``optuna.load_study``,
a later warm start): ``optuna.db`` (SQLite) in the sweep directory, the study named after the sweep.

The search itself keeps its study in memory, pickled with Tune's state, so a resumed sweep's searcher and its
study never disagree, and a full or read-only sweep directory stops the sweep the way ``sweeps.run`` says
rather than breaking the searcher. This Tune callback records each search trial into the file as it ends: its
searched settings (with the recipe's distributions), the value Tune gave the searcher (the objective at its
last result; several for a multi-objective search) and its Tune trial id. The file is opened per write
(no connection held between trials); a write that fails is said once, the sweep goes on, the trials not
written are tried again at the next write, and any still missing at the sweep's end are counted there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune

from trainables.contracts import SEARCH_STAGE, stage_of

STUDY_FILE = "optuna.db"
TRIAL_ID_ATTR = "ray_trial_id"


def study_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{Path(sweep_dir) / STUDY_FILE}"


class StudyRecord(tune.Callback):
    def __init__(self, cfg: Any, sweep_dir: Path, log=print) -> None:  # noqa: ANN001 - a Recipe; a print-like
        self.url, self.name = study_storage(sweep_dir), Path(sweep_dir).name
        self.space = {k: d for k, d in cfg.space.items() if d.searched}
        self.objectives, self.modes, self.seed = list(cfg.objectives), list(cfg.modes()), cfg.seed
        self.log = log
        self.recorded: set[str] = set()  # Tune trial ids in the file (pickled with the sweep: resume)
        self._pending: list[tuple[str, dict, dict, bool]] = []  # (id, config, last result, failed) not written yet
        self._study = None
        self._failed = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_study": None}  # the connection is reopened after a restore

    def study(self):  # noqa: ANN201 - optuna.Study
        """The file's study, created (or opened, after a resume: its trials counted as recorded) on first use."""
        if self._study is None:
            import optuna
            from sqlalchemy.pool import NullPool

            storage = optuna.storages.RDBStorage(self.url, engine_kwargs={"poolclass": NullPool})
            directions = ["maximize" if m == "max" else "minimize" for m in self.modes]
            self._study = optuna.create_study(
                storage=storage, study_name=self.name, directions=directions, load_if_exists=True
            )
            self.recorded |= {t.user_attrs.get(TRIAL_ID_ATTR) for t in self._study.get_trials(deepcopy=False)}
        return self._study

    def setup(self, **info: Any) -> None:
        self._write(lambda: self.study())  # there from the start: a dashboard can watch the sweep

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:  # noqa: ANN001
        self._record(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:  # noqa: ANN001
        self._record(trial, failed=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._pending:
            self._write(self._flush)
        if self._pending:
            self.log(f"warning: Optuna study {self.url} lacks {len(self._pending)} search trial(s) it could not write")

    def _record(self, trial, failed: bool) -> None:  # noqa: ANN001 - a Tune Trial
        if stage_of(trial.config, self.seed) != SEARCH_STAGE or trial.trial_id in self.recorded:
            return  # a confirmation trial repeats a configuration: not a point of the search
        self._pending.append((trial.trial_id, dict(trial.config), dict(trial.last_result or {}), failed))
        self._write(self._flush)

    def _flush(self) -> None:
        while self._pending:
            self._add(*self._pending[0])
            self._pending.pop(0)

    def _add(self, trial_id: str, config: dict, result: dict, failed: bool) -> None:
        import optuna
        from optuna.trial import TrialState

        study = self.study()
        if trial_id in self.recorded:
            return
        params = {k: config[k] for k in self.space if k in config}
        values = [result.get(o) for o in self.objectives]
        complete = not failed and all(v is not None for v in values)
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: self.space[k].distribution() for k in params},
                values=[float(v) for v in values] if complete else None,
                state=TrialState.COMPLETE if complete else TrialState.FAIL,
                user_attrs={TRIAL_ID_ATTR: trial_id},
            )
        )
        self.recorded.add(trial_id)

    def _write(self, do) -> None:  # noqa: ANN001
        try:
            do()
        except Exception as e:  # noqa: BLE001 - a record for other tools: never a reason to stop the sweep
            if not self._failed:
                self.log(f"warning: Optuna study {self.url} not updated (the sweep goes on): {str(e)[:300]}")
            self._failed = True
            self._study = None  # opened again at the next write
