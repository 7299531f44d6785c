"""The evidence files of a trial say exactly what scikit-learn says of the same predictions."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib import font_manager, ft2font
from PIL import Image
from sklearn.metrics import f1_score

from trainables import metrics as M
from trainables.evidence import (
    CLASS_NAMES_CSV,
    CONFUSION_CSV,
    class_labels,
    write_confusion,
    write_learning_curves,
    write_per_class,
)

CAT, DOG = "\u732b", "\u72d7"  # 'cat' and 'dog' in Chinese


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


def drawn(write, *args):
    """Run a figure writer; what it returns, and the warnings it raised (matplotlib's 'Glyph ... missing
    from font(s)' for each character drawn as a box among them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = write(*args)
    return out, [str(w.message) for w in caught]


def test_class_names_in_any_script_an_installed_font_has_are_drawn_with_it(tmp_path):
    # DejaVu Sans (matplotlib's default) has Cyrillic, Greek and Arabic; not the script capital C of the
    # first name, which the STIX fonts shipped with matplotlib (and maybe others installed) have.
    classes = ["\U0001d49eat", "\u043a\u043e\u0448\u043a\u0430", "\u03b3\u03ac\u03c4\u03b1", "\u0642\u0637\u0629"]
    files, said = drawn(write_confusion, np.eye(4, dtype=int), classes, tmp_path, "test")
    assert not [m for m in said if "missing from font" in m], said
    assert [f.name for f in files] == [CONFUSION_CSV, "confusion_matrix.png"]  # every name drawn as it is
    labels = class_labels(classes)
    assert len(labels.families) > 1  # the default font, then one with the C
    assert labels.labels[:3] == classes[:3]
    # right to left: kept whole in 'pred <name> 0.93', where matplotlib lays out bidirectional text
    isolated = hasattr(ft2font, "__libraqm_version__")
    assert labels.labels[3] == (f"\u2068{classes[3]}\u2069" if isolated else classes[3])


@pytest.fixture
def no_cjk_font(monkeypatch):
    """This machine as if no installed font had Chinese characters, whatever it has."""
    from trainables.evidence import _charmap

    fonts = [e for e in font_manager.fontManager.ttflist if ord(CAT) not in _charmap(e.fname, getattr(e, "index", 0))]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", fonts)


def test_a_class_name_no_installed_font_has_is_shown_by_index_and_said(tmp_path, no_cjk_font):
    classes = [CAT, "owl", DOG]
    files, said = drawn(write_confusion, np.eye(3, dtype=int), classes, tmp_path, "test")
    assert not [m for m in said if "missing from font" in m], said  # no boxes drawn
    warned = r"no installed font has the characters .* of 2 class name\(s\) \(0: .*, 2: .*'class <index>'"
    assert [m for m in said if re.search(warned, m)], said
    with pytest.warns(UserWarning, match="no installed font"):
        assert class_labels(classes).labels == ["class 0", "owl", "class 2"]
    assert files[-1].name == CLASS_NAMES_CSV
    names = pd.read_csv(files[-1], index_col="index")["name"]
    assert names.to_dict() == {0: CAT, 1: "owl", 2: DOG}
