"""Image data: the embedded digits default, a user's image folder, and the one split of each.

Both sources end as the same ``DatasetSplits``: images (in memory or as file paths) and integer labels
for train/val/test, split once, stratified, with a fixed seed, or as the folder's train/val/test
folders give them. The split is made by the driver before any trial starts and shipped to every
trial, so all trials of a sweep see exactly the same images. Every entry of a folder that is not
used is listed with why (``DatasetSplits.ignored``).
Every file of a folder gets a header check on the driver, on all its cores. While the folder's decoded
pixels fit the budget (``decode_cache_mb``) every file is then decoded once, which is also the full check,
and the pixels travel with the split, so trials never decode a file again. Over the budget the trials
decode the files; one that fails there is named, counted and replaced (``ImageSamples.load``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from trainables import image_files
from trainables.contracts import DATA_SOURCE_PARAM
from trainables.image_files import BACKGROUND, check_image, to_rgb  # noqa: F401 - imported from here by analysis/

DIGITS = "digits"  # the name of the embedded default dataset
MAX_LISTED = 20  # bad files named in one error message; the rest are counted
SCAN_PROGRESS_EVERY = 5000  # images between progress lines while decoding a folder
HEADER_PROGRESS_EVERY = 10000  # the same while reading headers: 2-3x as fast per file as decoding
DECODE_CACHE_MB = 2048  # default budget for a folder's decoded pixels kept in memory (Ray's object store)
# The files a folder's images are read from: torchvision's IMG_EXTENSIONS (ImageFolder's list) and GIF,
# whose first frame is the image (as for animated WebP and multi-page TIFF). Matched case-insensitively.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
# Entries that operating systems, archivers and NAS boxes leave in folders: never an image, never a class.
SYSTEM_NAMES = {
    ".ds_store": "macOS Finder metadata",
    "__macosx": "macOS archive metadata",
    "thumbs.db": "Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
    "$recycle.bin": "Windows recycle bin",
    "system volume information": "Windows system folder",
    "@eadir": "Synology thumbnails",
    "lost+found": "file system recovery folder",
}
# A top level made of these folders (any case) is a dataset already split: root/<split>/<class>/<image>.
SPLITS = ("train", "val", "test")
SPLIT_FOLDER_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
LAYOUT_CLASS_FOLDERS = "class folders, split by the sweep"
LAYOUT_GIVEN = "train/val/test folders as given"


@dataclass(frozen=True)
class ScanResult:
    """What checking every file of an image folder found."""

    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    groups: dict[str, list[int]] = field(default_factory=dict)  # content hash -> indices of identical files
    decoded: list[np.ndarray | None] | None = None  # each good file's RGB pixels; None: headers checked only
    decoded_bytes: int = 0  # what all good files take decoded (from their headers when over the budget)


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


class UnreadableFiles:
    """The images of one split that failed to decode in a trial, their headers having passed the driver's
    check: a flag each. After ``share()`` the flags are in shared memory, so that a trial and its loader
    worker processes see the same ones: each file is named once a trial and counted once."""

    def __init__(self, n: int) -> None:
        self.flags = torch.zeros(n, dtype=torch.uint8)

    def __setstate__(self, state: dict) -> None:
        # A spawned loader worker gets the trial's shared flags; a trial gets its own copy from Ray's
        # object store (which may be a read-only view).
        flags = state["flags"]
        self.flags = flags if flags.is_shared() else flags.clone()

    def share(self) -> None:
        self.flags.share_memory_()

    def __contains__(self, i: int) -> bool:
        return bool(self.flags[i])

    def add(self, i: int) -> int:
        """Flag image ``i``; how many are flagged now."""
        self.flags[i] = 1
        return len(self)

    def __len__(self) -> int:
        return int(self.flags.sum())

    def indices(self) -> list[int]:
        return self.flags.nonzero().flatten().tolist()


@dataclass(frozen=True)
class ImageSamples:
    """One split: ``images`` is a uint8 array (N, H, W, 3) held in memory, or a list of file paths, with
    ``decoded`` their pixels when the folder was decoded into memory."""

    images: np.ndarray | list[str]
    labels: np.ndarray  # int64, (N,)
    decoded: PackedImages | None = None
    unreadable: UnreadableFiles | None = field(default=None, compare=False, repr=False)  # None: a new record

    def __post_init__(self) -> None:
        if self.unreadable is None:
            object.__setattr__(self, "unreadable", UnreadableFiles(len(self.labels)))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def reads_files(self) -> bool:
        """Its images are decoded from the files as they are loaded."""
        return self.decoded is None and isinstance(self.images, list)

    def load(self, i: int) -> Image.Image:
        """Image ``i`` as RGB. A file that fails to decode is replaced (``_stand_in``), never fatal; one that
        cannot be read at all raises: the folder changed or went away under the sweep, not one image."""
        if self.decoded is not None:
            return Image.fromarray(self.decoded[i])  # decoded by the driver's check: RGB already
        item = self.images[i]
        if isinstance(item, np.ndarray):
            return Image.fromarray(item)  # (H, W, 3) uint8: RGB
        if i not in self.unreadable:
            problem, picture = image_files.decode(item, raise_io=True)
            if problem is None:
                return picture
            return self._stand_in(i, {i: problem})
        return self._stand_in(i, {})

    def unreadable_files(self) -> list[str]:
        """The files found unreadable so far, by this process or its loader workers (in a trial: the trial's)."""
        return [self.images[j] for j in self.unreadable.indices()]

    def _stand_in(self, i: int, failed: dict[int, str]) -> Image.Image:
        """What is used for file ``i``, which does not decode: the next readable image of its class in this
        split (after ``i``, wrapping round), or a blank white one if there is none. Files found unreadable
        on the way (``failed``: index -> problem, ``i``'s included if new) are flagged, and each is named
        with the count on stderr, which Ray shows in the sweep's output for a trial."""
        same = np.flatnonzero(self.labels == self.labels[i])
        used, picture = "a blank white image: no image of its class in this split decodes", None
        for j in (*same[same > i], *same[same < i]):
            if j in self.unreadable:
                continue
            problem, picture = image_files.decode(self.images[j], raise_io=True)
            if problem is None:
                used = f"{self.images[j]}, the next readable image of its class in this split"
                break
            failed[int(j)] = problem
        for j, problem in failed.items():
            n = self.unreadable.add(j)
            said = f"{self.images[j]}: {problem}; replaced by {used} ({n} unreadable file(s) in this split so far)"
            print(f"warning: {said}", file=sys.stderr, flush=True)
        return picture or Image.new("RGB", (32, 32), BACKGROUND)


@dataclass(frozen=True)
class DatasetSplits:
    name: str  # "digits" or the directory name
    source: str  # where the images came from, recorded in the sweep's run
    classes: list[str]
    train: ImageSamples
    val: ImageSamples
    test: ImageSamples
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, problem) left out: --skip-bad-images
    duplicates: int = 0  # files identical to another of the same class, kept in its split when the sweep splits
    decode_note: str = ""  # where the trials get their pixels: from memory, or from the files and why
    layout: str = "split by the sweep"  # LAYOUT_CLASS_FOLDERS, or which split folders were used as given
    split_note: str = ""  # how train/val/test were made, in words: fractions and seed, or the folders used
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of every entry not used
    cross_split_copies: list[tuple[str, str]] = field(default_factory=list)  # identical files in two splits

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def ignored_by_kind(self) -> dict[str, int]:
        """How many entries were not used for each kind of reason (its words before the first '(' or ':')."""
        counts: dict[str, int] = defaultdict(int)
        for _, why in self.ignored:
            counts[why.split(" (")[0].split(":")[0]] += 1
        return dict(counts)

    def summary(self) -> dict[str, int | str]:
        return {
            "data_name": self.name,
            DATA_SOURCE_PARAM: self.source,  # read back by the report
            "num_classes": self.num_classes,
            "train_size": len(self.train),
            "val_size": len(self.val),
            "test_size": len(self.test),
            "skipped_images": len(self.skipped),
            "duplicate_images": self.duplicates,
            "images_in_memory": isinstance(self.train.images, np.ndarray) or self.train.decoded is not None,
            "data_decoding": self.decode_note,
            "data_layout": self.layout,
            "data_split": self.split_note,
            "ignored_files": len(self.ignored),
            "cross_split_copies": len(self.cross_split_copies),
        }


class ImageSamplesDataset(torch.utils.data.Dataset):
    """Applies a transform to the images of one split; the transform decides train vs eval behaviour."""

    def __init__(self, samples: ImageSamples, transform) -> None:
        self.samples = samples
        self.transform = transform
        if samples.reads_files:  # before the loader's workers start: they and the trial share the record
            samples.unreadable.share()

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
        split_note=f"split by the sweep: stratified, val_frac={val_frac}, test_frac={test_frac}, seed {seed}",
    )


def scan_images(
    paths: list[str], labels: np.ndarray, classes: list[str], where: str, progress=None, keep_mb: float = 0
) -> ScanResult:
    """Check every file on every core: the unreadable ones, and which files are byte-identical copies of
    each other. A copy filed under two classes cannot be right, and is an error on its own.

    Every file's header is read (``image_files.read_header``), which also gives what its pixels take
    decoded. When the good files add up to at most ``keep_mb`` megabytes decoded, each is then decoded
    once, the full check (truncated files are found), and the pixels are kept; over it (or at 0) the
    headers are the whole check. ``progress`` hears how far each pass got on large folders."""
    kept: list[np.ndarray | None] | None = None
    with image_files.workers(len(paths)) as pool:
        said = _progress(progress, HEADER_PROGRESS_EVERY, f"{where}: read the header of")
        heads = image_files.check_files(image_files.headers, paths, pool, said)
        problems = {i: problem for i, (problem, _, _) in enumerate(heads) if problem}
        good = [i for i in range(len(paths)) if i not in problems]
        total = sum(heads[i][2] for i in good)
        if keep_mb > 0 and total <= keep_mb * 2**20:
            kept, total = [None] * len(paths), 0
            said = _progress(progress, SCAN_PROGRESS_EVERY, f"{where}: checked")
            decoded = image_files.check_files(image_files.pixels, [paths[i] for i in good], pool, said)
            for i, (problem, rgb) in zip(good, decoded, strict=True):
                if problem:
                    problems[i] = problem
                else:
                    kept[i], total = rgb, total + rgb.size
    bad = [(paths[i], problems[i]) for i in sorted(problems)]
    by_hash = defaultdict(list)
    for i, (_, digest, _) in enumerate(heads):
        if i not in problems:
            by_hash[digest].append(i)
    clashes = [ix for ix in by_hash.values() if len({int(labels[i]) for i in ix}) > 1]
    if clashes:
        listed = "; ".join(" = ".join(f"{paths[i]} ({classes[labels[i]]})" for i in ix) for ix in clashes[:MAX_LISTED])
        raise ValueError(
            f"{where}: {len(clashes)} image(s) are filed under more than one class (identical bytes): {listed}. "
            "Keep each image in one class folder."
        )
    return ScanResult(bad=bad, groups=dict(by_hash), decoded=kept, decoded_bytes=total)


def _progress(progress, every: int, done: str):
    """``check_files``' ``done``: a line to ``progress`` each ``every`` files of one pass."""
    if progress is None:
        return None
    said = [0]

    def done_(n: int, total: int) -> None:
        for k in range(said[0] // every + 1, n // every + 1):
            progress(f"{done} {k * every} of {total} images")
        said[0] = n

    return done_


def _bad_images_message(bad: list[tuple[str, str]], where: str) -> str:
    listed = "\n  ".join(f"{p}: {why}" for p, why in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return (
        f"{where}: {len(bad)} file(s) cannot be used as images:\n  {listed}{more}\n"
        "Fix or remove them, or pass --skip-bad-images to leave them out (the sweep's run lists them)."
    )


def _expand(groups: list[list[int]], picked) -> np.ndarray:
    """The file indices of the groups at ``picked``."""
    return np.sort(np.concatenate([np.asarray(groups[j], dtype=np.int64) for j in picked]))


def grouped_split(
    labels: np.ndarray, groups: list[list[int]], val_frac: float, test_frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stratified split of groups of identical images: every copy lands in the same split as the
    others, so no image is both trained and tested on."""
    firsts = np.asarray([g[0] for g in groups])
    tr, va, te = stratified_split(labels[firsts], val_frac, test_frac, seed)
    return _expand(groups, tr), _expand(groups, va), _expand(groups, te)


def hidden_entry(name: str) -> str | None:
    """What a hidden or system entry is, or None for an ordinary name. AppleDouble files (``._photo.jpg``)
    are the macOS metadata that copying to a non-Mac disk or a zip leaves beside every file."""
    if name.startswith("._"):
        return "macOS AppleDouble metadata"
    if name.lower() in SYSTEM_NAMES:
        return SYSTEM_NAMES[name.lower()]
    if name.startswith("."):
        return "name starts with '.'"
    return None


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _FolderWalk:
    """Lists a data folder's image files, and every other entry with why it is not used.

    ImageFolder's scan is not used: it walks with ``followlinks=True``, so a link that leads back into
    the folder (``loop -> .``) repeats a class until the paths get too long, and a link into another class
    files its images twice; it takes hidden and system folders (``__MACOSX``) for classes, and leaves other
    files out without a word. Here a symbolic link is followed only when it leads out of the data folder,
    into a folder not scanned yet; a file reached twice through links is used once."""

    def __init__(self, root: str) -> None:
        self.root = root  # a real path
        self.ignored: list[tuple[str, str]] = []  # (path, why)
        self.scanned: dict[str, str] = {root: root}  # real path of each folder scanned -> the path scanned as
        self.real: dict[str, str] = {root: root}  # the other way round: no realpath() call (lstat per part) per file
        self.used: dict[str, str] = {}  # real path of each file used -> the path it is used as

    def real_path(self, folder: str, entry: os.DirEntry) -> str:
        if entry.is_symlink():
            return os.path.realpath(os.path.join(folder, entry.name))
        return os.path.join(self.real[folder], entry.name)

    def enter(self, path: str, real: str) -> None:
        self.scanned[real] = path
        self.real[path] = real

    def entries(self, folder: str) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as e:
            self.ignored.append((folder, f"folder cannot be read ({e.strerror or e})"))
            return []

    def skip(self, path: str, entry: os.DirEntry, real: str) -> str | None:
        """Why this entry is not used, before looking inside it; None: it may be."""
        if what := hidden_entry(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                inside = sum(len(names) for _, _, names in os.walk(path))
                return f"hidden or system folder ({what}; {inside} file(s) inside, none used)"
            return f"hidden or system {'folder' if entry.is_dir() else 'file'} ({what})"
        if entry.is_symlink():
            return self.link(path, real)
        if not entry.is_dir() and not entry.is_file():
            return "not a regular file"
        if entry.is_dir() and real in self.scanned:  # a bind mount, or reached first through a followed link
            return f"folder already scanned as {self.scanned[real]}"
        return None

    def link(self, path: str, real: str) -> str | None:
        """Why a symbolic link to ``real`` is not followed; None: follow it. A broken link is kept, as a
        file, so that the image check names it as unreadable."""
        if not os.path.exists(real):
            return None
        points = f"symbolic link not followed: it points to {real}"
        if _within(os.path.realpath(os.path.dirname(path)), real):
            return f"{points}, a folder that holds the link (a loop)"
        if real == self.root:
            return f"{points}, the data folder itself (a loop)"
        if _within(real, self.root):
            return f"{points}, inside the data folder (its files are used where they are, once)"
        if _within(self.root, real):
            return f"{points}, a folder that holds the data folder (a loop)"
        if real in self.scanned:
            return f"{points}, a folder already scanned as {self.scanned[real]}"
        return None

    def file(self, path: str, real: str) -> str | None:
        """Why a file is not used; None: it is (it is then remembered, to be used once)."""
        ext = os.path.splitext(path)[1].lower()
        if ext not in IMAGE_EXTENSIONS:
            return f"extension not supported ({ext or 'none'})"
        if real in self.used:
            return f"reached twice through symbolic links: the same file as {self.used[real]}, used once"
        self.used[real] = path
        return None

    def folders(self, top: str) -> dict[str, str]:
        """The folders directly in ``top``, name -> path, sorted by name; files there are not in a class."""
        found = {}
        for entry in self.entries(top):
            path, real = os.path.join(top, entry.name), self.real_path(top, entry)
            if why := self.skip(path, entry, real):
                self.ignored.append((path, why))
            elif entry.is_dir():
                self.enter(path, real)
                found[entry.name] = path
            else:
                self.ignored.append((path, "not in a class folder"))
        return found

    def files(self, top: str) -> list[str]:
        """Every image file under ``top``, sorted by folder and then name, as ImageFolder orders them."""
        found: list[tuple[str, str]] = []
        stack = [top]
        while stack:
            folder = stack.pop()
            for entry in self.entries(folder):
                path, real = os.path.join(folder, entry.name), self.real_path(folder, entry)
                if why := self.skip(path, entry, real):
                    self.ignored.append((path, why))
                elif entry.is_dir():
                    self.enter(path, real)
                    stack.append(path)
                elif why := self.file(path, real):
                    self.ignored.append((path, why))
                else:
                    found.append((folder, entry.name))
        return [os.path.join(folder, name) for folder, name in sorted(found)]


@dataclass(frozen=True)
class FolderFiles:
    """A data folder's image files before any is opened: each one's class and, in a folder already split,
    its split; and every entry not used, with why."""

    paths: list[str]
    labels: np.ndarray  # int64, index into classes
    classes: list[str]
    split_folders: dict[str, str]  # split ("train", "val", "test") -> its folder's name; empty: class folders
    splits: np.ndarray  # int64, index into SPLITS of each file's split folder (0 for class folders)
    ignored: list[tuple[str, str]]  # (path, why), sorted by path


def _split_folders(top: dict[str, str], where: str) -> dict[str, str]:
    """split -> folder name, in SPLITS order, when the top level is a train/val/test layout; {} when it is
    class folders. A top level that mixes the two, or lacks train, is refused."""
    named: dict[str, str] = {}
    for name in top:
        split = SPLIT_FOLDER_NAMES.get(name.lower())
        if split in named:
            raise ValueError(f"{where}: {named[split]}/ and {name}/ are both {split} folders; keep one.")
        if split:
            named[split] = name
    if not named:
        return {}
    others = [name for name in top if name not in named.values()]
    splits = ", ".join(f"{n}/" for n in named.values())
    if others:
        raise ValueError(
            f"{where}: the top level mixes split folders ({splits}) with other folders ({', '.join(others)}). "
            "Put every class folder inside the split folders (root/train/<class>/<image>, with val/ and test/ "
            "beside train/), or use only class folders (root/<class>/<image>) for the sweep to split; "
            "rename a class folder that is named like a split."
        )
    if "train" not in named:
        raise ValueError(
            f"{where}: split folders {splits} but no train folder (train/ or training/): the classes and the "
            "training images come from it. Add it, or use class folders (root/<class>/<image>) for the sweep to split."
        )
    return {s: named[s] for s in SPLITS if s in named}


def _no_empty_class(by_class: dict[str, list[str]], dirs: dict[str, str], ignored, where: str) -> None:
    """A class folder without a single image file is refused, with what it holds instead."""
    empty = [c for c, files in by_class.items() if not files]
    if not empty:
        return
    inside = [(p, why) for p, why in ignored if any(_within(p, dirs[c]) for c in empty)]
    raise FileNotFoundError(
        f"{where}: Found no valid file for the classes {', '.join(empty)}. "
        f"Supported extensions are: {', '.join(IMAGE_EXTENSIONS)}{_not_used_listing(inside)}"
    )


def scan_folder(root: Path, where: str) -> FolderFiles:
    """What is in ``root``: class folders (``root/<class>/<image>``), or split folders holding them
    (``root/train/<class>/<image>`` with val/ and/or test/ beside it; see ``SPLIT_FOLDER_NAMES``).
    Classes are the class folders (of train/), sorted by name as ImageFolder sorts them."""
    walk = _FolderWalk(str(root))
    top = walk.folders(str(root))
    named = _split_folders(top, where)
    if not top:
        raise FileNotFoundError(
            f"{where}: no class folders (expected root/<class>/<image>, or root/train/<class>/<image> "
            f"with val/ and test/ beside it){_not_used_listing(walk.ignored)}"
        )
    dirs = {s: walk.folders(top[name]) for s, name in named.items()} if named else {"train": top}
    classes = list(dirs["train"])
    if not classes:
        raise FileNotFoundError(f"{where}: no class folders in {named['train']}/ (expected <class>/<image> there).")
    for s in ("val", "test"):
        if extra := [c for c in dirs.get(s, {}) if c not in dirs["train"]]:
            raise ValueError(
                f"{where}: {named[s]}/ has classes that {named['train']}/ lacks: {', '.join(extra)}. A model learns "
                f"only the classes it trains on: add their images to {named['train']}/, or remove these folders."
            )
    paths: list[str] = []
    labels: list[int] = []
    splits: list[int] = []
    for k, s in enumerate(SPLITS):
        if s not in dirs:
            continue
        by_class = {c: walk.files(dirs[s][c]) if c in dirs[s] else [] for c in classes}
        if s == "train":
            _no_empty_class(by_class, dirs[s], walk.ignored, where + (f" ({named['train']}/)" if named else ""))
        for y, c in enumerate(classes):
            paths += by_class[c]
            labels += [y] * len(by_class[c])
            splits += [k] * len(by_class[c])
    return FolderFiles(
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        classes=classes,
        split_folders=named,
        splits=np.asarray(splits, dtype=np.int64),
        ignored=sorted(walk.ignored),
    )


def _not_used_listing(ignored: list[tuple[str, str]]) -> str:
    if not ignored:
        return ""
    listed = "; ".join(f"{p}: {why}" for p, why in sorted(ignored)[:MAX_LISTED])
    more = f"; ... and {len(ignored) - MAX_LISTED} more" if len(ignored) > MAX_LISTED else ""
    return f". Not used: {listed}{more}"


def _carve(labels: np.ndarray, groups: list[list[int]], frac: float, seed: int, what: str, where: str):
    """Split groups of identical files in two, stratified: (the rest, ``frac`` of the groups as ``what``)."""
    firsts = np.asarray([g[0] for g in groups])
    try:
        rest, carved = train_test_split(
            np.arange(len(groups)), test_size=frac, stratify=labels[firsts], random_state=seed
        )
    except ValueError as e:  # scikit-learn: a class too small to be in both parts
        raise ValueError(f"{where}: cannot carve {what} out of the training images: {e}") from None
    return _expand(groups, rest), _expand(groups, carved)


def split_given(
    files: FolderFiles, groups: list[list[int]], val_frac: float, test_frac: float, seed: int, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """train/val/test as the split folders give them (readable files only). A missing val or test is carved
    from train: ``val_frac`` or ``test_frac`` of all the images, stratified, copies of an image together."""
    readable = np.sort(np.concatenate([np.asarray(g, dtype=np.int64) for g in groups]))
    parts = {s: readable[files.splits[readable] == k] for k, s in enumerate(SPLITS)}
    lacking = []
    for s, name in files.split_folders.items():
        counts = np.bincount(files.labels[parts[s]], minlength=len(files.classes))
        if missing := [files.classes[c] for c in np.flatnonzero(counts == 0)]:
            lacking.append(f"{name}/ has no readable images of {', '.join(missing)}")
    if lacking:
        raise ValueError(
            f"{where}: {'; '.join(lacking)}. Every class needs images in every split (a class missing from "
            "validation or test scores 0 and drags the macro averages down): add some, or remove that val or "
            "test folder for the sweep to carve it out of train."
        )
    for s, frac in (("val", val_frac), ("test", test_frac)):
        if s in files.split_folders:
            continue
        train_groups = [kept for g in groups if (kept := [i for i in g if files.splits[i] == 0])]
        share = frac * len(readable) / len(parts["train"])  # of the training images: frac of all of them
        if share >= 1:
            raise ValueError(f"{where}: {s}_frac={frac} of all {len(readable)} images is more than train holds.")
        parts["train"], parts[s] = _carve(files.labels, train_groups, share, seed, s, where)
    return parts["train"], parts["val"], parts["test"]


def _describe_split(named: dict[str, str], val_frac: float, test_frac: float, seed: int) -> tuple[str, str]:
    """(layout, how the splits were made) in words, for the sweep's log and its run's params."""
    swept = f"stratified, val_frac={val_frac}, test_frac={test_frac}, seed {seed}"
    if not named:
        return LAYOUT_CLASS_FOLDERS, f"class folders split by the sweep: {swept}"
    if len(named) == 1:
        return f"{named['train']}/ only, split by the sweep", f"only {named['train']}/ given: {swept}"
    folders = ", ".join(f"{n}/" for n in named.values())
    if len(named) == 3:
        return LAYOUT_GIVEN, f"split folders {folders} used as given (val_frac and test_frac do not apply)"
    carved = "val" if "val" not in named else "test"
    frac = val_frac if carved == "val" else test_frac
    unused = "test_frac" if carved == "val" else "val_frac"
    return (
        f"{'/'.join(named)} folders as given, {carved} carved from train",
        f"split folders {folders} used as given; {carved} carved from {named['train']}/: {carved}_frac={frac} of "
        f"all images, stratified, seed {seed} ({unused} does not apply)",
    )


def _cross_split_copies(groups: list[list[int]], paths: list[str], parts) -> list[tuple[str, str]]:
    """(a file, an identical file in a later split) for each image in more than one split."""
    split_of = np.full(len(paths), -1)
    for k, idx in enumerate(parts):
        split_of[idx] = k
    copies = []
    for g in groups:
        first: dict[int, int] = {}
        for i in g:
            first.setdefault(int(split_of[i]), i)
        ks = sorted(first)
        copies += [(paths[first[ks[0]]], paths[first[k]]) for k in ks[1:]]
    return copies


# What over the budget leaves to the trials, said wherever a folder is not decoded up front.
HEADERS_ONLY = (
    "; only each file's header was checked up front: a file that fails to decode in a trial is named in the "
    "sweep's output, counted, and replaced by the next readable image of its class in its split"
)


def _decode_note(scan: ScanResult, decode_cache_mb: float) -> str:
    mb = scan.decoded_bytes / 2**20
    if scan.decoded is not None:
        return f"{mb:.1f} MB of decoded pixels held in memory: trials do not decode the files again"
    if decode_cache_mb <= 0:
        return "decode_cache_mb is 0: every trial decodes the files each epoch" + HEADERS_ONLY
    return (
        f"decoded, the images take {mb:.1f} MB, over decode_cache_mb={decode_cache_mb:g}: every trial decodes "
        "the files each epoch (raise decode_cache_mb if the nodes have the memory)" + HEADERS_ONLY
    )


def load_image_folder(
    root: str | Path,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    seed: int = 0,
    skip_bad: bool = False,
    progress=None,
    decode_cache_mb: float = DECODE_CACHE_MB,
) -> DatasetSplits:
    """A user's image folder: class folders, ``root/<class name>/<image file>`` (split here), or a dataset
    already split, ``root/train/<class name>/<image file>`` with ``val/`` and/or ``test/`` beside it.

    ``scan_folder`` lists the images (``IMAGE_EXTENSIONS``) and names every other entry in
    ``DatasetSplits.ignored``; every image is then checked (``scan_images``): its header, and, when all the
    decoded pixels take at most ``decode_cache_mb`` megabytes, every pixel, those pixels kept with the split
    so trials read pixels instead of decoding files every epoch (0: never); ``decode_note`` says which it
    is. Unreadable files stop the sweep with their names, or with ``skip_bad`` are left out and listed in
    ``DatasetSplits.skipped``. Identical files go to the same split (given split folders may hold copies:
    ``cross_split_copies``).
    """
    root = Path(root).expanduser().resolve()
    where = f"--data {root}"
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else "no such directory"
        raise FileNotFoundError(f"{where}: {what} (expected a folder of root/<class>/<image>).")
    files = scan_folder(root, where)
    paths, labels, classes = files.paths, files.labels, files.classes
    scan = scan_images(paths, labels, classes, where, progress, keep_mb=decode_cache_mb)
    if scan.bad and not skip_bad:
        raise BadImagesError(_bad_images_message(scan.bad, where))
    groups = list(scan.groups.values())  # unreadable files are in no group, so in no split
    if len(files.split_folders) > 1:
        tr, va, te = split_given(files, groups, val_frac, test_frac, seed, where)
    else:
        distinct = np.asarray([g[0] for g in groups], dtype=np.int64)
        left_out = f" (distinct readable images; {len(scan.bad)} unreadable left out)" if scan.bad else ""
        _check_split_sizes(labels[distinct], classes, val_frac, test_frac, where + left_out)
        tr, va, te = grouped_split(labels, groups, val_frac, test_frac, seed)
    layout, split_note = _describe_split(files.split_folders, val_frac, test_frac, seed)
    return DatasetSplits(
        name=root.name,
        source=str(root),
        classes=classes,
        train=_take(paths, labels, tr, scan.decoded),
        val=_take(paths, labels, va, scan.decoded),
        test=_take(paths, labels, te, scan.decoded),
        skipped=scan.bad,
        duplicates=sum(len(g) - 1 for g in groups),
        decode_note=_decode_note(scan, decode_cache_mb),
        layout=layout,
        split_note=split_note,
        ignored=files.ignored,
        cross_split_copies=_cross_split_copies(groups, paths, (tr, va, te)),
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
    """``None`` or ``"digits"``: the embedded default; anything else: an image folder (``load_image_folder``)."""
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
