"""MLflow for a sweep, at the sweep level: the tracking URI (credentials split off) and the check of its
store before anything starts, the parent run and its tags, readable run names, and the Model Registry entry
of the sweep's best model. The child runs of the trials are ``sweeps.trial_runs``'s.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
import requests
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from sweeps.credentials import (
    PASSWORD_ENV,
    TOKEN_ENV,
    USERNAME_ENV,
    from_command_line,
    secret_left,
    shown,
    split_credentials,
)
from trainables.contracts import CHAMPION_ALIAS, HOSTNAME_TAG, MODEL_ID_TAG, RESUMES_TAG, SWEEP_TAG
from trainables.contracts import TRIAL_ID_TAG as TRIAL_ID_TAG  # sweeps.run imports it from here

SERVER_CHECK_TIMEOUT_S = 10


SPLITS = (("train", "train"), ("val", "validation"), ("test", "test"))  # summary prefix, MLflow's dataset context


def dataset_inputs(name: str, summary: dict[str, Any], fingerprint: str | None) -> list[DatasetInput]:
    """The sweep's data (``name``, a task's ``Prepared.name``) as MLflow dataset inputs, one per split the
    summary sizes, each with its context (train, validation, test): a digest of that split (from the split's
    fingerprint), where the data came from, and its number of rows (and classes, where the task says) as its
    profile. What the MLflow UI's Dataset column shows and filters on."""
    source = str(summary.get("data_source", name))
    local = Path(source).is_absolute() or Path(source).exists()
    out = []
    for split, context in SPLITS:
        size = summary.get(f"{split}_size")
        if not size:
            continue
        digest = hashlib.sha256(f"{fingerprint or source}/{split}".encode()).hexdigest()[:16]
        profile = {"num_rows": int(size)}
        if "num_classes" in summary:
            profile["num_classes"] = int(summary["num_classes"])
        dataset = Dataset(
            name=f"{name}-{split}",
            digest=digest,
            source_type="local" if local else "code",
            source=json.dumps({"uri": source}),
            profile=json.dumps(profile),
        )
        out.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return out


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
        HOSTNAME_TAG: socket.gethostname(),
        "user": getpass.getuser(),
        "python": platform.python_version(),
        **library_versions(),
    }


def use_tracking_uri(uri: str | None) -> tuple[str, dict[str, str]]:
    """Make ``uri`` (None: MLflow's own default, $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db) this
    process's tracking URI, without its credentials: they go to the environment variables MLflow reads
    (``sweeps.credentials.split_credentials``), so that no URI the process prints, pickles or writes holds
    them, MLflow's own "View run ... at" lines included. Called once, first. Returns (the clean URI, the
    credentials it carried, with any the entry script moved off its command line): what --resume needs."""
    clean, creds = split_credentials(uri or mlflow.get_tracking_uri())
    creds = {**from_command_line(), **creds}
    os.environ.update(creds)
    mlflow.set_tracking_uri(clean)  # MLflow sets $MLFLOW_TRACKING_URI to it too: Ray's processes inherit it clean
    return clean, creds


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be used: nothing of the sweep has started."""


def check_tracking_store(tracking_uri: str, reading: bool = False) -> None:
    """A sweep whose runs cannot be written would train for nothing, or fail late after minutes of MLflow's
    retries: refuse it now, in one line that names the store, the cause and what to do. A tracking server
    must answer; a SQLite database must be one, in a directory SQLite can write (its journal goes there);
    MLflow's file store is refused unless MLFLOW_ALLOW_FILE_STORE allows it, as MLflow itself does. With
    ``reading``, for commands that read a sweep's runs, the store must exist instead: a mistyped path is
    said, not created empty. Raises TrackingUnavailable."""
    scheme = urlparse(tracking_uri).scheme.lower()
    if scheme in ("http", "https"):
        check_tracking_server(tracking_uri)
    elif scheme == "sqlite":
        _check_sqlite(tracking_uri, reading)
    elif scheme in ("", "file"):
        _check_file_store(tracking_uri, reading)
    elif not reading and secret_left(tracking_uri):
        raise TrackingUnavailable(
            f"tracking store {shown(tracking_uri)}: a password in a {scheme} URI would be saved with the sweep "
            "(its Tune state, its directory). Leave it out and let the database driver find it (for MySQL an "
            "option file, ?read_default_file=~/.my.cnf), or use PostgreSQL (its password is passed as "
            "PGPASSWORD) or an MLflow tracking server."
        )


def _server_auth() -> dict[str, Any]:
    """The credentials MLflow's client would send, for the server check's own requests."""
    user, password, token = (os.environ.get(k) for k in (USERNAME_ENV, PASSWORD_ENV, TOKEN_ENV))
    if user and password:
        return {"auth": (user, password)}
    return {"headers": {"Authorization": f"Bearer {token}"}} if token else {}


def check_tracking_server(tracking_uri: str) -> None:
    """One request to the server's ``/health`` and one API call, each with a short timeout and no retries
    (MLflow's own client retries for minutes before it gives up)."""
    base, auth = tracking_uri.rstrip("/"), _server_auth()
    try:
        health = requests.get(f"{base}/health", timeout=SERVER_CHECK_TIMEOUT_S, **auth)
        api = requests.get(
            f"{base}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            timeout=SERVER_CHECK_TIMEOUT_S,
            **auth,
        )
    except requests.RequestException as e:
        raise TrackingUnavailable(
            f"the MLflow tracking server {shown(tracking_uri)} does not answer ({type(e).__name__}). Start it "
            f"(e.g. mlflow server --host {urlparse(tracking_uri).hostname} --port {urlparse(tracking_uri).port}), "
            "or pass another --tracking-uri. Nothing has started."
        ) from None
    if api.status_code in (401, 403):
        raise TrackingUnavailable(
            f"the MLflow tracking server {shown(tracking_uri)} refuses this client (HTTP {api.status_code}): give "
            f"it the right credentials, as user:password@ in the URI or as {USERNAME_ENV}/{PASSWORD_ENV} "
            f"(or {TOKEN_ENV}). Nothing has started."
        )
    if health.status_code != 200 or api.status_code != 200:
        raise TrackingUnavailable(
            f"{shown(tracking_uri)} answers, but not as an MLflow tracking server: /health gave HTTP "
            f"{health.status_code}, the experiments API HTTP {api.status_code}. Nothing has started."
        )


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory, as SQLite opens it);
    None for an in-memory database."""
    from sqlalchemy.engine import make_url  # how MLflow's store reads the URI

    database = make_url(tracking_uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(os.path.abspath(database))


def _check_sqlite(tracking_uri: str, reading: bool) -> None:
    db = sqlite_path(tracking_uri)
    if db is None:
        return
    where = f"tracking store {shown(tracking_uri)}"
    if db.is_dir():
        raise TrackingUnavailable(f"{where}: {db} is a directory, not a SQLite database file; name a file in it.")
    if db.exists():
        try:
            with open(db, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as e:
            raise TrackingUnavailable(
                f"{where}: cannot read {db} ({e.strerror}); make it readable, or pass another --tracking-uri."
            ) from None
        if head and head != SQLITE_HEADER:  # an empty file is an empty database to SQLite
            raise TrackingUnavailable(
                f"{where}: {db} is not a SQLite database (it starts {head[:8]!r}); name the database a sweep "
                "wrote, or a new file."
            )
        if reading:
            return
        try:  # opened, not written: a file SQLite could not write fails here, for root too (EROFS)
            os.close(os.open(db, os.O_RDWR))
        except OSError as e:
            raise TrackingUnavailable(
                f"{where}: cannot write {db} ({e.strerror}); make it writable, or pass another --tracking-uri."
            ) from None
    elif reading:
        raise TrackingUnavailable(
            f"{where}: there is no database {db}. Pass the --tracking-uri the sweep printed ([sweep] MLflow: "
            "...), or run this in the directory the sweep ran in; nothing was created."
        )
    _check_writable_dir(db.parent, where, "SQLite keeps the database and its journal there")


def _check_file_store(tracking_uri: str, reading: bool) -> None:
    where = f"tracking store {shown(tracking_uri)}"
    parts = urlparse(tracking_uri)
    root = Path(os.path.abspath(unquote(parts.path) if parts.scheme else tracking_uri))
    if not MLFLOW_ALLOW_FILE_STORE.get():
        raise TrackingUnavailable(
            f"{where}: MLflow {version('mlflow')} refuses its file store (a directory of runs, as ./mlruns) "
            "unless MLFLOW_ALLOW_FILE_STORE=true. Use a database: --tracking-uri sqlite:///mlflow.db "
            f"(`mlflow migrate-filestore` moves runs already in {root} into one), or set MLFLOW_ALLOW_FILE_STORE=true."
        )
    if reading and not root.is_dir():
        raise TrackingUnavailable(f"{where}: there is no directory {root}; nothing was created.")
    existing = next(p for p in (root, *root.parents) if p.exists())  # MLflow makes the rest
    _check_writable_dir(existing, where, "MLflow's file store writes every run there")


def _check_writable_dir(directory: Path, where: str, why: str) -> None:
    """A real write (a file made and removed), not permission bits: root passes those on a read-only mount."""
    if not directory.exists():
        raise TrackingUnavailable(
            f"{where}: the directory {directory} does not exist ({why}); create it (mkdir -p {directory}) or "
            "pass another --tracking-uri."
        )
    if not directory.is_dir():
        raise TrackingUnavailable(f"{where}: {directory} is not a directory; pass another --tracking-uri.")
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".cvsweep-write-check-"):
            pass
    except OSError as e:
        raise TrackingUnavailable(
            f"{where}: cannot write in {directory} ({e.strerror}; {why}). Make it writable, or pass a "
            "--tracking-uri in a writable directory."
        ) from None


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
    resumes = int(run.data.tags.get(RESUMES_TAG, "0")) + 1
    mlflow.set_tag(RESUMES_TAG, str(resumes))
    return run


def register_champion(model_name: str, run_id: str, description: str) -> tuple[str, str, str]:
    """Register the trial's logged model (its run's ``model_id`` tag) as a new version of ``model_name``
    and point the ``champion`` alias at it. Returns ('NAME@champion (version N)', the sweep's champion tag;
    its models:/ URI; what was done before, or ''). A run registered before (its sweep finished again, by
    --resume) keeps its version, and the alias stays where it is: a later sweep may have moved it."""
    client = MlflowClient()
    model_id = client.get_run(run_id).data.tags.get(MODEL_ID_TAG)
    if model_id is None:
        raise RuntimeError(f"run {run_id} has no logged model ({MODEL_ID_TAG} tag): nothing to register")
    alias = f"models:/{model_name}@{CHAMPION_ALIAS}"
    # by the run (a hex id): a model name may hold a quote, which a filter string cannot
    found = client.search_model_versions(f"run_id = '{run_id}'")
    before = [v for v in found if v.name == model_name and v.tags.get("run_id") == run_id]
    if not before:
        mv = mlflow.register_model(f"models:/{model_id}", model_name, tags={"run_id": run_id})
        client.update_model_version(model_name, mv.version, description=description)
        client.set_registered_model_alias(model_name, CHAMPION_ALIAS, mv.version)
        return f"{model_name}@{CHAMPION_ALIAS} (version {mv.version})", alias, ""
    number = max(int(v.version) for v in before)
    tag = f"{model_name}@{CHAMPION_ALIAS} (version {number})"
    try:  # search_model_versions leaves aliases out
        now = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS).version
    except mlflow.exceptions.MlflowException:  # never set (stopped before it was), or removed: this run's
        client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(number))
        return tag, alias, "registered before; the alias was on no version, now on this one"
    if str(now) == str(number):
        return tag, alias, "registered before"
    return tag, f"models:/{model_name}/{number}", f"registered before; the alias stays at version {now}"
