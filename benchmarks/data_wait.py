"""Data path (issue 8, item 4): how much of a training step waits for data, with the trial's own loaders
(`trainables.engine.build`: the same transforms, batch size and DataLoader settings a trial uses).

For each data source and loader setting, one epoch of warm-up, then timed epochs: the time blocked in
`next(loader)` (decode, transform, collate; or waiting on loader workers) against the time in forward,
backward and the optimizer step. Sources: the default digits held in memory, and the same images as an
ImageFolder of PNG and JPEG files on disk (written by benchmarks/export_digits.py's way, into a temp
dir), read as a sweep reads them: decoded once by the up-front check and kept (the default, under
`decode_cache_mb`), and decoded from the files every epoch (`decode_cache_mb: 0`, or a folder over it).
Prints the data-wait share of step time; the target is <= 5% at the default settings
(`--cpus-per-trial 1`: one torch thread, no loader workers).

    python benchmarks/data_wait.py
    python benchmarks/data_wait.py --arch vit_tiny_patch16_224 --epochs 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.profile import cpu_model  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import DECODE_CACHE_MB, load_splits  # noqa: E402
from trainables.engine import build  # noqa: E402


def timed_epochs(
    cfg: TrialConfig, data: str | None, epochs: int, threads: int, cache_mb: float
) -> tuple[float, float, int]:
    """(seconds waiting for batches, seconds computing, images) over ``epochs`` after one warm-up epoch."""
    torch.set_num_threads(threads)
    splits = load_splits(data, 0.15, 0.15, 0, decode_cache_mb=cache_mb)
    p = build(cfg, splits, torch.device("cpu"))
    p.model.train()
    wait = compute = 0.0
    images = 0
    for epoch in range(epochs + 1):
        it = iter(p.loaders["train"])
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            loss = p.train_loss_fn(p.model(x), y)
            p.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            p.optimizer.step()
            t2 = time.perf_counter()
            if epoch > 0:
                wait, compute, images = wait + t1 - t0, compute + t2 - t1, images + len(y)
    return wait, compute, images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--augment", default="light", help="the training policy (the default recipe's first: light)")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    print(f"{cpu_model()} | torch {torch.__version__} | {a.arch}, {a.img_size} px, augment {a.augment}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "digits"
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "export_digits.py"), str(folder)], check=True)
        print(f"{'data':<34} {'threads':>7} {'workers':>7} {'wait (s)':>9} {'compute (s)':>11} {'wait share':>10}")
        sources = (
            ("digits, in memory", None, DECODE_CACHE_MB),
            ("files, decoded once (default)", str(folder), DECODE_CACHE_MB),
            ("files, decoded every epoch", str(folder), 0),
        )
        for name, data, cache_mb in sources:
            for threads, workers in ((1, 0), (1, 1)):  # --cpus-per-trial 1, and 2 (one loop thread + 1 worker)
                cfg = TrialConfig(arch=a.arch, img_size=a.img_size, augment=a.augment, num_workers=workers)
                wait, compute, n = timed_epochs(cfg, data, a.epochs, threads, cache_mb)
                share = wait / (wait + compute)
                print(f"{name:<34} {threads:>7} {workers:>7} {wait:>9.2f} {compute:>11.2f} {100 * share:>9.1f}%")
    print("target: wait share <= 5% at the defaults (1 thread, 0 workers)")


if __name__ == "__main__":
    main()
