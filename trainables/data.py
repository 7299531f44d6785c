"""Image data: the embedded digits default, a user's ImageFolder directory, and the one split of each.

Both sources end as the same ``DatasetSplits``: images (in memory or as file paths) and integer labels
for train/val/test, split once, stratified, with a fixed seed. The split is made by the driver before
any trial starts and shipped to every trial, so all trials of a sweep see exactly the same images.
A folder's files are decoded once, by the driver's check of every file; while they fit the budget
(``decode_cache_mb``) the decoded pixels travel with the split, so trials never decode a file again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from sklearn.model_selection import train_test_split

DIGITS = "digits"  # the name of the embedded default dataset
BACKGROUND = (255, 255, 255)  # what transparent pixels become: images are composited onto white
MAX_LISTED = 20  # bad files named in one error message; the rest are counted
SCAN_PROGRESS_EVERY = 5000  # images between progress lines while checking a folder
DECODE_CACHE_MB = 2048  # default budget for a folder's decoded pixels kept in memory (Ray's object store)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any image PIL opens, as the 8-bit RGB picture a person sees: EXIF orientation applied; 16-bit
    grey scaled to 8 bits (65535 -> 255, not clipped; 32-bit integer grey the same, or by its maximum
    when that is higher); floating-point grey in [0, 1] scaled by 255, otherwise by its maximum;
    transparency (an alpha channel or a transparent palette/colour entry) composited onto white; CMYK
    and palettes converted. A 12-bit image stored in 16 bits comes out dark: its range is not recorded."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = float(a.max(initial=0))
        if im.mode == "F":
            top = 1.0 if top <= 1.0 else top
        else:
            top = max(65535.0, top)
        im = Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if im.mode in ("P", "L", "RGB") and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im.convert("RGB")


def check_image(path: str) -> tuple[str | None, str]:
    """(what is wrong with this file or None, SHA-256 of its bytes). Decodes every pixel, so truncated
    files are caught here and not in the middle of a trial; images over PIL's decompression-bomb limit
    (``Image.MAX_IMAGE_PIXELS``) are refused before their pixels are read."""
    problem, digest, _ = _decode(path, keep=False)
    return problem, digest


def _decode(path: str, keep: bool) -> tuple[str | None, str, np.ndarray | None]:
    """``check_image``, plus the decoded RGB pixels (H, W, 3) of a good file; without ``keep``, a
    zero-copy stand-in of the same shape (what they would take, and nothing held)."""
    digest = ""
    try:
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as im:  # PIL itself refuses over twice the limit, here
            limit = Image.MAX_IMAGE_PIXELS
            pixels = im.width * im.height
            if limit and pixels > limit:
                size = f"{im.width}x{im.height} = {pixels} pixels, limit {limit}"
                return f"too large to decode safely ({size})", digest, None
            im.load()
            rgb = to_rgb(im)
            return None, digest, np.asarray(rgb) if keep else np.broadcast_to(np.uint8(0), (rgb.height, rgb.width, 3))
    except Image.DecompressionBombError as e:
        return f"too large to decode safely ({e})", digest, None
    except UnidentifiedImageError:
        return "not an image PIL can read", digest, None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # PIL reports truncation and bad data as these
        if isinstance(e, OSError) and e.filename is not None:  # the file itself: unreadable, a broken link
            return f"cannot be read ({e.strerror or e})", digest, None
        return f"truncated or corrupted ({e})", digest, None


@dataclass(frozen=True)
class ScanResult:
    """What checking every file of an image folder found."""

    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    groups: dict[str, list[int]] = field(default_factory=dict)  # content hash -> indices of identical files
    decoded: list[np.ndarray | None] | None = None  # each good file's RGB pixels; None: over the budget
    decoded_bytes: int = 0  # what all good files take decoded (counted even when over the budget)


@dataclass(frozen=True)
class PackedImages:
    """Decoded RGB images of any sizes in one uint8 buffer: a single array for Ray's object store, which
    every trial on a node then reads in place (as do loader workers forked from it), not one per image."""

    pixels: np.ndarray  # uint8: every image's bytes, one after another
    offsets: np.ndarray  # int64 (N + 1,): where each image starts
    shapes: np.ndarray  # int64 (N, 2): height, width

    @classmethod
    def pack(cls, arrays: list[np.ndarray]) -> PackedImages:
        sizes = np.asarray([a.size for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        pixels = np.empty(int(offsets[-1]), dtype=np.uint8)
        for a, start in zip(arrays, offsets[:-1], strict=True):
            pixels[start : start + a.size] = a.reshape(-1)
        shapes = np.asarray([a.shape[:2] for a in arrays], dtype=np.int64).reshape(-1, 2)
        return cls(pixels=pixels, offsets=offsets, shapes=shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> np.ndarray:
        h, w = self.shapes[i]
        return self.pixels[self.offsets[i] : self.offsets[i + 1]].reshape(h, w, 3)

    def take(self, idx: np.ndarray) -> PackedImages:
        return PackedImages.pack([self[i] for i in idx])


class BadImagesError(ValueError):
    pass


@dataclass(frozen=True)
class ImageSamples:
    """One split: ``images`` is a uint8 array (N, H, W, 3) held in memory, or a list of file paths, with
    ``decoded`` their pixels when the folder was decoded into memory."""

    images: np.ndarray | list[str]
    labels: np.ndarray  # int64, (N,)
    decoded: PackedImages | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> Image.Image:
        if self.decoded is not None:
            return Image.fromarray(self.decoded[i])  # decoded by the driver's check: RGB already
        item = self.images[i]
        if isinstance(item, np.ndarray):
            return Image.fromarray(item)  # (H, W, 3) uint8: RGB
        with Image.open(item) as im:
            return to_rgb(im)


@dataclass(frozen=True)
class DatasetSplits:
    name: str  # "digits" or the directory name
    source: str  # where the images came from, recorded in the sweep's run
    classes: list[str]
    train: ImageSamples
    val: ImageSamples
    test: ImageSamples
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, problem) left out: --skip-bad-images
    duplicates: int = 0  # files identical to another of the same class, kept in that one's split
    decode_note: str = ""  # where the trials get their pixels: from memory, or from the files and why

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
            "skipped_images": len(self.skipped),
            "duplicate_images": self.duplicates,
            "images_in_memory": isinstance(self.train.images, np.ndarray) or self.train.decoded is not None,
            "data_decoding": self.decode_note,
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


def _take(images: np.ndarray | list[str], labels: np.ndarray, idx: np.ndarray, decoded=None) -> ImageSamples:
    """The samples at ``idx``; ``decoded``: the pixels of ``images`` (a list of arrays, or packed), if held."""
    picked = images[idx] if isinstance(images, np.ndarray) else [images[i] for i in idx]
    if isinstance(decoded, PackedImages):
        decoded = decoded.take(idx)
    elif decoded is not None:
        decoded = PackedImages.pack([decoded[i] for i in idx])
    return ImageSamples(images=picked, labels=labels[idx], decoded=decoded)


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
        decode_note="the bundled digits are held in memory",
    )


def scan_images(
    paths: list[str], labels: np.ndarray, classes: list[str], where: str, progress=None, keep_mb: float = 0
) -> ScanResult:
    """Open every file once: the unreadable ones, and which files are byte-identical copies of each
    other. A copy filed under two classes cannot be right, and is an error on its own. Decoding runs on
    every core (PIL releases the GIL); ``progress`` hears how far it got on large folders. The decoded
    pixels are kept while they add up to at most ``keep_mb`` megabytes, and all dropped past it."""
    bad, by_hash = [], defaultdict(list)
    kept: list[np.ndarray | None] | None = [None] * len(paths) if keep_mb > 0 else None
    total = 0

    def decode(path: str):  # reads `kept` as it runs: once over the budget, no more pixels are held
        return _decode(path, kept is not None)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for i, (problem, digest, rgb) in enumerate(pool.map(decode, paths)):
            if problem:
                bad.append((paths[i], problem))
            else:
                by_hash[digest].append(i)
                total += rgb.size
                if kept is not None and total > keep_mb * 2**20:
                    kept = None  # over the budget: the trials will decode the files themselves
                if kept is not None:
                    kept[i] = rgb
            if progress and (i + 1) % SCAN_PROGRESS_EVERY == 0:
                progress(f"{where}: checked {i + 1} of {len(paths)} images")
    clashes = [ix for ix in by_hash.values() if len({int(labels[i]) for i in ix}) > 1]
    if clashes:
        listed = "; ".join(" = ".join(f"{paths[i]} ({classes[labels[i]]})" for i in ix) for ix in clashes[:MAX_LISTED])
        raise ValueError(
            f"{where}: {len(clashes)} image(s) are filed under more than one class (identical bytes): {listed}. "
            "Keep each image in one class folder."
        )
    return ScanResult(bad=bad, groups=dict(by_hash), decoded=kept, decoded_bytes=total)


def _bad_images_message(bad: list[tuple[str, str]], where: str) -> str:
    listed = "\n  ".join(f"{p}: {why}" for p, why in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return (
        f"{where}: {len(bad)} file(s) cannot be used as images:\n  {listed}{more}\n"
        "Fix or remove them, or pass --skip-bad-images to leave them out (the sweep's run lists them)."
    )


def grouped_split(
    labels: np.ndarray, groups: list[list[int]], val_frac: float, test_frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stratified split of groups of identical images: every copy lands in the same split as the
    others, so no image is both trained and tested on."""
    firsts = np.asarray([g[0] for g in groups])
    tr, va, te = stratified_split(labels[firsts], val_frac, test_frac, seed)
    expand = lambda picked: np.sort(np.concatenate([np.asarray(groups[j]) for j in picked]))  # noqa: E731
    return expand(tr), expand(va), expand(te)


def load_image_folder(
    root: str | Path,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    seed: int = 0,
    skip_bad: bool = False,
    progress=None,
    decode_cache_mb: float = DECODE_CACHE_MB,
) -> DatasetSplits:
    """A user's directory in torchvision's ImageFolder layout: ``root/<class name>/<image file>``.

    torchvision scans the tree (class names sorted, the usual image extensions); every file is then
    opened and decoded once. Unreadable files stop the sweep with their names, or with ``skip_bad`` are
    left out and listed in ``DatasetSplits.skipped``. Identical files go to the same split. When all the
    decoded pixels take at most ``decode_cache_mb`` megabytes they are kept with the split (0: never),
    so trials read pixels instead of decoding files every epoch; ``decode_note`` says which it is.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root).expanduser().resolve()
    where = f"--data {root}"
    if not root.is_dir():
        raise FileNotFoundError(f"{where}: no such directory (expected root/<class>/<image>).")
    try:
        folder = ImageFolder(str(root))
    except FileNotFoundError as e:  # torchvision: no class folders, or a class folder with no images
        raise FileNotFoundError(f"{where}: {e}") from None
    paths = [p for p, _ in folder.samples]
    labels = np.asarray([y for _, y in folder.samples], dtype=np.int64)
    scan = scan_images(paths, labels, folder.classes, where, progress, keep_mb=decode_cache_mb)
    if scan.bad and not skip_bad:
        raise BadImagesError(_bad_images_message(scan.bad, where))
    groups = list(scan.groups.values())  # unreadable files are in no group, so in no split
    distinct = np.asarray([g[0] for g in groups], dtype=np.int64)
    left_out = f" (distinct readable images; {len(scan.bad)} unreadable left out)" if scan.bad else ""
    _check_split_sizes(labels[distinct], folder.classes, val_frac, test_frac, where + left_out)
    tr, va, te = grouped_split(labels, groups, val_frac, test_frac, seed)
    mb = scan.decoded_bytes / 2**20
    if scan.decoded is not None:
        note = f"{mb:.1f} MB of decoded pixels held in memory: trials do not decode the files again"
    elif decode_cache_mb <= 0:
        note = "decode_cache_mb is 0: every trial decodes the files each epoch"
    else:
        note = (
            f"decoded, the images take {mb:.1f} MB, over decode_cache_mb={decode_cache_mb:g}: every trial decodes "
            "the files each epoch (raise decode_cache_mb if the nodes have the memory)"
        )
    return DatasetSplits(
        name=root.name,
        source=str(root),
        classes=list(folder.classes),
        train=_take(paths, labels, tr, scan.decoded),
        val=_take(paths, labels, va, scan.decoded),
        test=_take(paths, labels, te, scan.decoded),
        skipped=scan.bad,
        duplicates=sum(len(g) - 1 for g in groups),
        decode_note=note,
    )


def load_splits(
    data: str | None,
    val_frac: float,
    test_frac: float,
    seed: int,
    skip_bad: bool = False,
    progress=None,
    decode_cache_mb: float = DECODE_CACHE_MB,
) -> DatasetSplits:
    """``None`` or ``"digits"``: the embedded default; anything else: an ImageFolder directory."""
    if data in (None, DIGITS):
        return load_digits(val_frac, test_frac, seed)
    return load_image_folder(
        data, val_frac, test_frac, seed, skip_bad=skip_bad, progress=progress, decode_cache_mb=decode_cache_mb
    )


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
    train = _take(splits.train.images, splits.train.labels, np.sort(keep), splits.train.decoded)
    return dataclasses.replace(splits, train=train)
