"""Intervals and ties in the comparison table: checked against scipy and scikit-learn on per-image test
predictions logged to real runs, and read back from the report's CSV, Markdown and HTML."""

import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from analysis.compare import COLUMNS, comparison_table, select_rows, shown, sweep_runs
from analysis.report import build_report
from analysis.report_parts import fetch_predictions
from analysis.significance import (
    ACC_CI_HIGH,
    ACC_CI_LOW,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    F1_CI_HIGH,
    F1_CI_LOW,
    MCNEMAR_P,
    VS_TOP,
    against_top,
    bootstrap_macro_f1,
    mcnemar_exact,
    wilson_interval,
)
from trainables import metrics as M
from trainables.contracts import EVIDENCE_DIR
from trainables.evidence import write_predictions

N, CLASSES = 200, 10
TRUE = np.arange(N) % CLASSES
TOP_WRONG = np.arange(12)  # the top row (convnext_atto, best on validation) misses images 0..11
# (images the top row got right that this row misses, images the top row missed that this row gets right)
OUTCOMES = {"r_high": (15, 3), "r_low": (4, 2)}  # r_high: p 0.0075, worse; r_low: p 0.69, tied


def predictions(wrong: np.ndarray) -> np.ndarray:
    pred = TRUE.copy()
    pred[wrong] = (TRUE[wrong] + 1 + wrong % 3) % CLASSES  # wrong, and not always the same way
    return pred


def row_predictions(b: int, c: int) -> np.ndarray:
    """b of the top row's right images missed (from image 12 on), c of its misses right (images 0..c-1)."""
    return predictions(np.concatenate([TOP_WRONG[c:], 12 + np.arange(b)]))


def log_predictions(run_id: str, pred: np.ndarray, tmp_path, true: np.ndarray = TRUE) -> None:
    """The file a trial logs (trainables.evidence's writer), logged where a trial logs it."""
    out = tmp_path / run_id
    out.mkdir()
    path = write_predictions({"true": true, "pred": pred}, [f"c{i}" for i in range(CLASSES)], out)
    mlflow.MlflowClient().log_artifact(run_id, str(path), EVIDENCE_DIR)


@pytest.fixture
def logged(sweep, tmp_path):
    """The sweep's trials with known per-image test outcomes, and the test accuracy and macro-F1 they give
    (as a trial logs both); r_frozen logged no predictions."""
    exp_id, parent_id, ids = sweep
    preds = {"c": predictions(TOP_WRONG)} | {k: row_predictions(*bc) for k, bc in OUTCOMES.items()}
    client = mlflow.MlflowClient()
    for name, pred in preds.items():
        log_predictions(ids[name], pred, tmp_path)
        client.log_metric(ids[name], M.TEST_ACC, float((pred == TRUE).mean()))
        client.log_metric(ids[name], M.TEST_F1, f1_score(TRUE, pred, average="macro"))
    return exp_id, parent_id, ids, preds


def scipy_cells(pred: np.ndarray, top: np.ndarray | None) -> dict:
    """The same cells, computed independently: scipy's Wilson interval, scipy's percentile bootstrap of
    scikit-learn's f1_score (same seed, same number of resamples), scipy's binomial test."""
    acc = stats.binomtest(int((pred == TRUE).sum()), N).proportion_ci(confidence_level=0.95, method="wilson")
    f1 = stats.bootstrap(
        (TRUE, pred),
        lambda t, p: f1_score(t, p, labels=list(range(CLASSES)), average="macro", zero_division=0),
        paired=True,
        vectorized=False,
        method="percentile",
        n_resamples=BOOTSTRAP_RESAMPLES,
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    ).confidence_interval
    cells = {ACC_CI_LOW: acc.low, ACC_CI_HIGH: acc.high, F1_CI_LOW: f1.low, F1_CI_HIGH: f1.high}
    if top is not None:
        b = int(((top == TRUE) & (pred != TRUE)).sum())
        c = int(((top != TRUE) & (pred == TRUE)).sum())
        cells[MCNEMAR_P] = stats.binomtest(b, b + c, 0.5).pvalue
    return cells


def test_intervals_and_mcnemar_p_equal_scipy_on_the_logged_predictions(logged):
    exp_id, parent_id, ids, preds = logged
    chosen = select_rows(sweep_runs(exp_id, parent_id), "trial")
    assert list(chosen["run_id"]) == [ids["c"], ids["r_high"], ids["r_low"], ids["r_frozen"]]
    versus = against_top(chosen, fetch_predictions(chosen))
    table = comparison_table(chosen, None, versus).set_index("run_id")
    for name, pred in preds.items():
        row = table.loc[ids[name]]
        for key, value in scipy_cells(pred, None if name == "c" else preds["c"]).items():
            assert row[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (name, key)
    assert table.loc[ids["r_high"], MCNEMAR_P] == pytest.approx(0.00754, abs=1e-5)  # 15 against 3
    # the mark follows p >= 0.05: tied; below, worse (the row got fewer right than the top row)
    assert [table.loc[ids[k], VS_TOP] for k in ("c", "r_high", "r_low")] == ["top", "worse", "tied with top"]
    frozen = table.loc[ids["r_frozen"]]  # no predictions logged: empty cells, named in the note
    assert frozen[[ACC_CI_LOW, F1_CI_LOW, MCNEMAR_P]].isna().all() and pd.isna(frozen[VS_TOP])
    assert f"No test predictions logged (empty cells): resnet18 (run {ids['r_frozen'][:8]})." in versus.note
    assert "Wilson" in versus.note and "exact McNemar" in versus.note and "2000 resamples" in versus.note
    assert "do not give the run's logged test accuracy" not in versus.note


def test_the_closed_forms_agree_with_scipy_where_they_are_hardest():
    for k, n in ((0, 10), (10, 10), (1, 3), (9_731, 10_000)):  # the edges, where a normal interval fails
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), rel=1e-12, abs=1e-15)
    for b, c in ((0, 1), (0, 7), (3, 3), (100, 130), (2_000, 2_100)):
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    assert mcnemar_exact(0, 0) == 1.0  # no image tells the two apart
    # a draw with classes left out of the sample still counts them as 0, as the trial's macro-F1 does
    true, pred = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    draws = np.random.default_rng(3).integers(0, 4, (50, 4))
    f1 = [f1_score(true[i], pred[i], labels=list(range(5)), average="macro", zero_division=0) for i in draws]
    assert bootstrap_macro_f1(true, pred, 5, resamples=50, seed=3) == pytest.approx(np.percentile(f1, [2.5, 97.5]))


def test_a_row_on_other_test_images_is_not_compared_and_the_note_says_so(sweep, tmp_path):
    exp_id, parent_id, ids = sweep
    log_predictions(ids["c"], predictions(TOP_WRONG), tmp_path)
    other = np.roll(TRUE, 1)  # the same number of images, other true classes: another split
    log_predictions(ids["r_high"], other, tmp_path, true=other)
    chosen = select_rows(sweep_runs(exp_id, parent_id), "arch")
    versus = against_top(chosen, fetch_predictions(chosen))
    table = comparison_table(chosen, None, versus).set_index("run_id")
    assert table.loc[ids["r_high"], ACC_CI_LOW] > 0.98  # its own interval is still given
    assert pd.isna(table.loc[ids["r_high"], MCNEMAR_P]) and pd.isna(table.loc[ids["r_high"], VS_TOP])
    assert f"Not compared, not on the top row's test images: resnet18 (run {ids['r_high'][:8]})." in versus.note
    # its run logged a test accuracy of 85%, its predictions give 100% (and the top row's 94%, not 93%)
    assert (
        "Logged predictions that do not give the run's logged test accuracy: "
        f"convnext_atto (run {ids['c'][:8]}), resnet18 (run {ids['r_high'][:8]})." in versus.note
    )


def test_csv_markdown_and_html_carry_the_intervals_and_the_ties(logged, tmp_path):
    exp_id, parent_id, ids, preds = logged
    report = build_report(exp_id, mlflow.get_run(parent_id), tmp_path / "out", rows="trial", profile=False)
    assert list(report.table.columns) == [c for c in COLUMNS if c in report.table]
    csv = pd.read_csv(report.csv, dtype=str, keep_default_na=False).set_index("MLflow run")
    md, page = report.markdown.read_text(), report.html.read_text()
    acc_ci, f1_ci = COLUMNS[ACC_CI_LOW], COLUMNS[F1_CI_LOW]
    assert acc_ci == "test acc 95% CI (%, Wilson)" and COLUMNS[ACC_CI_HIGH] not in csv
    for header in (acc_ci, f1_ci, COLUMNS[MCNEMAR_P], COLUMNS[VS_TOP]):
        assert header in csv.columns and header in md and header in page
    for name, pred in preds.items():
        want = scipy_cells(pred, None if name == "c" else preds["c"])
        row = csv.loc[ids[name]]
        for header, key in ((acc_ci, ACC_CI_LOW), (f1_ci, F1_CI_LOW)):
            high = key.replace("low", "high")
            cell = f"{100 * want[key]:.1f}-{100 * want[high]:.1f}"
            in_md = re.search(rf"\| *{re.escape(cell)} *\|", md)
            assert row[header] == cell and in_md and f"<td>{cell}</td>" in page, (name, header)
        if MCNEMAR_P in want:
            assert float(row[COLUMNS[MCNEMAR_P]]) == pytest.approx(want[MCNEMAR_P])
    assert [csv.loc[ids[k], COLUMNS[VS_TOP]] for k in ("c", "r_high", "r_low", "r_frozen")] == [
        "top",
        "worse",
        "tied with top",
        "",
    ]
    assert (
        csv.loc[ids["r_frozen"], acc_ci] == "" and re.search(r"\| *tied with top *\|", md) and "<td>worse</td>" in page
    )
    for text in (md, page):  # the method note says how, and which rows have no predictions
        assert "exact McNemar test on the same test images" in text and "No test predictions logged" in text
    assert shown(report.table).columns.tolist() == pd.read_csv(report.csv).columns.tolist()


def test_a_row_significantly_better_on_test_than_the_top_row_is_marked_better():
    """The top row is the best on validation; test may disagree, and the table says so."""
    runs = pd.DataFrame(
        {"run_id": ["top", "other"], "params.arch": ["a", "b"], "params.num_classes": [CLASSES, CLASSES]}
    )
    top, other = predictions(np.arange(20)), predictions(np.arange(2))  # 18 images only "other" got right
    frames = {
        k: pd.DataFrame({"test_index": range(N), "true": TRUE, "pred": p}) for k, p in (("top", top), ("other", other))
    }
    versus = against_top(runs, frames)
    assert versus.cells["other"][VS_TOP] == "better"
    assert versus.cells["other"][MCNEMAR_P] == pytest.approx(stats.binomtest(0, 18, 0.5).pvalue)
