"""Image folders as users have them: symbolic links (loops, links into another class, links out of the
folder), datasets already split into train/val/test folders, and files that are not images or not meant
as data (GIFs, macOS and Windows metadata, other file types). Every file is used or named with why not."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_image_folder
from trainables.data import (
    IMAGE_EXTENSIONS,
    LAYOUT_CLASS_FOLDERS,
    LAYOUT_GIVEN,
    DatasetSplits,
    load_image_folder,
    split_fingerprint,
)


def used(s: DatasetSplits) -> list[str]:
    return [*s.train.images, *s.val.images, *s.test.images]


def per_class(s: DatasetSplits) -> dict[str, int]:
    labels = np.concatenate([s.train.labels, s.val.labels, s.test.labels])
    return {s.classes[c]: int(n) for c, n in enumerate(np.bincount(labels, minlength=s.num_classes))}


def why(s: DatasetSplits, path: Path) -> str:
    reasons = dict(s.ignored)
    assert str(path) in reasons, f"{path} is neither used nor listed as ignored: {s.ignored}"
    return reasons[str(path)]


def test_a_link_back_into_the_folder_is_named_and_each_class_counted_once(tmp_path):
    """A loop (``loop -> .``) and a link into a sibling class: neither followed, both named with where
    they point; every class has exactly its own files, in train, val and test."""
    root = write_image_folder(tmp_path / "pets", {"cat": 12, "dog": 12, "owl": 12})
    (root / "cat" / "loop").symlink_to(".")
    (root / "dog" / "cats").symlink_to("../cat")
    (root / "owl" / "best.png").symlink_to(root / "owl" / "owl_000.png")  # one file, twice in one class
    s = load_image_folder(root)
    assert per_class(s) == {"cat": 12, "dog": 12, "owl": 12}
    assert len(used(s)) == len(set(used(s))) == 36
    loop = why(s, root / "cat" / "loop")
    assert loop.startswith(f"symbolic link not followed: it points to {root / 'cat'}") and "(a loop)" in loop
    assert why(s, root / "dog" / "cats").startswith(f"symbolic link not followed: it points to {root / 'cat'}")
    assert why(s, root / "owl" / "best.png").startswith("symbolic link not followed")
    assert s.summary()["ignored_files"] == 3 and s.ignored_by_kind() == {"symbolic link not followed": 3}


def test_a_link_out_of_the_folder_is_followed_and_each_file_used_once(tmp_path):
    """Links to a folder or a file outside the data folder are followed, as ImageFolder follows them; a
    file or folder reached twice is used once, and a loop outside is not followed round."""
    root = write_image_folder(tmp_path / "pets", {"cat": 12, "dog": 12})
    extra = write_image_folder(tmp_path / "elsewhere", {"more": 4}, seed=7) / "more"
    (root / "cat" / "more").symlink_to(extra)
    (root / "cat" / "again").symlink_to(extra)  # the same folder through a second link
    (root / "cat" / "one.png").symlink_to(extra / "more_000.png")  # and one of its files
    (extra / "up").symlink_to(extra.parent)  # a loop outside the data folder
    (extra / "home").symlink_to(root)  # and a link from there back into the data folder
    s = load_image_folder(root)
    assert per_class(s) == {"cat": 16, "dog": 12}
    assert len(set(map(os.path.realpath, used(s)))) == 28
    assert f"already scanned as {root / 'cat' / 'again'}" in why(s, root / "cat" / "more")
    twice = [w for p, w in s.ignored if w.startswith("reached twice through symbolic links")]
    assert len(twice) == 1
    assert "(a loop)" in why(s, root / "cat" / "again" / "up") and "(a loop)" in why(s, root / "cat" / "again" / "home")


def split_dataset(root: Path, names: dict[str, int], classes=("cat", "dog")) -> Path:
    for seed, (folder, n) in enumerate(names.items()):
        write_image_folder(root / folder, {c: n for c in classes}, seed=seed)
    return root


@pytest.mark.parametrize(
    "train, val, test",
    [
        ("train", "val", "test"),
        ("Training", "Validation", "Testing"),
        ("train", "valid", "test"),
        ("TRAIN", "dev", "test"),
    ],
)
def test_train_val_test_folders_are_used_as_given_not_taken_for_classes(tmp_path, train, val, test):
    root = split_dataset(tmp_path / "ds", {train: 10, val: 4, test: 5})
    s = load_image_folder(root, val_frac=0.3, test_frac=0.3, seed=1)
    assert s.classes == ["cat", "dog"]
    for part, folder, n in ((s.train, train, 10), (s.val, val, 4), (s.test, test, 5)):
        assert len(part) == 2 * n and {Path(p).parent.parent.name for p in part.images} == {folder}
        assert [s.classes[y] for y in part.labels] == [Path(p).parent.name for p in part.images]
    assert s.layout == LAYOUT_GIVEN and s.summary()["data_layout"] == LAYOUT_GIVEN
    assert "used as given (val_frac and test_frac do not apply)" in s.summary()["data_split"]
    assert split_fingerprint(s) == split_fingerprint(load_image_folder(root, seed=5))  # seeds do not move them


@pytest.mark.parametrize("given, carved", [(("train", "test"), "val"), (("train", "val"), "test")])
def test_a_missing_val_or_test_is_carved_from_train_and_said(tmp_path, given, carved):
    root = split_dataset(tmp_path / "ds", {given[0]: 20, given[1]: 5})
    s = load_image_folder(root, val_frac=0.2, test_frac=0.2, seed=0)
    kept = s.val if given[1] == "val" else s.test
    assert len(kept) == 10 and {Path(p).parent.parent.name for p in kept.images} == {given[1]}
    made = s.val if carved == "val" else s.test
    assert len(made) == 10  # 0.2 of all 50 images, out of train
    assert set(made.labels) == {0, 1} and {Path(p).parent.parent.name for p in made.images} == {"train"}
    assert len(s.train) == 30 and not set(s.train.images) & set(made.images)
    assert s.layout == f"{'/'.join(given)} folders as given, {carved} carved from train"
    assert f"{carved} carved from train/: {carved}_frac=0.2 of all images" in s.split_note


def test_a_train_folder_alone_is_split_by_the_sweep(tmp_path):
    root = split_dataset(tmp_path / "ds", {"train": 20})
    s = load_image_folder(root)
    assert s.classes == ["cat", "dog"] and len(used(s)) == 40 and s.layout == "train/ only, split by the sweep"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda r: write_image_folder(r / "cow", {"x": 4}), r"mixes split folders \(test/, train/, val/\) with other"),
        (lambda r: shutil.rmtree(r / "train"), r"split folders test/, val/ but no train folder"),
        (lambda r: write_image_folder(r / "val", {"cow": 4}), r"val/ has classes that train/ lacks: cow"),
        (lambda r: shutil.rmtree(r / "test" / "dog"), r"test/ has no readable images of dog"),
        (lambda r: shutil.copytree(r / "val", r / "dev"), r"dev/ and val/ are both val folders; keep one"),
    ],
)
def test_a_split_layout_that_cannot_be_right_is_refused_with_what_to_do(tmp_path, make, message):
    root = split_dataset(tmp_path / "ds", {"train": 10, "val": 4, "test": 4})
    make(root)
    with pytest.raises(ValueError, match=message):
        load_image_folder(root)


def test_identical_files_in_two_given_splits_are_counted(tmp_path):
    root = split_dataset(tmp_path / "ds", {"train": 10, "val": 4, "test": 4})
    original = root / "train" / "cat" / "cat_000.png"
    shutil.copy(original, root / "test" / "cat" / "leaked.png")
    s = load_image_folder(root)
    assert s.cross_split_copies == [(str(original), str(root / "test" / "cat" / "leaked.png"))]
    assert s.summary()["cross_split_copies"] == 1


def write_gif(path: Path, colours: list[tuple[int, int, int]]) -> None:
    frames = [Image.new("RGB", (24, 24), c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)


def test_gifs_are_used_first_frame_and_other_files_named_with_why(tmp_path):
    """18 GIFs among 126 files are all used; metadata from macOS and Windows, hidden folders and other
    file types are neither images nor classes, each listed; none is an unreadable image."""
    root = write_image_folder(tmp_path / "pets", {"cat": 36, "dog": 36, "owl": 36})
    for k in range(18):
        write_gif(root / ["cat", "dog", "owl"][k % 3] / f"anim_{k}.GIF", [(200, 10 * k, 0), (0, 0, 255)])
    extras = {
        root / "cat" / "._cat_000.png": "hidden or system file (macOS AppleDouble metadata)",
        root / "cat" / ".DS_Store": "hidden or system file (macOS Finder metadata)",
        root / "dog" / "Thumbs.db": "hidden or system file (Windows thumbnail cache)",
        root / "dog" / "desktop.ini": "hidden or system file (Windows folder settings)",
        root / "owl" / "notes.txt": "extension not supported (.txt)",
        root / "owl" / "IMG_1.HEIC": "extension not supported (.heic)",
        root / "labels.csv": "not in a class folder",
    }
    for path in extras:
        path.write_bytes(b"\x00\x05\x16\x07 not an image")
    (root / "__MACOSX" / "cat").mkdir(parents=True)
    (root / "__MACOSX" / "cat" / "._cat_000.png").write_bytes(b"\x00\x05\x16\x07")
    (root / ".ipynb_checkpoints").mkdir()
    s = load_image_folder(root)
    assert s.classes == ["cat", "dog", "owl"] and per_class(s) == {"cat": 42, "dog": 42, "owl": 42}
    assert sum(p.endswith(".GIF") for p in used(s)) == 18 and not s.skipped
    for path, reason in extras.items():
        assert why(s, path) == reason
    assert why(s, root / "__MACOSX").startswith("hidden or system folder (macOS archive metadata; 1 file(s)")
    assert why(s, root / ".ipynb_checkpoints").startswith("hidden or system folder (name starts with '.'")
    assert s.summary()["ignored_files"] == len(extras) + 2
    gif = next(i for i, p in enumerate(s.train.images) if p.endswith(".GIF"))
    red, _, blue = np.asarray(s.train.load(gif))[0, 0]
    assert red > 150 and blue < 60  # the first frame (red), not the second (blue)


def test_a_class_with_only_unsupported_files_names_them(tmp_path):
    root = write_image_folder(tmp_path / "pets", {"cat": 12, "dog": 12})
    (root / "phone").mkdir()
    (root / "phone" / "IMG_1.heic").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"no valid file for the classes phone") as e:
        load_image_folder(root)
    assert f"{root / 'phone' / 'IMG_1.heic'}: extension not supported (.heic)" in str(e.value)
    assert ".gif" in str(e.value) and ".gif" in IMAGE_EXTENSIONS


def test_class_folders_record_that_the_sweep_split_them(image_folder):
    s = load_image_folder(image_folder, val_frac=0.2, test_frac=0.2, seed=3)
    assert s.layout == LAYOUT_CLASS_FOLDERS and s.summary()["data_layout"] == LAYOUT_CLASS_FOLDERS
    assert s.split_note == "class folders split by the sweep: stratified, val_frac=0.2, test_frac=0.2, seed 3"
    assert s.ignored == [] and s.cross_split_copies == [] and Counter(per_class(s).values()) == {20: 3}
