"""The checkpoint directory fails mid-sweep: it turns read-only, then it is full. Each time the sweep
stops with an error that names the directory and what to do, keeps what was done, and resumes to one
complete set of runs once the directory is usable again.

The directory is a real filesystem of its own: a small tmpfs mounted in a mount namespace of the test's
own (``unshare``), so nothing else on the machine sees it. The sweep runs inside that namespace
(``nsenter``); the test makes the directory read-only (``mount -o remount,ro``) or fills it (``dd``)
while a trial is training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, sweep_cmd, sweep_env
from tests.sweeps.conftest import Disk, wait_for
from tests.sweeps.test_faults import SMALL, check_exactly_once, runs_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def disk(tmp_path):
    d = Disk(tmp_path / "ray")  # where sweep_cmd puts --storage-path
    try:
        yield d
    finally:
        d.close()


# Loads every state file of a sweep directory as Tune does on restore (some .json files of Tune's hold
# a pickle); prints their names, or raises naming the file that does not load.
LOAD_STATE = """
import json, pathlib, pickle, sys
for f in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    if f.suffix in (".json", ".pkl"):
        data = f.read_bytes()
        try:
            pickle.loads(data) if data[:1] == b"\\x80" else json.loads(data)
        except Exception as e:
            sys.exit(f"{f.name}: {type(e).__name__}: {e}")
        print(f.name)
"""


def sweep_until(disk: Disk, cmd: list[str], env: dict, log: Path, ready, fault) -> tuple[int, str]:
    """Run the sweep inside the namespace; once ``ready()`` holds, ``fault()`` breaks the directory."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            disk.inside(*cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        try:
            wait_for(ready, "the moment to break the checkpoint directory", proc=proc)
            fault()
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
        lambda: disk.remount("ro"),
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
    disk.remount("rw")
    fill = f"dd if=/dev/zero of={disk.path}/filler bs=4M 2>/dev/null; [ $(stat -f -c %a {disk.path}) -eq 0 ]"
    rc, out = sweep_until(
        disk, resume, env, tmp_path / "3.log", lambda: "resuming sweep-" in (tmp_path / "3.log").read_text(),
        lambda: disk.run("sh", "-c", fill),
    )  # fmt: skip
    assert rc == 2, out[-5000:]
    assert f"error: --storage-path {disk.path}: " in out and "No space left on device" in out
    parents, _ = runs_of(client, "classify-digits")
    assert "No space left on device" in parents[0].data.tags["storage_error"]
    # Everything Tune restores from is whole (a rewrite cut short by the full disk kept its old version).
    loaded = subprocess.run(disk.inside(sys.executable, "-c", LOAD_STATE, sweep_dir), capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    states = loaded.stdout.split()
    assert "tuner.pkl" in states and any(s.startswith("experiment_state") for s in states), states

    # 4. Space freed: the sweep resumes to the end, each trial one run with every epoch once.
    disk.run("rm", f"{disk.path}/filler")
    done = subprocess.run(disk.inside(*resume), capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    parent, runs = check_exactly_once(client, "classify-digits", trials=4)
    assert parent.info.run_id == parents[0].info.run_id and parent.data.tags["interrupted"] == "false"
    # a trial started once the directory was read-only or full was never saved: its run deleted, the trial rerun
    for run_id in filter(None, parent.data.tags.get("forgotten_runs", "").split(",")):
        assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    for c in runs:  # trials that had finished before the first fault were not run again
        if c.info.run_id in done_before:
            assert c.info.end_time == done_before[c.info.run_id], c.info.run_name
