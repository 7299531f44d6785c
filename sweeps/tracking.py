"""MLflow for a sweep, at the sweep level: the parent run and its tags, readable run names, the
tracking-server check before anything starts, and the Model Registry entry of the sweep's best model.
The child runs of the trials are ``sweeps.trial_runs``'s.
"""

from __future__ import annotations

import getpass
import platform
import socket
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import requests
from mlflow.tracking import MlflowClient

from trainables.config import TrialConfig

TRIAL_ID_TAG = "ray_trial_id"
SWEEP_TAG = "sweep"
CHAMPION_ALIAS = "champion"
SERVER_CHECK_TIMEOUT_S = 10


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


def shown(uri: str) -> str:
    """A URI fit to print: credentials in it (``http://user:token@host``, ``postgresql://user:pw@db``)
    become ``***``. Runs never record the URI at all."""
    parts = urlparse(uri)
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


class TrackingUnavailable(RuntimeError):
    """The tracking server does not answer: nothing of the sweep has started."""


def check_tracking_server(tracking_uri: str) -> None:
    """A sweep against a tracking server that does not answer would train for nothing: refuse it now.
    One request to the server's ``/health`` and one API call, each with a short timeout and no retries
    (MLflow's own client retries for minutes before it gives up)."""
    if urlparse(tracking_uri).scheme not in ("http", "https"):
        return  # a local store: MLflow creates it
    base = tracking_uri.rstrip("/")
    try:
        health = requests.get(f"{base}/health", timeout=SERVER_CHECK_TIMEOUT_S)
        api = requests.get(
            f"{base}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=SERVER_CHECK_TIMEOUT_S
        )
    except requests.RequestException as e:
        raise TrackingUnavailable(
            f"the MLflow tracking server {shown(tracking_uri)} does not answer ({type(e).__name__}). Start it "
            f"(e.g. mlflow server --host {urlparse(tracking_uri).hostname} --port {urlparse(tracking_uri).port}), "
            "or pass another --tracking-uri. Nothing has started."
        ) from None
    if health.status_code != 200 or api.status_code != 200:
        raise TrackingUnavailable(
            f"{shown(tracking_uri)} answers, but not as an MLflow tracking server: /health gave HTTP "
            f"{health.status_code}, the experiments API HTTP {api.status_code}. Nothing has started."
        )


def ui_hint(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str:
    """How to look at the sweep: the command for a local store, the URL for a server."""
    path = f"#/experiments/{experiment_id}/runs/{parent_run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {shown(tracking_uri).rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {shown(tracking_uri)}   # then open http://127.0.0.1:5000/{path}"


# MLflow 3's UI shows an experiment as GenAI or model-training work by this tag; sweeps are the latter.
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def local_artifact_root(tracking_uri: str) -> str | None:
    """For a SQLite store, artifacts go in ``mlruns/`` beside the database file, not in whatever directory
    the sweep was started from (MLflow's default, ``./mlruns``); None for other stores."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri[len("sqlite:///") :]).expanduser().resolve()
    return (db.parent / "mlruns").as_uri()


def start_parent_run(experiment: str, sweep_name: str, project_root: Path) -> mlflow.ActiveRun:
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=local_artifact_root(mlflow.get_tracking_uri()))
    exp = mlflow.set_experiment(experiment)
    if EXPERIMENT_KIND_TAG not in exp.tags:
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return mlflow.start_run(
        experiment_id=exp.experiment_id, run_name=sweep_name, tags=sweep_tags(sweep_name, project_root)
    )


def reopen_parent_run(run_id: str) -> mlflow.ActiveRun:
    """The parent run of a sweep being resumed: the same run, RUNNING again, with a count of resumes."""
    run = mlflow.start_run(run_id=run_id)
    resumes = int(run.data.tags.get("resumes", "0")) + 1
    mlflow.set_tag("resumes", str(resumes))
    return run


def register_champion(model_name: str, run_id: str, description: str) -> str:
    """Register the trial's logged model (its run's ``model_id`` tag) as a new version of ``model_name``
    and point the ``champion`` alias at it. Returns 'name@champion (version N)'."""
    from sweeps.trial_runs import MODEL_ID_TAG

    client = MlflowClient()
    model_id = client.get_run(run_id).data.tags.get(MODEL_ID_TAG)
    if model_id is None:
        raise RuntimeError(f"run {run_id} has no logged model ({MODEL_ID_TAG} tag): nothing to register")
    mv = mlflow.register_model(f"models:/{model_id}", model_name, tags={"run_id": run_id})
    client.update_model_version(model_name, mv.version, description=description)
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, mv.version)
    return f"{model_name}@{CHAMPION_ALIAS} (version {mv.version})"
