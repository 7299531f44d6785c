"""Metric names, defined once, and the classification metrics behind them.

The same names are reported by the trainable, optimised by the Tuner, logged to MLflow and read by the
analysis: change one here and every layer follows.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    top_k_accuracy_score,
)

# Per-epoch curves (one value per epoch; MLflow step = epoch number, starting at 1).
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"  # against the unmixed labels when MixUp/CutMix is on
TRAIN_F1 = "train_f1"  # macro, same predictions as train_acc
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"
VAL_F1 = "val_f1"
LR = "lr"  # head learning rate at the end of the epoch
EPOCH_TIME = "epoch_time_s"  # wall seconds for train + validation of one epoch
THROUGHPUT = "train_images_per_s"  # training images per wall second
LATENCY = "latency_ms"  # batch-1 inference, median, timed inside the trial (shares the machine)
EPOCH_METRICS = (TRAIN_LOSS, TRAIN_ACC, TRAIN_F1, VAL_LOSS, VAL_ACC, VAL_F1, LR, EPOCH_TIME, THROUGHPUT, LATENCY)
# What each epoch asked of the machine (``trainables.system``), under the prefix of MLflow's "System metrics".
SYSTEM_DATA_WAIT = "system/data_wait_percentage"  # of the training loop's time, blocked on the DataLoader
SYSTEM_CPU = "system/cpu_utilization_percentage"  # of the cores the trial was given
SYSTEM_PEAK_RSS = "system/peak_rss_megabytes"  # the trial's process and its loader workers
SYSTEM_GPU_UTIL = "system/gpu_utilization_percentage"  # CUDA only
SYSTEM_GPU_PEAK_MEMORY = "system/gpu_peak_memory_megabytes"  # CUDA only: torch's peak allocated memory
SYSTEM_METRICS = (SYSTEM_DATA_WAIT, SYSTEM_CPU, SYSTEM_PEAK_RSS, SYSTEM_GPU_UTIL, SYSTEM_GPU_PEAK_MEMORY)
# Files of a folder over decode_cache_mb (only their headers checked up front) that failed to decode in the
# trial so far, each replaced by another image of its class (trainables.data); reported only for such folders.
UNREADABLE_IMAGES = "unreadable_images"

# The trial's answer: the epoch that validation selected, and that epoch's model on the test split.
BEST_VAL_ACC = "best_val_acc"
BEST_EPOCH = "best_epoch"
TEST_ACC = "test_acc"
TEST_F1 = "test_f1"  # macro-F1: every class weighs the same, whatever its size
TEST_PRECISION = "test_precision"  # macro
TEST_RECALL = "test_recall"  # macro
TEST_METRICS = (TEST_ACC, TEST_F1, TEST_PRECISION, TEST_RECALL)
TEST_TOP5 = "test_top5"  # top-5 accuracy; only with more than 5 classes (with 5 or fewer it is always 1)
TOP5_MIN_CLASSES = 6
TRAIN_TIME = "train_time_s"  # wall seconds of training + validation over all epochs run, retries included
SUMMARY_METRICS = (BEST_VAL_ACC, BEST_EPOCH, *TEST_METRICS, TRAIN_TIME)
# Logged by the sweep when a trial ends, for every task: the epochs it ran (fewer than max_epochs: stopped early).
EPOCHS_RUN = "epochs_run"

# What the search optimises and ASHA compares trials on.
SEARCH_METRIC = VAL_ACC
SEARCH_MODE = "max"
# Metrics a sweep may optimise (several at once: multi-objective), each with its direction.
OBJECTIVES = {VAL_ACC: "max", VAL_F1: "max", LATENCY: "min"}


def as_test(m: dict[str, float]) -> dict[str, float]:
    """``classification_metrics`` of the test split under the TEST_* names a trial reports them by."""
    names = {"acc": TEST_ACC, "f1": TEST_F1, "precision": TEST_PRECISION, "recall": TEST_RECALL, "top5": TEST_TOP5}
    return {names[k]: v for k, v in m.items() if k in names}


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, scores: np.ndarray | None = None
) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1, by scikit-learn, over all ``num_classes`` labels; with
    ``scores`` (N, num_classes) and more than 5 classes, also top-5 accuracy ("top5").

    ``labels`` is passed explicitly so a class absent from a small split still counts (as 0) in the
    macro average instead of silently shrinking the denominator.
    """
    labels = list(range(num_classes))
    kw = dict(labels=labels, average="macro", zero_division=0)
    out = {
        "acc": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, **kw)),
        "precision": float(precision_score(y_true, y_pred, **kw)),
        "recall": float(recall_score(y_true, y_pred, **kw)),
    }
    if scores is not None and num_classes >= TOP5_MIN_CLASSES:
        out["top5"] = float(top_k_accuracy_score(y_true, scores, k=5, labels=labels))
    return out


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, list]:
    """The confusion matrix (rows: true class, columns: predicted) and per-class precision, recall, F1
    and support, over all ``num_classes`` labels: the evidence behind a macro average."""
    labels = list(range(num_classes))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "precision": p.tolist(),
        "recall": r.tolist(),
        "f1": f.tolist(),
        "support": s.tolist(),
    }
