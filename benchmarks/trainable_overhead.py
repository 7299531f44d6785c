"""Trainable overhead (issue 8, item 2): training throughput of one trial run by `sweeps/classify.py`
(Ray Tune, the project's training loop, MLflow tracking) against a minimal hand-written PyTorch loop on
the same model, images, transforms, batch size and thread count.

The two run side by side in one invocation, alternating hand loop, sweep, hand loop, so that drift of
the shared machine shows up as a difference between the two hand-loop runs. Throughput counts training
images per second of the training phase only (the trial's `train_images_per_s`, validation excluded);
the first epoch of each is left out (warm-up). Prints the ratio sweep / hand loop; the target is >= 0.95.

    python benchmarks/trainable_overhead.py                      # resnet18, 32 px, 6 epochs
    python benchmarks/trainable_overhead.py --arch vit_tiny_patch16_224 --epochs 4
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.profile import cpu_model  # noqa: E402
from trainables import metrics as M  # noqa: E402
from trainables.augment import train_transform  # noqa: E402
from trainables.data import ImageSamplesDataset, load_digits  # noqa: E402
from trainables.models import build_model, data_config  # noqa: E402

THREADS = 1  # the sweep's default: --cpus-per-trial 1 -> one torch thread, no loader workers


def hand_loop(arch: str, img: int, batch: int, epochs: int) -> list[float]:
    """The loop a user would write: AdamW, cross-entropy with label smoothing, nothing else."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    splits = load_digits(seed=0)
    model = build_model(arch, splits.num_classes, img, "none")
    dc = data_config(model, img)
    data = ImageSamplesDataset(splits.train, train_transform("none", dc))
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True, num_workers=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    rates = []
    for _ in range(epochs):
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
        rates.append(seen / (time.perf_counter() - t0))
    return rates


def sweep(arch: str, img: int, batch: int, epochs: int, work: Path) -> tuple[list[float], float]:
    uri = f"sqlite:///{work}/mlflow.db"
    cmd = [
        sys.executable, str(ROOT / "sweeps" / "classify.py"), "--address", "local", "--tracking-uri", uri,
        "--storage-path", str(work / "ray"), "--output-dir", str(work / "reports"), "--experiment", "overhead",
        "--archs", arch, "--freeze", "full", "--augment", "none", "--weights", "none", "--img-size", str(img),
        "--batch-size", str(batch), "--num-samples", "1", "--max-epochs", str(epochs), "--no-asha",
        "--cpus-per-trial", str(THREADS),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the sweep failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("overhead")
    (child,) = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    history = sorted(client.get_metric_history(child.info.run_id, M.THROUGHPUT), key=lambda m: m.step)
    return [m.value for m in history], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    a = ap.parse_args()
    print(f"{platform.node()} | {cpu_model()} | torch {torch.__version__} | {THREADS} thread(s)", flush=True)
    print(f"{a.arch}, {a.img_size} px, batch {a.batch_size}, {a.epochs} epochs of the digits training split")
    steady = lambda rates: statistics.median(rates[1:])  # noqa: E731 - the first epoch is warm-up
    before = hand_loop(a.arch, a.img_size, a.batch_size, a.epochs)
    print(f"hand loop (1st):  {steady(before):7.1f} img/s  per epoch {[round(r) for r in before]}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        in_tune, wall = sweep(a.arch, a.img_size, a.batch_size, a.epochs, Path(d))
    print(f"sweep trial:      {steady(in_tune):7.1f} img/s  per epoch {[round(r) for r in in_tune]}", flush=True)
    print(f"                  (the whole sweep command took {wall:.0f} s: Ray start, checks, report)")
    after = hand_loop(a.arch, a.img_size, a.batch_size, a.epochs)
    print(f"hand loop (2nd):  {steady(after):7.1f} img/s  per epoch {[round(r) for r in after]}", flush=True)
    hand = statistics.mean([steady(before), steady(after)])
    drift = abs(steady(before) - steady(after)) / hand
    ratio = steady(in_tune) / hand
    verdict = "met" if ratio >= 0.95 else "missed"
    print(f"ratio sweep / hand loop: {ratio:.3f} (target >= 0.95: {verdict}); hand-loop drift {100 * drift:.1f}%")


if __name__ == "__main__":
    main()
