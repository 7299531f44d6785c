"""Images as users have them: unreadable files named before any trial starts (or left out and listed
with --skip-bad-images; over the decode budget, a file cut off after its header is named, counted and
replaced by the trials instead), unusual but valid ones converted to the RGB picture a person sees, and
copies of one image never split between training and test."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import write_image_folder
from trainables import image_files
from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.contracts import RUN_ARTIFACTS_DIR, UNREADABLE_FILE
from trainables.data import BadImagesError, ImageSamples, check_image, load_image_folder, to_rgb
from trainables.engine import fit
from trainables.image_files import read_header
from trainables.trial_evidence import TrialEvidence


def three_classes(tmp_path):
    return write_image_folder(tmp_path / "shapes", {"left": 12, "middle": 12, "right": 12})


def loaded(path) -> np.ndarray:
    """The pixels a trial sees for this file."""
    return np.asarray(ImageSamples(images=[str(path)], labels=np.zeros(1, dtype=np.int64)).load(0))


def test_unreadable_files_are_all_named_with_what_is_wrong(tmp_path):
    root = three_classes(tmp_path)
    good = sorted((root / "left").glob("*.jpg"))[0].read_bytes()
    (root / "left" / "cut.jpg").write_bytes(good[: len(good) // 2])  # a download that stopped halfway
    (root / "middle" / "notes.png").write_text("not a picture")  # named like an image, but text
    (root / "right" / "zero.jpg").write_bytes(b"")
    (root / "right" / "moved.jpg").symlink_to(tmp_path / "gone.jpg")  # a link to a file no longer there
    with pytest.raises(BadImagesError) as e:
        load_image_folder(root)
    msg = str(e.value)
    assert f"--data {root}: 4 file(s) cannot be used as images" in msg
    assert f"{root / 'right' / 'moved.jpg'}: cannot be read (No such file or directory)" in msg
    assert f"{root / 'left' / 'cut.jpg'}: truncated or corrupted" in msg
    assert f"{root / 'middle' / 'notes.png'}: not an image PIL can read" in msg
    assert f"{root / 'right' / 'zero.jpg'}: not an image PIL can read" in msg
    assert "--skip-bad-images" in msg


def test_skip_bad_images_leaves_them_out_and_lists_them(tmp_path):
    root = three_classes(tmp_path)
    (root / "left" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    s = load_image_folder(root, skip_bad=True)
    assert [p for p, _ in s.skipped] == [str(root / "left" / "broken.png")]
    assert s.skipped[0][1] == "not an image PIL can read"
    assert s.summary()["skipped_images"] == 1
    used = [*s.train.images, *s.val.images, *s.test.images]  # every other file, once
    assert len(used) == 36 and str(root / "left" / "broken.png") not in used


@pytest.mark.parametrize("side, by", [(60, "this project's check"), (100, "PIL's own")])
def test_a_decompression_bomb_is_refused_before_its_pixels_are_read(tmp_path, monkeypatch, side, by):
    """PIL's limit, made small so the test need not write a 180-megapixel file. Over the limit PIL only
    warns (this project refuses); over twice the limit PIL refuses by itself."""
    path = tmp_path / "huge.png"
    Image.new("L", (side, 50)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    problem, _ = check_image(str(path))
    assert problem is not None and problem.startswith("too large to decode safely"), by
    assert f"{side * 50}" in problem


@pytest.mark.parametrize(
    "mode, make, expected",
    [
        ("L", lambda: Image.new("L", (4, 4), 200), (200, 200, 200)),
        ("I;16", lambda: Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)), (128, 128, 128)),
        ("RGBA", lambda: Image.new("RGBA", (4, 4), (10, 20, 30, 0)), (255, 255, 255)),  # transparent: white
        ("LA", lambda: Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),  # transparent black: white
        ("I", lambda: Image.fromarray(np.full((4, 4), 65535, dtype=np.int32)), (255, 255, 255)),  # 16-bit range
        ("I", lambda: Image.fromarray(np.full((4, 4), 200, dtype=np.int32)), (1, 1, 1)),  # dark, as 16-bit
        ("F", lambda: Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)), (128, 128, 128)),  # [0, 1] floats
        ("CMYK", lambda: Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0)),  # no cyan, full M+Y: red
        ("P", lambda: Image.new("RGB", (4, 4), (0, 128, 255)).convert("P", palette=Image.ADAPTIVE), (0, 128, 255)),
    ],
)
def test_unusual_image_modes_become_the_rgb_a_person_sees(tmp_path, mode, make, expected):
    im = make()
    assert im.mode == mode
    path = tmp_path / ("x.tif" if mode in ("CMYK", "F", "I") else "x.png")
    im.save(path)
    with Image.open(path) as reopened:  # what is on disk, e.g. 16-bit PNGs open as "I;16" or "I"
        assert check_image(str(path))[0] is None
        pixels = np.asarray(to_rgb(reopened))
    assert pixels.shape == (4, 4, 3) and pixels.dtype == np.uint8
    assert tuple(int(v) for v in pixels[0, 0]) == expected
    assert (loaded(path) == pixels).all()


def test_a_palette_image_with_a_transparent_colour_is_composited_onto_white(tmp_path):
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.info["transparency"] = 0  # palette entry 0 is transparent
    im.save(tmp_path / "p.png", transparency=0)
    px = loaded(tmp_path / "p.png")
    assert tuple(px[0, 0]) == (255, 255, 255) and tuple(px[1, 1]) == (200, 0, 0)


def test_a_grey_png_with_a_transparent_grey_level_is_composited_onto_white(tmp_path):
    a = np.full((4, 4), 7, dtype=np.uint8)
    a[0, 0] = 90
    Image.fromarray(a).save(tmp_path / "g.png", transparency=7)
    px = loaded(tmp_path / "g.png")
    assert tuple(px[1, 1]) == (255, 255, 255) and tuple(px[0, 0]) == (90, 90, 90)


def test_an_exif_rotated_photo_is_seen_upright(tmp_path):
    """Cameras store pixels as the sensor saw them and an EXIF orientation: 6 means turn 90 degrees
    clockwise to view. A 20 wide x 10 high sensor image with a red left edge is seen 10 wide x 20 high,
    the red edge on top."""
    a = np.zeros((10, 20, 3), dtype=np.uint8)
    a[:, :3] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    px = loaded(tmp_path / "photo.jpg")
    assert px.shape == (20, 10, 3)
    assert px[0, 5, 0] > 200 and px[0, 5, 1] < 60  # top row red
    assert px[-1, 5, 0] < 60  # bottom row dark


def test_copies_of_one_image_land_in_one_split(tmp_path):
    root = three_classes(tmp_path)
    original = sorted((root / "left").iterdir())[0]
    for k in range(5):
        (root / "left" / f"copy{k}{original.suffix}").write_bytes(original.read_bytes())
    s = load_image_folder(root, seed=3)
    assert s.duplicates == 5
    parts = [{p for p in part.images} for part in (s.train, s.val, s.test)]
    copies = {str(original), *(str(root / "left" / f"copy{k}{original.suffix}") for k in range(5))}
    holding = [i for i, part in enumerate(parts) if part & copies]
    assert len(holding) == 1 and copies <= parts[holding[0]]  # all six together, in one split


def test_one_image_filed_under_two_classes_is_an_error(tmp_path):
    root = three_classes(tmp_path)
    original = sorted((root / "left").iterdir())[0]
    (root / "right" / f"same{original.suffix}").write_bytes(original.read_bytes())
    with pytest.raises(ValueError, match=r"1 image\(s\) are filed under more than one class") as e:
        load_image_folder(root)
    assert f"{original} (left)" in str(e.value) and f"same{original.suffix} (right)" in str(e.value)


def test_an_empty_class_folder_and_a_single_class_are_named(tmp_path):
    root = three_classes(tmp_path)
    (root / "blank").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--data .*shapes: .*no valid file for the classes blank"):
        load_image_folder(root)
    one = write_image_folder(tmp_path / "one", {"only": 12})
    with pytest.raises(ValueError, match=r"found 1 class\(es\) \['only'\]; classification needs at least 2"):
        load_image_folder(one)


def test_checking_a_large_folder_says_how_far_it_got(tmp_path, monkeypatch):
    import trainables.data

    root = three_classes(tmp_path)
    monkeypatch.setattr(trainables.data, "SCAN_PROGRESS_EVERY", 10)
    said: list[str] = []
    load_image_folder(root, progress=said.append)
    assert said == [f"--data {root}: checked {n} of 36 images" for n in (10, 20, 30)]


def test_a_folder_is_decoded_once_and_its_pixels_travel_with_the_split(tmp_path):
    """Under the budget the pixels the up-front check decoded are what the trials get (exactly what
    decoding the file gives), so no trial opens a file; over it, or at 0, the trials decode the files
    and the split says why."""
    root = three_classes(tmp_path)
    Image.fromarray(np.full((9, 7), 40000, dtype=np.uint16)).save(root / "left" / "grey16.png")
    held = load_image_folder(root)
    assert held.summary()["images_in_memory"] is True and "held in memory" in held.decode_note
    files = load_image_folder(root, decode_cache_mb=0.001)  # 1 kB: the folder takes more decoded
    assert files.train.decoded is None and files.summary()["images_in_memory"] is False
    assert "over decode_cache_mb=0.001: every trial decodes the files each epoch" in files.decode_note
    assert "decode_cache_mb is 0" in load_image_folder(root, decode_cache_mb=0).decode_note
    assert held.train.images == files.train.images  # the same split either way

    from_files = {p: loaded(p) for part in (files.train, files.val, files.test) for p in part.images}
    shutil.rmtree(root)  # trials of the held split never open a file
    for part in (held.train, held.val, held.test):
        for i, path in enumerate(part.images):
            assert np.array_equal(np.asarray(part.load(i)), from_files[path]), path
    with pytest.raises(FileNotFoundError):
        files.train.load(0)


def cut_after_header(path) -> None:
    """An image cut off halfway through its pixel data, as a stopped copy leaves it: its header is whole."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert read_header(str(path))[0] is None and check_image(str(path))[0].startswith("truncated or corrupted")


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_every_file_is_checked_on_every_core_with_the_same_errors(tmp_path, monkeypatch, workers):
    """A large folder is checked by a process per core (here: any folder), a small one by threads: the same
    files named with the same problems, and the same pixels for the trials."""
    root = three_classes(tmp_path)
    (root / "middle" / "notes.png").write_text("not a picture")
    cut_after_header(root / "left" / "left_000.png")
    monkeypatch.setattr(image_files, "PROCESS_MIN_FILES", 0 if workers == "processes" else 10**9)
    pools, workers_of = [], image_files.workers

    @contextmanager
    def seen(files: int):
        with workers_of(files) as pool:
            pools.append(type(pool).__name__)
            yield pool

    monkeypatch.setattr(image_files, "workers", seen)
    s = load_image_folder(root, skip_bad=True)
    assert pools == ["ProcessPoolExecutor" if workers == "processes" else "ThreadPoolExecutor"]
    assert s.skipped == [(p, check_image(p)[0]) for p in sorted(p for p, _ in s.skipped)]
    assert [Path(p).name for p, _ in s.skipped] == ["left_000.png", "notes.png"]
    assert s.summary()["images_in_memory"] is True
    for i, path in enumerate(s.train.images):
        assert np.array_equal(np.asarray(s.train.load(i)), loaded(path)), path


def test_over_the_budget_only_headers_are_checked_and_a_non_image_still_stops_the_sweep(tmp_path):
    root = three_classes(tmp_path)
    (root / "middle" / "notes.png").write_text("not a picture")
    cut = root / "left" / "left_000.png"
    cut_after_header(cut)
    with pytest.raises(BadImagesError) as e:
        load_image_folder(root, decode_cache_mb=0.001)
    named = f"{root / 'middle' / 'notes.png'}: not an image PIL can read"
    assert f"--data {root}: 1 file(s) cannot be used as images:\n  {named}\n" in str(e.value)
    s = load_image_folder(root, decode_cache_mb=0.001, skip_bad=True)
    assert [p for p, _ in s.skipped] == [str(root / "middle" / "notes.png")]  # the cut file passed its header
    assert str(cut) in [*s.train.images, *s.val.images, *s.test.images]
    assert "only each file's header was checked up front" in s.decode_note
    assert "only each file's header was checked up front" in s.summary()["data_decoding"]  # on the sweep's run


def test_a_file_that_fails_to_decode_in_a_trial_is_named_counted_and_replaced(tmp_path, capfd):
    """Over the budget a file cut off after its header reaches the trials: the trial trains on (its loader
    worker decodes) the next readable image of the class in its place, names the file once on stderr
    (which Ray shows in the sweep's output) and counts it; it is not stopped."""
    root = three_classes(tmp_path)
    s = load_image_folder(root, decode_cache_mb=0.001)
    cut, after = s.train.images[0], s.train.images[1]  # two training images of class 'left'
    assert s.train.labels[0] == s.train.labels[1]
    cut_after_header(Path(cut))
    cfg = TrialConfig(arch="resnet18", img_size=32, max_epochs=2, batch_size=8, augment="none", num_workers=1)
    reports = list(fit(cfg, s, torch.device("cpu")))
    assert [r.metrics["epoch"] for r in reports] == [1, 2]
    err = capfd.readouterr().err
    assert err.count(f"warning: {cut}: truncated or corrupted") == 1, err  # once in the trial, not per epoch
    assert f"; replaced by {after}, the next readable image of its class in this split (1 unreadable file(s) in" in err
    assert s.train.unreadable_files() == [cut]  # seen here, though a loader worker process found it
    assert [r.metrics[M.UNREADABLE_IMAGES] for r in reports] == [1, 1]  # counted in the trial's run
    assert np.array_equal(np.asarray(s.train.load(0)), loaded(after))
    # and named in it: the trial's evidence holds the file's name and split
    evidence = TrialEvidence(cfg, s, torch.device("cpu"), tmp_path / "evidence", resume_dir=None)
    evidence.update(reports[-1].metrics, reports[-1].state, due=True)
    evidence.add_to(tmp_path)
    assert (tmp_path / RUN_ARTIFACTS_DIR / UNREADABLE_FILE).read_text() == f"{cut}\ttrain\n"


def test_a_class_with_no_readable_image_left_is_a_blank_image_and_said(tmp_path, capfd):
    root = three_classes(tmp_path)
    files = sorted((root / "left").glob("*.png"))[:2]
    for f in files:
        cut_after_header(f)
    samples = ImageSamples(images=[str(f) for f in files], labels=np.zeros(2, dtype=np.int64))
    assert (np.asarray(samples.load(1)) == 255).all()
    err = capfd.readouterr().err
    assert "replaced by a blank white image: no image of its class in this split decodes (2 unreadable file(s)" in err
    assert sorted(samples.unreadable_files()) == [str(f) for f in files]


def test_the_check_workers_import_pil_and_numpy_only():
    """Where worker processes are spawned (macOS, Windows), each imports what ``image_files`` needs: PIL
    and numpy start in a fraction of a second, torch or scikit-learn in seconds."""
    from tests.test_layout import reachable

    imported = set(reachable("trainables.image_files")) - {"trainables.image_files"}
    assert {"PIL", "numpy"} <= imported
    assert not {m for m in imported if m.split(".")[0] in ("torch", "sklearn", "timm", "ray", "trainables")}
