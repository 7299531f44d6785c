"""Are the report's latency and throughput numbers repeatable? Profile the same models several times.

    python benchmarks/profile_repeat.py                          # tiny preset, 32 px, 5 repeats
    python benchmarks/profile_repeat.py --size 224 --repeats 3
    python benchmarks/profile_repeat.py --same-process           # all repeats in this one process
    python benchmarks/profile_repeat.py --threads 1              # one torch thread instead of one per core

Each repeat profiles the four architectures of the tiny preset (resnet18, efficientnet_b0,
vit_tiny_patch16_224, convnext_atto; built by trainables.models.build_model(arch, 10, size), random
weights) exactly as the comparison report does: analysis.compare.measure_apart, i.e. a fresh Python
process that profiles one model after the other with analysis.profile.profile_model (batch-1 latency:
10 warm-up runs, then at least 30 runs and 1 s, median; throughput at batch 32, median batch time).
One fresh process per repeat, as one report run gets one: the spread below therefore includes what
changes from one process to the next, not only from one timing loop to the next.

Repeats are interleaved (A B C D, A B C D, ...) so that drift in the machine (another job starting,
the CPU's clock) hits every architecture alike instead of all of one model's repeats.

Spread of one architecture = max / min - 1 of its repeats' medians (latency), and the same of its
throughputs. Target (issue 5): at most 10% on an idle machine. The load average is printed before and
after: on a shared machine a miss must be read beside it. A benchmark, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from analysis.compare import measure_apart
from analysis.profile import Profile, device_name, profile_model
from trainables.models import ARCH_PRESETS, build_model

TARGET = 0.10  # max/min - 1 of one architecture's repeated medians
NUM_CLASSES = 10  # the digits task; the head's size barely matters to the timings


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1


def in_process(shapes: list[tuple[str, int, int]], device: str) -> list[Profile]:
    """The same measurement without the fresh process (models rebuilt each repeat, as measure_apart does)."""
    out = []
    for arch, num_classes, size in shapes:
        model = build_model(arch, num_classes, size)
        with torch.no_grad():
            out.append(profile_model(model, size, device))
    return out


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())  # 1, 5 and 15 minute averages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(ARCH_PRESETS["tiny"]), help="timm names (default: tiny preset)")
    p.add_argument("--size", type=int, default=32, help="input side, pixels (default %(default)s; 224: ImageNet's)")
    p.add_argument("--repeats", type=int, default=5, help="times each architecture is profiled (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    p.add_argument(
        "--same-process",
        action="store_true",
        help="profile in this process instead of a fresh one per repeat (the report uses a fresh one)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads for the timings (default: torch's, one per core, as the report uses); set through "
        "OMP_NUM_THREADS, which the fresh process inherits",
    )
    a = p.parse_args()
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)  # read by torch at start-up in the fresh process
        torch.set_num_threads(a.threads)  # this process: --same-process
    shapes = [(arch, NUM_CLASSES, a.size) for arch in a.archs]
    where = "this process" if a.same_process else "a fresh process per repeat (as the report)"
    print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} cores")
    print(f"{len(a.archs)} architectures at {a.size} px, {a.repeats} repeats, interleaved, in {where}")
    print(f"load average (1, 5, 15 min) before: {load()}", flush=True)
    runs: dict[str, list[Profile]] = {arch: [] for arch in a.archs}
    t0 = time.perf_counter()
    for r in range(a.repeats):
        profs = in_process(shapes, a.device) if a.same_process else measure_apart(shapes, a.device)
        for arch, prof in zip(a.archs, profs, strict=True):
            runs[arch].append(prof)
        line = ", ".join(f"{arch} {runs[arch][-1].latency_ms_median:.2f} ms" for arch in a.archs)
        print(f"repeat {r + 1}/{a.repeats} ({time.perf_counter() - t0:.0f} s): {line}", flush=True)
    print(f"load average (1, 5, 15 min) after: {load()}")
    first = runs[a.archs[0]][0]
    # The measuring process's own view: device_name here would report this process's threads instead.
    print(f"\ndevice: {first.device}; {first.threads} torch threads; torch {first.torch_version}; {first.dtype}")
    if not a.same_process:
        print(f"(this process: {device_name(a.device)})")

    print(
        f"\n| architecture | batch-1 latency median per repeat (ms) | latency spread | "
        f"throughput per repeat (img/s, batch {first.batch_size}) | throughput spread | "
        f"target <= {TARGET:.0%} (latency / throughput) |"
    )
    print("|:--|:--|--:|:--|--:|:--|")
    for arch in a.archs:
        lat = [q.latency_ms_median for q in runs[arch]]
        ips = [q.throughput_ips for q in runs[arch]]
        s_lat, s_ips = spread(lat), spread(ips)
        verdict = " / ".join("met" if s <= TARGET else "missed" for s in (s_lat, s_ips))
        print(
            f"| {arch} | {', '.join(f'{v:.2f}' for v in lat)} | {s_lat:.1%} | "
            f"{', '.join(f'{v:.0f}' for v in ips)} | {s_ips:.1%} | {verdict} |"
        )
    print(f"\nwall time {time.perf_counter() - t0:.0f} s. Read a miss beside the load average above.")


if __name__ == "__main__":
    main()
