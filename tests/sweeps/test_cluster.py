"""A sweep across a real multi-node Ray cluster, started on this one machine: a head that runs no
trials (as in cluster.yaml) and two worker nodes, every trial logged to a real `mlflow server`. A
worker node is removed mid-sweep; its trial is retried from its checkpoint on the surviving node, and
every trial still ends with exactly one MLflow run."""

from __future__ import annotations

import os
import subprocess

import pytest
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from tests.conftest import sweep_cmd, sweep_env
from tests.sweeps.conftest import wait_for
from tests.sweeps.test_faults import SMALL, check_exactly_once, runs_of
from trainables import metrics as M

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(ray_tmp, monkeypatch):
    """Head (0 CPUs: no trial lands there) + 2 worker nodes of 1 CPU each, stopped by its own handles."""
    # Cluster() records its address in <RAY_TMPDIR or /tmp>/ray/ray_current_cluster: keep that file in this
    # test's own dir, so a plain ray.init() elsewhere on the machine never joins this cluster.
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    os.makedirs(os.path.join(ray_tmp, "ray"), exist_ok=True)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "temp_dir": ray_tmp})
    try:  # shut down even when a node fails to start: no Ray left behind by a failed test
        workers = [c.add_node(num_cpus=1, temp_dir=ray_tmp) for _ in range(2)]
        c.wait_for_nodes()
        yield c, workers
    finally:
        c.shutdown()


def test_a_sweep_across_nodes_survives_losing_a_worker_node(tmp_path, ray_tmp, cluster, mlflow_server):
    c, (first, second) = cluster
    client = MlflowClient(mlflow_server.uri)
    cmd = sweep_cmd(tmp_path, mlflow_server.uri, *SMALL, "--experiment", "cluster", "--max-failures", "2")
    cmd[cmd.index("--address") + 1] = c.address  # join this cluster instead of starting a local Ray
    out = tmp_path / "sweep.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=sweep_env(ray_tmp)
        )
        try:

            def two_trials_reported() -> bool:
                return sum(M.VAL_ACC in r.data.metrics for r in runs_of(client, "cluster")[1]) >= 2

            wait_for(two_trials_reported, "a first epoch from both worker nodes", proc=proc)
            c.remove_node(second)  # as a reclaimed spot node: its trial's worker process dies with it
            rc = proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = out.read_text()
    assert rc == 0, text[-5000:]
    parent, children = check_exactly_once(client, "cluster", trials=4)
    retried = [r for r in children if int(r.data.tags.get("retries", 0)) >= 1]
    assert retried, "no trial was running on the removed node"
