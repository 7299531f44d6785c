"""MLflow for a sweep: one parent run, and one nested child run per Ray Tune trial.

All MLflow writes happen in the driver, through a Tune ``Callback``: trials only report metrics to Tune.
So however many trials run at once, the tracking store has a single writer (no "database is locked"
with the local SQLite store), and workers on a cluster need no route to the tracking server.

The child run of a trial is found by its ``ray_trial_id`` tag under the parent, not kept only in memory,
so a trial that Tune restarts (a retry or a restored sweep) continues its own run instead of opening a
second one.
"""

from __future__ import annotations

import getpass
import platform
import socket
import subprocess
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray.tune import Callback
from ray.tune.experiment import Trial

from sweeps.config import trial_params
from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.models import family_of

TRIAL_ID_TAG = "ray_trial_id"
SWEEP_TAG = "sweep"
INFO_PREFIX = "info/"  # per-trial facts the trainable reports (input size, device, ...): run params
MAX_PARAM_LEN = 6000  # MLflow's limit on a parameter value's length, in characters


def run_name(config: dict[str, Any]) -> str:
    """A name a person can read in the MLflow UI, e.g. ``convnext_atto-full-light-lr3e-3``."""
    lr = f"{config['lr']:.0e}".replace("e-0", "e-")
    freeze = config["freeze"]
    if freeze == "partial":
        freeze += str(config.get("unfreeze_stages", TrialConfig.unfreeze_stages))
    if freeze == "gradual":
        freeze += str(config.get("gradual_epochs", TrialConfig.gradual_epochs))
    return f"{config['arch']}-{freeze}-{config['augment']}-lr{lr}"


def library_versions() -> dict[str, str]:
    names = ("ray", "torch", "torchvision", "timm", "mlflow", "optuna", "scikit-learn")
    return {f"version.{n}": version(n) for n in names}


def git_commit(cwd: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def sweep_tags(sweep_name: str, project_root: Path) -> dict[str, str]:
    return {
        SWEEP_TAG: sweep_name,
        "git_commit": git_commit(project_root),
        "hostname": socket.gethostname(),
        "user": getpass.getuser(),
        "python": platform.python_version(),
        **library_versions(),
    }


def _params(d: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in sorted(d.items())]


class MlflowTrialCallback(Callback):
    """Opens (or reopens) the child run of each trial, logs every epoch, and closes it with the result."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_name = sweep_name
        self._client: MlflowClient | None = None
        self._runs: dict[str, str] = {}  # trial id -> run id, a cache of what the tags say
        self._info_logged: set[str] = set()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:  # built lazily: the callback is pickled with the Tuner's state
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    def run_id(self, trial: Trial) -> str:
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}' "
            f"and tags.`{TRIAL_ID_TAG}` = '{trial.trial_id}'",
        )
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self._create_run(trial)
        self._runs[trial.trial_id] = run_id
        return run_id

    def _create_run(self, trial: Trial) -> str:
        name = run_name(trial.config)
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                MLFLOW_RUN_NAME: name,
                TRIAL_ID_TAG: trial.trial_id,
                SWEEP_TAG: self.sweep_name,
                "family": family_of(trial.config["arch"]),
            },
        )
        # Every TrialConfig field, the defaults the sweep did not set included: the run says what ran.
        params = {**trial_params(trial.config), "family": family_of(trial.config["arch"])}
        self.client.log_batch(run.info.run_id, params=_params(params))
        return run.info.run_id

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self.run_id(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info) -> None:
        run_id = self.run_id(trial)
        epoch = int(result[M.EPOCH])
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(result[k]), now, epoch) for k in M.EPOCH_METRICS if k in result]
        params, tags = [], []
        if trial.trial_id not in self._info_logged and not self._has_info(run_id):
            facts = {k[len(INFO_PREFIX) :]: v for k, v in result.items() if k.startswith(INFO_PREFIX)}
            params = _params(facts)
            tags = [
                RunTag("hostname", str(result.get("hostname", ""))),
                RunTag("device", str(facts.get("device", ""))),
            ]
        self._info_logged.add(trial.trial_id)
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def _has_info(self, run_id: str) -> bool:
        return "device" in self.client.get_run(run_id).data.tags

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        run_id = self.run_id(trial)
        last = trial.last_result or {}
        now = int(time.time() * 1000)
        step = int(last.get(M.EPOCH, 0))
        summary = [Metric(k, float(last[k]), now, step) for k in M.SUMMARY_METRICS if k in last]
        stopped_early = step < int(trial.config["max_epochs"])
        self.client.log_batch(
            run_id,
            metrics=summary + [Metric("epochs_run", float(step), now, step)],
            tags=[RunTag("stopped_early", str(stopped_early).lower())],
        )
        self.client.set_terminated(run_id, status="FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        run_id = self.run_id(trial)
        self.client.set_tag(run_id, "error", str(trial.error_file or "see Ray Tune's trial log"))
        self.client.set_terminated(run_id, status="FAILED")


def ui_hint(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str:
    """How to look at the sweep: the command for a local store, the URL for a server."""
    path = f"#/experiments/{experiment_id}/runs/{parent_run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {tracking_uri}   # then open http://127.0.0.1:5000/{path}"


# MLflow 3's UI shows an experiment as GenAI or model-training work by this tag; sweeps are the latter.
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def start_parent_run(experiment: str, sweep_name: str, project_root: Path) -> mlflow.ActiveRun:
    exp = mlflow.set_experiment(experiment)
    if EXPERIMENT_KIND_TAG not in exp.tags:
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return mlflow.start_run(
        experiment_id=exp.experiment_id, run_name=sweep_name, tags=sweep_tags(sweep_name, project_root)
    )
