"""The evidence files of a trial say exactly what scikit-learn says of the same predictions."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from analysis.evidence import CONFUSION_CSV, write_confusion, write_learning_curves, write_per_class
from trainables import metrics as M


def test_confusion_matrix_and_per_class_report_match_scikit_learn(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))
    pred[pred == 3] = 2  # class 3 is never predicted: its precision is 0, not left out
    classes = ["cat", "dog", "fox", "owl"]
    report = M.per_class_report(y, pred, 4)
    csv_path, png_path = write_confusion(report["confusion"], classes, tmp_path, "test")
    cm = pd.read_csv(csv_path, index_col=0)
    assert list(cm.columns) == classes and cm.to_numpy().sum() == 200
    assert np.trace(cm.to_numpy()) == (y == pred).sum()
    assert Image.open(png_path).size[0] > 100
    per_class = pd.read_csv(write_per_class(report, classes, tmp_path), index_col=0)
    assert per_class.loc["owl", "precision"] == 0
    assert per_class.loc["macro avg", "f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-4)
    assert per_class.loc["weighted avg", "f1"] == pytest.approx(f1_score(y, pred, average="weighted"), abs=1e-4)
    assert per_class.loc["macro avg", "support"] == 200
    assert (tmp_path / CONFUSION_CSV).exists()


def test_learning_curves_draw_whatever_epochs_exist(tmp_path):
    history = {M.TRAIN_LOSS: [(1, 2.0), (2, 1.0)], M.VAL_LOSS: [(1, 2.2), (2, 1.4)], M.LR: [(1, 1e-3), (2, 0.0)]}
    png = write_learning_curves(history, tmp_path, "resnet18-full-light-lr1e-3")
    assert Image.open(png).size == (1600, 340)
