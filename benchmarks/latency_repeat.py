"""How repeatable are the report's timings? Profile the same models several times and compare medians.

    python benchmarks/latency_repeat.py                    # the tiny preset at 32 px, 5 rounds
    python benchmarks/latency_repeat.py --size 224 --rounds 3

Each round profiles every model once, the way the comparison report does (analysis.profile.profile_model:
eval + inference mode, warm-up, then repeats until 30 runs and 1 s; throughput at batch 32). Rounds
are interleaved (A, B, C, D, A, B, ...) so that drift in the machine hits every model alike. The
target (issue 5): on an idle machine, the medians of one model differ by at most 10% (max/min - 1).
Load average is printed before and after: on a shared machine, read a miss beside it.
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

from analysis.profile import device_name, profile_model
from trainables.models import ARCH_PRESETS, build_model

TARGET = 0.10  # max/min - 1 of one model's latency medians


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(ARCH_PRESETS["tiny"]), help="timm names (default: tiny preset)")
    p.add_argument("--size", type=int, default=32, help="input side, pixels (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="times each model is profiled (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"{device_name(a.device)}; torch {torch.__version__}; python {platform.python_version()}")
    print(f"load average before: {os.getloadavg()}")
    models = {arch: build_model(arch, 10, a.size) for arch in a.archs}
    latency: dict[str, list[float]] = {arch: [] for arch in a.archs}
    throughput: dict[str, list[float]] = {arch: [] for arch in a.archs}
    for r in range(a.rounds):
        for arch, model in models.items():
            with torch.no_grad():
                prof = profile_model(model, a.size, a.device)
            latency[arch].append(prof.latency_ms_median)
            throughput[arch].append(prof.throughput_ips)
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in latency.items()), flush=True)
    print(f"load average after: {os.getloadavg()}")
    print(f"\n| model | batch-1 median per round (ms) | spread | throughput spread | target {TARGET:.0%} |")
    print("|:--|:--|--:|--:|:--|")
    for arch in a.archs:
        s, t = spread(latency[arch]), spread(throughput[arch])
        runs = ", ".join(f"{v:.2f}" for v in latency[arch])
        print(f"| {arch} | {runs} | {s:.1%} | {t:.1%} | {'met' if s <= TARGET else 'missed'} |")


if __name__ == "__main__":
    main()
