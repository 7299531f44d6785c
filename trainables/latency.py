"""Batch-1 inference latency, timed the same way wherever it is measured.

The comparison table (analysis.profile) times each architecture's best model after all trials ended,
with the machine to itself. A multi-objective sweep also times every trial's model inside the trial,
so the search can trade accuracy against speed; those numbers share the machine with other trials.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

LATENCY_WARMUP = 10  # untimed runs first: allocator, caches and lazy init settle
LATENCY_MIN_REPEATS = 30  # timed runs at least ...
LATENCY_MIN_SECONDS = 1.0  # ... and for at least this long, so fast models get many samples


def measure_latency(
    model: torch.nn.Module,
    input_size: int,
    device: torch.device | str = "cpu",
    warmup: int = LATENCY_WARMUP,
    min_repeats: int = LATENCY_MIN_REPEATS,
    min_seconds: float = LATENCY_MIN_SECONDS,
) -> tuple[float, float, int]:
    """(median ms, p90 ms, repeats) of batch-1 inference; repeats until both ``min_repeats`` and
    ``min_seconds`` are reached so fast models get enough samples for a stable median."""
    return latency_stats(timed_runs(model, input_size, device, 1, warmup, min_repeats, min_seconds))


def latency_stats(times: list[float]) -> tuple[float, float, int]:
    """(median, p90, count) of wall times."""
    times = sorted(times)
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return statistics.median(times), p90, len(times)


def measure_throughput(
    model: torch.nn.Module,
    input_size: int,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    warmup: int = 3,
    min_repeats: int = 5,
    min_seconds: float = LATENCY_MIN_SECONDS,
) -> float:
    """Images per second of batched inference, from the median batch time."""
    times = timed_runs(model, input_size, device, batch_size, warmup, min_repeats, min_seconds)
    return batch_size / (statistics.median(times) / 1e3)


def timed_runs(
    model: torch.nn.Module,
    input_size: int,
    device: torch.device | str,
    batch_size: int,
    warmup: int,
    min_repeats: int,
    min_seconds: float,
) -> list[float]:
    """Wall times (ms) of forward passes of one random batch, eval + inference mode, after ``warmup``
    untimed ones, until both ``min_repeats`` runs and ``min_seconds`` are reached."""
    device = torch.device(device)
    model.eval().to(device)
    x = torch.randn(batch_size, 3, input_size, input_size, device=device)

    def once() -> None:
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # CUDA launches are asynchronous: time the work, not the launch

    with torch.inference_mode():
        return repeat_timed(once, warmup, min_repeats, min_seconds)


def repeat_timed(once: Callable[[], object], warmup: int, min_repeats: int, min_seconds: float) -> list[float]:
    """Wall times (ms) of ``once()`` after ``warmup`` untimed calls, until both ``min_repeats`` calls and
    ``min_seconds`` are reached: the one timing loop of every latency in this project (PyTorch's and
    ONNX Runtime's alike)."""
    for _ in range(warmup):
        once()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        once()
        times.append((time.perf_counter() - t0) * 1e3)
    return times
