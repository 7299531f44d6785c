"""The evidence behind one trial's numbers, as files a reviewer opens from its MLflow run: the test
confusion matrix (PNG and CSV), the per-class precision/recall/F1 report (CSV), every test image's
true and predicted class (CSV), the learning curves (PNG) and, from ``analysis.gradcam``, Grad-CAM
heatmaps on the sweep's sample images (PNG and NPZ). Pure functions from numbers to files;
what gets uploaded where is ``sweeps.trial_runs``' job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window: the driver may run on a headless head node
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trainables import metrics as M  # noqa: E402

CONFUSION_CSV, CONFUSION_PNG = "confusion_matrix.csv", "confusion_matrix.png"
PER_CLASS_CSV = "per_class_report.csv"
PREDICTIONS_CSV = "test_predictions.csv"
CURVES_PNG = "learning_curves.png"
GRADCAM_PNG, GRADCAM_NPZ = "gradcam.png", "gradcam.npz"  # drawn by analysis.gradcam
# Panels of the learning-curve figure: (title, [(metric, label), ...]).
CURVE_PANELS = (
    ("loss", [(M.TRAIN_LOSS, "train"), (M.VAL_LOSS, "val")]),
    ("accuracy", [(M.TRAIN_ACC, "train"), (M.VAL_ACC, "val")]),
    ("macro-F1", [(M.TRAIN_F1, "train"), (M.VAL_F1, "val")]),
    ("head learning rate", [(M.LR, "lr")]),
)


def confusion_frame(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> pd.DataFrame:
    """Rows: true class, columns: predicted class, cells: image counts."""
    index = pd.Index(classes, name="true \\ predicted")
    return pd.DataFrame(np.asarray(confusion, dtype=int), index=index, columns=list(classes))


def per_class_frame(report: Mapping[str, Sequence], classes: Sequence[str]) -> pd.DataFrame:
    """One row per class (precision, recall, F1, support), then the macro and support-weighted means."""
    df = pd.DataFrame({k: report[k] for k in ("precision", "recall", "f1", "support")}, index=list(classes))
    df.index.name = "class"
    support = df["support"].to_numpy(dtype=float)
    scores = df[["precision", "recall", "f1"]]
    df.loc["macro avg"] = [*scores.mean().to_list(), support.sum()]
    weights = support / support.sum() if support.sum() else support
    df.loc["weighted avg"] = [*(scores.iloc[: len(classes)].T @ weights).to_list(), support.sum()]
    df["support"] = df["support"].astype(int)
    return df


def write_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], out: Path, title: str) -> list[Path]:
    cm = confusion_frame(confusion, classes)
    csv, png = out / CONFUSION_CSV, out / CONFUSION_PNG
    cm.to_csv(csv)
    k = len(classes)
    side = min(2.5 + 0.45 * k, 20)  # inches: readable labels up to ~40 classes
    fig, ax = plt.subplots(figsize=(side, side))
    values = cm.to_numpy()
    ax.imshow(values, cmap="Blues")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(classes, rotation=90)
    ax.set_yticklabels(classes)
    if k <= 30:  # counts in the cells; beyond that they no longer fit
        threshold = values.max() / 2 if values.size else 0
        for i in range(k):
            for j in range(k):
                color = "white" if values[i, j] > threshold else "black"
                ax.text(j, i, values[i, j], ha="center", va="center", color=color)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return [csv, png]


def write_per_class(report: Mapping[str, Sequence], classes: Sequence[str], out: Path) -> Path:
    path = out / PER_CLASS_CSV
    per_class_frame(report, classes).to_csv(path, float_format="%.4f")
    return path


def write_predictions(report: Mapping[str, Sequence], classes: Sequence[str], out: Path) -> Path:
    """One row per test image, in the split's order: the labels every test metric is computed from."""
    true, pred = np.asarray(report["true"], dtype=int), np.asarray(report["pred"], dtype=int)
    names = np.asarray(classes, dtype=object)
    frame = pd.DataFrame({"true": true, "pred": pred, "true_class": names[true], "pred_class": names[pred]})
    path = out / PREDICTIONS_CSV
    frame.to_csv(path, index_label="test_index")
    return path


def write_learning_curves(history: Mapping[str, Sequence[tuple[int, float]]], out: Path, title: str) -> Path:
    """``history``: metric name -> [(epoch, value), ...], as MLflow's metric history holds it."""
    fig, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(4 * len(CURVE_PANELS), 3.4))
    for ax, (panel, series) in zip(axes, CURVE_PANELS, strict=True):
        for metric, label in series:
            points = sorted(history.get(metric, ()))
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set(title=panel, xlabel="epoch")
        if len(series) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = out / CURVES_PNG
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
