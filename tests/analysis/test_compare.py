"""The comparison table, built from runs in a real MLflow SQLite store."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from analysis import mlflow_compat
from analysis.compare import (
    COLUMNS,
    comparison_table,
    method_note,
    profiles,
    recipe_note,
    seeds_note,
    select_rows,
    shown,
    sweep_runs,
)
from tests.analysis.conftest import log_child, start_sweep
from trainables import metrics as M


def test_one_row_per_architecture_chosen_by_validation_never_by_test(sweep):
    exp_id, parent_id, ids = sweep
    runs = sweep_runs(exp_id, parent_id)
    assert len(runs) == 5  # the other sweep's run is not included
    best = select_rows(runs, "arch")
    assert list(best["run_id"]) == [ids["c"], ids["r_high"]]  # sorted by validation accuracy
    assert list(best["trials"]) == [1, 3]  # finished trials behind each row; the failed one is not


@pytest.mark.parametrize("read", ["sql", "search"])
def test_the_sweeps_runs_are_read_as_mlflows_search_runs_gives_them(sweep, monkeypatch, read):
    """The same DataFrame (columns, values, types, order) from the SQL store's rows or from MLflow's search
    (a tracking server's path), as ``mlflow.search_runs`` builds it; also with a run still running (no end time)
    and a NaN metric."""
    exp_id, parent_id, ids = sweep
    client = mlflow.MlflowClient()
    running = client.create_run(exp_id, tags={"mlflow.parentRunId": parent_id}).info.run_id
    client.log_metric(running, M.VAL_LOSS, float("nan"))
    if read == "search":
        monkeypatch.setattr(mlflow_compat, "child_runs", lambda *a: None)  # as for any store but a SQL one
    runs = sweep_runs(exp_id, parent_id)
    want = mlflow.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(runs.columns) == sorted(want.columns) and len(runs) == 6
    pd.testing.assert_frame_equal(runs, want[list(runs.columns)])
    assert runs["end_time"].isna().sum() == 1 and runs[f"metrics.{M.VAL_LOSS}"].isna().all()


def test_a_confirmed_configuration_ranks_by_its_mean_over_seeds(tmp_path):
    """A configuration run with three seeds ranks by their mean validation accuracy, ahead of a one-seed row
    that scored higher once; its row is its best-validation seed, with mean ± std over the three beside it."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    exp = mlflow.set_experiment("confirm")
    with start_sweep("sweep-c", planned=3) as parent:
        lucky = log_child(parent.info.run_id, "convnext_atto", val=0.97, test=0.90)
        scores = [(0.95, 0.91), (0.93, 0.92), (0.91, 0.87)]
        seeds = [log_child(parent.info.run_id, "resnet18", val=v, test=t, seed=s) for s, (v, t) in enumerate(scores)]
    runs = sweep_runs(exp.experiment_id, parent.info.run_id)
    mlflow.set_tracking_uri(None)
    chosen = select_rows(runs, "arch", ["arch", "freeze"])
    assert list(chosen["run_id"]) == [seeds[0], lucky] and list(chosen["seeds"]) == [3, 1]
    table = comparison_table(chosen, None)
    vals, tests = np.array([v for v, _ in scores]), np.array([t for _, t in scores])
    assert table.loc[0, "val_acc_mean"] == pytest.approx(vals.mean())
    assert table.loc[0, "val_acc_std"] == pytest.approx(vals.std(ddof=1))
    assert table.loc[0, "test_acc_std"] == pytest.approx(tests.std(ddof=1))
    assert table.loc[0, M.TEST_ACC] == 0.91  # the row's own numbers are its best-validation seed's
    shown_table = shown(table)
    assert list(shown_table[COLUMNS["val_acc_mean"]]) == ["93.0 ± 2.0", ""]
    assert "val_acc_std" not in shown_table and COLUMNS["val_acc_std"] not in shown_table
    assert "Seeds: 1 row(s)" in seeds_note(chosen) and seeds_note(select_rows(runs, "trial")) == ""
    per_config = select_rows(runs, "config")  # the seed is not what makes a configuration
    assert list(per_config["run_id"]) == [seeds[0], lucky]


def test_rows_per_configuration_and_per_trial(sweep):
    exp_id, parent_id, ids = sweep
    runs = sweep_runs(exp_id, parent_id)
    per_config = select_rows(runs, "config", ["arch", "freeze"])
    assert list(per_config["run_id"]) == [ids["c"], ids["r_high"], ids["r_frozen"]]
    per_trial = select_rows(runs, "trial")
    assert list(per_trial["run_id"]) == [ids["c"], ids["r_high"], ids["r_low"], ids["r_frozen"]]
    with pytest.raises(ValueError, match="rows: 'model' is not one of arch, config, trial"):
        select_rows(runs, "model")


def test_table_columns_units_and_cached_profiles(sweep):
    exp_id, parent_id, ids = sweep
    runs = sweep_runs(exp_id, parent_id)
    chosen = select_rows(runs, "arch")
    said = []
    profs = profiles(chosen, runs, progress=said.append, timing_s=0.2)
    assert len(said) == 1 and "resnet18 at 32 px" in said[0] and "convnext_atto" in said[0]
    table = comparison_table(chosen, profs)
    assert list(table.columns) == list(COLUMNS)
    row = table.set_index("arch").loc["resnet18"]
    assert row[M.TEST_ACC] == 0.85 and row["params_m"] == pytest.approx(11.18, abs=0.01)
    assert row["gflops"] == pytest.approx(2 * row["gmacs"]) and 0 < row["latency_ms"] <= row["latency_p90_ms"]
    assert row["throughput_ips"] > 0 and row["size_mb"] == pytest.approx(4 * 11.18, rel=0.02)
    assert row["onnx_latency_ms"] > 0 and profs[ids["r_high"]].onnxruntime_version  # ONNX Runtime's, on the CPU
    readable = shown(table).set_index("architecture").loc["resnet18"]
    assert readable["test acc (%)"] == pytest.approx(85) and readable["train time (s)"] == 12.5
    # the profile was cached on the run: the next table reads it instead of timing again
    again, said = sweep_runs(exp_id, parent_id), []
    assert profiles(select_rows(again, "arch"), again, progress=said.append, timing_s=0.2) == profs and said == []
    one = chosen.head(1)  # convnext_atto's row: timing one model again is enough to see it happen
    assert len(profiles(one, again, reprofile=True, progress=said.append, timing_s=0.2)) == 1 and len(said) == 1
    # a table that asks for longer timings than the cached ones (a smoke test's) times again, and says so
    longer = profiles(one, sweep_runs(exp_id, parent_id), progress=said.append, timing_s=0.5)
    assert len(said) == 2 and longer[ids["c"]].timing_s == 0.5
    assert "at least 30 runs and 0.5 s" in method_note(longer[ids["c"]])


def test_without_top5_or_profiles_those_columns_are_left_out(sweep):
    exp_id, parent_id, _ = sweep
    chosen = select_rows(sweep_runs(exp_id, parent_id), "arch").drop(columns=[f"metrics.{M.TEST_TOP5}"])
    table = comparison_table(chosen, None)
    assert M.TEST_TOP5 not in table and "latency_ms" not in table and M.TEST_F1 in table


def test_the_method_note_states_every_rows_recipe_and_what_differs(sweep):
    """A reader checks that the comparison was fair: the values every row trained with, and each value
    that differs between rows named per row."""
    exp_id, parent_id, ids = sweep
    client = mlflow.MlflowClient()
    for run_id, crop in ((ids["r_high"], 1.0), (ids["c"], 0.862)):
        client.log_param(run_id, "weights", "none")
        client.log_param(run_id, "eval_crop_pct", crop)
        client.log_param(run_id, "head_init_std", 0.02)
    note = recipe_note(select_rows(sweep_runs(exp_id, parent_id), "arch"))
    shared = note.split(" (AdamW")[0]
    for value in ("weights none", "freeze full", "augment none", "lr 0.001", "head_init_std 0.02"):
        assert value in shared
    assert "eval_crop_pct" not in shared  # it differs: named per row instead
    assert "Differing between rows: eval_crop_pct (convnext_atto 0.862, resnet18 1)." in note
    assert "label_smoothing" not in note  # not recorded by these runs: not claimed
