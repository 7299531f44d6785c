"""The embedded detection dataset: coloured shapes on textured backgrounds, in YOLO format, generated
on the spot (nothing is downloaded) and the same for the same settings.

    root/images/{train,val,test}/000123.png
    root/labels/{train,val,test}/000123.txt    # one line per object: class cx cy w h, all in [0, 1]
    root/data.yaml                             # what Ultralytics (and --data) reads

Each split is drawn from its own random stream, so no image, and no background, appears in two splits.
Objects are circles, squares and triangles of random colour and size (never overlapping by more than a
little, never cut off by the border); backgrounds mix a colour gradient, noise and distractor lines,
so a detector has to learn shapes, not "anything that is not grey".
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
SPLITS = ("train", "val", "test")
DONE_FILE = ".complete"  # written last: a directory without it is an interrupted generation, made again


@dataclass(frozen=True)
class ShapesSpec:
    train: int = 240  # images per split
    val: int = 60
    test: int = 60
    size: int = 160  # square canvas, pixels
    max_objects: int = 4
    min_side: int = 18  # object size range, pixels
    max_side: int = 56
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    c0, c1 = rng.integers(40, 215, size=(2, 3))
    t = np.linspace(0.0, 1.0, size)[None, :, None]
    if rng.random() < 0.5:
        t = t.transpose(1, 0, 2)
    img = c0 * (1 - t) + c1 * t + rng.normal(0, 14, size=(size, size, 3))
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for _ in range(int(rng.integers(2, 7))):  # thin distractor lines, not objects
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, size=4))
        draw.line((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=int(rng.integers(1, 3)))
    return out


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box's area."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller


def draw_image(rng: np.random.Generator, spec: ShapesSpec) -> tuple[Image.Image, list[tuple[int, float, ...]]]:
    """One canvas and its labels (class, cx, cy, w, h normalised)."""
    img = _background(rng, spec.size)
    draw = ImageDraw.Draw(img)
    boxes: list[tuple[float, float, float, float]] = []
    labels = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        for _try in range(20):
            side = int(rng.integers(spec.min_side, spec.max_side + 1))
            x0, y0 = (int(v) for v in rng.integers(1, spec.size - side - 1, size=2))
            box = (x0, y0, x0 + side, y0 + side)
            if all(_overlap(box, b) < 0.2 for b in boxes):
                break
        else:
            continue
        cls = int(rng.integers(len(CLASSES)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        outline = tuple(255 - v for v in colour)
        if CLASSES[cls] == "circle":
            draw.ellipse(box, fill=colour, outline=outline, width=2)
        elif CLASSES[cls] == "square":
            draw.rectangle(box, fill=colour, outline=outline, width=2)
        else:
            x0, y0, x1, y1 = box
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour, outline=outline, width=2)
        boxes.append(box)
        s = spec.size
        labels.append((cls, (box[0] + box[2]) / 2 / s, (box[1] + box[3]) / 2 / s, side / s, side / s))
    return img, labels


def generate(root: Path, spec: ShapesSpec = ShapesSpec(), progress=print) -> Path:  # noqa: B008 - frozen
    """Write the dataset under ``root/shapes-<key>`` (reused when complete); returns its data.yaml.
    Written to a temporary directory and renamed into place, so trials starting together on one node
    never read a half-written dataset."""
    out = Path(root).expanduser().resolve() / f"shapes-{spec.key()}"
    if (out / DONE_FILE).is_file():
        return out / "data.yaml"
    total = spec.train + spec.val + spec.test
    progress(f"generating the shapes dataset ({total} images of {spec.size} px, {len(CLASSES)} classes) in {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for i, split in enumerate(SPLITS):
            rng = np.random.default_rng([spec.seed, i])  # one stream per split: nothing shared between them
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for n in range(getattr(spec, split)):
                img, labels = draw_image(rng, spec)
                img.save(tmp / "images" / split / f"{n:06d}.png")
                lines = "".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in labels)
                (tmp / "labels" / split / f"{n:06d}.txt").write_text(lines)
        names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
        (tmp / "data.yaml").write_text(
            f"# Generated by cvsweep (trainables/shapes.py), spec {json.dumps(asdict(spec))}\n"
            f"path: {out}\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n{names}"
        )
        (tmp / DONE_FILE).write_text(json.dumps(asdict(spec)))
        try:
            tmp.rename(out)
        except OSError:  # another process on this node finished first (or an interrupted one left a husk)
            if not (out / DONE_FILE).is_file():
                shutil.rmtree(out, ignore_errors=True)
                tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "data.yaml"
