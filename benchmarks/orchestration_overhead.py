"""Orchestration overhead (issue 8, item 1): the same fixed trials run (a) one after the other as plain
Python processes calling the project's training loop (`trainables.engine.fit`, no Ray, no MLflow), and
(b) through `python sweeps/classify.py` with 2 trials at a time (2 cores, `--cpus-per-trial 1`).

Ideal sweep time = the plain processes' summed wall time / 2. Prints sweep time / ideal for the whole
command (Ray's start, the up-front checks, the trials, MLflow logging, the report with its profiling) and
for the trials alone (from the sweep's "Ray:" line to its "trials finished" line). Target: <= 1.10 for
trials of a minute or more.

    python benchmarks/orchestration_overhead.py              # the 4 tiny-preset architectures, 10 epochs
    python benchmarks/orchestration_overhead.py --epochs 14
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARCHS = ("resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "convnext_atto")  # the default recipe's "tiny"
FIXED = {"freeze": "full", "augment": "light", "lr": 1e-3}  # the rest: the default recipe's fixed values
CONCURRENCY = 2


def one_trial(arch: str, epochs: int) -> None:
    """What a trial does, in a plain process: the default recipe's fixed values, one torch thread."""
    import torch

    from trainables.config import TrialConfig
    from trainables.data import load_digits
    from trainables.engine import fit

    torch.set_num_threads(1)
    cfg = TrialConfig(arch=arch, img_size=32, batch_size=32, warmup_epochs=0.5, max_epochs=epochs, num_workers=0,
                      **FIXED)  # fmt: skip
    for _ in fit(cfg, load_digits(seed=0), torch.device("cpu")):
        pass


def sweep(epochs: int, work: Path) -> tuple[float, float]:
    cmd = [
        sys.executable, "-u", str(ROOT / "sweeps" / "classify.py"), "--address", "local",
        "--tracking-uri", f"sqlite:///{work}/mlflow.db", "--storage-path", str(work / "ray"),
        "--output-dir", str(work / "reports"), "--search", "grid", "--num-samples", str(len(ARCHS)),
        "--archs", *ARCHS, "--freeze", FIXED["freeze"], "--augment", FIXED["augment"], "--set", f"lr={FIXED['lr']}",
        "--no-asha", "--max-epochs", str(epochs), "--cpus-per-trial", "1",
    ]  # fmt: skip
    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:
            for key in ("[sweep] Ray:", "[sweep] trials finished"):
                if line.startswith(key) and key not in marks:
                    marks[key] = time.perf_counter()
    if p.returncode != 0 or len(marks) != 2:
        raise SystemExit(f"the sweep failed (rc {p.returncode})")
    return time.perf_counter() - t0, marks["[sweep] trials finished"] - marks["[sweep] Ray:"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one plain trial in this process
    a = ap.parse_args()
    if a.one:
        one_trial(a.one, a.epochs)
        return
    from analysis.profile import cpu_model

    print(f"{cpu_model()} | {len(ARCHS)} trials x {a.epochs} epochs | concurrency {CONCURRENCY}", flush=True)
    plain = {}
    for arch in ARCHS:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--one", arch, "--epochs", str(a.epochs)], check=True)
        plain[arch] = time.perf_counter() - t0
        print(f"  plain process {arch:<22} {plain[arch]:6.1f} s", flush=True)
    ideal = sum(plain.values()) / CONCURRENCY
    with tempfile.TemporaryDirectory() as d:
        whole, trials = sweep(a.epochs, Path(d))
    print(f"ideal (sum / {CONCURRENCY}): {ideal:.1f} s")
    print(f"sweep, trials alone:  {trials:6.1f} s  ratio {trials / ideal:.3f}")
    print(f"sweep, whole command: {whole:6.1f} s  ratio {whole / ideal:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
