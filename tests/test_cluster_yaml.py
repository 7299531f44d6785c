"""cluster.yaml is a valid Ray cluster-launcher config, checked offline with Ray's own schema."""

import yaml
from ray.autoscaler._private.util import fillout_defaults, validate_config

from tests.conftest import REPO


def test_cluster_yaml_passes_rays_schema_and_declares_gpu_workers():
    config = fillout_defaults(yaml.safe_load((REPO / "cluster.yaml").read_text()))
    validate_config(config)  # raises on any schema error
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}  # the head runs no trials
    gpu_types = [n for n in nodes.values() if n["resources"].get("GPU", 0) > 0]
    assert gpu_types and all(n["min_workers"] == 0 for n in gpu_types)  # GPUs only while trials need them
