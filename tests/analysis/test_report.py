"""The report: files, what they say, the Pareto front, and the command line."""

import csv

import mlflow
import numpy as np
import pytest

from analysis.report import build_report, find_sweep, main, pareto_front


def test_pareto_front_keeps_only_the_points_nothing_beats():
    cost = np.array([1.0, 2.0, 3.0, 2.0, 4.0])
    acc = np.array([0.5, 0.8, 0.7, 0.8, 0.9])
    # 3.0/0.7 is beaten by 2.0/0.8; the two equal points at 2.0/0.8 both stay
    assert list(pareto_front(cost, acc)) == [True, True, False, True, True]


def test_the_latest_sweep_is_found_by_default_and_a_wrong_name_is_refused(sweep):
    exp_id, parent_id, _ = sweep
    assert find_sweep("t")[1].data.tags["sweep"] == "sweep-2"
    assert find_sweep("t", "sweep-1")[1].info.run_id == parent_id
    with pytest.raises(LookupError, match="experiment 't' has no sweep named 'sweep-9'"):
        find_sweep("t", "sweep-9")


def test_report_files_say_what_was_compared_and_what_is_missing(sweep, tmp_path):
    exp_id, parent_id, ids = sweep
    report = build_report(exp_id, mlflow.get_run(parent_id), tmp_path / "out", profile=False, progress=print)
    md = report.markdown.read_text()
    assert "5 trials planned, 5 started: 4 finished" in md and "1 failed" in md
    assert "| convnext_atto" in md and "test macro-F1 (%)" in md
    html = report.html.read_text()
    assert "confusion matrix: not logged by this run" in html  # these runs logged no evidence: said, not skipped
    # self-contained: one inline script (the table's sorting), nothing it or anything else fetches
    assert html.count("<script>") == 1 and "<script src" not in html
    assert "http" not in html.split("</style>")[1].replace(mlflow.get_tracking_uri(), "")
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(parent_id, "report")}
    assert {"report/report.md", "report/report.html", "report/comparison.csv"} <= logged


def test_command_line_names_the_experiments_there_when_one_is_wrong(sweep, capsys):
    assert main(["--experiment", "nope", "--tracking-uri", mlflow.get_tracking_uri()]) == 2
    err = capsys.readouterr().err
    assert "no experiment named 'nope'" in err and "experiments there: Default, t" in err
    assert main(["--experiment", "t", "--device", "tpu"]) == 2
    assert "--device 'tpu'" in capsys.readouterr().err


def test_command_line_writes_the_report_of_the_named_sweep(sweep, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["--experiment", "t", "--sweep", "sweep-1", "--out", str(out), "--no-profile", "--rows", "trial"]) == 0
    assert (out / "report.html").is_file() and "one row per finished trial" in (out / "report.md").read_text()
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out


def test_all_sweeps_gives_one_table_with_each_sweeps_best_per_architecture_and_what_differs(sweep, tmp_path, capsys):
    exp_id, parent_id, ids = sweep
    client = mlflow.MlflowClient()
    (other,) = [r for r in client.search_runs([exp_id], "tags.sweep = 'sweep-2'") if "sweep" in r.data.tags]
    client.log_param(parent_id, "img_size", 32)  # the settings the two sweeps were run with
    client.log_param(other.info.run_id, "img_size", 64)
    for run_id in (parent_id, other.info.run_id):
        client.log_param(run_id, "data_source", "sklearn.datasets.load_digits")
    out = tmp_path / "across"
    assert main(["--experiment", "t", "--all-sweeps", "--no-profile", "--out", str(out)]) == 0
    with open(out / "across.csv") as f:
        rows = list(csv.DictReader(f))
    # sweep-2's resnet18 (val 1.0), sweep-1's convnext (0.95) and its best finished resnet18 (0.90): best first
    assert [(r["architecture"], r["sweep"], r["img_size"]) for r in rows] == [
        ("resnet18", "sweep-2", "64"), ("convnext_atto", "sweep-1", "32"), ("resnet18", "sweep-1", "32")
    ]  # fmt: skip
    assert rows[2]["MLflow run"] == ids["r_high"] and "data_source" not in rows[0]  # the same in both: not a column
    assert "vs top (5%)" not in rows[0]  # a paired test needs the same test images: not across sweeps
    assert "settings that differ between these sweeps (img_size)" in (out / "across.md").read_text()
    assert '<table class="comparison sortable">' in (out / "across.html").read_text()
    # the same by naming the sweeps; a name that is not there is refused with the ones that are
    assert main(["--experiment", "t", "--sweep", "sweep-1", "sweep-2", "--no-profile", "--out", str(out)]) == 0
    assert main(["--experiment", "t", "--sweep", "sweep-1", "sweep-9", "--no-profile"]) == 2
    assert "no sweep named sweep-9; its sweeps: sweep-2, sweep-1" in capsys.readouterr().err


def test_the_sweep_runs_description_stays_within_mlflows_tag_limit_and_says_where_it_cut():
    """A table of 1,000 rows (`--rows trial` over a big sweep) would pass MLflow's 8,000-character limit on a
    tag, and MLflow would cut the run's description mid-row: the description keeps whole rows and says so."""
    import pandas as pd
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    from analysis.report import overview

    fate = dict(planned=1000, runs=1000, finished=1000, ran_all_epochs=1000, stopped_early=0, failed=0, killed=0)
    facts = {"fate": {**fate, "running": 0}, "baselines": ""}
    table = pd.DataFrame(
        {"arch": [f"resnet18-{i}" for i in range(1000)], "family": "resnet", "seeds": 1, "best_val_acc": 0.9,
         "test_acc": 0.9, "test_f1": 0.9, "latency_ms": 4.2}
    )  # fmt: skip
    text = overview(table, facts)
    assert len(text) <= MAX_TAG_VAL_LENGTH and text.startswith("**Answer**: resnet18-0: 90.0% validation")
    shown = [line for line in text.splitlines() if line.startswith("| resnet18-")]
    assert 10 < len(shown) < 1000 and f"The first {len(shown)} of 1000 rows; every row is in the report." in text
    small = overview(table.head(5), facts)
    assert len([line for line in small.splitlines() if line.startswith("| resnet18-")]) == 5 and "first" not in small


def test_a_mistyped_store_is_named_and_never_created(tmp_path, capsys):
    typo = tmp_path / "mlflw.db"
    try:
        assert main(["--experiment", "t", "--tracking-uri", f"sqlite:///{typo}"]) == 2
    finally:
        mlflow.set_tracking_uri(None)
    assert f"error: tracking store sqlite:///{typo}: there is no database {typo}." in capsys.readouterr().err
    assert not typo.exists()


@pytest.mark.parametrize("command", ["analysis.report", "analysis.predict", "analysis.export"])
def test_every_command_names_the_same_default_store(command, capsys):
    import importlib

    with pytest.raises(SystemExit):
        importlib.import_module(command).parse_args(["--help"])
    said = capsys.readouterr().out
    assert "$MLFLOW_TRACKING_URI, else MLflow's local default sqlite:///mlflow.db" in " ".join(said.split())
    assert "./mlruns" not in said
