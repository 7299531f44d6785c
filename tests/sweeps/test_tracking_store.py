"""A tracking store that cannot work is refused before Ray starts, in one line that names it (credentials
masked), the cause and what to do, with the sweep's other problems: MLflow's file store (MLflow 3 refuses it
unless MLFLOW_ALLOW_FILE_STORE is set), a SQLite database whose directory is missing or read-only, a file
that is not a database, a password that could not be kept out of the sweep's files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from sweeps.classify import main
from sweeps.tracking import TrackingUnavailable, check_tracking_store
from tests.conftest import REPO, sweep_env

ARGS = ["--archs", "resnet18", "--img-size", "32"]  # the quickest model check of the ones every sweep makes


@pytest.fixture(autouse=True)
def own_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    yield
    mlflow.set_tracking_uri(None)


def refused(tmp_path: Path, uri: str, capsys) -> str:
    """Run the sweep's main with ``uri``: exit 2, one line, no traceback, nothing started. Returns the line."""
    argv = [*ARGS, "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--output-dir", str(tmp_path / "r")]
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 60
    out, err = capsys.readouterr()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "Ray:" not in out and not (tmp_path / "ray").exists()
    return err.strip()


def test_mlflows_file_store_is_refused_with_what_to_use_instead(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for uri in ("file:./mlruns", str(tmp_path / "runs")):
        line = refused(tmp_path, uri, capsys)
        assert line.startswith(f"error: tracking store {uri}: MLflow ")
        assert "refuses its file store" in line and "MLFLOW_ALLOW_FILE_STORE=true" in line
        assert "--tracking-uri sqlite:///mlflow.db" in line
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "runs").exists()


def test_a_sqlite_store_that_cannot_work_is_refused_before_anything_starts(tmp_path, capsys):
    (tmp_path / "notes.db").write_text("not a database")
    cases = {
        f"sqlite:///{tmp_path}/no/such/dir/mlflow.db": f"the directory {tmp_path}/no/such/dir does not exist",
        f"sqlite:///{tmp_path}/notes.db": f"{tmp_path}/notes.db is not a SQLite database",
        f"sqlite:///{tmp_path}": f"{tmp_path} is a directory, not a SQLite database file",
        "mysql://sweeper:s3cret@db/runs": "a password in a mysql URI would be saved with the sweep",
    }
    for uri, cause in cases.items():
        line = refused(tmp_path, uri, capsys)
        assert line.startswith(f"error: tracking store {uri.replace('sweeper:s3cret', '***')}: {cause}"), line
        assert "s3cret" not in line
    assert not (tmp_path / "no").exists()


def test_the_store_is_one_of_the_problems_reported_together(tmp_path, capsys):
    argv = [*ARGS, "--tracking-uri", "file:./mlruns", "--data", str(tmp_path / "nope"), "--storage-path", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 problems, nothing has started" in err and "refuses its file store" in err and "--data" in err


def test_an_allowed_file_store_and_a_new_sqlite_database_pass(tmp_path, monkeypatch):
    check_tracking_store(f"sqlite:///{tmp_path}/new.db")
    assert list(tmp_path.iterdir()) == []  # checked by a write that is removed again, nothing created
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_tracking_store(f"file:{tmp_path}/mlruns")
    with pytest.raises(TrackingUnavailable, match="there is no directory"):  # a command that only reads it
        check_tracking_store(f"file:{tmp_path}/mlruns", reading=True)


def in_read_only(directory: Path, *cmd: str) -> subprocess.CompletedProcess:
    """``cmd`` in a mount namespace of its own in which ``directory`` is read-only: for root too (EROFS),
    which permission bits would not stop."""
    script = f'mount --bind {directory} {directory} && mount -o remount,bind,ro {directory} && exec "$@"'
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=sweep_env(str(directory.parent)),
        cwd=REPO,
    )
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.fail(f"cannot make a read-only mount in a namespace of its own (needs CAP_SYS_ADMIN): {proc.stderr}")
    return proc


def test_a_sqlite_store_in_a_read_only_directory_is_refused_at_once(tmp_path):
    """The database a sweep wrote, in a directory that is now read-only: MLflow's SQLAlchemy retries would
    fail after minutes with neither the path nor the cause; the sweep says both, at once."""
    ro = tmp_path / "ro"
    ro.mkdir()
    db = ro / "mlflow.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (x)")
    uri = f"sqlite:///{db}"
    started = time.monotonic()
    proc = in_read_only(
        ro, sys.executable, str(REPO / "sweeps" / "classify.py"), *ARGS, "--tracking-uri", uri,
        "--storage-path", str(tmp_path / "ray"), "--output-dir", str(tmp_path / "r"),
    )  # fmt: skip
    assert time.monotonic() - started < 120
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: tracking store {uri}: cannot write {db} (Read-only file system); make it writable, or pass "
        "another --tracking-uri."
    ]
    assert "Ray" not in proc.stdout.replace("[sweep]", "")
    # A new database there: SQLite could not write its journal either.
    check = f"from sweeps.tracking import check_tracking_store as c; c('sqlite:///{ro}/new.db')"
    proc = in_read_only(ro, sys.executable, "-c", check)
    assert f"cannot write in {ro} (Read-only file system; SQLite keeps the database and its journal there)" in (
        proc.stderr
    )


def test_a_champion_registered_before_keeps_its_version_and_the_alias_a_later_sweep_moved(tmp_path):
    """A finished sweep finished again (--resume) names the version it registered, not a new one, and does not
    take the champion alias back from a later sweep; an alias that is on no version goes to it."""
    from sweeps.tracking import register_champion

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("digits")
    runs = []
    for _ in range(2):
        with mlflow.start_run() as run:
            mlflow.set_tag("model_id", mlflow.initialize_logged_model(name="model").model_id)
        runs.append(run.info.run_id)
    first, later = runs
    name = "classify-Bob's photos"  # the experiment's name, from a folder's: a quote in a filter string
    alias = f"models:/{name}@champion"
    assert register_champion(name, first, "sweep 1") == (f"{name}@champion (version 1)", alias, "")
    assert register_champion(name, later, "sweep 2") == (f"{name}@champion (version 2)", alias, "")
    assert register_champion(name, first, "sweep 1 again") == (
        f"{name}@champion (version 1)",
        f"models:/{name}/1",
        "registered before; the alias stays at version 2",
    )
    assert register_champion(name, later, "sweep 2 again") == (
        f"{name}@champion (version 2)",
        alias,
        "registered before",
    )
    client = mlflow.MlflowClient()
    assert len(client.search_model_versions(f"run_id = '{first}'")) == 1
    assert client.get_model_version_by_alias(name, "champion").run_id == later
    assert client.get_model_version(name, "1").description == "sweep 1"
    client.delete_registered_model_alias(name, "champion")  # or a sweep stopped before it set the alias
    assert (
        register_champion(name, first, "again")[2] == "registered before; the alias was on no version, now on this one"
    )
    assert client.get_model_version_by_alias(name, "champion").version in ("1", 1)
