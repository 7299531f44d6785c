"""cluster.yaml is a valid Ray cluster-launcher config, checked offline with Ray's own schema, and keeps
this project's invariants: GPU workers that declare their GPUs, only SSH open, token auth everywhere,
the MLflow server on the head (localhost only, artifacts to object storage, Host checked)."""

import re

import pytest
import yaml
from ray.autoscaler._private.util import fillout_defaults, merge_setup_commands, validate_config

from tests.conftest import REPO


@pytest.fixture(scope="module")
def config():
    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    filled = fillout_defaults(raw)
    validate_config(filled)  # raises on any schema error
    return filled


def test_the_head_runs_no_trials_and_gpu_workers_declare_their_gpus(config):
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0, "GPU": 0}
    gpu_types = [n for n in nodes.values() if n["resources"].get("GPU", 0) > 0]
    assert gpu_types and all(n["min_workers"] == 0 and n["resources"]["CPU"] > 0 for n in gpu_types)


def test_only_ssh_is_open_to_the_outside(config):
    rules = config["provider"]["security_group"]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start  # the dashboard through `ray dashboard` only


def test_token_auth_is_on_for_every_ray_process_and_the_token_is_shipped(config):
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert all(c.startswith("RAY_AUTH_MODE=token ray ") for c in config[key] if " ray " in f" {c}")
    assert any("export RAY_AUTH_MODE=token" in c for c in config["setup_commands"])  # drivers started in a shell
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("role", ["head", "worker"])
def test_every_nodes_copy_of_the_token_is_made_owner_only_after_each_sync_before_ray_starts(config, role):
    # Ray's updater syncs the file mounts (rsync -a: the local file's mode, 0644 as Ray writes it), then runs
    # the node's setup commands if its config changed, then its Ray start commands: both must make it 0600.
    (token,) = [remote for remote in config["file_mounts"] if remote.endswith("auth_token")]
    commands = merge_setup_commands(dict(config))
    owner_only = re.compile(rf"(^|&&|;)\s*chmod (0?600|go-rwx) {re.escape(token)}\s*($|&&|;)")
    setup, start = commands[f"{role}_setup_commands"], commands[f"{role}_start_ray_commands"]
    assert owner_only.search(setup[0]), setup  # before anything else the node runs
    first_ray = next(i for i, c in enumerate(start) if " ray " in f" {c}")
    assert any(owner_only.search(c) for c in start[: first_ray + 1]), start


def test_the_mlflow_server_starts_on_the_head_on_localhost_with_artifacts_in_object_storage(config):
    (cmd,) = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    assert "--host 127.0.0.1" in cmd and "--allowed-hosts" in cmd
    assert re.search(r"--artifacts-destination (s3|gs)://", cmd)
    assert not any("mlflow server" in c for c in config["worker_start_ray_commands"])


def test_every_node_mounts_the_shared_storage_tune_checkpoints_to(config):
    assert any("/mnt/shared" in c and "mount" in c for c in config["setup_commands"])
