"""The autoscaler path of cluster.yaml, for real on one machine: a Ray head started with
`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=fake_cluster.yaml` runs Ray's own autoscaler
with the `fake_multinode` provider, which launches worker nodes as local processes. The head has no
CPUs, so the sweep's trials wait until the autoscaler adds worker nodes, and once the sweep is over the
idle workers are removed again.

`ray up` cannot drive this provider from the pip wheel (it needs Docker and files the wheel does not
ship), so the head is started with `ray start`, which is what `ray up` runs on the head node anyway."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from ray._private.authentication_test_utils import reset_auth_token_state

from tests.conftest import sweep_cmd, sweep_env
from tests.sweeps.conftest import free_port, wait_for
from tests.sweeps.test_faults import check_exactly_once

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent
# the table's timings as short as --smoke-test's; no confirmation stage (two trials are what the nodes are for)
TINY = ["--num-samples", "2", "--max-epochs", "2", "--no-asha", "--set", "train_limit=200", "--img-size", "32",
        "--set", "timing_s=0.2", "--set", "confirm=null"]  # fmt: skip


def stop_processes_under(ray_tmp: str, head: subprocess.Popen) -> None:
    """The head's process group first (it drains and stops what it started), then any process of this
    test's private Ray temp dir still running. Never `ray stop`: it would end every Ray on the machine."""
    if head.poll() is None:
        os.killpg(head.pid, signal.SIGTERM)
        try:  # the head drains for up to 30 s; the sweep is over and its workers gone, so don't wait on it
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
    left = subprocess.run(["pgrep", "-f", ray_tmp], capture_output=True, text=True).stdout.split()
    for pid in left:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def token_auth(monkeypatch):
    """Token authentication on, as cluster.yaml has it, with a token of this test's own (in the
    environment: nothing is written to ~/.ray). Every process the test starts inherits it."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    reset_auth_token_state()
    yield
    monkeypatch.undo()
    reset_auth_token_state()


@pytest.fixture
def autoscaling_head(tmp_path, ray_tmp, token_auth):
    port = free_port()
    config = yaml.safe_load((HERE / "fake_cluster.yaml").read_text())
    config["provider"]["gcs_address"] = f"127.0.0.1:{port}"
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(config))
    ray_bin = Path(sys.executable).parent / "ray"
    cmd = [
        str(ray_bin), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
        "--num-cpus=0", f"--temp-dir={ray_tmp}", f"--autoscaling-config={tmp_path / 'cluster.yaml'}",
        "--include-dashboard=false",
    ]  # fmt: skip
    env = {**sweep_env(ray_tmp), "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        address = f"127.0.0.1:{port}"
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        yield address, head
    finally:
        ray.shutdown()
        stop_processes_under(ray_tmp, head)
        log.close()


def alive_workers() -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]


def test_the_autoscaler_adds_worker_nodes_for_a_sweep_and_removes_them_after(
    tmp_path, ray_tmp, autoscaling_head, mlflow_server
):
    address, head = autoscaling_head
    assert alive_workers() == [], "the head alone should start with no worker nodes"
    cmd = sweep_cmd(tmp_path, mlflow_server.uri, *TINY, "--experiment", "autoscaled", "--cpus-per-trial", "1")
    cmd[cmd.index("--address") + 1] = address
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:  # the worker nodes alive while the sweep runs
        while not done.is_set():
            seen.update(alive_workers())
            time.sleep(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = tmp_path / "sweep.log"
    try:
        with open(out, "w") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=sweep_env(ray_tmp), timeout=900)  # fmt: skip
    finally:
        done.set()
        watcher.join()
    assert proc.returncode == 0, out.read_text()[-5000:]
    assert "trials wait until the autoscaler adds such nodes" in out.read_text()
    assert len(seen) == 2, f"expected the autoscaler to add 2 worker nodes for 2 one-CPU trials, saw {len(seen)}"
    check_exactly_once(MlflowClient(mlflow_server.uri), "autoscaled", trials=2)
    wait_for(lambda: not alive_workers(), "the idle worker nodes to be removed", timeout_s=120)
    dead = {n["NodeID"] for n in ray.nodes() if not n["Alive"]}
    assert seen <= dead, "the worker nodes that ran the sweep should be the ones removed"
    # ... removed by the autoscaler for being idle, not lost: its own log says so.
    log = "".join(p.read_text(errors="replace") for p in Path(ray_tmp).glob("session_latest/logs/monitor*"))
    removed = sum(int(n) for n in re.findall(r"Removing (\d+) nodes of type cpu_worker \(idle\)", log))
    assert removed == len(seen), log[-3000:]
