"""A recipe that leaves trial parameters out, and a tracking store that refuses a sweep's writes: the
runs still say what ran, and nothing a trial trained is lost."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import stat

import mlflow
import pytest
import ray
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray import tune

from sweeps import trial_runs
from sweeps.config import config_from_dict, trial_params
from sweeps.ray_compat import loopback_only
from sweeps.run import fit_trials
from sweeps.trial_runs import UNSENT_FILE, MlflowTrialCallback
from trainables import metrics as M
from trainables.config import TrialConfig, run_name

REFUSE_NEW_RUNS = "CREATE TRIGGER refuse_new_runs BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'over quota'); END"
LEFT_OUT = {"arch": "resnet18", "max_epochs": 2, "seed": 0}  # what Tune's config holds for `space: {arch: resnet18}`


@pytest.mark.parametrize(
    "config",
    [LEFT_OUT, {**LEFT_OUT, "lr": 0.001}, {**LEFT_OUT, "freeze": "partial"}, {**LEFT_OUT, "augment": "light"}],
)
def test_parameters_a_recipe_leaves_out_take_their_defaults_in_names_and_params(config):
    d = TrialConfig.from_dict(config)
    name = run_name(config)
    assert name.startswith(f"resnet18-{d.freeze}")
    assert f"-{d.augment}-lr" in name
    params = trial_params(config)
    assert params["lr"] == d.lr and params["freeze"] == d.freeze and params["augment"] == d.augment
    assert ("unfreeze_stages" in params) == (d.freeze == "partial")


def test_what_tune_keeps_of_each_trial_does_not_carry_the_callbacks_runs_or_unsent_writes(tmp_path):
    """Tune pickles the trial-name functions into every trial's saved state (and at each of its results, kept
    in the driver's memory): they pickle alike whatever the sweep holds, and name trials as before after a
    restore, confirmation trials by their seed too."""
    from types import SimpleNamespace

    from ray import cloudpickle
    from ray.tune.utils.serialization import TuneFunctionDecoder, TuneFunctionEncoder

    from sweeps.run import trial_dirname
    from sweeps.trial_runs import TrialNames

    cb = MlflowTrialCallback(f"sqlite:///{tmp_path}/mlflow.db", "1", "p" * 32, "sweep-1", sweep_seed=0)
    names, dirnames = TrialNames(cb), functools.partial(trial_dirname, "arch")
    empty = len(cloudpickle.dumps(names)), len(cloudpickle.dumps(dirnames))
    cb._runs = {f"{i:08x}": f"{i:032x}" for i in range(3000)}  # thousands of trials, and a server away:
    cb._pending.extend({"kind": "result", "trial": f"{i:08x}", "metrics": {"val_acc": 0.5}} for i in range(3000))
    assert (len(cloudpickle.dumps(names)), len(cloudpickle.dumps(dirnames))) == empty
    assert max(empty) < 2000  # settings, not state
    # as Tune stores it in a trial's state (JSON, the function cloudpickled) and reads it back on a restore
    stored = json.dumps({"trial_name_creator": names}, cls=TuneFunctionEncoder)
    assert len(stored) < 4000
    restored = json.loads(stored, cls=TuneFunctionDecoder, allow_cloudpickle=True)["trial_name_creator"]
    for config in ({**LEFT_OUT, "lr": 0.001}, {**LEFT_OUT, "lr": 0.001, "seed": 7}):
        trial = SimpleNamespace(config=config, trial_id="0a1b2c3d")
        assert restored(trial) == names(trial) == cb.trial_name(config)
    assert names(trial).endswith("-seed7") and dirnames(trial) == "0a1b2c3d-resnet18"


def two_epochs(config):
    """A trial as Tune sees it: two epochs of metrics, no checkpoint."""
    for epoch in (1, 2):
        tune.report({M.EPOCH: epoch, M.VAL_ACC: 0.5 + epoch / 10, M.TRAIN_LOSS: 1.0 / epoch, M.TEST_ACC: 0.6})


@pytest.mark.e2e
def test_writes_the_store_refuses_fail_the_sweep_run_and_a_resume_delivers_them(tmp_path, ray_tmp, monkeypatch, capsys):
    """The store refuses every new run once the sweep has started (here a database rule, as a quota or a
    policy would): the sweep's run ends FAILED saying why, not FINISHED with no trials; once the rule is
    gone, --resume's restore delivers every write of the trial, once."""
    monkeypatch.setattr(trial_runs, "RETRY_S", 0.05)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.create_experiment("refused")
    cfg = config_from_dict({"num_samples": 1, "max_epochs": 2, "space": {"arch": "resnet18"}})
    exp_dir = tmp_path / "ray" / "sweep-1"
    try:
        with loopback_only():
            ray.init(num_cpus=1, _temp_dir=ray_tmp, include_dashboard=False, logging_level="WARNING")
        with mlflow.start_run(experiment_id=exp, run_name="sweep-1") as parent:
            parent_id = parent.info.run_id
            with sqlite3.connect(tmp_path / "mlflow.db") as db:
                db.execute(REFUSE_NEW_RUNS)
            callback = MlflowTrialCallback(uri, exp, parent_id, "sweep-1", 30, str(exp_dir))
            tuner = tune.Tuner(
                two_epochs,
                param_space={"arch": "resnet18", "max_epochs": 2, "seed": 0},
                run_config=tune.RunConfig(name="sweep-1", storage_path=str(tmp_path / "ray"), callbacks=[callback]),
            )
            results, code = fit_trials(cfg, tuner, exp_dir)
        assert results is None and code == 2
        run = client.get_run(parent_id)
        assert run.info.status == "FAILED"
        assert "MLflow writes were refused" in run.data.tags["tracking_error"]
        err = capsys.readouterr().err
        assert "refused" in err and f"--resume {exp_dir}" in err
        unsent = exp_dir / UNSENT_FILE
        assert stat.S_IMODE(os.stat(unsent).st_mode) == 0o600

        with sqlite3.connect(tmp_path / "mlflow.db") as db:  # the cause fixed
            db.execute("DROP TRIGGER refuse_new_runs")
        with loopback_only():
            ray.init(num_cpus=1, _temp_dir=ray_tmp, include_dashboard=False, logging_level="WARNING")
        with mlflow.start_run(run_id=parent_id):
            restored = tune.Tuner.restore(str(exp_dir), trainable=two_epochs, resume_unfinished=True)
            results, code = fit_trials(cfg, restored, exp_dir)
        assert code is None and len(results) == 1
        assert "tracking_error" not in client.get_run(parent_id).data.tags
        assert client.get_run(parent_id).info.status == "FINISHED"
        (child,) = client.search_runs([exp], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'")
        assert child.info.run_name == run_name(LEFT_OUT) and child.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(child.info.run_id, M.VAL_ACC)] == [1, 2]
        assert child.data.params["lr"] == str(TrialConfig.lr)
        assert not unsent.exists()
    finally:
        ray.shutdown()
        mlflow.set_tracking_uri(None)
