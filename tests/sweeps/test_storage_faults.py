"""The checkpoint directory fails mid-sweep: it turns read-only, then it is full. Each time the sweep
stops with an error that names the directory and what to do, keeps what was done, and resumes to one
complete set of runs once the directory is usable again.

The directory is a real filesystem of its own: a small tmpfs mounted in a mount namespace of the test's
own (``unshare``), so nothing else on the machine sees it. The sweep runs inside that namespace
(``nsenter``); the test makes the directory read-only (``mount -o remount,ro``) or fills it (``dd``)
while a trial is training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, sweep_cmd, sweep_env
from tests.sweeps.conftest import wait_for
from tests.sweeps.test_faults import SMALL, check_exactly_once, runs_of

pytestmark = pytest.mark.e2e


class Disk:
    """A tmpfs at ``path``, visible only inside the mount namespace of the process ``holder``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        script = f"mount -t tmpfs -o size=2g cvsweep-test {path} && echo mounted && exec sleep 3600"
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

    def close(self) -> None:
        os.killpg(self.holder.pid, signal.SIGKILL)  # the namespace, and the tmpfs with it, go away
        self.holder.wait(timeout=30)


@pytest.fixture
def disk(tmp_path):
    d = Disk(tmp_path / "ray")  # where sweep_cmd puts --storage-path
    try:
        yield d
    finally:
        d.close()


def sweep_until(disk: Disk, cmd: list[str], env: dict, log: Path, ready, fault: list[str]) -> tuple[int, str]:
    """Run the sweep inside the namespace; once ``ready()`` holds, apply ``fault`` to the directory."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            disk.inside(*cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        try:
            wait_for(ready, "the moment to break the checkpoint directory", proc=proc)
            disk.run(*fault)
            rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    return rc, log.read_text()


def test_a_read_only_then_full_checkpoint_directory_stops_the_sweep_cleanly_and_it_resumes(tmp_path, ray_tmp, disk):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    env = sweep_env(ray_tmp)

    def children():
        return runs_of(client, "classify-digits")[1]

    def finished() -> int:
        return sum(c.info.status == "FINISHED" for c in children())

    # 1. Read-only once a first trial has finished: the next checkpoint cannot be written.
    rc, out = sweep_until(
        disk, sweep_cmd(tmp_path, uri, *SMALL), env, tmp_path / "1.log", lambda: finished() >= 1,
        ["mount", "-o", "remount,ro", str(disk.path)],
    )  # fmt: skip
    assert rc == 2, out[-5000:]
    (sweep_dir,) = disk.run("sh", "-c", f"ls -d {disk.path}/sweep-*").split()
    assert f"error: --storage-path {disk.path}: Read-only file system (trial " in out
    assert f"python sweeps/classify.py --resume {sweep_dir}" in out
    parents, runs = runs_of(client, "classify-digits")
    assert parents[0].info.status == "KILLED" and "Read-only file system" in parents[0].data.tags["storage_error"]
    done_before = {c.info.run_id: c.info.end_time for c in runs if c.info.status == "FINISHED"}
    assert 1 <= len(done_before) < 4  # stopped at the first failed checkpoint, not after every trial failed
    assert all(c.info.status in ("FINISHED", "KILLED") for c in runs), [c.info.status for c in runs]

    # 2. Still read-only: --resume refuses before it starts anything.
    resume = [sys.executable, str(REPO / "sweeps" / "classify.py"), "--resume", sweep_dir, "--address", "local"]
    refused = subprocess.run(disk.inside(*resume), capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 2 and "not a writable directory (Read-only file system)" in refused.stderr

    # 3. Writable again, resumed, and the directory fills up while a trial trains.
    disk.run("mount", "-o", "remount,rw", str(disk.path))
    fill = f"dd if=/dev/zero of={disk.path}/filler bs=4M 2>/dev/null; [ $(stat -f -c %a {disk.path}) -eq 0 ]"
    rc, out = sweep_until(
        disk, resume, env, tmp_path / "3.log", lambda: "resuming sweep-" in (tmp_path / "3.log").read_text(),
        ["sh", "-c", fill],
    )  # fmt: skip
    assert rc == 2, out[-5000:]
    assert f"error: --storage-path {disk.path}: " in out and "No space left on device" in out
    parents, _ = runs_of(client, "classify-digits")
    assert "No space left on device" in parents[0].data.tags["storage_error"]

    # 4. Space freed: the sweep resumes to the end, each trial one run with every epoch once.
    disk.run("rm", f"{disk.path}/filler")
    done = subprocess.run(disk.inside(*resume), capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    parent, runs = check_exactly_once(client, "classify-digits", trials=4)
    assert parent.info.run_id == parents[0].info.run_id and parent.data.tags["interrupted"] == "false"
    for c in runs:  # trials that had finished before the first fault were not run again
        if c.info.run_id in done_before:
            assert c.info.end_time == done_before[c.info.run_id], c.info.run_name
