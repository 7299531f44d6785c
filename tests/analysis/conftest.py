"""A sweep's record in a real MLflow SQLite store, as a sweep leaves it: a parent run and child runs."""

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from trainables import metrics as M


def log_child(
    parent_id: str, arch: str, val: float, test: float, status: str = "FINISHED", freeze: str = "full", seed: int = 0
):
    with mlflow.start_run(run_name=arch, nested=True, tags={MLFLOW_PARENT_RUN_ID: parent_id}) as r:
        mlflow.log_params(
            {
                "arch": arch,
                "family": arch.split("_")[0].rstrip("0123456789"),
                "freeze": freeze,
                "augment": "none",
                "lr": 1e-3,
                "num_classes": 10,
                "input_size": 32,
                "seed": seed,
            }
        )
        mlflow.log_metrics(
            {
                M.BEST_VAL_ACC: val,
                M.BEST_EPOCH: 2,
                M.TEST_ACC: test,
                M.TEST_F1: test - 0.01,
                M.TEST_PRECISION: test - 0.02,
                M.TEST_RECALL: test - 0.03,
                M.TEST_TOP5: 1.0,
                M.TRAIN_TIME: 12.5,
                "epochs_run": 3,
            }
        )
        mlflow.set_tag("stopped_early", "false")
    if status != "FINISHED":
        mlflow.MlflowClient().set_terminated(r.info.run_id, status)
    return r.info.run_id


def start_sweep(name: str, planned: int):
    run = mlflow.start_run(run_name=name, tags={"sweep": name})
    mlflow.log_params({"trials_planned": planned, "searched": "arch,freeze", "space.arch": "choice[...]"})
    return run


@pytest.fixture
def sweep(tmp_path):
    """(experiment id, parent run id, {name: child run id}); another, later sweep beside it."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    exp = mlflow.set_experiment("t")
    with start_sweep("sweep-1", planned=5) as parent:
        pid = parent.info.run_id
        ids = {
            "r_low": log_child(pid, "resnet18", val=0.80, test=0.99),  # best test, not best val
            "r_high": log_child(pid, "resnet18", val=0.90, test=0.85),
            "r_frozen": log_child(pid, "resnet18", val=0.70, test=0.70, freeze="frozen"),
            "r_failed": log_child(pid, "resnet18", val=0.99, test=0.99, status="FAILED"),
            "c": log_child(pid, "convnext_atto", val=0.95, test=0.93),
        }
    with start_sweep("sweep-2", planned=1) as other:
        log_child(other.info.run_id, "resnet18", val=1.0, test=1.0)
    yield exp.experiment_id, pid, ids
    mlflow.set_tracking_uri(None)
