"""The comparison table, built from runs in a real MLflow SQLite store."""

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from analysis.compare import COLUMNS, best_per_arch, comparison_table, sweep_runs, write_table
from trainables import metrics as M


def _child(parent_id: str, arch: str, val: float, test: float, status: str = "FINISHED"):
    with mlflow.start_run(run_name=arch, nested=True, tags={MLFLOW_PARENT_RUN_ID: parent_id}) as r:
        mlflow.log_params(
            {
                "arch": arch,
                "family": arch.split("_")[0].rstrip("0123456789"),
                "freeze": "full",
                "augment": "none",
                "lr": 1e-3,
                "num_classes": 10,
                "input_size": 32,
            }
        )
        mlflow.log_metrics(
            {
                M.BEST_VAL_ACC: val,
                M.BEST_EPOCH: 2,
                M.TEST_ACC: test,
                M.TEST_F1: test,
                M.TEST_PRECISION: test,
                M.TEST_RECALL: test,
                "epochs_run": 3,
            }
        )
    if status != "FINISHED":
        mlflow.MlflowClient().set_terminated(r.info.run_id, status)
    return r.info.run_id


@pytest.fixture
def sweep(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    exp = mlflow.set_experiment("t")
    with mlflow.start_run(run_name="sweep") as parent:
        ids = {
            "r_low": _child(parent.info.run_id, "resnet18", val=0.80, test=0.99),  # best test, not best val
            "r_high": _child(parent.info.run_id, "resnet18", val=0.90, test=0.85),
            "r_failed": _child(parent.info.run_id, "resnet18", val=0.99, test=0.99, status="FAILED"),
            "c": _child(parent.info.run_id, "convnext_atto", val=0.95, test=0.93),
        }
    with mlflow.start_run(run_name="another sweep") as other:
        _child(other.info.run_id, "resnet18", val=1.0, test=1.0)
    yield exp.experiment_id, parent.info.run_id, ids
    mlflow.set_tracking_uri(None)


def test_one_row_per_architecture_chosen_by_validation_never_by_test(sweep):
    exp_id, parent_id, ids = sweep
    runs = sweep_runs(exp_id, parent_id)
    assert len(runs) == 4  # the other sweep's run is not included
    best = best_per_arch(runs)
    assert list(best["run_id"]) == [ids["c"], ids["r_high"]]  # sorted by validation accuracy


def test_table_has_the_profiled_columns_and_is_written_as_markdown_and_csv(sweep, tmp_path):
    exp_id, parent_id, ids = sweep
    table, prof = comparison_table(exp_id, parent_id)
    assert list(table.columns) == list(COLUMNS)
    row = table.set_index("arch").loc["resnet18"]
    assert row[M.TEST_ACC] == 0.85 and row["params_m"] == pytest.approx(11.18, abs=0.01)
    assert row["gflops"] > 0 and 0 < row["latency_ms"] <= row["latency_p90_ms"]
    md, csv = write_table(table, prof, tmp_path / "out", "t / sweep")
    text = md.read_text()
    assert "| convnext" in text and "latency b1 median (ms)" in text and prof.device in text
    assert csv.read_text().splitlines()[0].startswith("family,architecture,freeze")
