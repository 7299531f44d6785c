"""Shared by the end-to-end sweep tests: waiting on a running sweep, a real `mlflow server`, and a small
filesystem of the test's own that can be made read-only or full."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests


def wait_for(predicate, what: str, timeout_s: float = 600, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep exited (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend and an artifacts directory; stop() and
    start() again keep the port and the data, as a restarted server would."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.root}/server.db",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--workers",
            "1",
        ]
        log = open(self.root / "server.log", "a")
        # Its own session: stop() ends the server and the workers it spawned, and nothing else.
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.healthy, f"mlflow server on {self.uri}", timeout_s=120)

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.uri}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    server.stop()


class Disk:
    """A tmpfs at ``path``, visible only inside the mount namespace of the process ``holder``."""

    def __init__(self, path: Path, size: str = "2g") -> None:
        self.path = path
        path.mkdir()
        script = f"mount -t tmpfs -o size={size} cvsweep-test {path} && echo mounted && exec sleep 3600"
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        said = self.holder.stdout.readline().strip()
        if said != "mounted":
            self.holder.kill()
            pytest.fail(f"cannot mount a tmpfs in a mount namespace of its own (needs CAP_SYS_ADMIN): {said}")

    def inside(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *cmd]

    def run(self, *cmd: str) -> str:
        return subprocess.run(self.inside(*cmd), check=True, capture_output=True, text=True).stdout

    def remount(self, mode: str, within_s: float = 30) -> None:
        """``mount -o remount,MODE``. Turning read-only is refused (busy) while a file is open for writing,
        as when a checkpoint is being written at that moment: try again until it is not."""
        deadline = time.monotonic() + within_s
        while True:
            done = subprocess.run(self.inside("mount", "-o", f"remount,{mode}", str(self.path)), capture_output=True)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                held = subprocess.run(self.inside("lsof", "+D", str(self.path)), capture_output=True, text=True)
                raise AssertionError(f"remount,{mode} {self.path}: {done.stderr!r}; open there:\n{held.stdout}")
            time.sleep(0.05)

    def close(self) -> None:
        os.killpg(self.holder.pid, signal.SIGKILL)  # the namespace, and the tmpfs with it, go away
        self.holder.wait(timeout=30)
