"""What does the per-epoch system meter (``trainables/system.py``) cost a trial? ``engine.fit`` of one model,
with the meter and with a no-op in its place, alternated, side by side in one process.

    python benchmarks/system_meter.py                 # resnet18, 2 epochs of 600 digits at 32 px, 4 runs each
    python benchmarks/system_meter.py --arch convnext_atto --runs 6

Prints each run's training time (the sum of the epochs' ``epoch_time_s``), the medians and their ratio
(meter / none). A benchmark, not a test: the target is a ratio within the machine's noise (<= 1.02)."""

from __future__ import annotations

import argparse
import statistics

import torch

import trainables.engine as engine
from trainables.config import TrialConfig
from trainables.data import limit_train, load_digits


class NoMeter:
    """The meter's interface, measuring nothing."""

    def __init__(self, *args: object) -> None:
        pass

    def __enter__(self) -> NoMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def begin(self) -> None:
        pass

    def epoch(self, *args: object, **kwargs: object) -> dict:
        return {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--runs", type=int, default=4, help="runs of each, alternated")
    args = p.parse_args()
    torch.set_num_threads(1)  # as a trial with one core
    data = limit_train(load_digits(), 600, seed=0)
    cfg = TrialConfig(arch=args.arch, img_size=32, max_epochs=2, batch_size=32, lr=3e-3, augment="light", num_workers=0)
    meters = {"meter": engine.SystemMeter, "none": NoMeter}
    times: dict[str, list[float]] = {"meter": [], "none": []}
    for i in range(args.runs):
        for name in ("meter", "none") if i % 2 == 0 else ("none", "meter"):
            engine.SystemMeter = meters[name]
            times[name].append(sum(r.metrics["epoch_time_s"] for r in engine.fit(cfg, data, torch.device("cpu"))))
    engine.SystemMeter = meters["meter"]
    for name, t in times.items():
        print(f"{name}: {', '.join(f'{x:.2f}' for x in t)} s; median {statistics.median(t):.2f} s")
    ratio = statistics.median(times["meter"]) / statistics.median(times["none"])
    print(f"ratio meter / none: {ratio:.3f} ({'met' if ratio <= 1.02 else 'missed'}: target <= 1.02)")


if __name__ == "__main__":
    main()
