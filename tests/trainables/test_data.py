import numpy as np
import pytest
import torch

from trainables.augment import eval_transform
from trainables.data import (
    DatasetSplits,
    ImageSamplesDataset,
    limit_train,
    load_digits,
    load_image_folder,
    load_splits,
)
from trainables.models import build_model, data_config


def _all_labels(s: DatasetSplits) -> np.ndarray:
    return np.concatenate([s.train.labels, s.val.labels, s.test.labels])


def test_digits_split_is_stratified_disjoint_and_fixed_by_seed():
    s = load_digits(val_frac=0.15, test_frac=0.15, seed=0)
    assert s.num_classes == 10 and len(s.train) + len(s.val) + len(s.test) == 1797
    assert s.train.images.shape[1:] == (8, 8, 3) and s.train.images.dtype == np.uint8
    # every class is in every split, in about the proportion of the whole
    for part in (s.train, s.val, s.test):
        share = np.bincount(part.labels, minlength=10) / len(part)
        assert share.min() > 0.08 and share.max() < 0.12
    # same seed, same split; another seed, another split
    again, other = load_digits(seed=0), load_digits(seed=1)
    assert np.array_equal(again.test.labels, s.test.labels) and np.array_equal(again.test.images, s.test.images)
    assert not np.array_equal(other.test.images, s.test.images)


def test_digits_splits_partition_the_dataset():
    """Each of the 1,797 samples lands in exactly one split: no sample is lost or shared."""
    from sklearn.datasets import load_digits as sk

    s = load_digits()
    raw = np.rint(sk().images * (255 / 16)).astype(np.uint8)
    original = sorted(img.tobytes() for img in raw)
    split = sorted(img[..., 0].tobytes() for part in (s.train, s.val, s.test) for img in part.images)
    assert split == original


def test_image_folder_loads_png_and_jpeg_through_the_same_path(image_folder):
    s = load_splits(str(image_folder), val_frac=0.2, test_frac=0.2, seed=0)
    assert s.classes == ["left", "middle", "right"] and s.source == str(image_folder)
    assert len(s.train) + len(s.val) + len(s.test) == 60
    exts = {p.rsplit(".", 1)[1] for p in s.train.images}
    assert exts == {"png", "jpg"}
    model = build_model("resnet18", s.num_classes, 32)
    ds = ImageSamplesDataset(s.test, eval_transform(data_config(model, 32)))
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= y < 3
    for part in (s.train, s.val, s.test):
        assert set(part.labels) == {0, 1, 2}


def test_image_folder_errors_name_the_path_and_the_problem(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "one.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"one.png: a file, not a folder \(expected a folder of root/<class>"):
        load_image_folder(tmp_path / "one.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_image_folder(tmp_path / "empty")
    # a class with too few images to appear in train, val and test
    for f in sorted((image_folder / "right").iterdir())[3:]:
        f.unlink()
    with pytest.raises(ValueError, match=r"'right' \(3\)"):
        load_image_folder(image_folder, val_frac=0.2, test_frac=0.2)


def test_limit_train_keeps_classes_and_leaves_val_test_alone():
    s = load_digits()
    small = limit_train(s, 100, seed=0)
    assert len(small.train) == 100 and set(small.train.labels) == set(range(10))
    assert small.val is s.val and small.test is s.test
