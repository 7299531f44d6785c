"""One image file: what is wrong with it, from its header or from every pixel, and the RGB picture a
person sees. Checks of many files run on every core of the machine (``check_files``).

PIL and numpy only: where worker processes are spawned (macOS, Windows), they import this module and
nothing heavier, so they start in a fraction of a second (``trainables.data`` imports torch and
scikit-learn, about 4 s a process).
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BACKGROUND = (255, 255, 255)  # what transparent pixels become: images are composited onto white
# Fewer files are checked by threads of this process: starting worker processes (forked: about 0.1 s;
# spawned: 0.5 s and up) would cost about what they save, and large photos, where the time goes then,
# decode in parallel in threads too (PIL releases the GIL while decoding). Small files are Python-bound
# (about 0.2 ms of CPU each at 32 px): threads check them about one at a time, processes one per core.
PROCESS_MIN_FILES = 2000
CHUNK = 256  # files per task handed to a worker process: amortises the round trip (about 0.1 ms)
READ_ERRORS = (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError)  # how PIL says a file is bad


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


def _problem(e: Exception) -> str:
    """What is wrong with a file, in words, from what PIL (or the file system) raised reading it."""
    if isinstance(e, Image.DecompressionBombError):
        return f"too large to decode safely ({e})"
    if isinstance(e, UnidentifiedImageError):
        return "not an image PIL can read"
    if isinstance(e, OSError) and e.filename is not None:  # the file itself: unreadable, a broken link
        return f"cannot be read ({e.strerror or e})"
    return f"truncated or corrupted ({e})"  # PIL reports truncation and bad data as these


def _too_large(im: Image.Image) -> str | None:
    """Refused before its pixels are read: over PIL's decompression-bomb limit (PIL itself refuses only
    over twice the limit, at open)."""
    limit, pixels = Image.MAX_IMAGE_PIXELS, im.width * im.height
    if limit and pixels > limit:
        return f"too large to decode safely ({im.width}x{im.height} = {pixels} pixels, limit {limit})"
    return None


def read_header(path: str) -> tuple[str | None, str, int]:
    """(what is wrong with this file or None, SHA-256 of its bytes, bytes its RGB pixels take decoded).
    Only the header is parsed: this finds files that cannot be read, that are not images PIL can read,
    or that are over the decompression-bomb limit; a file cut off after its header passes (``decode`` finds it)."""
    digest = ""
    try:
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as im:
            problem = _too_large(im)
            return problem, digest, 0 if problem else im.width * im.height * 3
    except READ_ERRORS as e:
        return _problem(e), digest, 0


def decode(path: str, raise_io: bool = False) -> tuple[str | None, Image.Image | None]:
    """(what is wrong with this file or None, its RGB picture): every pixel is decoded, so a truncated
    file is found here. ``raise_io``: a file that cannot be read at all (gone, no permission) raises."""
    try:
        with Image.open(path) as im:
            if problem := _too_large(im):
                return problem, None
            im.load()
            return None, to_rgb(im)
    except READ_ERRORS as e:
        if raise_io and isinstance(e, OSError) and e.filename is not None:
            raise
        return _problem(e), None


def check_image(path: str) -> tuple[str | None, str]:
    """(what is wrong with this file or None, SHA-256 of its bytes): the header, then every pixel.
    Images over PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) are refused before their
    pixels are read."""
    problem, digest, _ = read_header(path)
    return problem or decode(path)[0], digest


def headers(paths: list[str], max_pixels: int | None) -> list[tuple[str | None, str, int]]:
    """``read_header`` of each file; ``max_pixels``: the caller's ``Image.MAX_IMAGE_PIXELS``, which a worker
    process would otherwise not have."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    return [read_header(p) for p in paths]


def pixels(paths: list[str], max_pixels: int | None) -> list[tuple[str | None, np.ndarray | None]]:
    """``decode`` of each file, the picture as a uint8 (H, W, 3) array."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    out = []
    for p in paths:
        problem, rgb = decode(p)
        out.append((problem, None if rgb is None else np.asarray(rgb)))
    return out


def cores() -> int:
    """The cores this process may run on (a container's or a CPU affinity's, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def workers(files: int):
    """Who checks ``files`` files: a process per core, or threads of this one for fewer than
    ``PROCESS_MIN_FILES``. Processes start as the platform's default, as torch's DataLoader workers do:
    forked on Linux (a spawned process would import the caller's ``__main__`` again, about 4 s for a script
    that imports torch); spawned on macOS and Windows, where a script that checks a large folder needs the
    ``if __name__ == "__main__":`` guard, as every script of this project has."""
    if files < PROCESS_MIN_FILES or cores() == 1:
        with ThreadPoolExecutor(max_workers=cores()) as pool:
            yield pool
    else:
        with ProcessPoolExecutor(max_workers=cores(), mp_context=multiprocessing.get_context()) as pool:
            yield pool


def check_files(task: Callable[[list[str], int | None], list], paths: list[str], pool: Executor, done=None) -> list:
    """``task`` (``headers`` or ``pixels``) over ``paths`` on ``pool``, the results in the order of ``paths``;
    ``done(n, len(paths))`` hears how many files are done after each chunk."""
    n = len(paths)
    size = max(1, min(CHUNK, n // (cores() * 16)))  # small folders: a file a task, so every core has some
    chunks = [paths[i : i + size] for i in range(0, n, size)]
    out: list = []
    for results in pool.map(task, chunks, [Image.MAX_IMAGE_PIXELS] * len(chunks)):
        out += results
        if done:
            done(len(out), n)
    return out
