"""The generated detection dataset: the same for the same settings, leakage-free, labels that fit."""

from __future__ import annotations

import hashlib
import multiprocessing

import numpy as np
from PIL import Image

from trainables.shapes import CLASSES, SPLITS, ShapesSpec, generate

SPEC = ShapesSpec(train=24, val=8, test=8, seed=3)


def _digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.*"))}


def test_same_settings_same_files_and_labels_inside_the_image(tmp_path):
    a = generate(tmp_path / "a", SPEC, progress=lambda _: None).parent
    b = generate(tmp_path / "b", SPEC, progress=lambda _: None).parent
    assert {k: v for k, v in _digest(a).items() if k != "data.yaml"} == {
        k: v for k, v in _digest(b).items() if k != "data.yaml"
    }
    seen = set()
    for split in SPLITS:
        images = sorted((a / "images" / split).glob("*.png"))
        assert len(images) == getattr(SPEC, split)
        for img in images:
            assert Image.open(img).size == (SPEC.size, SPEC.size)
            rows = np.loadtxt(a / "labels" / split / f"{img.stem}.txt", ndmin=2)
            assert len(rows) >= 1
            cls, cx, cy, w, h = rows.T
            assert set(cls.astype(int)) <= set(range(len(CLASSES)))
            assert (cx - w / 2 >= 0).all() and (cx + w / 2 <= 1).all() and (cy - h / 2 >= 0).all()
            assert (cy + h / 2 <= 1).all()
            seen |= set(cls.astype(int))
    assert seen == set(range(len(CLASSES)))
    assert "names:" in (a / "data.yaml").read_text() and f"path: {a}" in (a / "data.yaml").read_text()


def test_no_image_is_in_two_splits(tmp_path):
    root = generate(tmp_path, SPEC, progress=lambda _: None).parent
    by_split = {
        s: {hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "images" / s).glob("*.png")} for s in SPLITS
    }
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"] and not by_split["val"] & by_split["test"]


def _make(root: str) -> str:
    return str(generate(root, SPEC, progress=lambda _: None))


def test_trials_generating_together_get_one_complete_dataset(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paths = pool.map(_make, [str(tmp_path)] * 4)
    assert len(set(paths)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [f"shapes-{SPEC.key()}"]  # no leftover temporary copies
    root = tmp_path / f"shapes-{SPEC.key()}"
    assert len(list((root / "images" / "train").glob("*.png"))) == SPEC.train
