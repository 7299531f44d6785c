"""How sure the comparison table is: a 95% interval on each row's test accuracy and macro-F1, and each
row tested against the top row (the best on validation) on the same test images, from the per-image
predictions its trial logged (``trainables.evidence.PREDICTIONS_CSV``). Pure functions: no MLflow.

The Wilson interval and the exact McNemar test are scipy's binomial test (scipy comes with scikit-learn);
the macro-F1 bootstrap is counted here, from confusion matrices, to be fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from trainables import metrics as M

LEVEL = 0.95  # of every interval
ALPHA = 0.05  # a row whose McNemar p is at least this is not distinguishable from the top row
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same predictions give the same interval in every report
BOOTSTRAP_CHUNK = 200  # resamples drawn at once: 200 x 10,000 test images of int64 is 16 MB

# Table keys (``analysis.compare.COLUMNS``), as fractions like the other quality columns.
ACC_CI_LOW, ACC_CI_HIGH = "test_acc_ci_low", "test_acc_ci_high"
F1_CI_LOW, F1_CI_HIGH = "test_f1_ci_low", "test_f1_ci_high"
MCNEMAR_P = "mcnemar_p_vs_top"
VS_TOP = "vs_top"  # TOP, TIED, WORSE or BETTER
TOP, TIED, WORSE, BETTER = "top", "tied with top", "worse", "better"


def wilson_interval(correct: int, n: int) -> tuple[float, float]:
    """Wilson's score interval (at ``LEVEL``) of a proportion, ``correct`` of ``n``: inside [0, 1], and right
    near 0 and 1 where the normal approximation is not."""
    if n == 0:
        return math.nan, math.nan
    ci = binomtest(correct, n).proportion_ci(confidence_level=LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided p of the exact McNemar test: ``b`` images only the first model got right, ``c`` only the
    second; under 'equally good' each of the b + c is a fair coin. 1 when no image tells them apart."""
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def bootstrap_macro_f1(
    true: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of macro-F1 over the test images: ``resamples`` draws of n images with
    replacement (``np.random.default_rng(seed).integers(0, n, (resamples, n))``), each scored as the
    trial scored the whole split (scikit-learn's f1_score, average='macro', every one of ``num_classes``
    labels, zero_division=0). Counted from each draw's confusion matrix: calling f1_score 2000 times
    per row takes seconds; this takes milliseconds, and a test checks that both give the same numbers."""
    true, pred = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    n, k = len(true), num_classes
    if n == 0:
        return math.nan, math.nan
    if min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= k:
        raise ValueError(f"labels must lie in 0..{k - 1} (num_classes {k})")
    cell = true * k + pred  # each image's cell of the confusion matrix
    rng = np.random.default_rng(seed)
    scores = []
    for start in range(0, resamples, BOOTSTRAP_CHUNK):
        m = min(BOOTSTRAP_CHUNK, resamples - start)
        drawn = cell[rng.integers(0, n, (m, n))] + (k * k) * np.arange(m)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=m * k * k).reshape(m, k, k)
        tp = counts.diagonal(axis1=1, axis2=2)
        support_plus_predicted = counts.sum(axis=2) + counts.sum(axis=1)  # 2TP + FP + FN
        f1 = np.divide(2 * tp, support_plus_predicted, out=np.zeros(tp.shape), where=support_plus_predicted > 0)
        scores.append(f1.mean(axis=1))
    low, high = np.percentile(np.concatenate(scores), [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(low), float(high)


@dataclass
class Versus:
    """The table's interval and test cells per run, and the note that says how they were computed."""

    cells: dict[str, dict]
    """run_id -> {ACC_CI_LOW: ..., MCNEMAR_P: ..., VS_TOP: ...}; a row without predictions is absent."""
    note: str


def against_top(table_runs: pd.DataFrame, predictions: Mapping[str, pd.DataFrame | None]) -> Versus:
    """Intervals for every row with predictions, and every row compared with the first one (the best on
    validation) on the same test images. ``table_runs``: the table's runs, best first (run_id,
    params.arch, params.num_classes); ``predictions``: run_id -> its PREDICTIONS_CSV (test_index, true,
    pred), or None where the run logged none."""
    if table_runs.empty:
        return Versus({}, "")
    cells, lacking, apart, disagree = {}, [], [], []
    top_id = table_runs["run_id"].iloc[0]
    top = _indexed(predictions.get(top_id))
    for _, run in table_runs.iterrows():
        run_id, name = run["run_id"], f"{run['params.arch']} (run {run['run_id'][:8]})"
        frame = _indexed(predictions.get(run_id))
        if frame is None:
            lacking.append(name)
            continue
        cells[run_id] = _intervals(frame, int(run["params.num_classes"]))
        accuracy, logged = (frame["true"] == frame["pred"]).mean(), run.get(f"metrics.{M.TEST_ACC}", np.nan)
        if not abs(accuracy - logged) < 1e-6:  # a file from another epoch or split than the metrics: said
            disagree.append(name)
        if run_id == top_id:
            cells[run_id][VS_TOP] = TOP
        elif top is not None:
            versus = _paired(top, frame)
            if versus is None:
                apart.append(name)
            cells[run_id].update(versus or {})
    return Versus(cells, _note(top is not None, lacking, apart, disagree))


def _indexed(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    return None if frame is None else frame.set_index("test_index").sort_index()


def _intervals(frame: pd.DataFrame, num_classes: int) -> dict:
    true, pred = frame["true"].to_numpy(), frame["pred"].to_numpy()
    acc = wilson_interval(int((true == pred).sum()), len(frame))
    f1 = bootstrap_macro_f1(true, pred, num_classes)
    return {ACC_CI_LOW: acc[0], ACC_CI_HIGH: acc[1], F1_CI_LOW: f1[0], F1_CI_HIGH: f1[1]}


def _paired(top: pd.DataFrame, row: pd.DataFrame) -> dict | None:
    """McNemar's p and the mark of ``row`` against ``top``; None when they were not tested on the same
    images (other indices, or another true class at the same index)."""
    if not top.index.equals(row.index) or not (top["true"] == row["true"]).all():
        return None
    top_right, row_right = top["true"] == top["pred"], row["true"] == row["pred"]
    b, c = int((top_right & ~row_right).sum()), int((~top_right & row_right).sum())
    p = mcnemar_exact(b, c)
    return {MCNEMAR_P: p, VS_TOP: TIED if p >= ALPHA else (WORSE if b > c else BETTER)}


def _note(compared: bool, lacking: list[str], apart: list[str], disagree: list[str]) -> str:
    text = (
        f"Intervals ({LEVEL:.0%}), from each row's logged per-image test predictions: test accuracy by Wilson's "
        f"score interval; test macro-F1 by a percentile bootstrap over the test images ({BOOTSTRAP_RESAMPLES} "
        f"resamples, seed {BOOTSTRAP_SEED}, macro-F1 over every class as scikit-learn computes it). "
        "Against the top row (the best on validation): an exact McNemar test on the same test images (two-sided "
        "binomial test on the images exactly one of the two got right); "
        f"'{TIED}' = p >= {ALPHA:g}, not distinguishable at {ALPHA:.0%}, which is not the same as equal; "
        f"'{WORSE}' or '{BETTER}' = p < {ALPHA:g}. One test per row, not corrected for the number of rows."
    )
    if lacking:
        text += f" No test predictions logged (empty cells): {', '.join(lacking)}."
    if not compared:
        text += " The top row has none: no row is compared with it."
    if apart:
        text += f" Not compared, not on the top row's test images: {', '.join(apart)}."
    if disagree:
        text += f" Logged predictions that do not give the run's logged test accuracy: {', '.join(disagree)}."
    return text
