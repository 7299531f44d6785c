"""cluster.yaml through Ray's real cluster launcher: `ray up` over SSH to a head and a worker node on this
machine, the README's sweep command on the head with `ray exec`, then `ray down` (tests/sweeps/launcher.py
builds the nodes, each in namespaces of its own, and the file `ray up` is given, from cluster.yaml)."""

from __future__ import annotations

import json
import re
import shutil
from shlex import quote as q

import pytest
import yaml

from tests.sweeps.conftest import wait_for
from tests.sweeps.launcher import (
    CLOUD_ONLY,
    COMMAND_KEYS,
    LocalNodes,
    cloud_config,
    cluster_for_local_nodes,
    command_differences,
)

HEAD, WORKER = "cvsweep-head", "cvsweep-worker"
RAY_PROCESS = re.compile(r"site-packages/ray/|/bin/ray |raylet|gcs_server|ray::|default_worker")


def test_the_local_cluster_runs_every_command_of_cluster_yaml_and_only_the_cloud_differs(tmp_path):
    cloud = cloud_config()
    local = cluster_for_local_nodes("10.77.0.2", ["10.77.0.3"], tmp_path / "key", tmp_path / "shared")
    assert command_differences(cloud, local, tmp_path / "shared") == []
    every = [c for k in COMMAND_KEYS for c in cloud.get(k, [])]
    for text in CLOUD_ONLY:  # each replacement still finds its text: a cloud command rewritten is seen here
        assert sum(text in c for c in every) == 1, f"{text!r} is no longer in cluster.yaml's commands"
    for key in ("file_mounts", "rsync_exclude", "cluster_name", "idle_timeout_minutes"):
        assert local[key] == cloud[key], key


@pytest.mark.parametrize("where", ["cluster.yaml", "local"])
@pytest.mark.parametrize("key", ["setup_commands", "head_start_ray_commands", "worker_start_ray_commands"])
def test_a_command_in_one_file_and_not_the_other_is_caught(tmp_path, where, key):
    cloud = cloud_config()
    local = cluster_for_local_nodes("10.77.0.2", ["10.77.0.3"], tmp_path / "key", tmp_path / "shared")
    (cloud if where == "cluster.yaml" else local)[key].insert(1, "echo only here")
    assert command_differences(cloud, local, tmp_path / "shared"), (where, key)


@pytest.fixture
def nodes(tmp_path):
    missing = [p for p in ("/usr/sbin/sshd", "rsync", "sudo") if not shutil.which(p)]
    if missing:
        pytest.fail(f"this test needs {missing}: apt-get install openssh-server rsync sudo (as .ci/run does)")
    n = LocalNodes(tmp_path)
    try:
        n.start()
        yield n
    finally:
        n.stop()
    assert all(p.poll() is not None for p in n.procs.values()), "a node outlived the test"


# On the head: both nodes in the cluster, the MLflow server answering.
READY = """python -c '
import ray, urllib.request
ray.init(logging_level="ERROR")
alive = sum(n["Alive"] for n in ray.nodes())
print("NODES", alive)
assert alive == 2 and urllib.request.urlopen("http://127.0.0.1:5000/health").read() == b"OK"
'"""

# On the head, after the sweep: its MLflow server has the sweep's run and a run per trial (the smoke sweep of
# the default recipe: one per architecture and one confirmation), each with its parameters, curves, evidence
# and model, and the report (test_e2e's check); and the host each trial ran on.
CHECK_RUNS = """cd ~/cvsweep && python -c '
import json
from tests.sweeps.test_e2e import BASELINE_FAMILY, FAMILIES, check_sweep_in_mlflow
uri = "http://127.0.0.1:5000"
client, parent, children = check_sweep_in_mlflow(uri, "launched", 6, FAMILIES | {BASELINE_FAMILY})
print("RUNS", json.dumps(sorted(c.data.tags["hostname"] for c in children)))
'"""


@pytest.mark.e2e
def test_ray_up_runs_a_sweep_across_the_head_and_a_worker_and_ray_down_stops_the_head(nodes, tmp_path):
    cfg = tmp_path / "cluster-local.yaml"
    config = cluster_for_local_nodes(nodes.ips["head"], [nodes.ips["worker"]], nodes.key, nodes.shared)
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    # Ray 2.60's autoscaler v2 (ray up's default since 2.50) never launches the local provider's worker (its
    # instance manager loses the provider's nodes); v1 does. On AWS the default, v2, runs: not verified here.
    up = f"RAY_UP_enable_autoscaler_v2=0 ray up -y --no-config-cache {cfg}"
    # README "On a cluster", on the user's machine: the token once, then `ray up`
    nodes.run("client", "ray get-auth-token --generate && chmod 600 ~/.ray/auth_token")
    nodes.run("client", up, timeout_s=600)
    # the head's autoscaler starts the worker over SSH (min_workers: the local provider's worker_ips), and the
    # head's MLflow server answers
    ready = f"ray exec {cfg} {q(READY)} > /dev/null 2>&1"
    nodes.run("client", f"for i in $(seq 100); do {ready} && exit 0; sleep 2; done; exit 1", timeout_s=600)
    sweep = (
        "cd ~/cvsweep && python sweeps/classify.py --smoke-test --experiment launched --address auto "
        "--tracking-uri http://127.0.0.1:5000 --storage-path /mnt/shared/ray_results --cpus-per-trial 2"
    )
    out = nodes.run("client", f"ray exec {cfg} {q(sweep)}", timeout_s=900)
    assert "[sweep] trials finished" in out.stdout, out.stdout[-3000:]
    runs = nodes.run("client", f"ray exec {cfg} {q(CHECK_RUNS)}", timeout_s=300).stdout
    hosts = json.loads(re.search(r"^RUNS (\[.*\])", runs, re.MULTILINE)[1])
    assert set(hosts) == {HEAD, WORKER}, f"expected trials on both nodes, they ran on {hosts}"
    # token auth: a driver on the head without the token is refused
    refused = nodes.run("client", f"ray exec {cfg} {q('RAY_AUTH_TOKEN=wrong timeout 10 ' + READY)}", check=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "InvalidAuthToken" in said, said[-2000:]
    assert not re.search(r"^NODES \d", said, re.MULTILINE), said[-2000:]
    nodes.run("client", f"ray down -y {cfg}", timeout_s=300)
    # `ray down` runs `ray stop` on the head and asks the provider to terminate the nodes. On AWS that ends the
    # worker's instance; Ray's local provider only marks the worker terminated and never stops Ray there
    # (ray-project/ray#17022): its raylet exits by itself about two minutes after the head's GCS is gone, its
    # log monitor not at all. Here the worker's processes end with the node, by PID, when the test ends.
    wait_for(lambda: not ray_processes(nodes, "head"), "Ray's processes on the head to end", timeout_s=60)


def ray_processes(nodes, name: str) -> list[str]:
    return [p for p in nodes.processes(name) if RAY_PROCESS.search(p)]
