"""Shared fixtures: real image files on disk, and isolated homes for Ray and MLflow."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def write_image_folder(root: Path, classes: dict[str, int], size: int = 24, seed: int = 0) -> Path:
    """An ImageFolder tree of real, distinguishable PNG and JPEG files: class k is a bright bar at a
    class-specific position on noise, alternating file formats (and one grey PNG) inside each class."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(classes.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            col = (k * 5 + 2) % (size - 4)
            img[:, col : col + 4, :] = 230
            im = Image.fromarray(img)
            if i % 2 == 0:
                im.save(d / f"{name}_{i:03d}.png")
            elif i == 1:
                im.convert("L").save(d / f"{name}_{i:03d}.png")  # a grey PNG: loaded as RGB like the rest
            else:
                im.save(d / f"{name}_{i:03d}.jpg", quality=92)
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "shapes", {"left": 20, "middle": 20, "right": 20})


@pytest.fixture
def ray_tmp():
    """A short private temp dir for Ray (its socket paths must stay under ~107 characters)."""
    d = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def sweep_cmd(tmp_path: Path, uri: str, *extra: str, script: str = "classify.py") -> list[str]:
    """The entry script with a local Ray and everything it writes under ``tmp_path``."""
    return [
        sys.executable,
        str(REPO / "sweeps" / script),
        "--address",
        "local",
        "--tracking-uri",
        uri,
        "--storage-path",
        str(tmp_path / "ray"),
        "--output-dir",
        str(tmp_path / "reports"),
        *extra,
    ]


def sweep_env(ray_tmp: str, **extra: str) -> dict[str, str]:
    """This environment with Ray's temp dir private to the test, and never an outside cluster."""
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("RAY_ADDRESS", None)
    return env
