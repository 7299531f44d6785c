"""Image data: the embedded digits default, a user's ImageFolder directory, and the one split of each.

Both sources end as the same ``DatasetSplits``: images (in memory or as file paths) and integer labels
for train/val/test, split once, stratified, with a fixed seed. The split is made by the driver before
any trial starts and shipped to every trial, so all trials of a sweep see exactly the same images.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

DIGITS = "digits"  # the name of the embedded default dataset


@dataclass(frozen=True)
class ImageSamples:
    """One split: ``images`` is a uint8 array (N, H, W, 3) held in memory, or a list of file paths."""

    images: np.ndarray | list[str]
    labels: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> Image.Image:
        item = self.images[i]
        if isinstance(item, np.ndarray):
            return Image.fromarray(item)  # (H, W, 3) uint8: RGB
        with Image.open(item) as im:
            return im.convert("RGB")


@dataclass(frozen=True)
class DatasetSplits:
    name: str  # "digits" or the directory name
    source: str  # where the images came from, recorded in the sweep's run
    classes: list[str]
    train: ImageSamples
    val: ImageSamples
    test: ImageSamples

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> dict[str, int | str]:
        return {
            "data_name": self.name,
            "data_source": self.source,
            "num_classes": self.num_classes,
            "train_size": len(self.train),
            "val_size": len(self.val),
            "test_size": len(self.test),
        }


class ImageSamplesDataset(torch.utils.data.Dataset):
    """Applies a transform to the images of one split; the transform decides train vs eval behaviour."""

    def __init__(self, samples: ImageSamples, transform) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.samples.load(i)), int(self.samples.labels[i])


def stratified_split(
    labels: np.ndarray, val_frac: float, test_frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train/val/test, each with the class proportions of the whole (scikit-learn)."""
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_frac, stratify=labels, random_state=seed)
    val_of_rest = val_frac / (1.0 - test_frac)
    train, val = train_test_split(rest, test_size=val_of_rest, stratify=labels[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def _take(images: np.ndarray | list[str], labels: np.ndarray, idx: np.ndarray) -> ImageSamples:
    picked = images[idx] if isinstance(images, np.ndarray) else [images[i] for i in idx]
    return ImageSamples(images=picked, labels=labels[idx])


def _check_split_sizes(labels: np.ndarray, classes: list[str], val_frac: float, test_frac: float, where: str):
    if len(classes) < 2:
        raise ValueError(f"{where}: found {len(classes)} class(es) {classes}; classification needs at least 2.")
    counts = np.bincount(labels, minlength=len(classes))
    # Each class must be able to appear at least once in val and in test, and twice in train.
    need = max(4, int(np.ceil(1.0 / min(val_frac, test_frac))))
    small = [f"{classes[c]!r} ({n})" for c, n in enumerate(counts) if n < need]
    if small:
        raise ValueError(
            f"{where}: every class needs at least {need} images so that it appears in train, val and test "
            f"(val_frac={val_frac}, test_frac={test_frac}); too few in: {', '.join(small)}."
        )


def load_digits(val_frac: float = 0.15, test_frac: float = 0.15, seed: int = 0) -> DatasetSplits:
    """scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, 10 classes, no download.

    The 0..16 ink levels become 0..255 and the grey channel is repeated to RGB, so the models and
    transforms see ordinary RGB images; the transforms resize them to each model's input size.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    grey = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    images = np.repeat(grey[..., None], 3, axis=-1)  # (1797, 8, 8, 3)
    labels = bunch.target.astype(np.int64)
    classes = [str(c) for c in bunch.target_names]
    _check_split_sizes(labels, classes, val_frac, test_frac, "digits")
    tr, va, te = stratified_split(labels, val_frac, test_frac, seed)
    return DatasetSplits(
        name=DIGITS,
        source="sklearn.datasets.load_digits",
        classes=classes,
        train=_take(images, labels, tr),
        val=_take(images, labels, va),
        test=_take(images, labels, te),
    )


def load_image_folder(root: str | Path, val_frac: float = 0.15, test_frac: float = 0.15, seed: int = 0):
    """A user's directory in torchvision's ImageFolder layout: ``root/<class name>/<image file>``.

    torchvision scans the tree (class names sorted, the usual image extensions); the split is ours.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root}: no such directory (expected root/<class>/<image>).")
    try:
        folder = ImageFolder(str(root))
    except FileNotFoundError as e:  # torchvision: no class folders, or a class folder with no images
        raise FileNotFoundError(f"--data {root}: {e}") from None
    paths = [p for p, _ in folder.samples]
    labels = np.asarray([y for _, y in folder.samples], dtype=np.int64)
    _check_split_sizes(labels, folder.classes, val_frac, test_frac, f"--data {root}")
    tr, va, te = stratified_split(labels, val_frac, test_frac, seed)
    return DatasetSplits(
        name=root.name,
        source=str(root),
        classes=list(folder.classes),
        train=_take(paths, labels, tr),
        val=_take(paths, labels, va),
        test=_take(paths, labels, te),
    )


def load_splits(data: str | None, val_frac: float, test_frac: float, seed: int) -> DatasetSplits:
    """``None`` or ``"digits"``: the embedded default; anything else: an ImageFolder directory."""
    if data in (None, DIGITS):
        return load_digits(val_frac, test_frac, seed)
    return load_image_folder(data, val_frac, test_frac, seed)


def split_fingerprint(splits: DatasetSplits) -> str:
    """A short hash of which sample went to which split, logged so two sweeps can be shown to share one."""
    h = hashlib.sha256()
    for part in (splits.train, splits.val, splits.test):
        src = part.images if isinstance(part.images, list) else [part.images.tobytes()]
        for item in src:
            h.update(item if isinstance(item, bytes) else item.encode())
        h.update(part.labels.tobytes())
    return h.hexdigest()[:12]


def limit_train(splits: DatasetSplits, n: int, seed: int) -> DatasetSplits:
    """Keep a stratified ``n`` of the training images (val and test untouched): for smoke tests."""
    if n >= len(splits.train):
        return splits
    idx = np.arange(len(splits.train))
    keep, _ = train_test_split(idx, train_size=n, stratify=splits.train.labels, random_state=seed)
    train = _take(splits.train.images, splits.train.labels, np.sort(keep))
    return dataclasses.replace(splits, train=train)
