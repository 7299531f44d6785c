"""The sweep's Optuna study on disk (sweeps/study.py), written as Tune's driver calls its callbacks: every
search trial once, with its settings and value; confirmation trials left out; a resumed sweep adds to the same
file without repeating a trial; a directory that turns read-only is said once and stops nothing."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import optuna
import pytest

from sweeps.config import config_from_dict
from sweeps.study import StudyRecord, study_storage
from trainables import metrics as M

SPACE = {"arch": ["resnet18", "convnext_atto"], "freeze": ["full", "frozen"], "lr": {"loguniform": [1e-4, 1e-2]}}


def trial(trial_id: str, arch: str, acc: float | None, seed: int = 0):
    config = {"arch": arch, "freeze": "full", "lr": 1e-3, "seed": seed, "max_epochs": 3}
    return SimpleNamespace(trial_id=trial_id, config=config, last_result={} if acc is None else {M.VAL_ACC: acc})


def loaded(sweep_dir) -> list:
    return optuna.load_study(study_name=sweep_dir.name, storage=study_storage(sweep_dir)).trials


def test_search_trials_are_recorded_once_with_their_settings_and_value_and_a_resume_goes_on(tmp_path):
    sweep_dir = tmp_path / "sweep-x"
    sweep_dir.mkdir()
    cfg = config_from_dict({"num_samples": 4, "seed": 0, "space": SPACE})
    said = []
    record = StudyRecord(cfg, sweep_dir, said.append)
    record.setup()
    assert loaded(sweep_dir) == []  # there from the start, for a dashboard to watch
    record.on_trial_complete(0, [], trial("a", "resnet18", 0.9))
    record.on_trial_error(0, [], trial("b", "convnext_atto", None))
    record.on_trial_complete(0, [], trial("c", "resnet18", 0.95, seed=1))  # a confirmation trial: not a search point
    record.on_trial_complete(0, [], trial("a", "resnet18", 0.9))  # told again (a replay): recorded once
    got = loaded(sweep_dir)
    assert [(t.params["arch"], t.state.name, t.value) for t in got] == [
        ("resnet18", "COMPLETE", 0.9), ("convnext_atto", "FAIL", None)
    ]  # fmt: skip
    assert got[0].params["lr"] == pytest.approx(1e-3) and got[0].user_attrs["ray_trial_id"] == "a"
    # a resumed sweep's callback comes back from Tune's pickle: the same file, nothing twice
    again = pickle.loads(pickle.dumps(record))
    again.on_trial_complete(0, [], trial("a", "resnet18", 0.9))
    again.on_trial_complete(0, [], trial("d", "convnext_atto", 0.5))
    assert [t.user_attrs["ray_trial_id"] for t in loaded(sweep_dir)] == ["a", "b", "d"]
    assert said == []


def test_a_study_file_that_cannot_be_written_is_said_once_and_stops_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep-y"
    (sweep_dir / "optuna.db").mkdir(parents=True)  # SQLite cannot open it: as a full or read-only disk, for root too
    cfg = config_from_dict({"num_samples": 4, "seed": 0, "space": SPACE})
    said = []
    record = StudyRecord(cfg, sweep_dir, said.append)
    record.setup()
    record.on_trial_complete(0, [], trial("a", "resnet18", 0.9))
    record.on_trial_complete(0, [], trial("b", "resnet18", 0.8))
    assert len(said) == 1 and "not updated (the sweep goes on)" in said[0]
    record.on_experiment_end([])  # still unwritable at the end: how many are missing is said
    assert len(said) == 2 and "lacks 2 search trial(s)" in said[1]
    (sweep_dir / "optuna.db").rmdir()  # writable again: the next write brings the missed trials in, in order
    record.on_trial_complete(0, [], trial("c", "convnext_atto", 0.7))
    assert [t.user_attrs["ray_trial_id"] for t in loaded(sweep_dir)] == ["a", "b", "c"]
