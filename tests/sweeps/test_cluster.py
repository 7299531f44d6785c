"""A sweep across a real multi-node Ray cluster, started on this one machine: a head that runs no
trials (as in cluster.yaml) and two worker nodes, every trial logged to a real `mlflow server`. Mid-sweep
a worker node is removed, and then the tracking server goes away for 20 s and comes back: the lost node's
trial is retried from its checkpoint on the surviving node, the trials keep training while MLflow is away,
and every trial still ends with exactly one MLflow run, nothing lost. The sweep is given the server with a
password in its URI: it appears nowhere the sweep prints or writes, but one 0600 file kept for --resume."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import requests
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from sweeps.credentials import CREDENTIAL_ENVS, CREDENTIALS_FILE, PASSWORD_ENV, USERNAME_ENV
from tests.conftest import sweep_cmd, sweep_env
from tests.sweeps.conftest import wait_for
from tests.sweeps.test_faults import SMALL, check_exactly_once, runs_of
from trainables import metrics as M

pytestmark = pytest.mark.e2e
DOWNTIME_S = 20  # how long the tracking server is away mid-sweep
USER, PASSWORD = "sweeper", "s3cret/pw:Zq9"  # written percent-encoded in the URI, as it must be


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


def test_a_sweep_across_nodes_survives_losing_a_worker_node_and_the_tracking_server(
    tmp_path, ray_tmp, cluster, mlflow_server
):
    c, (first, second) = cluster
    client = MlflowClient(mlflow_server.uri)
    with_password = mlflow_server.uri.replace("http://", f"http://{USER}:{quote(PASSWORD, safe='')}@")
    cmd = sweep_cmd(tmp_path, with_password, *SMALL, "--experiment", "cluster", "--max-failures", "2")
    cmd[cmd.index("--address") + 1] = c.address  # join this cluster instead of starting a local Ray
    out = tmp_path / "sweep.log"
    # MLflow's client retries a request for minutes on its own; the sweep's writer retries anyway, so here
    # it gives up sooner and the writer's own retry and report are what is tested.
    env = sweep_env(ray_tmp, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")
    for name in CREDENTIAL_ENVS:  # the URI's are the only credentials the sweep has
        env.pop(name, None)
    with open(out, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:

            def two_trials_reported() -> bool:
                return sum(M.VAL_ACC in r.data.metrics for r in runs_of(client, "cluster")[1]) >= 2

            wait_for(two_trials_reported, "a first epoch from both worker nodes", proc=proc)
            # The driver's command line, as `ps` and Ray's record of the job (its entrypoint) read it: no password.
            assert not secrets_in(" ".join(psutil.Process(proc.pid).cmdline()).encode())
            c.remove_node(second)  # as a reclaimed spot node: its trial's worker process dies with it
            mlflow_server.stop()
            stopped = time.monotonic()
            # The trials go on while the server is away; the sweep says its writes are waiting.
            wait_for(lambda: "retrying every" in out.read_text(), "a failed write", timeout_s=300, proc=proc)
            time.sleep(max(0.0, DOWNTIME_S - (time.monotonic() - stopped)))
            mlflow_server.start()
            rc = proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = out.read_text()
    assert rc == 0, text[-5000:]
    assert "the tracking store answers again" in text
    parent, children = check_exactly_once(client, "cluster", trials=4)
    # The password, in what the sweep printed (MLflow's own "View run ... at" lines included), in every file
    # under the test's directory (sweep directory, reports, the server's database and artifacts, report.html
    # as logged) and under Ray's temp dir (its session: logs, Tune's staging copy of the sweep's state): only
    # in the file --resume reads, which only its owner can read. MLflow took the user name from the environment.
    assert "View run" in text and not secrets_in(text.encode())
    assert list((tmp_path / "artifacts").rglob("report.html"))
    (sweep_dir,) = (tmp_path / "ray").glob("sweep-*")
    kept = sweep_dir / CREDENTIALS_FILE
    assert files_holding_secrets(tmp_path, Path(ray_tmp)) == [kept]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text()) == {USERNAME_ENV: USER, PASSWORD_ENV: PASSWORD}
    assert parent.info.user_id == USER
    retried = [r for r in children if int(r.data.tags.get("retries", 0)) >= 1]
    assert retried, "no trial was running on the removed node"
    # Read back over plain HTTP, as any client of the server would.
    body = requests.post(
        f"{mlflow_server.uri}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [parent.info.experiment_id], "max_results": 100},
        timeout=30,
    ).json()
    assert len(body["runs"]) == 5
    # as the MLflow UI reads them: every run's Dataset column, the trials' System metrics per epoch, and the
    # sweep run's description holding the answer and its table
    for run in body["runs"]:
        contexts = [
            t["value"] for i in run["inputs"]["dataset_inputs"] for t in i["tags"] if t["key"] == "mlflow.data.context"
        ]
        assert sorted(contexts) == ["test", "train", "validation"], run["info"]["run_name"]
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        if "mlflow.parentRunId" not in tags:
            assert (
                tags["mlflow.note.content"].startswith("**Answer**: ")
                and "| architecture" in tags["mlflow.note.content"]
            )
            continue
        epochs = int(next(m["value"] for m in run["data"]["metrics"] if m["key"] == "epochs_run"))
        for key in (M.SYSTEM_DATA_WAIT, M.SYSTEM_CPU, M.SYSTEM_PEAK_RSS):
            history = requests.get(
                f"{mlflow_server.uri}/api/2.0/mlflow/metrics/get-history",
                params={"run_id": run["info"]["run_id"], "metric_key": key},
                timeout=30,
            ).json()["metrics"]
            assert sorted(m["step"] for m in history) == list(range(1, epochs + 1)), (run["info"]["run_name"], key)
    # Artifacts went through the server into its artifacts directory; the champion is in its registry.
    assert list((tmp_path / "artifacts").rglob("confusion_matrix.png"))
    version = client.get_model_version_by_alias("cluster", "champion")
    assert version.run_id or version.tags["run_id"]


def secrets_in(data: bytes) -> bool:
    return any(form.encode() in data for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)))


def files_holding_secrets(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):  # the cluster still runs: what goes away meanwhile is skipped
            for path in (Path(folder) / n for n in names):
                try:
                    if path.is_file() and not path.is_symlink() and secrets_in(path.read_bytes()):
                        found.append(path)
                except OSError:  # gone since listed, or a socket
                    pass
    return sorted(found)
