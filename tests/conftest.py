"""Shared fixtures: real image files on disk, and isolated homes for Ray and MLflow."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import psutil
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


class Listeners:
    """Every (address, process name) on which a process or any of its descendants listens for TCP, seen by
    polling the kernel's socket tables while it runs: Ray's GCS, raylet, agents and workers included."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.root, self.every_s = psutil.Process(pid), every_s
        self.seen: set[tuple[str, str]] = set()
        self.failure: BaseException | None = None  # what stopped the polling early, raised on exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Listeners:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.failure is not None and exc[0] is None:
            raise AssertionError(f"watching what the sweep listens on failed: {self.failure!r}")

    def _poll(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    tree = {p.pid: p for p in [self.root, *self.root.children(recursive=True)]}
                except psutil.NoSuchProcess:  # the command has ended
                    return
                for c in psutil.net_connections(kind="tcp"):
                    if c.status == psutil.CONN_LISTEN and c.pid in tree:
                        try:
                            self.seen.add((c.laddr.ip, tree[c.pid].name()))
                        except psutil.NoSuchProcess:  # gone since the table was read
                            pass
                self._stop.wait(self.every_s)
        except Exception as e:  # noqa: BLE001 - e.g. psutil.AccessDenied: raised by __exit__, never silent
            self.failure = e

    def not_loopback(self) -> list[tuple[str, str]]:
        return sorted((ip, name) for ip, name in self.seen if not is_loopback(ip))


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, an IPv6 socket bound to IPv4 loopback
    return (mapped or address).is_loopback


@pytest.fixture(scope="session")
def evidence_trial(tmp_path_factory):
    """A three-epoch trial of a tiny model, its checkpoint directories written as the trainable writes them,
    with the evidence due after epochs 1 and 3 (as after an ASHA rung at epoch 1 and the last epoch), not 2.
    Returns (config dict, splits, [(checkpoint dir, EpochReport), ...])."""
    import torch

    from trainables import metrics as M
    from trainables.config import TrialConfig
    from trainables.contracts import save_trial_state
    from trainables.data import limit_train, load_digits
    from trainables.engine import fit
    from trainables.trial_evidence import TrialEvidence

    config = {"arch": "resnet18", "img_size": 32, "max_epochs": 3, "batch_size": 32, "lr": 3e-3, "seed": 0}
    splits = limit_train(load_digits(), 100, seed=0)
    cfg = TrialConfig.from_dict({**config, "warmup_epochs": 0.5})
    root = tmp_path_factory.mktemp("trial")
    evidence = TrialEvidence(cfg, splits, torch.device("cpu"), root / "work", resume_dir=None)
    checkpoints = []
    for report in fit(cfg, splits, torch.device("cpu")):
        epoch = int(report.metrics[M.EPOCH])
        evidence.update(report.metrics, report.state, due=epoch != 2)
        d = root / f"checkpoint_{epoch}"
        d.mkdir()
        save_trial_state(report.state, d)
        evidence.add_to(d)
        checkpoints.append((d, report))
    evidence.close()
    return {**config, "warmup_epochs": 0.5}, splits, checkpoints
