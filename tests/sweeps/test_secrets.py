"""Credentials in a tracking URI: split off into the variables MLflow reads, sent to the server from there,
never on the process's command line, kept for --resume in one 0600 file; and --resume refuses Tune state
that someone else can write. (A whole sweep against a real server with a password: tests/sweeps/test_cluster.py.)"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest

from sweeps.credentials import (
    CREDENTIAL_ENVS,
    CREDENTIALS_FILE,
    FROM_COMMAND_LINE_ENV,
    PASSWORD_ENV,
    TOKEN_ENV,
    USERNAME_ENV,
    restore_credentials,
    save_credentials,
    shown,
    split_credentials,
    untrusted,
)
from sweeps.tracking import TrackingUnavailable, check_tracking_server, use_tracking_uri
from tests.conftest import REPO


@pytest.fixture
def clean_env(monkeypatch):
    """No MLflow credentials or tracking URI in the environment, and whatever the test sets undone."""
    for name in (*CREDENTIAL_ENVS, FROM_COMMAND_LINE_ENV, "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(name, "")  # remembered, so that the undo removes what the test sets
        monkeypatch.delenv(name)
    yield
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(
    "uri, clean, creds",
    [
        (
            "http://sweeper:s3cret@127.0.0.1:5000",
            "http://127.0.0.1:5000",
            {USERNAME_ENV: "sweeper", PASSWORD_ENV: "s3cret"},
        ),
        (  # percent-encoded, as a password with @ : / must be written in a URI
            "https://me%40corp:p%40ss%3Aw%2Fd@mlflow.corp:443/prefix/",
            "https://mlflow.corp:443/prefix/",
            {USERNAME_ENV: "me@corp", PASSWORD_ENV: "p@ss:w/d"},
        ),
        ("https://mlflow.corp/?token=abc%2B1&x=1", "https://mlflow.corp/?x=1", {TOKEN_ENV: "abc+1"}),
        ("http://[::1]:5000?Access_Token=t0k", "http://[::1]:5000", {TOKEN_ENV: "t0k"}),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000/", {}),
        ("postgresql://mlflow:pw@db:5432/runs", "postgresql://mlflow@db:5432/runs", {"PGPASSWORD": "pw"}),
        ("mysql://mlflow:pw@db/runs", "mysql://mlflow:pw@db/runs", {}),  # no variable of its own: refused later
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db", {}),
        ("sqlite:////abs/path/mlflow.db", "sqlite:////abs/path/mlflow.db", {}),
        ("file:./mlruns", "file:./mlruns", {}),
        ("./mlruns", "./mlruns", {}),
    ],
)
def test_credentials_are_split_off_the_uri(uri, clean, creds):
    assert split_credentials(uri) == (clean, creds)


def test_a_shown_uri_masks_user_info_and_tokens_and_leaves_the_rest_as_written():
    assert shown("http://sweeper:s3cret@127.0.0.1:5000") == "http://***@127.0.0.1:5000"
    assert shown("https://h/p?x=1&token=abc") == "https://h/p?x=1&token=***"
    for uri in ("sqlite:///mlflow.db", "file:./mlruns", "http://127.0.0.1:5000"):
        assert shown(uri) == uri


class Recorder(BaseHTTPRequestHandler):
    """An HTTP server that answers like an empty MLflow server (or refuses everyone) and keeps the
    Authorization header of every request."""

    seen: list[str | None] = []
    status = 200

    def do_GET(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Recorder.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"experiments": []} if "experiments" in self.path else {}).encode()
        self.send_response(Recorder.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def recorder():
    Recorder.seen, Recorder.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "userinfo, query, header",
    [
        ("sweeper:p%40ss%2Fw@", "", "Basic " + base64.b64encode(b"sweeper:p@ss/w").decode()),
        ("", "?token=t0k", "Bearer t0k"),
    ],
)
def test_mlflow_and_the_server_check_send_the_credentials_the_uri_carried(clean_env, recorder, userinfo, query, header):
    uri, creds = use_tracking_uri(f"http://{userinfo}{recorder}{query}")
    assert uri == f"http://{recorder}" and creds and mlflow.get_tracking_uri() == uri
    assert os.environ["MLFLOW_TRACKING_URI"] == uri  # what Ray's processes inherit
    mlflow.MlflowClient().search_experiments()  # MLflow's own client, as every write of the sweep goes
    check_tracking_server(uri)
    assert Recorder.seen and set(Recorder.seen) == {header}


def test_a_server_that_refuses_the_credentials_is_named_before_anything_starts(clean_env, recorder):
    Recorder.status = 401
    uri, _ = use_tracking_uri(f"http://sweeper:wrong@{recorder}")
    with pytest.raises(TrackingUnavailable, match=r"refuses this client \(HTTP 401\).*MLFLOW_TRACKING_USERNAME"):
        check_tracking_server(uri)


def test_credentials_leave_the_command_line_before_the_script_goes_on():
    """The entry script runs itself again (same process) without them: /proc/<pid>/cmdline, which `ps` and
    Ray's job record read, never holds them after that; the environment does, and says which came from it."""
    code = (
        "import json, os, sys; from sweeps.credentials import without_credentials_on_command_line, "
        "from_command_line; without_credentials_on_command_line(); "
        "print(json.dumps([open('/proc/self/cmdline', 'rb').read().decode(), sys.argv, from_command_line()]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in (*CREDENTIAL_ENVS, FROM_COMMAND_LINE_ENV)}
    argv = ["--tracking-uri", "http://sweeper:s3cret%2F1@127.0.0.1:5000", "--set", "tracking_uri=https://h/?token=t0k"]
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    cmdline, args, moved = json.loads(out.stdout)
    assert "s3cret" not in cmdline and "t0k" not in cmdline and "sweeper" not in cmdline
    assert args == ["-c", "--tracking-uri", "http://127.0.0.1:5000", "--set", "tracking_uri=https://h/"]
    assert moved == {USERNAME_ENV: "sweeper", PASSWORD_ENV: "s3cret/1", TOKEN_ENV: "t0k"}


def test_credentials_are_kept_for_resume_in_one_file_only_the_user_can_read(tmp_path, clean_env, monkeypatch):
    assert save_credentials(tmp_path, {}) is None and not (tmp_path / CREDENTIALS_FILE).exists()
    (tmp_path / CREDENTIALS_FILE).write_text("{}")
    os.chmod(tmp_path / CREDENTIALS_FILE, 0o644)  # a file already there gets the mode too
    path = save_credentials(tmp_path, {USERNAME_ENV: "sweeper", PASSWORD_ENV: "s3cret"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv(USERNAME_ENV, "rotated")  # the environment of the resume wins
    assert restore_credentials(tmp_path) == [PASSWORD_ENV]
    assert os.environ[USERNAME_ENV] == "rotated" and os.environ[PASSWORD_ENV] == "s3cret"
    # only the credential variables are read back from it, never e.g. LD_PRELOAD
    path.write_text(json.dumps({"LD_PRELOAD": "/tmp/x.so", TOKEN_ENV: "t0k"}))
    assert restore_credentials(tmp_path) == [TOKEN_ENV] and "LD_PRELOAD" not in os.environ


def test_resume_refuses_tune_state_that_others_can_write(tmp_path):
    sweep = tmp_path / "sweep-1"
    sweep.mkdir()
    (sweep / "tuner.pkl").write_bytes(b"\x80\x04N.")
    os.chmod(sweep, 0o755)
    os.chmod(sweep / "tuner.pkl", 0o644)
    assert untrusted(sweep) is None
    os.chmod(sweep / "tuner.pkl", 0o666)
    said = untrusted(sweep)
    assert said.startswith(f"--resume {sweep}: every user can write {sweep / 'tuner.pkl'} (mode 0666)")
    assert f"chmod -R go-w {sweep}" in said
    os.chmod(sweep / "tuner.pkl", 0o644)
    os.chmod(sweep, 0o777)
    assert f"every user can write {sweep} (mode 0777)" in untrusted(sweep)
    os.chmod(sweep, 0o775)  # a group other than the owner's private one
    os.chown(sweep, -1, 65534)
    assert "group " in untrusted(sweep)


def test_resume_of_a_sweep_directory_others_can_write_stops_before_anything_is_unpickled(tmp_path, capsys):
    from sweeps.classify import main

    sweep = tmp_path / "sweep-1"
    sweep.mkdir()
    (sweep / "cvsweep.json").write_text("{}")
    (sweep / "tuner.pkl").write_bytes(b"not even a pickle")
    os.chmod(sweep / "tuner.pkl", 0o666)
    assert main(["--resume", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "every user can write" in err and "run code as you" in err and "Traceback" not in err


def test_resume_gives_mlflow_the_credentials_the_sweep_kept(tmp_path, clean_env, recorder, capsys):
    """A sweep directory as a sweep with a password in its URI leaves it: the URI without it, the password in
    credentials.json. --resume sends it to the server again (it stops here at the data check: this split
    fingerprint is not the data's), and says that it unpickles what the directory holds."""
    import yaml

    from sweeps.classify import main
    from sweeps.config import DEFAULT_CONFIG, load_config

    sweep = tmp_path / "sweep-1"
    sweep.mkdir()
    (sweep / "sweep_config.yaml").write_text(yaml.safe_dump(load_config(DEFAULT_CONFIG).to_yaml_dict()))
    (sweep / "cvsweep.json").write_text(json.dumps({"tracking_uri": f"http://{recorder}", "split_fingerprint": "0"}))
    save_credentials(sweep, {USERNAME_ENV: "sweeper", PASSWORD_ENV: "s3cret"})
    assert main(["--resume", str(sweep)]) == 2
    out, err = capsys.readouterr()
    assert "no longer splits into the images this sweep trained and tested on" in err
    assert "--resume unpickles the sweep's saved Tune state" in out and "run code as you" in out
    assert Recorder.seen and set(Recorder.seen) == {"Basic " + base64.b64encode(b"sweeper:s3cret").decode()}
