"""The evidence behind one trial's numbers, as files a reviewer opens from its MLflow run: the test
confusion matrix (PNG and CSV), the per-class precision/recall/F1 report (CSV), every test image's
true and predicted class (CSV), the learning curves (PNG) and, from ``trainables.gradcam``, Grad-CAM
heatmaps on the sweep's sample images (PNG and NPZ). Pure functions from numbers to files;
what gets uploaded where is ``sweeps.trial_runs``' job.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window: the driver may run on a headless head node
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager, ft2font  # noqa: E402

from trainables import metrics as M  # noqa: E402

CONFUSION_CSV, CONFUSION_PNG = "confusion_matrix.csv", "confusion_matrix.png"
CLASS_NAMES_CSV = "class_names.csv"  # index -> name, written where a figure shows classes by index
PER_CLASS_CSV = "per_class_report.csv"
PREDICTIONS_CSV = "test_predictions.csv"
CURVES_PNG = "learning_curves.png"
GRADCAM_PNG, GRADCAM_NPZ = "gradcam.png", "gradcam.npz"  # drawn by trainables.gradcam
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
    """The matrix as CSV and PNG (and CLASS_NAMES_CSV where the PNG shows some classes by index)."""
    cm = confusion_frame(confusion, classes)
    csv, png = out / CONFUSION_CSV, out / CONFUSION_PNG
    cm.to_csv(csv)
    k = len(classes)
    side = min(2.5 + 0.45 * k, 20)  # inches: readable labels up to ~40 classes
    names = class_labels(classes, title)
    fig, ax = plt.subplots(figsize=(side, side))
    values = cm.to_numpy()
    ax.imshow(values, cmap="Blues")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true")
    ax.set_title(plain(title) + names.note, wrap=True, fontfamily=names.families)
    ax.set_xticklabels(names.labels, rotation=90, fontfamily=names.families)
    ax.set_yticklabels(names.labels, fontfamily=names.families)
    if k <= 30:  # counts in the cells; beyond that they no longer fit
        threshold = values.max() / 2 if values.size else 0
        for i in range(k):
            for j in range(k):
                color = "white" if values[i, j] > threshold else "black"
                ax.text(j, i, values[i, j], ha="center", va="center", color=color)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return [csv, png, *names.write(out)]


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
    fig.suptitle(plain(title), fontfamily=class_labels((), title).families)  # the trial's name, in any script
    fig.tight_layout()
    path = out / CURVES_PNG
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- class names in any script -------------------------------------------------------------------------
# matplotlib draws with one family (DejaVu Sans: Latin, Greek, Cyrillic, Arabic, Hebrew...) and, for a
# character it lacks, a box. Given a list of families it falls back glyph by glyph (matplotlib >= 3.6), so
# the texts that show names get the default plus the installed fonts that have their other characters (per
# text, not through rcParams: evidence is drawn in the tracking thread). A name no installed font can draw
# is shown by its index instead, and said so, in the figure and as a warning.

# Fonts in matplotlib's list that are not text: the box-drawing Last Resort font, and the math fonts
# whose code points stand for other symbols (the BaKoMa cm* fonts, STIX's size variants).
NOT_TEXT_FONT = re.compile(r"Last Resort|STIXNonUnicode|STIXSize|cm[a-z]+\d+$")


@dataclass(frozen=True)
class ClassLabels:
    names: list[str]
    """The class names, by index."""
    labels: list[str]
    """Each class as a figure shows it: its name, or 'class <index>' where no installed font has it."""
    families: list[str]
    """The ``fontfamily`` of a text that shows them: the default, then the fonts with the other characters."""
    by_index: list[int]
    """The classes shown by index."""

    @property
    def note(self) -> str:
        """A line for the figure's title (drawn with ``wrap=True``) when it shows classes by index; '' otherwise."""
        if not self.by_index:
            return ""
        return f"\n'class <i>': no installed font has the characters of that class's name (names: {CLASS_NAMES_CSV})"

    def write(self, out: Path) -> list[Path]:
        """CLASS_NAMES_CSV (index, name) when a figure shows classes by index; nothing otherwise."""
        if not self.by_index:
            return []
        path = out / CLASS_NAMES_CSV
        pd.DataFrame({"name": self.names}).to_csv(path, index_label="index")
        return [path]


def class_labels(classes: Sequence[str], *texts: str) -> ClassLabels:
    """How to draw these class names (and other ``texts`` of the figure) with the fonts installed."""
    default = font_manager.findfont(font_manager.FontProperties())
    have = _charmap(default, 0)
    missing = {ch for t in [*classes, *texts] for ch in t if ord(ch) not in have and ch.isprintable()}
    fonts = sorted(  # regular upright sans-serif fonts first
        (e for e in font_manager.fontManager.ttflist if not NOT_TEXT_FONT.match(e.name)),
        key=lambda e: (e.style != "normal", abs(_weight(e.weight) - 400), "Serif" in e.name or "Mono" in e.name),
    )
    found = {ch: _font_with(ch, fonts) for ch in sorted(missing)}
    base = list(matplotlib.rcParams["font.family"])
    families = base + [f for f in dict.fromkeys(found.values()) if f is not None and f not in base]
    lacking = "".join(ch for ch, f in found.items() if f is None)
    by_index = [i for i, c in enumerate(classes) if set(lacking) & set(c)]
    labels = [f"class {i}" if i in by_index else _isolated(plain(c)) for i, c in enumerate(classes)]
    if by_index:
        shown = ", ".join(f"{i}: {classes[i]!r}" for i in by_index[:5]) + (", ..." if len(by_index) > 5 else "")
        warnings.warn(
            f"no installed font has the characters {lacking!r} of {len(by_index)} class name(s) ({shown}): the "
            f"figures show them as 'class <index>', with the names in {CLASS_NAMES_CSV}. Install a font that has "
            f"them (e.g. the Noto fonts), then remove matplotlib's font list ({matplotlib.get_cachedir()}/fontlist-"
            "*.json) so that it is found",
            stacklevel=3,  # the caller of the figure's writer
        )
    return ClassLabels(list(classes), labels, families, by_index)


def _isolated(name: str) -> str:
    """A right-to-left name (Arabic, Hebrew) kept whole inside a left-to-right line ('pred <name> 0.93' would
    otherwise show the number before the name): Unicode's first-strong isolate, which matplotlib's text
    layout (libraqm, matplotlib >= 3.11) honours; older matplotlib lays out text left to right anyway."""
    rtl = any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in name)
    return f"\u2068{name}\u2069" if rtl and hasattr(ft2font, "__libraqm_version__") else name


def _font_with(ch: str, fonts: list[font_manager.FontEntry]) -> str | None:
    """The family of the first of ``fonts`` that has a glyph for ``ch``."""
    return next((e.name for e in fonts if ord(ch) in _charmap(e.fname, getattr(e, "index", 0))), None)


def _weight(w: int | str) -> int:
    return w if isinstance(w, int) else font_manager.weight_dict.get(w, 400)


@functools.cache
def _charmap(path: str, index: int) -> frozenset[int]:
    """The code points a font file has glyphs for (read once per process)."""
    try:
        font = ft2font.FT2Font(path, face_index=index) if index else ft2font.FT2Font(path)
        return frozenset(font.get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file matplotlib listed but cannot open now
        return frozenset()


def plain(text: str) -> str:
    """``text`` as matplotlib should print it: a class named '$5' is not a formula."""
    return text.replace("$", r"\$")
